"""The nft dataplane: IPVS NAT services approximated with nftables.

For kernels without IPVS.  Everything lives in shoal's own tables,
`table ip shoal` (IPv4 services) and `table ip6 shoal` (IPv6); no other
table is ever read for meaning, changed or flushed.  Per table:

    map svc { type ADDR . inet_proto . inet_service : verdict }  # VIP.proto.port -> jump S
    map fwm { type mark : verdict }                              # fwmark -> jump S
    chain prerouting { type nat hook prerouting priority dstnat;  # and `output`, for
        ADDR daddr . meta l4proto . th dport vmap @svc            # traffic the director
        meta mark vmap @fwm }                                     # sends itself, as IPVS
    chain S   { meta l4proto tcp dnat ip addr . port to numgen inc mod N map { 0 : A . 80, ... }
                comment "shoal s=wlc p=300 m=255.255.255.0" }
    set S_d   { type ADDR . inet_service; elements = { A . 80 comment "w=3 f=masq", ... } }

S is `s_tcp_10_0_0_1_80` (`:` of IPv6 addresses become `_`) or `f_5` for
fwmark 5.  The set S_d records every destination with its weight (weight 0
ones included, though they get no slot), and the rule's comment the
service's attributes, so `read()` rebuilds exactly the table that was
written.  A service with no destination of positive weight is a `drop`
rule (IPVS answers such packets with ICMP port unreachable; `reject` is not
allowed in a nat chain).  Established connections keep their destination
through conntrack, whatever the rule says later (as IPVS's connection table).

Schedulers (what each IPVS scheduler becomes; weight w gets w slots, reduced
by the weights' gcd and scaled to at most 1024 slots; weight 0: no slot):

| IPVS    | nft                                  | exact?                                     |
|---------|--------------------------------------|--------------------------------------------|
| rr      | numgen inc, one slot per dest        | yes                                        |
| wrr     | numgen inc, weighted slots           | yes (same shares; order interleaved)       |
| lc      | numgen inc, one slot per dest        | no: needs connection counts; round robin   |
| wlc, sed, nq | numgen inc, weighted slots      | no: needs connection counts; weighted rr   |
| lblc, lblcr, dh | jhash daddr, weighted slots  | partly: locality by destination address, no load feedback |
| sh      | jhash saddr (sh-port: . th sport)    | yes for the hash idea; buckets differ; sh-fallback is implicit (weight 0 has no slot) |
| mh      | as sh                                | no maglev table: a change of servers moves more clients |
| fo, ovf | the highest weight dest only (ties: lowest address) | fo yes; ovf without its overflow |
| twos    | numgen random, weighted slots        | no: random, not the better of two          |

Persistence (`persistent` > 0) on any scheduler but sh/mh/dh/lblc/lblcr
becomes `jhash saddr & pmask`: a client (or its pmask network) always
reaches the same server while the set of servers is unchanged, with no
timeout.  Only NAT forwarding (`masq`) exists here: direct routing and
tunnelling raise `DataplaneError` (code EINVAL).  Timeouts and the sync
daemon are recorded, not carried out (conntrack timeouts are the host's;
connection sync would be conntrackd's).

Connection counters: none (`connections()` is None; see there why).

Writes go through `nft -f -` (text on stdin), reads through
`nft -j list ruleset` (JSON): the CLI, which every python sees.  Each
`apply()` is one transaction that rewrites only the services it touches
(their chain, set and dispatch element); if it fails, the operations are
retried one at a time so the failing one is known.  What `apply` checks
operations against (EEXIST, ENOENT, as the kernel's IPVS would) and
rewrites services from is `model`: the table as the last `read()` found it,
with every apply since.  Every read replaces it, so a change made behind
shoal's back (a table flushed, a service deleted) is what the next
reconciling operations are checked against, never a table it no longer
holds.  The constructor runs nothing: the first read (the daemon's own at
start) writes the skeleton when shoal's tables are not there as it writes
them (a first start; a restart over a kept table needs one `nft` run, not
two, before the first heartbeat), as does any read after a flush.
"""

from __future__ import annotations

import ipaddress
import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from adapters.dataplane import Connections, DataplaneError
from engine.diff import TableOpError, apply as apply_ops
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, SetTimeouts
from engine.events import StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import Dest, DestKey, Forward, Service, ServiceEntry, ServiceKey, Table

TABLE = "shoal"
MAX_SLOTS = 1024
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "dh", "sh", "mh", "fo", "ovf", "twos")
_UNWEIGHTED = ("rr", "lc")
_BY_DADDR = ("dh", "lblc", "lblcr")
_BY_SADDR = ("sh", "mh")
_SINGLE = ("fo", "ovf")


class NotExpressible(ValueError):
    """A table this dataplane cannot program (direct routing, an unknown scheduler...)."""


# ------------------------------------------------------------------ rendering (pure)


def _family_name(family: int) -> str:
    return "ip6" if family == 6 else "ip"


def chain_name(key: ServiceKey) -> str:
    if key.protocol == "fwmark":
        return f"f_{key.fwmark}"
    address = key.address.replace(".", "_").replace(":", "_")
    return f"s_{key.protocol}_{address}_{key.port}"


def slots(service: Service, dests: Iterable[Dest]) -> list[Dest]:
    """The map slots of a service's rule, in order (a dest appears once per slot)."""
    live = sorted((d for d in dests if d.weight > 0), key=lambda d: d.key)
    if not live:
        return []
    if service.scheduler in _SINGLE:
        best = max(d.weight for d in live)
        return [next(d for d in live if d.weight == best)]
    if service.scheduler in _UNWEIGHTED or service.scheduler == "dh":
        return live
    counts = [d.weight for d in live]
    g = math.gcd(*counts)
    counts = [c // g for c in counts]
    total = sum(counts)
    if total > MAX_SLOTS:
        counts = [max(1, round(c * MAX_SLOTS / total)) for c in counts]
    out: list[Dest] = []
    for r in range(max(counts)):  # interleaved: A B A A, not A A A B
        out.extend(d for d, c in zip(live, counts) if c > r)
    return out


def _mask_text(family: int, pmask: str) -> str:
    if family == 6:
        return str(ipaddress.IPv6Network(f"::/{int(pmask)}").netmask)
    if pmask.isdigit():
        return str(ipaddress.IPv4Network(f"0.0.0.0/{int(pmask)}").netmask)
    return str(ipaddress.IPv4Address(pmask))


def _selector(service: Service, n: int) -> str:
    fam = _family_name(service.key.family)
    sched = service.scheduler
    port = "sh-port" in service.sched_flags or "mh-port" in service.sched_flags
    if sched in _BY_DADDR:
        return f"jhash {fam} daddr mod {n} seed 0x0"
    if sched in _BY_SADDR or service.persistent_s:
        source = f"{fam} saddr"
        if service.persistent_s and service.pmask is not None:
            source += f" & {_mask_text(service.key.family, service.pmask)}"
        if sched in _BY_SADDR and port:
            source += " . th sport"
        return f"jhash {source} mod {n} seed 0x0"
    if sched == "twos":
        return f"numgen random mod {n}"
    return f"numgen inc mod {n}"


def service_comment(service: Service) -> str:
    parts = ["shoal", f"s={service.scheduler}"]
    if service.sched_flags:
        parts.append("f=" + ",".join(service.sched_flags))
    if service.persistent_s:
        parts.append(f"p={service.persistent_s}")
    if service.pmask is not None:
        parts.append(f"m={service.pmask}")
    return " ".join(parts)


def _addr(address: str) -> str:
    return address


def check_entry(entry: ServiceEntry) -> None:
    """Raise NotExpressible for what this dataplane cannot program."""
    service = entry.service
    key = service.key
    if key.protocol not in ("tcp", "udp", "fwmark"):
        raise NotExpressible(f"protocol {key.protocol} is not supported")
    if service.scheduler not in SCHEDULERS:
        raise NotExpressible(f"scheduler {service.scheduler} is unknown to the nft dataplane")
    for dest in entry.dests.values():
        _check_dest(key, dest)


def _check_dest(key: ServiceKey, dest: Dest) -> None:
    if dest.forward != "masq":
        raise NotExpressible(
            f"{dest.key} in {key}: the nft dataplane does NAT forwarding only, not {dest.forward}"
            " (use the ipvs dataplane for direct routing and tunnelling)")
    if (6 if ":" in dest.key.address else 4) != key.family:
        raise NotExpressible(f"{dest.key} in {key}: address family differs from the service's")


def rule_text(entry: ServiceEntry) -> str:
    """The statement of a service's chain (without `add rule ... CHAIN`)."""
    service = entry.service
    key = service.key
    fam = _family_name(key.family)
    comment = f' comment "{service_comment(service)}"'
    chosen = slots(service, entry.dests.values())
    if not chosen:
        return "drop" + comment
    with_port = [d.key.port != 0 for d in chosen]
    if key.protocol == "fwmark" and any(with_port) and not all(with_port):
        raise NotExpressible(f"{key}: destinations with and without a port cannot share one nft map")
    selector = _selector(service, len(chosen))
    if any(with_port):
        # A dest port 0 in a VIP:port service means the service's port (as IPVS).
        elements = ", ".join(f"{i} : {d.key.address} . {d.key.port or key.port}" for i, d in enumerate(chosen))
        proto = "{ tcp, udp }" if key.protocol == "fwmark" else key.protocol
        return f"meta l4proto {proto} dnat {fam} addr . port to {selector} map {{ {elements} }}{comment}"
    elements = ", ".join(f"{i} : {d.key.address}" for i, d in enumerate(chosen))
    return f"dnat {fam} to {selector} map {{ {elements} }}{comment}"


def skeleton(family: int) -> str:
    """Create shoal's table for `family` if missing; (re)write only its base
    chains' dispatch rules.  Never touches a service."""
    fam = _family_name(family)
    addr = "ipv6_addr" if family == 6 else "ipv4_addr"
    t = f"{fam} {TABLE}"
    lines = [
        f"add table {t}",
        f"add map {t} svc {{ type {addr} . inet_proto . inet_service : verdict; }}",
        f"add map {t} fwm {{ type mark : verdict; }}",
    ]
    for hook in ("prerouting", "output"):
        lines += [
            f"add chain {t} {hook} {{ type nat hook {hook} priority -100; policy accept; }}",
            f"flush chain {t} {hook}",
            f"add rule {t} {hook} {fam} daddr . meta l4proto . th dport vmap @svc",
            f"add rule {t} {hook} meta mark vmap @fwm",
        ]
    return "\n".join(lines) + "\n"


def _dispatch_key(key: ServiceKey) -> tuple[str, str]:
    if key.protocol == "fwmark":
        return "fwm", str(key.fwmark)
    return "svc", f"{key.address} . {key.protocol} . {key.port}"


def service_text(key: ServiceKey, old: ServiceEntry | None, new: ServiceEntry | None) -> str:
    """The nft commands that turn service `key` from `old` into `new`."""
    t = f"{_family_name(key.family)} {TABLE}"
    chain = chain_name(key)
    dmap, dkey = _dispatch_key(key)
    lines: list[str] = []
    if new is None:
        if old is not None:
            lines += [
                f"delete element {t} {dmap} {{ {dkey} }}",
                f"flush chain {t} {chain}",
                f"delete chain {t} {chain}",
                f"delete set {t} {chain}_d",
            ]
        return "".join(line + "\n" for line in lines)
    check_entry(new)
    addr = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    lines += [
        f"add chain {t} {chain}",
        f"flush chain {t} {chain}",
        f"add set {t} {chain}_d {{ type {addr} . inet_service; }}",
        f"flush set {t} {chain}_d",
    ]
    if new.dests:
        elements = ", ".join(
            f'{d.key.address} . {d.key.port} comment "w={d.weight} f={d.forward}"'
            for d in sorted(new.dests.values(), key=lambda d: d.key)
        )
        lines.append(f"add element {t} {chain}_d {{ {elements} }}")
    lines.append(f"add rule {t} {chain} {rule_text(new)}")
    if old is None:
        lines.append(f"add element {t} {dmap} {{ {dkey} : jump {chain} }}")
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------ reading (pure)


def _parse_comment(text: str) -> dict[str, str] | None:
    words = text.split()
    if not words or words[0] != "shoal":
        return None
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


def _canonical_address(value: Any, family: int) -> str:
    return str(ipaddress.ip_address(str(value))) if family == 4 else ipaddress.IPv6Address(str(value)).compressed


def _port(value: Any) -> int:
    return int(value)


@dataclass
class _Parsed:
    dispatch: dict[str, ServiceKey]           # chain -> key
    comments: dict[str, dict[str, str]]       # chain -> service attributes
    dests: dict[str, dict[DestKey, Dest]]     # chain -> dests


def parse_ruleset(doc: dict[str, Any]) -> dict[ServiceKey, ServiceEntry]:
    """The table shoal's nft tables hold, from `nft -j list ruleset` output.
    Objects of other tables, and anything without shoal's comments, are ignored."""
    tables: dict[int, _Parsed] = {4: _Parsed({}, {}, {}), 6: _Parsed({}, {}, {})}
    for item in doc.get("nftables", []):
        (kind, obj), = item.items()
        if not isinstance(obj, dict) or obj.get("table") != TABLE or obj.get("family") not in ("ip", "ip6"):
            continue
        family = 6 if obj["family"] == "ip6" else 4
        p = tables[family]
        if kind == "map" and obj.get("name") in ("svc", "fwm"):
            for key_json, verdict in obj.get("elem", []):
                target = verdict.get("jump", {}).get("target") if isinstance(verdict, dict) else None
                if target is None:
                    continue
                if obj["name"] == "fwm":
                    p.dispatch[target] = ServiceKey("fwmark", "", 0, int(str(key_json), 0), family)
                else:
                    address, proto, port = key_json["concat"]
                    p.dispatch[target] = ServiceKey(
                        str(proto), _canonical_address(address, family), _port(port), 0, family)
        elif kind == "set" and str(obj.get("name", "")).endswith("_d"):
            chain = obj["name"][:-2]
            dests = p.dests.setdefault(chain, {})
            for elem in obj.get("elem", []):
                if not isinstance(elem, dict) or "elem" not in elem:
                    continue
                attrs = _parse_comment("shoal " + str(elem["elem"].get("comment", "")))
                address, port = elem["elem"]["val"]["concat"]
                if not attrs or "w" not in attrs:
                    continue
                dkey = DestKey(_canonical_address(address, family), _port(port))
                forward: Forward = "masq" if attrs.get("f", "masq") == "masq" else (
                    "route" if attrs["f"] == "route" else "tunnel")
                dests[dkey] = Dest(dkey, int(attrs["w"]), forward)
        elif kind == "rule" and "comment" in obj:
            attrs = _parse_comment(str(obj["comment"]))
            if attrs is not None and "s" in attrs:
                p.comments[str(obj["chain"])] = attrs
    out: dict[ServiceKey, ServiceEntry] = {}
    for p in tables.values():
        for chain, key in p.dispatch.items():
            attrs = p.comments.get(chain)
            if attrs is None or chain != chain_name(key):
                continue  # not written by shoal
            service = Service(
                key, attrs["s"], tuple(f for f in attrs.get("f", "").split(",") if f),
                int(attrs.get("p", "0")), attrs.get("m"))
            out[key] = ServiceEntry(service, dict(p.dests.get(chain, {})))
    return out


def has_skeleton(doc: dict[str, Any], family: int) -> bool:
    """Whether `nft -j list ruleset` output holds shoal's table of `family` as `skeleton` writes
    it: its dispatch maps, its base chains hooked at dstnat, each with its two dispatch rules
    (`@svc`, `@fwm`), which every service's commands take for granted."""
    fam = _family_name(family)
    found: set[tuple[str, str]] = set()
    rules: dict[str, list[str]] = {"prerouting": [], "output": []}
    for item in doc.get("nftables", []):
        for kind, obj in item.items():
            if not isinstance(obj, dict) or obj.get("family") != fam:
                continue
            if kind == "table" and obj.get("name") == TABLE:
                found.add(("table", TABLE))
            elif obj.get("table") != TABLE:
                continue
            elif kind == "map":
                found.add(("map", str(obj.get("name"))))
            elif kind == "chain" and obj.get("name") in rules and obj.get("hook") == obj.get("name") \
                    and obj.get("type") == "nat" and obj.get("prio") == -100:
                found.add(("chain", str(obj["name"])))
            elif kind == "rule" and obj.get("chain") in rules:
                rules[str(obj["chain"])].append(json.dumps(obj.get("expr")))
    dispatch = all(len(r) == 2 and '"@svc"' in r[0] and '"@fwm"' in r[1] for r in rules.values())
    return dispatch and {("table", TABLE), ("map", "svc"), ("map", "fwm"), ("chain", "prerouting"),
                         ("chain", "output")} <= found


# ------------------------------------------------------------------ the dataplane


def _key_of(op: TableOp) -> ServiceKey:
    match op:
        case AddService(service) | EditService(service):
            return service.key
        case DelService(key) | AddDest(key, _) | EditDest(key, _) | DelDest(key, _):
            return key
    raise TypeError(f"not a table operation: a {type(op).__name__}")


class Nft:
    name = "nft"

    def __init__(self, netns: str | None = None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = shutil.which(nft) or shutil.which(nft, path="/usr/sbin:/sbin")
        if self.nft is None:
            raise DataplaneError("nft not found: install nftables (apt-get install -y nftables)")
        self.timeouts: SetTimeouts | None = None
        self.daemons: dict[str, StartSyncDaemon] = {}
        self._model: Table | None = None  # what the kernel holds: set by every read, kept by every apply

    @property
    def model(self) -> Table:
        """What shoal's tables hold, as the last read found them with every apply since: what
        `apply` checks operations against and rewrites services from."""
        if self._model is None:
            self.read()
        assert self._model is not None
        return self._model

    @model.setter
    def model(self, table: Table) -> None:
        self._model = table

    def _run(self, script: str | None, *args: str) -> str:
        cmd = [str(self.nft), *args] if script is None else [str(self.nft), "-f", "-"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        try:
            done = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataplaneError(f"running nft failed: {e}") from None
        if done.returncode != 0:
            raise DataplaneError(f"nft failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def read(self) -> Table:
        text = self._run(None, "-j", "list", "ruleset")
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise DataplaneError(f"nft -j printed no JSON: {e}") from None
        table = parse_ruleset(doc)
        missing = [family for family in (4, 6) if not has_skeleton(doc, family)]
        if missing:  # a first start, or flushed behind shoal's back: what every service's commands need
            self._run("".join(skeleton(family) for family in missing))
        self._model = table  # the kernel's truth now: a change behind shoal's back is not kept as applied
        return table

    def apply(self, ops: Sequence[TableOp]) -> None:
        old = self.model
        new = old
        touched: list[ServiceKey] = []
        accepted: list[TableOp] = []
        refused: DataplaneError | None = None
        for op in ops:
            try:
                candidate = apply_ops(new, (op,))
                key = _key_of(op)
                entry = candidate.get(key)
                if entry is not None:
                    check_entry(entry)
            except TableOpError as e:
                refused = DataplaneError(str(e), op, e.code)
                break
            except NotExpressible as e:
                refused = DataplaneError(str(e), op, "EINVAL")
                break
            new = candidate
            accepted.append(op)
            if key not in touched:
                touched.append(key)
        if touched:
            script = "".join(service_text(k, old.get(k), new.get(k)) for k in touched)
            try:
                self._run(script)
                self.model = new
            except DataplaneError:
                self._one_by_one(accepted)  # raises on the failing operation
        if refused is not None:
            raise refused

    def _one_by_one(self, ops: Sequence[TableOp]) -> None:
        for op in ops:
            key = _key_of(op)
            new = apply_ops(self.model, (op,))
            try:
                self._run(service_text(key, self.model.get(key), new.get(key)))
            except DataplaneError as e:
                self.model = self.read()
                raise DataplaneError(str(e), op) from None
            self.model = new

    def set_timeouts(self, cmd: SetTimeouts) -> None:
        self.timeouts = cmd

    def sync_daemon(self, cmd: StartSyncDaemon | StopSyncDaemon) -> None:
        if isinstance(cmd, StartSyncDaemon):
            self.daemons[cmd.state] = cmd
        else:
            self.daemons.pop(cmd.state, None)

    def connections(self) -> Connections | None:
        """None: this dataplane has no per real server counters.  A service's
        rule picks its destination from an anonymous map inside one `dnat`
        statement, so no counter sits behind one destination; the
        connections themselves are conntrack's (`conntrack -L`), not nft's."""
        return None

    def close(self) -> None:
        pass


def delete_tables(netns: str | None = None) -> None:
    """Remove shoal's nft tables (for tests and `shoal lab` cleanup only: the
    daemon never flushes)."""
    for fam in ("ip", "ip6"):
        cmd = ["nft", "delete", "table", fam, TABLE]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        subprocess.run(cmd, capture_output=True, check=False)
