"""The ipvs dataplane (adapters/dataplane/ipvs.py) on the guest's real IPVS.

What it proves, on Linux 6.1 and ipvsadm 1.31:

- services by TCP and UDP VIP:port and by fwmark, IPv4 and IPv6, with
  destinations forwarded by masq, route and tunnel, weights including 0,
  persistence with its timeout and netmask (IPv4 dotted and IPv6 prefix),
  are programmed through `Ipvs` (in the root namespace and in a network
  namespace) and read back: after every change `read()` equals the table
  `engine.diff.apply` computes from the operations, and `ipvsadm -Sn`,
  parsed here by a parser of this file's own, says the same;
- every scheduler the kernel offers (its ip_vs_*.ko modules) round-trips,
  with the sh and mh flags, and is edited into another one; a scheduler the
  kernel lacks (twos before 6.2, a made-up name) is refused as EINVAL with
  its name in the message, the table unchanged;
- edits of a service (scheduler, flags, persistence on, off and its mask)
  and of a destination (weight, forwarding), and deletes;
- refusals: the kernel's errno for adding what exists and touching what
  does not equals `engine.diff.apply`'s model, op by op; the operations
  before a refused one stay applied and the ones after it are not tried;
  what the kernel refuses and the model does not is listed;
- `set_timeouts` sets the namespace's tcp/tcpfin/udp timeouts (`ipvsadm -L
  --timeout`), 0 leaving a value as it was;
- `sync_daemon` starts the master and the backup sync daemons on an
  interface of the namespace and stops each (`ipvsadm -L --daemon`);
- adapters/dataplane/ipvsadm.py formats a varied table exactly as the real
  tool prints it (`-Ln` and `-Sn`), and its restore lines fed to `ipvsadm
  -R` give the same table back, also for the lines of a diff;
- a handful of random small tables (hypothesis, derandomized): the diff
  from one to another applied through the adapter reaches the other.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters import netns
from adapters.dataplane import DataplaneError
from adapters.dataplane.ipvs import Ipvs
from adapters.dataplane.ipvsadm import format_ln, format_save, restore_line
from engine.diff import TableOpError, apply as model_apply, diff
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService
from engine.events import SetTimeouts, StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import Dest, DestKey, Forward, Service, ServiceEntry, ServiceKey, Table

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")


T80 = ServiceKey("tcp", "192.0.2.1", 80)
U53 = ServiceKey("udp", "192.0.2.2", 53)
T6 = ServiceKey("tcp", "2001:db8::1", 443, family=6)
U6 = ServiceKey("udp", "2001:db8::2", 53, family=6)
FWM = ServiceKey("fwmark", "", 0, fwmark=5)
FWM6 = ServiceKey("fwmark", "", 0, fwmark=6, family=6)


def dest(address: str, port: int, weight: int = 1, forward: Forward = "masq") -> Dest:
    return Dest(DestKey(address, port), weight, forward)


# ------------------------------------------------------------------ the real tool


def sh(*argv: str, ns: str | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, input=stdin, preexec_fn=netns.preexec(ns) if ns else None)
    where = f" (in {ns})" if ns else ""
    assert done.returncode == 0, f"{' '.join(argv)}{where}: exit {done.returncode}: {done.stderr.strip()}"
    return done.stdout


def ipvsadm(*args: str, ns: str | None = None, stdin: str | None = None) -> str:
    return sh("ipvsadm", *args, ns=ns, stdin=stdin)


# ------------------------------------------------------------------ an independent ipvsadm -Sn reader

# The ipvsadm spellings, as ipvsadm 1.31's print_service_entry writes them;
# written here from the tool's output, not from adapters/dataplane/ipvsadm.py.
FORWARD_OF_FLAG: dict[str, Forward] = {"-m": "masq", "-g": "route", "-i": "tunnel"}
FLAG_BIT = {"sh-fallback": 1, "sh-port": 2, "mh-fallback": 1, "mh-port": 2, "flag-1": 1, "flag-2": 2, "flag-3": 3}


def _hostport(text: str) -> tuple[str, int, int]:
    if text.startswith("["):
        host, port = text[1:].split("]:")
        return str(ipaddress.IPv6Address(host)), int(port), 6
    host, port = text.rsplit(":", 1)
    return str(ipaddress.IPv4Address(host)), int(port), 4


def _key(words: list[str]) -> tuple[ServiceKey, list[str]]:
    if words[0] == "-f":
        if len(words) > 2 and words[2] == "-6":
            return ServiceKey("fwmark", "", 0, int(words[1]), 6), words[3:]
        return ServiceKey("fwmark", "", 0, int(words[1]), 4), words[2:]
    address, port, family = _hostport(words[1])
    return ServiceKey({"-t": "tcp", "-u": "udp"}[words[0]], address, port, 0, family), words[2:]


def _pairs(words: list[str]) -> dict[str, str]:
    assert len(words) % 2 == 0, words
    return dict(zip(words[::2], words[1::2]))


def parse_sn(text: str) -> dict[ServiceKey, ServiceEntry]:
    """`ipvsadm -Sn` output as a table, in the kernel's spelling."""
    services: dict[ServiceKey, Service] = {}
    dests: dict[ServiceKey, dict[DestKey, Dest]] = {}
    for line in text.splitlines():
        words = line.split()
        if words[0] == "-A":
            key, rest = _key(words[1:])
            opts = _pairs(rest)
            assert set(opts) <= {"-s", "-p", "-M", "-b"}, line
            flags = tuple(sorted(opts["-b"].split(","), key=FLAG_BIT.__getitem__)) if "-b" in opts else ()
            services[key] = Service(key, opts["-s"], flags, int(opts.get("-p", 0)), opts.get("-M"))
            dests[key] = {}
        else:
            assert words[0] == "-a", line
            key, rest = _key(words[1:])
            forward = FORWARD_OF_FLAG[rest[2]]
            opts = _pairs(rest[:2] + rest[3:])
            assert set(opts) <= {"-r", "-w", "--tun-type"}, line
            assert (opts.get("--tun-type") == "ipip") == (forward == "tunnel"), line
            address, port, _ = _hostport(opts["-r"])
            dests[key][DestKey(address, port)] = dest(address, port, int(opts["-w"]), forward)
    return {key: ServiceEntry(service, dests[key]) for key, service in services.items()}


def kernel_spelling(table: Table) -> dict[ServiceKey, ServiceEntry]:
    """How the kernel (and ipvsadm) spells a table: masks dotted (IPv4) or a
    prefix length (IPv6), the all-ones mask and non-persistent masks
    dropped, scheduler flags in bit order."""
    out: dict[ServiceKey, ServiceEntry] = {}
    for key, entry in table.items():
        s = entry.service
        mask: str | None = None
        if s.persistent_s and s.pmask is not None:
            if key.family == 6:
                mask = None if int(s.pmask) == 128 else str(int(s.pmask))
            else:
                n = ipaddress.IPv4Network(f"0.0.0.0/{s.pmask}").netmask if s.pmask.isdigit() else s.pmask
                mask = None if str(n) == "255.255.255.255" else str(ipaddress.IPv4Address(str(n)))
        flags = tuple(sorted(s.sched_flags, key=FLAG_BIT.__getitem__))
        out[key] = ServiceEntry(Service(key, s.scheduler, flags, s.persistent_s, mask), dict(entry.dests))
    return out


def same(a: Table, b: Table) -> bool:
    return {k: (v.service, dict(v.dests)) for k, v in a.items()} == {k: (v.service, dict(v.dests)) for k, v in b.items()}


# ------------------------------------------------------------------ fixtures and the check

class Kernel:
    """An `Ipvs` in a namespace, and what it should hold."""

    def __init__(self, dp: Ipvs, ns: str | None) -> None:
        self.dp = dp
        self.ns = ns
        self.table: Table = {}

    def apply(self, ops: Sequence[TableOp]) -> None:
        """Apply through the adapter, then check the kernel holds what the model says."""
        expected = model_apply(self.table, ops)
        self.dp.apply(ops)
        self.table = expected
        self.check()

    def check(self) -> None:
        read = self.dp.read()
        assert same(read, self.table), f"read() {read}\n!= expected {self.table}"
        saved = parse_sn(ipvsadm("-Sn", ns=self.ns))
        assert same(saved, kernel_spelling(self.table)), f"ipvsadm -Sn {saved}\n!= expected {self.table}"


@pytest.fixture(scope="module")
def shared() -> Iterator[Kernel]:
    """One namespace and one `Ipvs` for the module (each costs a second or
    more under TCG); removed at the end whatever happened."""
    name = f"shoal-ipvs-{os.getpid()}"
    sh("ip", "netns", "add", name)
    dp: Ipvs | None = None
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        dp = Ipvs(netns=name)
        yield Kernel(dp, name)
    finally:
        if dp is not None:
            dp.close()
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def kernel(shared: Kernel) -> Kernel:
    """The shared namespace with an empty table."""
    ipvsadm("-C", ns=shared.ns)
    shared.table = {}
    shared.dp.spelling.clear()
    assert shared.dp.read() == {}
    return shared


def varied_table() -> dict[ServiceKey, ServiceEntry]:
    """One of everything: keys, families, forwarding, weights, persistence."""
    return {
        T80: ServiceEntry(Service(T80, "wlc", (), 300, "255.255.255.0"), {
            d.key: d for d in (dest("10.1.0.11", 80, 3), dest("10.1.0.2", 80, 0, "route"),
                               dest("10.1.0.3", 80, 65535, "tunnel"), dest("10.1.0.4", 8080, 2))}),
        U53: ServiceEntry(Service(U53, "sh", ("sh-fallback", "sh-port"), 60), {
            d.key: d for d in (dest("10.1.0.11", 53, 1),)}),
        T6: ServiceEntry(Service(T6, "mh", ("mh-port",), 30, "64"), {
            d.key: d for d in (dest("2001:db8:1::11", 443, 5), dest("2001:db8:1::12", 443, 0, "route"))}),
        U6: ServiceEntry(Service(U6, "rr"), {d.key: d for d in (dest("2001:db8:1::13", 53, 1, "tunnel"),)}),
        FWM: ServiceEntry(Service(FWM, "wrr", (), 10), {
            d.key: d for d in (dest("10.1.0.11", 0, 1, "route"), dest("10.1.0.12", 0, 4, "tunnel"))}),
        FWM6: ServiceEntry(Service(FWM6, "lc", (), 120, "48"), {d.key: d for d in (dest("2001:db8:1::11", 0, 2),)}),
    }


# ------------------------------------------------------------------ tests


def test_root_namespace_table_round_trips_and_is_adopted() -> None:
    """`Ipvs()` in the guest's own namespace; a second instance adopts the
    table (nothing flushed) and reads it in the kernel's spelling."""
    dp = Ipvs()
    try:
        assert dp.read() == {}, "the root namespace's IPVS table is not empty at start"
        k = Kernel(dp, None)
        table = varied_table()
        k.apply(diff({}, table))
        dp.close()
        dp = Ipvs()
        assert same(dp.read(), kernel_spelling(table))
    finally:
        dp.close()
        subprocess.run(["ipvsadm", "-C"], check=True)


def test_keys_forwarding_persistence_weights_edits_deletes(kernel: Kernel) -> None:
    kernel.apply(diff({}, varied_table()))
    # service edits: scheduler, flags, persistence off, on, its mask (spelled as a prefix)
    kernel.apply([EditService(Service(T80, "rr")), EditService(Service(T6, "mh", ("mh-fallback", "mh-port"), 0)),
                  EditService(Service(FWM, "wrr", (), 10, "255.255.0.0"))])
    kernel.apply([EditService(Service(T80, "sh", ("sh-port",), 600, "16")), EditService(Service(T6, "mh", (), 45, "128"))])
    # destination edits: weight (to 0 and back), forwarding (each way)
    kernel.apply([EditDest(T80, dest("10.1.0.11", 80, 0)), EditDest(T80, dest("10.1.0.3", 80, 2, "masq"))])
    kernel.apply([EditDest(T80, dest("10.1.0.11", 80, 7, "route")), EditDest(T80, dest("10.1.0.2", 80, 1, "tunnel")),
                  EditDest(U6, dest("2001:db8:1::13", 53, 9, "route"))])
    # deletes: a destination, a service with destinations, everything
    kernel.apply([DelDest(T80, DestKey("10.1.0.4", 8080)), DelService(FWM6)])
    kernel.apply(diff(kernel.table, {}))
    assert ipvsadm("-Sn", ns=kernel.ns) == ""


def kernel_schedulers() -> set[str]:
    release = platform.release()
    mods = Path(f"/lib/modules/{release}")
    names = {p.name.split(".")[0] for p in (mods / "kernel/net/netfilter/ipvs").glob("ip_vs_*.ko*")}
    builtin = mods / "modules.builtin"
    if builtin.exists():
        names |= {Path(line).name.split(".")[0] for line in builtin.read_text().split() if "/ipvs/" in line}
    return {s for s in SCHEDULERS if f"ip_vs_{s}" in names}


def test_every_scheduler_the_kernel_has_and_none_it_lacks(kernel: Kernel) -> None:
    have = kernel_schedulers()
    lacking = [s for s in SCHEDULERS if s not in have]
    print(f"kernel {platform.release()}: schedulers {sorted(have)}; lacking {lacking}")
    assert set(lacking) <= {"twos"}, f"a 6.1 kernel should have every scheduler but twos; lacking {lacking}"
    order = [s for s in SCHEDULERS if s in have]
    keys = {s: ServiceKey("tcp", f"192.0.2.{10 + i}", 80) for i, s in enumerate(order)}
    flags = {"sh": ("sh-fallback", "sh-port"), "mh": ("mh-port",)}
    table = {
        keys[s]: ServiceEntry(Service(keys[s], s, flags.get(s, ())), {DestKey("10.1.0.11", 80): dest("10.1.0.11", 80)})
        for s in order}
    kernel.apply(diff({}, table))
    # each service edited into the next scheduler (flags follow sh/mh)
    nxt = order[1:] + order[:1]
    other_flags = {"sh": ("sh-fallback",), "mh": ("mh-fallback", "mh-port")}
    kernel.apply([EditService(Service(keys[s], n, other_flags.get(n, ()))) for s, n in zip(order, nxt)])


def test_a_scheduler_the_kernel_lacks_is_refused_as_einval(kernel: Kernel) -> None:
    """The kernel answers ENOENT (no module ip_vs_<name>); the contract
    keeps ENOENT for a missing destination: EINVAL, naming the scheduler."""
    kernel.apply([AddService(S)])
    lacking = [s for s in SCHEDULERS if s not in kernel_schedulers()] or ["nosuch"]
    for op in (AddService(Service(ServiceKey("tcp", "192.0.2.99", 80), lacking[0])), EditService(Service(T80, "nosuch"))):
        name = op.service.scheduler
        with pytest.raises(DataplaneError) as e:
            kernel.dp.apply([op])
        assert e.value.op == op and name in str(e.value), e.value
        assert e.value.code == "EINVAL", f"a missing scheduler gave {e.value.code}, not EINVAL: {e.value}"
    kernel.check()


# The sequences that compare the kernel's refusals with the model's: each
# starts from the table of `base_ops`.
S = Service(T80, "rr")
S6 = Service(U6, "wlc")
RS = dest("10.1.0.11", 80)
RS6 = dest("2001:db8:1::11", 53)
MISSING = ServiceKey("tcp", "192.0.2.250", 80)
REFUSALS: list[TableOp] = [
    AddService(S), AddService(Service(T80, "wlc", (), 60)), AddService(S6),
    AddDest(T80, RS), AddDest(T80, dest("10.1.0.11", 80, 5, "route")), AddDest(U6, RS6),
    EditService(Service(MISSING)), DelService(MISSING), AddDest(MISSING, RS), EditDest(MISSING, RS),
    DelDest(MISSING, RS.key), EditService(Service(FWM)), DelService(FWM6), AddDest(FWM, dest("10.1.0.11", 0)),
    EditDest(T80, dest("10.1.0.99", 80)), DelDest(T80, DestKey("10.1.0.99", 80)),
    DelDest(T80, DestKey("10.1.0.11", 8080)), EditDest(U6, dest("2001:db8:1::11", 54)),
    DelDest(U6, DestKey("2001:db8:1::99", 53)),
]


def test_refusals_agree_with_the_model(kernel: Kernel) -> None:
    kernel.apply([AddService(S), AddDest(T80, RS), AddService(S6), AddDest(U6, RS6)])
    disagreements = []
    for op in REFUSALS:
        with pytest.raises(TableOpError) as model:
            model_apply(kernel.table, [op])
        try:
            kernel.dp.apply([op])
            got = "accepted"
        except DataplaneError as e:
            got = e.code
            assert e.op == op, (op, e.op)
        if got != model.value.code:
            disagreements.append(f"{restore_line(op)}: kernel {got}, model {model.value.code}")
    assert not disagreements, "\n".join(disagreements)
    kernel.check()  # nothing refused changed anything


def test_a_refused_operation_is_named_and_the_batch_goes_on(kernel: Kernel) -> None:
    """The dataplane contract for ipvs: the first refused operation is the
    error's `.op`, the ones before it stay applied, and the ones after it in
    the same netlink batch (up to genl.BATCH) are carried out by the kernel
    all the same; `read()` tells exactly what it holds."""
    kernel.apply([AddService(S), AddDest(T80, RS), AddService(S6), AddDest(U6, RS6)])
    bad = AddDest(T80, RS)
    before: list[TableOp] = [EditDest(T80, dest("10.1.0.11", 80, 3)), AddDest(T80, dest("10.1.0.12", 80))]
    after: list[TableOp] = [DelService(U6)]
    with pytest.raises(DataplaneError) as e:
        kernel.dp.apply(before + [bad] + after)
    assert e.value.op == bad and e.value.code == "EEXIST"
    kernel.table = model_apply(kernel.table, before + after)
    assert U6 not in kernel.dp.read(), "the kernel went on after the refused operation: DelService(U6) ran"
    kernel.check()


def test_what_the_kernel_refuses_and_the_model_accepts(kernel: Kernel) -> None:
    """Known differences (the model does not know addresses or schedulers):
    the daemon reads the table back after any refusal."""
    kernel.apply([AddService(S)])
    v6_masq = AddDest(T80, dest("2001:db8:1::11", 80, 1, "masq"))  # an IPv6 server in an IPv4 service
    model_apply(kernel.table, [v6_masq])
    with pytest.raises(DataplaneError) as e:
        kernel.dp.apply([v6_masq])
    assert e.value.code == "EINVAL" and e.value.op == v6_masq
    kernel.check()
    # ... which the kernel accepts when tunnelled (mixed families, Linux 5.3+)
    kernel.apply([AddDest(T80, dest("2001:db8:1::11", 80, 1, "tunnel"))])
    # fwmark 0 is "no fwmark" to the kernel (it would make TCP 0.0.0.0:0): refused before sending
    with pytest.raises(DataplaneError) as e:
        kernel.dp.apply([AddService(Service(ServiceKey("fwmark", "", 0, 0), "rr"))])
    assert e.value.code == "EINVAL"
    kernel.check()


def timeouts(ns: str) -> str:
    return ipvsadm("-L", "--timeout", ns=ns).strip()


def test_timeouts(kernel: Kernel) -> None:
    assert timeouts(kernel.ns or "") == "Timeout (tcp tcpfin udp): 900 120 300"  # a namespace's defaults
    kernel.dp.set_timeouts(SetTimeouts(1800, 30, 60))
    assert timeouts(kernel.ns or "") == "Timeout (tcp tcpfin udp): 1800 30 60"
    kernel.dp.set_timeouts(SetTimeouts(0, 0, 45))
    assert timeouts(kernel.ns or "") == "Timeout (tcp tcpfin udp): 1800 30 45"
    kernel.dp.set_timeouts(SetTimeouts(600, 0, 0))
    assert timeouts(kernel.ns or "") == "Timeout (tcp tcpfin udp): 600 30 45"
    kernel.dp.set_timeouts(SetTimeouts(0, 0, 0))
    assert timeouts(kernel.ns or "") == "Timeout (tcp tcpfin udp): 600 30 45"


def daemons(ns: str) -> list[tuple[str, str, str]]:
    """(state, interface, syncid) of each sync daemon, from `ipvsadm -L --daemon`:
    "master sync daemon (mcast=sync0, syncid=7, maxlen=1472, group=...)"."""
    out = []
    for line in ipvsadm("-L", "--daemon", ns=ns).splitlines():
        state, rest = line.split(" sync daemon (")
        fields = dict(f.strip().split("=", 1) for f in rest.rstrip(")").split(","))
        out.append((state, fields["mcast"], fields["syncid"]))
    return out


def test_sync_daemon_master_and_backup(kernel: Kernel) -> None:
    ns = kernel.ns or ""
    sh("ip", "link", "add", "sync0", "type", "dummy", ns=ns)
    sh("ip", "link", "add", "down0", "type", "dummy", ns=ns)
    sh("ip", "link", "set", "sync0", "up", ns=ns)
    assert daemons(ns) == []
    kernel.dp.sync_daemon(StartSyncDaemon("master", "sync0", 7))
    assert daemons(ns) == [("master", "sync0", "7")]
    kernel.dp.sync_daemon(StartSyncDaemon("backup", "sync0", 8))
    assert daemons(ns) == [("master", "sync0", "7"), ("backup", "sync0", "8")]
    # the kernel refuses a second master (EEXIST): the adapter replaces it
    kernel.dp.sync_daemon(StartSyncDaemon("master", "sync0", 9))
    assert daemons(ns) == [("master", "sync0", "9"), ("backup", "sync0", "8")]
    kernel.dp.sync_daemon(StopSyncDaemon("master"))
    assert daemons(ns) == [("backup", "sync0", "8")]
    kernel.dp.sync_daemon(StopSyncDaemon("backup"))
    assert daemons(ns) == []
    # stopping what does not run (the kernel: ESRCH) is done already
    kernel.dp.sync_daemon(StopSyncDaemon("master"))
    kernel.dp.sync_daemon(StopSyncDaemon("backup"))
    # the kernel's refusals: no such interface; a master on an interface that
    # is down (a backup there is accepted: it only listens)
    for cmd, code in ((StartSyncDaemon("master", "nothere", 1), "ENODEV"),
                      (StartSyncDaemon("backup", "nothere", 1), "ENODEV"),
                      (StartSyncDaemon("master", "down0", 1), "ENETUNREACH")):
        with pytest.raises(DataplaneError) as e:
            kernel.dp.sync_daemon(cmd)
        assert e.value.code == code and e.value.op == cmd, (cmd, e.value.code, e.value)
    assert daemons(ns) == []


def test_ipvsadm_formats_equal_the_real_tool(kernel: Kernel) -> None:
    ns = kernel.ns or ""
    table = varied_table()
    kernel.apply(diff({}, table))
    real_ln = ipvsadm("-Ln", ns=ns)
    header = real_ln.splitlines()[0]  # "IP Virtual Server version 1.2.1 (size=4096)": the tool's to know
    version, size = header.split()[4], header.split("size=")[1].rstrip(")")
    assert format_ln(table, version, int(size)) == real_ln
    assert format_save(table) == ipvsadm("-Sn", ns=ns)
    # restore lines fed to ipvsadm -R give the table back
    ipvsadm("-C", ns=ns)
    ipvsadm("-R", ns=ns, stdin=format_save(table))
    fresh = Ipvs(netns=ns)  # knows no spelling: reads the kernel's
    try:
        assert same(fresh.read(), kernel_spelling(table))
    finally:
        fresh.close()
    kernel.check()
    # the lines of a diff (-E, -e, -d, -D, -A, -a) too
    target = varied_table()
    target[T80] = ServiceEntry(Service(T80, "sh", ("sh-port",), 0), {
        d.key: d for d in (dest("10.1.0.11", 80, 0, "route"), dest("10.1.0.5", 80, 3))})
    target[T6] = ServiceEntry(Service(T6, "mh", ("mh-fallback",), 20, "96"), target[T6].dests)
    target[FWM] = ServiceEntry(target[FWM].service, {
        d.key: d for d in (dest("10.1.0.11", 0, 2, "masq"), dest("10.1.0.12", 0, 4, "tunnel"))})
    del target[U53]
    ops = diff(table, target)
    assert {type(op) for op in ops} == {AddDest, EditService, EditDest, DelDest, DelService}
    ipvsadm("-R", ns=ns, stdin="".join(restore_line(op) + "\n" for op in ops))
    kernel.table = model_apply(table, ops)
    kernel.check()
    assert format_save(target) == ipvsadm("-Sn", ns=ns)


def test_ipvsadm_replaces_the_port_of_a_routed_destination(kernel: Kernel) -> None:
    """What the kernel holds and ipvsadm cannot say: a route or tunnel
    destination of a port service with another port.  The adapter keeps
    it; the same restore line through ipvsadm gives the service's port."""
    ns = kernel.ns or ""
    kernel.apply([AddService(S), AddDest(T80, dest("10.1.0.11", 8080, 1, "route"))])
    line = restore_line(AddDest(T80, dest("10.1.0.12", 8080, 1, "tunnel")))
    ipvsadm("-R", ns=ns, stdin=line + "\n")
    assert DestKey("10.1.0.12", 80) in kernel.dp.read()[T80].dests, ipvsadm("-Sn", ns=ns)


# ------------------------------------------------------------------ random tables

SERVICE_KEYS = (T80, U53, T6, FWM, FWM6)
DEST_ADDRESSES = {4: ("10.1.0.11", "10.1.0.12", "10.1.0.13"), 6: ("2001:db8:1::11", "2001:db8:1::12")}


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, ServiceEntry]:
    out: dict[ServiceKey, ServiceEntry] = {}
    for key in draw(st.lists(st.sampled_from(SERVICE_KEYS), max_size=3, unique=True)):
        sched = draw(st.sampled_from(["rr", "wlc", "sh", "mh", "lblc", "fo"]))
        flags = draw(st.sampled_from([(), (f"{sched}-port",), (f"{sched}-fallback", f"{sched}-port")])) \
            if sched in ("sh", "mh") else ()
        persistent = draw(st.sampled_from([0, 0, 300]))
        masks = ["24", "255.255.0.0"] if key.family == 4 else ["64", "128"]
        pmask = draw(st.sampled_from([None, *masks])) if persistent else None
        dests = {}
        for address in draw(st.lists(st.sampled_from(DEST_ADDRESSES[key.family]), max_size=3, unique=True)):
            d = dest(address, key.port, draw(st.sampled_from([0, 1, 5])),
                     draw(st.sampled_from(["masq", "route", "tunnel"])))
            dests[d.key] = d
        out[key] = ServiceEntry(Service(key, sched, flags, persistent, pmask), dests)
    return out


@settings(max_examples=6, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(start=tables(), target=tables())
def test_random_diffs_reach_their_target(shared: Kernel, start: Mapping[ServiceKey, ServiceEntry],
                                         target: Mapping[ServiceKey, ServiceEntry]) -> None:
    k = shared  # each example starts from the table the one before left (checked there)
    k.table = k.dp.read()
    k.apply(diff(k.table, start))
    k.apply(diff(start, target))
    assert same(k.dp.read(), target)
