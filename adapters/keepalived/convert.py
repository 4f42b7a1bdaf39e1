"""keepalived.conf statements into an lvs.cf model, and a note for
everything that did not come over (docs/IMPORT-KEEPALIVED.md).

    result = convert(tree, Options(primary="10.0.0.1"))
    result.config      # the lvs.cf model, or None when nothing usable came over
    result.notes       # [Note(where, what, why)], in file order

Rules:
- A keepalived.conf describes one router; an lvs.cf describes the pair.
  This router is the primary when its `vrrp_instance` says `state
  MASTER`, else the backup; its own address is `unicast_src_ip`, its
  partner's the first `unicast_peer`.  An address no one can know is
  written as a documentation address (192.0.2.1, 2001:db8::1: RFC 5737,
  RFC 3849) with a note saying the line to write instead: the file passes
  `shoal check-config`, and a daemon refuses to start on it (no local
  address), so a placeholder never runs.
- One `vrrp_instance` (the first, or `--instance NAME`) becomes the VRRP
  keys; each `virtual_server IP PORT` or `fwmark N` one `virtual`, its VIP
  device the instance's (or that address's `dev`/`label`); each
  `real_server` a `server`.  lvs.cf keeps one health check per virtual:
  the first real server's first checker decides it, and a real server
  whose checker says otherwise is noted.
- What keepalived does by default and lvs.cf does not is written out:
  `preempt = 1` (VRRP preempts unless `nopreempt`), `rise = 1` (one good
  check brings a server back), `fall` = `retry` + 1, `check_interval` =
  `delay_loop` (60 s), `timeout` = `connect_timeout` (5 s), `check =
  none` for a real server without checker (keepalived keeps it up).
- Nothing is dropped in silence: every statement that is not carried
  over, or carried over with another meaning, gets a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.keepalived.servers import KINDS, virtual_server
from adapters.keepalived.syntax import Stmt, Tree, Where
from adapters.keepalived.values import Note, Reporter, command, family, fits, ip_of, number, seconds_ms, shown
from engine.config import render
from engine.config.limits import MAX_SERVERS, MAX_VIRTUALS
from engine.model import Config, Virtual

PLACEHOLDER = {4: ("192.0.2.1", "192.0.2.2", "192.0.2.3"), 6: ("2001:db8::1", "2001:db8::2", "2001:db8::3")}
LINE_BUDGET = 99_000  # lvs.cf is read up to 100,000 lines (engine/config/limits.py): room for the globals


@dataclass
class Options:
    primary: str | None = None
    backup: str | None = None
    instance: str | None = None  # which vrrp_instance (default: the first)
    interface: str | None = None  # the VIPs' interface when the file does not say


@dataclass
class Result:
    config: Config | None
    notes: list[Note] = field(default_factory=list)
    placeholders: list[tuple[str, str]] = field(default_factory=list)  # (key, what to write instead)
    origins: dict[str, Where] = field(default_factory=dict)  # virtual name -> its virtual_server


@dataclass
class _Vip:
    address: str
    device: str | None
    prefix: str | None
    where: Where
    used: bool = False


class Converter(Reporter):
    def __init__(self, tree: Tree, options: Options) -> None:
        super().__init__()
        self.tree = tree
        self.options = options
        self.globals: dict[str, Any] = {}
        self.vips: dict[str, _Vip] = {}
        self.interface: str | None = options.interface
        self.instance: Stmt | None = None
        self.network: str | None = None
        self.virtuals: list[Virtual] = []
        self.origins: dict[str, Where] = {}
        self.services: dict[tuple[object, ...], str] = {}
        self.lines = 0
        self.version = 2  # keepalived's default vrrp_version
        self.advert_text = "1"
        self.checksum_stmt: Stmt | None = None
        self.node = "backup"

    # ------------------------------------------------------------ top level

    def run(self) -> Result:
        top = self.tree.statements
        for stmt in top:
            if stmt.word == "global_defs":
                self.global_defs(stmt)
        instances = [s for s in top if s.word == "vrrp_instance"]
        chosen = self.choose(instances)
        if chosen is not None:
            self.vrrp_instance(chosen)
        for stmt in top:
            if stmt.word in ("global_defs", "vrrp_instance"):
                continue
            if stmt.word == "virtual_server":
                self.virtual_server(stmt)
            else:
                self.skip(stmt, "not carried over: lvs.cf has no equivalent")
        for vip in self.vips.values():
            if not vip.used:
                self.notes.append(Note(vip.where, vip.address, "a VIP without a virtual_server: lvs.cf holds an "
                                                               "address only as a virtual's; not carried over"))
        self.notes.sort(key=lambda n: (self.tree.files.index(n.where.file) if n.where.file in self.tree.files
                                       else 0, n.where.line))
        if not self.virtuals:
            return Result(None, self.notes)
        return self.finish()

    def choose(self, instances: list[Stmt]) -> Stmt | None:
        wanted = self.options.instance
        chosen = next((s for s in instances if wanted is None or s.args[:1] == (wanted,)), None)
        if wanted is not None and chosen is None and instances:
            names = ", ".join(s.args[0] if s.args else "?" for s in instances)
            self.notes.append(Note(instances[0].where, f"vrrp_instance {wanted}",
                                   f"no such vrrp_instance (the file has {names})"))
        for other in instances:
            if other is not chosen:
                self.note(other, f"a second vrrp_instance: an lvs.cf has one (vrrp_instance "
                                 f"{chosen.args[0] if chosen and chosen.args else '?'} was taken; --instance NAME "
                                 f"takes another); its VIPs are not carried over", shown(other))
        return chosen

    def global_defs(self, stmt: Stmt) -> None:
        for s in stmt.block or []:
            if s.word == "vrrp_version" and s.args[:1] in (("2",), ("3",)):
                self.version = int(s.args[0])
            elif s.word == "v3_checksum_as_v2" and _true(s.args):
                self.globals["vrrp_v3_checksum_as_v2"] = True
                self.checksum_stmt = s
            elif s.word == "lvs_sync_daemon" and s.args and fits("global", "syncd_iface", s.args[0]) is None:
                self.globals.update(syncdaemon=True, syncd_iface=s.args[0])
                rest = list(s.args[1:])
                if "id" in rest and rest.index("id") + 1 < len(rest) and rest[rest.index("id") + 1].isdigit():
                    self.globals["syncd_id"] = min(255, int(rest[rest.index("id") + 1]))
                extra = [a for a in rest if a not in ("inst", "id") and not a.isdigit()]
                if len(extra) > 1 or any(a in ("maxlen", "port", "ttl", "group") for a in rest):
                    self.note(s, "only the interface and id are carried over (syncd_iface, syncd_id)")
            else:
                self.unread(s, ("vrrp_version", "v3_checksum_as_v2", "lvs_sync_daemon"),
                            "a global_defs setting lvs.cf has no equivalent for")

    # ------------------------------------------------------------ VRRP

    def vrrp_instance(self, inst: Stmt) -> None:
        self.instance = inst
        g = self.globals
        state, src, peers = "BACKUP", None, []
        priority, advert = 100, "1"
        g["preempt"] = True
        for s in inst.block or []:
            w, a = s.word, s.args
            if w == "state" and a[:1] in (("MASTER",), ("BACKUP",)):
                state = a[0]
            elif w == "interface" and a and fits("virtual", "address", "10.0.0.1", a[0]) is None:
                self.interface = self.options.interface or a[0]
            elif w == "virtual_router_id" and number(a, 1, 255) is not None:
                g["virtual_router_id"] = number(a, 1, 255)
            elif w == "priority" and number(a, 1, 255) is not None:
                priority = number(a, 1, 255) or 100
            elif w == "advert_int" and a:
                advert = a[0]
            elif w == "version" and a[:1] in (("2",), ("3",)):
                self.version = int(a[0])
            elif w == "v3_checksum_as_v2" and _true(a) is not None:
                g["vrrp_v3_checksum_as_v2"] = _true(a)
            elif w == "nopreempt":
                g["preempt"] = False
            elif w == "preempt":
                g["preempt"] = True
            elif w == "preempt_delay" and seconds_ms(a) is not None:
                g["preempt_delay_ms"] = min(1_000_000, seconds_ms(a) or 0)
            elif w == "unicast_src_ip" and ip_of(a):
                src = ip_of(a)
            elif w == "unicast_peer" and s.block is not None:
                peers += [(p, ip_of((p.word,))) for p in s.block]
            elif w == "virtual_ipaddress" and s.block is not None:
                for v in s.block:
                    self.vip(v)
            elif w in ("notify_master", "notify_backup") and a:
                self.command(s, "active_cmd" if w == "notify_master" else "inactive_cmd")
            elif w == "lvs_sync_daemon_interface" and len(a) == 1 and fits("global", "syncd_iface", a[0]) is None:
                g.update(syncdaemon=True, syncd_iface=a[0])
            else:
                self.unread(s, _INSTANCE_WORDS, "a vrrp_instance setting lvs.cf has no equivalent for")
        if priority == 255:
            self.note(inst, "priority 255 (the address owner's) is written as 254: lvs.cf keeps 255 for the owner "
                            "of the addresses, which a load balancer's VIPs never are", "priority 255")
            priority = 254
        g["priority"] = priority
        if g.get("syncdaemon") and "syncd_id" not in g and "virtual_router_id" in g:
            g["syncd_id"] = g["virtual_router_id"]  # keepalived's default sync id: the instance's VRID
        if "virtual_router_id" not in g:
            self.note(inst, "no valid virtual_router_id (1-255): wrote 1; set the partner's", shown(inst))
            g["virtual_router_id"] = 1
        self.pair(inst, state, src, peers)
        self.advert(inst, advert)
        if not g["preempt"]:
            g.pop("preempt_delay_ms", None)
        if g.get("vrrp_v3_checksum_as_v2") and self.version != 3:
            self.note(inst, "v3_checksum_as_v2 applies to VRRPv3 only: not carried over", "v3_checksum_as_v2")
            del g["vrrp_v3_checksum_as_v2"]

    def vip(self, v: Stmt) -> None:
        words = (v.word, *v.args)
        text = words[0]
        address, _, prefix = text.partition("/")
        ip = ip_of((address,))
        if ip is None:
            self.note(v, "not an address lvs.cf can hold (skipped)")
            return
        device = None
        for key in ("label", "dev"):
            if key in words[1:-1]:
                device = words[words.index(key) + 1]
                break
        if device is not None and fits("virtual", "address", ip, device) is not None:
            self.note(v, f"{device}: {fits('virtual', 'address', ip, device)}: the VIP goes on the instance's interface")
            device = None
        if prefix and (fits("virtual", "vip_nmask", prefix) is not None or not prefix.isdigit()
                       or int(prefix) > (128 if family(ip) == 6 else 32)):
            self.note(v, f"/{prefix} is not a prefix length of an IPv{family(ip)} address: not carried over")
            prefix = ""
        named = {words[i + 1] for i, w in enumerate(words[1:-1], 1) if w in ("dev", "label")}
        extra = [w for w in words[1:] if w not in ("dev", "label") and w not in named]
        if extra:
            self.note(v, f"only the address, its prefix and its dev or label are carried over ({' '.join(extra)} "
                         f"is not)")
        if ip not in self.vips:
            self.vips[ip] = _Vip(ip, device, prefix or None, v.where)

    def pair(self, inst: Stmt, state: str, src: str | None, peers: list[tuple[Stmt, str | None]]) -> None:
        """Which router this file describes, and both addresses."""
        g = self.globals
        peer = next((ip for _, ip in peers if ip), None)
        for stmt, ip in peers[1:] if peer else peers:
            self.note(stmt, "an lvs.cf pairs two routers: only the first unicast_peer is the partner"
                      if ip else "not an address (skipped)")
        if peers:
            g["vrrp_unicast"] = True
        mine, partner = (("primary", "backup") if state == "MASTER" else ("backup", "primary"))
        g[mine], g[partner] = src, peer
        g["backup_active"] = True
        self.node = mine

    def advert(self, inst: Stmt, advert: str) -> None:
        self.advert_text = advert
        ms = seconds_ms((advert,))
        if ms is None:
            self.note(inst, f"advert_int {advert} is not a time: wrote keepalive = 1", "advert_int")
            ms = 1000
        if self.version == 2 and (ms % 1000 or not 1000 <= ms <= 255_000):
            fixed = min(255_000, max(1000, round(ms / 1000) * 1000))
            self.note(inst, f"VRRPv2 adverts come every whole second (1-255): wrote keepalive = {fixed // 1000}",
                      f"advert_int {advert}")
            ms = fixed
        elif self.version == 3 and (ms % 10 or not 10 <= ms <= 40_950):
            fixed = min(40_950, max(10, round(ms / 10) * 10))
            self.note(inst, f"VRRPv3 adverts come every 0.01 to 40.95 s in hundredths: wrote keepalive = "
                            f"{fixed / 1000:g}", f"advert_int {advert}")
            ms = fixed
        self.globals["keepalive_ms"] = ms

    def command(self, s: Stmt, key: str) -> None:
        if len(s.args) > 1:
            self.note(s, f"carried over as {key} = {s.args[0]}; the user and group after it are not (shoal runs it as "
                         f"itself)")
        text = command(s.args[0])
        if text is None:
            self.note(s, "a command lvs.cf cannot hold (too long, or a control character)")
        else:
            self.globals[key] = text

    # ------------------------------------------------------------ LVS

    def virtual_server(self, vs: Stmt) -> None:
        if vs.args[:1] == ("group",):
            self.note(vs, "virtual_server_group is not supported: write one virtual_server per address and port",
                      shown(vs))
            return
        kind = next((s.args[0] for s in vs.block or [] if s.word in ("lb_kind", "lvs_method") and s.args), "NAT")
        if self.network is not None and KINDS.get(kind, self.network) != self.network:
            self.note(vs, f"lb_kind differs from the first virtual_server's: lvs.cf has one network for all "
                          f"virtuals ({_KIND_NAME[self.network]}); this virtual_server is not carried over", shown(vs))
            return
        made = virtual_server(self, vs, self.vip_for)
        if made is None:
            return
        virtual, network = made
        self.network = network
        if _service(virtual) in self.services:
            self.note(vs, f"the same service as virtual {self.services[_service(virtual)]}: not carried over",
                      shown(vs))
            return
        lines = 2 + render(Config(virtuals=(virtual,))).count("\n") - _GLOBAL_LINES  # and a comment and a blank
        servers = sum(len(v.servers) for v in self.virtuals) + len(virtual.servers)
        if len(self.virtuals) >= MAX_VIRTUALS or servers > MAX_SERVERS or self.lines + lines > LINE_BUDGET:
            self.note(vs, f"beyond what one lvs.cf holds ({MAX_VIRTUALS} virtuals, {MAX_SERVERS} real servers, "
                          f"{LINE_BUDGET} lines): not carried over", shown(vs))
            return
        self.lines += lines
        self.services[_service(virtual)] = virtual.name
        self.virtuals.append(virtual)
        self.origins[virtual.name] = vs.where

    def vip_for(self, stmt: Stmt, address: str) -> tuple[str, str | None]:
        """The device and netmask of a virtual whose address is `address`."""
        vip = self.vips.get(address)
        if vip is not None:
            vip.used = True
            return vip.device or self.interface or "eth0", vip.prefix
        if self.instance is not None:
            self.note(stmt, f"{address} is not among vrrp_instance {self.instance.args[0] if self.instance.args else ''}"
                            f"'s virtual_ipaddress: shoal holds a virtual's address as a VIP on the active router "
                            f"(on {self.interface or 'eth0'})", shown(stmt))
        elif self.interface is None:
            self.note(stmt, "no vrrp_instance says on which interface the VIP goes: wrote eth0 (--interface DEV "
                            "writes another)", shown(stmt))
        return self.interface or "eth0", None

    # ------------------------------------------------------------ result

    @staticmethod
    def placeholder(fam: int, g: dict[str, Any]) -> str:
        """A documentation address (RFC 5737, RFC 3849) that is not the other router's."""
        return next(a for a in PLACEHOLDER[fam] if a not in (g.get("primary"), g.get("backup")))

    def finish(self) -> Result:
        g = dict(self.globals)
        placeholders: list[tuple[str, str]] = []
        known = g.get("primary") or g.get("backup") or self.options.primary or self.options.backup
        fam = family(known or self.virtuals[0].address or "0.0.0.0")
        if self.options.primary:
            g["primary"] = self.options.primary
        if self.options.backup:
            g["backup"] = self.options.backup
        if g.get("primary") and g.get("backup") and (g["primary"] == g["backup"]
                                                     or family(g["primary"]) != family(g["backup"])):
            assert self.instance is not None
            self.note(self.instance, f"this router's address and its partner's ({g['primary']}, {g['backup']}) cannot "
                                     f"make a pair (the same, or of two IP versions): neither is carried over",
                      "unicast_src_ip, unicast_peer")
            g["primary"] = g["backup"] = None
        if self.instance is None:
            g["backup_active"] = False
            if g.pop("vrrp_v3_checksum_as_v2", None) and self.checksum_stmt is not None:
                self.note(self.checksum_stmt, "no vrrp_instance: not carried over")
            for key in ("primary", "backup"):
                if g.get(key) is None and key == "primary":
                    g[key] = self.placeholder(fam, g)
                    placeholders.append((key, "the address of the router that runs this lvs.cf"))
        else:
            g.update(heartbeat_protocol="vrrp", vrrp_version=3 if fam == 6 else self.version)
            for n, key in enumerate(("primary", "backup")):
                if g.get(key) is None:
                    g[key] = self.placeholder(fam, g)
                    whose = "this router's" if key == self.node else "its partner's"
                    placeholders.append((key, f"{whose} address on {self.interface or 'the VRRP interface'} "
                                              f"(the {'MASTER' if key == 'primary' else 'BACKUP'})"))
        if fam == 6 and self.version == 2 and self.instance is not None:
            self.note(self.instance, "VRRPv2 is IPv4 only: wrote vrrp_version = 3 (keepalived runs IPv6 instances "
                                     "with version 3 too)", "vrrp_version 2")
            self.version = 3
            self.advert(self.instance, self.advert_text)
            g["keepalive_ms"] = self.globals["keepalive_ms"]
            g["vrrp_version"] = 3
        if self.network:
            g["network"] = self.network
        config = Config(**g, virtuals=tuple(self.virtuals))
        return Result(config, self.notes, placeholders, self.origins)


_KIND_NAME = {"nat": "NAT", "direct": "DR", "tunnel": "TUN"}


_INSTANCE_WORDS = ("state", "interface", "virtual_router_id", "priority", "advert_int", "version", "v3_checksum_as_v2",
                   "preempt_delay", "unicast_src_ip", "unicast_peer", "virtual_ipaddress", "notify_master",
                   "notify_backup", "lvs_sync_daemon_interface")


def _true(args: tuple[str, ...]) -> bool | None:
    """keepalived's optional <BOOL>: absent is true."""
    if not args:
        return True
    return {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}.get(args[0].lower())


_GLOBAL_LINES = render(Config()).count("\n")


def _service(v: Virtual) -> tuple[object, ...]:
    return ("fwmark", v.fwmark) if v.fwmark is not None else (v.protocol, v.address, v.port)


def convert(tree: Tree, options: Options | None = None) -> Result:
    return Converter(tree, options or Options()).run()
