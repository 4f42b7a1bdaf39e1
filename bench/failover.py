"""Failover time for real (issue 4): shoal's pair against a keepalived pair, and a mixed pair.

    .venv/bin/python bench/failover.py [--runs N] [--timers 1/3,0.1/0.3,0.02/0.1] [--json] [--no-mixed]

The mixed pair (issue 14): shoal on the primary speaking VRRP (`heartbeat_protocol = vrrp`,
priority 150), keepalived on the backup (priority 100, adapters/lab/keepalived.py, with the
same nft table installed at its every boot), neither preempting, so the crashes alternate
between the two implementations; measured as the pure pairs are.

Root; the shoal daemons are started with this python (use the venv's).

For each timer setting (keepalive/deadtime 1/3 s, 0.1/0.3 s, 0.02/0.1 s) the bench
builds the lab's network (`adapters/lab`: namespaces client, primary,
backup, two real servers; bridges for the public and server networks; the
client's neighbour `locktime` 0 and `arp_accept` 1, so a gratuitous ARP
moves the VIP's entry at once), starts the lab's real servers and the lab's
client (`adapters/lab/client.py`: a new TCP connection and an HTTP/1.0 GET
to the VIP every 10 ms, 0.3 s timeout, each recorded with the monotonic
time it was opened), then measures, N times:

- crash: the router that is active now dies as the lab's `crash` fault
  kills it (shoal: SIGKILL of the daemon; keepalived: SIGSTOP of its VRRP
  child, as the issue asks; then, for both, the router's links go down).
  The link-down is what makes it a crash for the client: a stopped or
  killed process leaves the kernel forwarding, and the VIP where it was.
- the figure: from the signal to the opening of the first client request
  that succeeds among those opened after the links went down (10 ms
  resolution, the client's period; a success is the `HTTP/1.0 200` line).
  Beside it, "survivor active": from the signal to when the survivor
  says it took over (shoal: its control socket reports `role active`,
  which the engine sets before the VIPs are added; keepalived: its log
  has a new "Entering MASTER STATE", written before it sets the VIPs),
  polled every 10 ms or so until it holds: what detection took, the rest
  being the takeover's own work (adding the addresses, gratuitous ARP,
  for shoal writing its table).
- for shoal, the split of that figure (`split_of`), each part from a
  record of its own, all on the monotonic clock: detection, the crash's
  signal to the survivor's deciding step (the first step of its journal
  after the crash that adds a VIP or says `role: ... -> active`, at the
  engine time the step began); decision to VIP, that step to the JSON log
  line `vip add` of the virtual's address (written once the address is on
  the interface; its wall time, to the millisecond, taken to the
  monotonic clock with the journal's start record); VIP to first client
  served, that line to the opening of the first request served again
  (the client's 10 ms period is its resolution).
- restore, the lab's `restart` fault: the dead router's addresses and
  nftables flushed (a boot), links up, its daemon started again.  Before
  the next crash the pair must be stable twice, `max(0.5 s, 2 x keepalive)`
  apart (shoal: one router active, the other standby, each hearing its
  partner; keepalived: one router holds every VIP, the other none, both
  running), with every client request of the last 0.5 s served; a pair
  found stable and then not is counted as "not yet settled" (a flap: load
  on the machine).  Neither pair preempts (shoal `backup_active = 1` and
  no preemption; keepalived `state BACKUP` and `nopreempt`), so the next
  crash hits the router that took over: the runs alternate between the
  primary and the backup dying.

shoal: two `shoal run --dataplane nft` daemons, the lab's own (`LabWorld`).
On takeover the backup adds the VIP and `nat_router` and sends gratuitous
ARP (its defaults: 5, 1 s apart); its table is already there (a standby
keeps it, docs/STANDBY.md).

keepalived (Debian's 2.2.7, the yardstick): `keepalived -n -l -D -P` in
each router's namespace (adapters/lab/keepalived.py: its keepalived.conf
written from the same lvs.cf over VRRP), VRRPv3, one instance on the
public interface,
`advert_int` = keepalive, priority 150 on the primary and 100 on the
backup, both `state BACKUP` with `nopreempt`; its virtual addresses are
the VIP on the public interface and `nat_router` (the real servers'
gateway) on the server interface, as shoal's.  The NAT dataplane is the
same nft table shoal writes (`adapters/dataplane/nft.py`'s own text),
installed on both routers up front and at every restart: that is how
keepalived runs LVS (its checker programs the IPVS table on the master and
the backup alike; only the addresses move), so keepalived's figure is VRRP
and ARP alone, with no table to write at takeover.  Its gratuitous ARPs
are its defaults (5 at once on becoming master, 5 more 5 s later).

What the two share: namespaces, bridges, addresses, real servers, client,
the crash and the restore; what differs is only the router software.  A
VRRP backup declares the master dead after 3 x advert_int + skew
((256 - priority) / 256 x advert_int: 0.61 s for the backup at priority
100, 0.41 s for the primary at 150, at advert 1 s), counted from the last
advert heard; shoal's backup after `deadtime` from the last heartbeat.

Everything started here is stopped by its PID, and every namespace
removed, on every exit path (an exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import netns  # noqa: E402
from adapters.dataplane.nft import service_text, skeleton  # noqa: E402
from adapters.lab.keepalived import Keepalived as LabKeepalived  # noqa: E402
from adapters.lab.plan import LabError  # noqa: E402
from adapters.lab.topology import PREFIX, lab_namespaces, preflight  # noqa: E402
from adapters.lab.world import LabWorld, open_world  # noqa: E402
from engine.config import parse  # noqa: E402
from engine.model import Config  # noqa: E402
from engine.pool import service_key  # noqa: E402
from engine.table import Dest, DestKey, Service, ServiceEntry  # noqa: E402
from scenario.model import Fault  # noqa: E402

CLIENT_RATE = 100  # connections per second
CLIENT_TIMEOUT_S = 0.3
VRID = 51
ROUTERS = ("primary", "backup")
OTHER = {"primary": "backup", "backup": "primary"}
DEFAULT_TIMERS = ((1.0, 3.0, 10), (0.1, 0.3, 20), (0.02, 0.1, 20))  # keepalive s, deadtime s, default runs

CONFIG = """serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
backup_active = 1
keepalive = {keepalive:g}
deadtime = {deadtime:g}
network = nat
nat_router = 10.1.0.254 eth1:1
nat_nmask = 255.255.255.0
virtual web {{
    address = 10.0.0.100 eth0:1
    vip_nmask = 255.255.255.0
    port = 80
    scheduler = rr
    send = "GET / HTTP/1.0\\r\\n\\r\\n"
    expect = "HTTP/1.0 200"
    timeout = 1
    reentry = 2
    server web1 {{
        address = 10.1.0.11
    }}
    server web2 {{
        address = 10.1.0.12
    }}
}}
"""

class BenchError(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------ the client's record


class ClientLog:
    """The lab client's output file, read as it grows: (opened, ok) records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.records: list[tuple[float, bool]] = []

    def poll(self) -> list[tuple[float, bool]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.records
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode().splitlines():
            words = line.split()
            if len(words) == 3:
                self.records.append((float(words[0]), words[1] == "1"))
        return self.records

    def serving(self, since: float) -> bool:
        """Every request opened since `since` (and finished by now) succeeded, at least 5 of them."""
        until = time.monotonic() - CLIENT_TIMEOUT_S - 0.05
        window = [ok for t, ok in self.poll() if since <= t < until]
        return len(window) >= 5 and all(window)

    def first_success(self, after: float, timeout_s: float,
                      took_over: Callable[[], bool]) -> tuple[float | None, float | None]:
        """The opening time of the first successful request opened after
        `after`, and when `took_over()` first held (polled every 10 ms
        until then: the survivor's own account of its takeover)."""
        deadline = time.monotonic() + timeout_s
        marked: float | None = None
        while time.monotonic() < deadline:
            if marked is None and took_over():
                marked = time.monotonic()
            if any(ok and t >= after for t, ok in self.poll()):
                time.sleep(CLIENT_TIMEOUT_S + 0.05)  # let the requests opened before it finish too
                if marked is None and took_over():
                    marked = time.monotonic()
                return min(t for t, ok in self.poll() if ok and t >= after), marked
            time.sleep(0.01)
        return None, marked


@contextmanager
def lab(config: Config, tag: str) -> Iterator[tuple[LabWorld, ClientLog]]:
    """The lab's network (`open_world`), real servers and client; everything removed on exit."""
    with open_world([config], CLIENT_TIMEOUT_S, tag=f"fo{os.getpid()}{tag}",
                    workdir_prefix=f"shoal-failover-{tag}-") as world:
        world.start_servers()
        world.start_client(rate=CLIENT_RATE)
        yield world, ClientLog(world.client_out)


@dataclass
class Runs:
    seconds: list[float | None] = field(default_factory=list)  # crash -> first client success
    takeover: list[float | None] = field(default_factory=list)  # crash -> the survivor says it took over
    crashed: list[str] = field(default_factory=list)
    split: list[Split | None] = field(default_factory=list)  # shoal only: from the survivor's journal and log
    unsettled: int = 0  # a pair found stable before a crash, and not `settle_s` later

    def record(self, who: str, i: int, n: int, crashed: str, t_crash: float, served: float | None,
               marked: float | None, echo: Callable[[str], None]) -> None:
        took = None if served is None else served - t_crash
        over = None if marked is None else marked - t_crash
        self.seconds.append(took)
        self.takeover.append(over)
        self.crashed.append(crashed)
        echo(f"  {who:<10} {i + 1:2}/{n} crash {crashed:7}: "
             + ("never served again" if took is None else f"served again after {took:.3f} s")
             + ("" if over is None else f" (survivor active after {over:.3f} s)"))

    def done(self) -> list[float]:
        return [s for s in self.seconds if s is not None]


# ------------------------------------------------------------------ shoal


def settled(find: Callable[[], str | None], settle_s: float, timeout_s: float, logs: Callable[[], str],
            runs: Runs) -> str:
    """The active router once `find()` has named the same one `settle_s`
    apart (the pair stable, the client served); a pair found stable and
    then not, `settle_s` later, is counted in `runs.unsettled` (noise: a
    flap under load)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        first = find()
        if first is not None:
            time.sleep(settle_s)
            if find() == first:
                return first
            runs.unsettled += 1
        time.sleep(0.1)
    raise BenchError(f"the pair did not settle in {timeout_s:g} s\n{logs()}")


def shoal_runs(config: Config, n: int, echo: Callable[[str], None]) -> Runs:
    keepalive_s, deadtime_s = config.keepalive_ms / 1000, config.deadtime_ms / 1000
    limit_s = 10 * deadtime_s + 10
    settle_s = max(0.5, 2 * keepalive_s)
    out = Runs()
    with lab(config, "s") as (world, client):
        for r in ROUTERS:
            world.start_daemon(r)
        world.wait_daemons()

        def find() -> str | None:
            status = {r: world.status(r) for r in ROUTERS}
            active = [r for r in ROUTERS if status[r].get("role") == "active"]
            if len(active) != 1 or status[OTHER[active[0]]].get("role") != "standby":
                return None
            if not all(status[r].get("partner", {}).get("alive") is True for r in ROUTERS):
                return None
            return active[0] if client.serving(time.monotonic() - 0.5) else None

        def logs() -> str:
            return "\n".join(f"--- {r}\n{world.log_tail(r)}" for r in ROUTERS)

        for i in range(n):
            active = settled(find, settle_s, 30 + 10 * deadtime_s, logs, out)
            t_crash = time.monotonic()
            world.apply(Fault(0, "crash", active))
            t_down = time.monotonic()
            survivor = OTHER[active]
            served, marked = client.first_success(t_down, limit_s,
                                                  lambda: world.status(survivor).get("role") == "active")
            out.record("shoal", i, n, active, t_crash, served, marked, echo)
            out.split.append(split_of(world, survivor, t_crash, served))
            if out.split[-1] is not None:
                echo(f"{'':17}{out.split[-1].text()}")
            world.apply(Fault(0, "restart", active))
    return out


@dataclass
class Split:
    """One takeover of shoal's, in seconds: crash -> decision -> VIP added -> first client served."""

    detection_s: float  # the crash's signal to the survivor's deciding step (its journal: the step's engine time)
    to_vip_s: float | None  # that step to its `vip add` of the virtual's address (its JSON log line's time)
    to_served_s: float | None  # the VIP added to the opening of the first request served again

    def text(self) -> str:
        return (f"split: detection {self.detection_s:.3f}, decision to VIP {_s(self.to_vip_s)}, "
                f"VIP to first client served {_s(self.to_served_s)}")


def split_of(world: LabWorld, survivor: str, t_crash: float, served: float | None) -> Split | None:
    """The survivor's takeover, timed from its own records (all on the monotonic clock):

    - the decision: the first step of its journal (this life's) at or after the crash whose
      commands add a VIP or say `role: ... -> active`; its time is the engine time the step
      began at (`origin + t / 1000`, docs/JOURNAL.md);
    - the VIP: its JSON log line `vip add` for the virtual's address (written once the address
      is on the interface), its wall time (ms) taken to the monotonic clock with the journal's
      start record (`wall` and `monotonic` read together).
    None when the journal says nothing (a takeover before the crash, a journal lost)."""
    from adapters.journal import JournalError, read as read_journal

    try:
        records = read_journal([world.router(survivor).state_dir]).records
    except JournalError:
        return None
    start: dict[str, Any] | None = None
    decided: float | None = None
    for record in records:
        data = record.data
        if "start" in data:
            start, decided = data, None
            continue
        if start is None or "o" not in data or decided is not None:
            continue
        at = float(start["origin"]) + data["t"] / 1000
        if at >= t_crash and any(c[0] == "AddVip" or (c[0] == "Notify" and c[1] == "role"
                                                     and c[2].get("to") == "active") for c in data["o"]):
            decided = at
    if start is None or decided is None:
        return None
    vip = next(v.address for v in world.config.virtuals if v.address)
    added: float | None = None
    for line in world.router(survivor).log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(entry, dict) and entry.get("kind") == "vip" and entry.get("op") == "add"
                and entry.get("address") == vip):
            continue
        at = float(entry["t"]) - float(start["wall"]) + float(start["monotonic"])
        if at >= decided - 0.002:  # the log's time is rounded to the millisecond
            added = at
            break
    return Split(decided - t_crash, None if added is None else added - decided,
                 None if added is None or served is None else served - added)


# ------------------------------------------------------------------ keepalived


def nft_script(config: Config) -> str:
    """shoal's nft text for the config's table, every server up (the same dataplane)."""
    text = skeleton(4)
    for v in config.virtuals:
        key = service_key(v)
        assert key is not None
        dests = {DestKey(s.address, s.port or v.port): Dest(DestKey(s.address, s.port or v.port), s.weight, "masq",
                                                            s.name)
                 for s in v.servers if s.address}
        entry = ServiceEntry(Service(key, v.scheduler, v.sched_flags, v.persistent_s, None, v.name), dests)
        text += service_text(key, None, entry)
    return text


def install_table(world: LabWorld, name: str, text: str) -> None:
    """shoal's nft text installed in router `name`'s namespace (keepalived writes no table of its own here)."""
    try:
        netns.run_in(world.topo.ns(name), ["nft", "-f", "-"], input=text, timeout_s=None)
    except netns.NetnsCommandFailed as e:
        raise LabError(str(e)) from None


def vrrp_of(config: Config) -> Config:
    """The bench's pair over VRRP (keepalived's side, and shoal's in the mixed pair): VRID 51,
    the default priorities (150 on the primary, 100 on the backup), no preemption."""
    return replace(config, heartbeat_protocol="vrrp", virtual_router_id=VRID, preempt=False)


def keepalived_runs(config: Config, n: int, echo: Callable[[str], None]) -> Runs:
    advert_s, deadtime_s = config.keepalive_ms / 1000, config.deadtime_ms / 1000
    limit_s = 10 * deadtime_s + 10
    settle_s = max(0.5, 2 * advert_s)
    vrrp = vrrp_of(config)
    vips = frozenset(world_vips(config))
    table_text = nft_script(config)
    out = Runs()
    with lab(vrrp, "k") as (world, client):
        ka = {r: LabKeepalived(world, r) for r in ROUTERS}
        try:
            for r in ROUTERS:
                install_table(world, r, table_text)
                ka[r].start()

            def find() -> str | None:
                held = {r: world.vips(r) for r in ROUTERS}
                master = [r for r in ROUTERS if held[r] == vips and not held[OTHER[r]]]
                if not master or not all(ka[r].running() for r in ROUTERS):
                    return None
                return master[0] if client.serving(time.monotonic() - 0.5) else None

            def logs() -> str:
                return "\n".join(f"--- {r}\n{ka[r].log()[-3000:]}" for r in ROUTERS)

            for i in range(n):
                master = settled(find, settle_s, 30 + 10 * deadtime_s, logs, out)
                survivor = OTHER[master]
                before = ka[survivor].entered("MASTER")
                t_crash = time.monotonic()
                ka[master].freeze()
                world.topo.links(master, up=False)
                t_down = time.monotonic()
                served, marked = client.first_success(t_down, limit_s,
                                                      lambda: ka[survivor].entered("MASTER") > before)
                out.record("keepalived", i, n, master, t_crash, served, marked, echo)
                # restore: the host boots, keepalived's table installed at boot
                ka[master].kill()
                world.boot_host(master)
                install_table(world, master, table_text)
                ka[master].start()
        finally:
            for r in ROUTERS:
                ka[r].kill()
    return out


def mixed_runs(config: Config, n: int, echo: Callable[[str], None]) -> Runs:
    """A mixed pair (issue 14): shoal on the primary (VRRP, priority 150), keepalived on the backup
    (priority 100, adapters/lab/keepalived.py, its nft table installed at every boot), neither
    preempting; the same crash, restore and figure as the pure pairs."""
    vrrp = vrrp_of(config)
    advert_s = vrrp.keepalive_ms / 1000
    limit_s = 10 * config.deadtime_ms / 1000 + 10
    settle_s = max(0.5, 2 * advert_s)
    vips = frozenset(world_vips(vrrp))
    table_text = nft_script(vrrp)
    out = Runs()
    with lab(vrrp, "m") as (world, client):
        ka = LabKeepalived(world, "backup")

        def boot_keepalived() -> None:
            install_table(world, "backup", table_text)
            ka.start()

        try:
            world.wait_daemon(world.start_daemon("primary"))
            boot_keepalived()

            def running(r: str) -> bool:
                return world.daemon_running(r) if r == "primary" else ka.running()

            def find() -> str | None:
                held = {r: world.vips(r) for r in ROUTERS}
                master = [r for r in ROUTERS if held[r] == vips and not held[OTHER[r]]]
                if not master or not all(running(r) for r in ROUTERS):
                    return None
                return master[0] if client.serving(time.monotonic() - 0.5) else None

            def logs() -> str:
                return f"--- primary (shoal)\n{world.log_tail('primary')}\n--- backup (keepalived)\n{ka.log()[-3000:]}"

            for i in range(n):
                master = settled(find, settle_s, 30 + 10 * config.deadtime_ms / 1000, logs, out)
                survivor = OTHER[master]
                before = ka.entered("MASTER")
                t_crash = time.monotonic()
                if master == "backup":
                    ka.freeze()  # as the pure keepalived pair
                world.apply(Fault(0, "crash", master))  # shoal's daemon killed (if there), the links down
                t_down = time.monotonic()
                took_over: Callable[[], bool] = (lambda: world.status("primary").get("role") == "active") \
                    if survivor == "primary" else (lambda: ka.entered("MASTER") > before)
                served, marked = client.first_success(t_down, limit_s, took_over)
                out.record(f"mixed ({'keepalived' if survivor == 'backup' else 'shoal'} takes over)", i, n, master,
                           t_crash, served, marked, echo)
                if master == "primary":
                    world.apply(Fault(0, "restart", "primary"))
                else:
                    ka.kill()
                    world.boot_host("backup")
                    boot_keepalived()
        finally:
            ka.kill()
    return out


def world_vips(config: Config) -> list[str]:
    return [v.address for v in config.virtuals if v.address] + [config.nat_router or ""]


# ------------------------------------------------------------------ report


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def summary(runs: Runs) -> dict[str, Any]:
    done = runs.done()
    over = [s for s in runs.takeover if s is not None]
    splits = [s for s in runs.split if s is not None]
    split = None if not splits else {
        "runs": len(splits), "detection_median_s": _median([s.detection_s for s in splits]),
        "to_vip_median_s": _median([s.to_vip_s for s in splits]),
        "to_served_median_s": _median([s.to_served_s for s in splits]),
        "detection_s": [round(s.detection_s, 3) for s in splits],
        "to_vip_s": [None if s.to_vip_s is None else round(s.to_vip_s, 3) for s in splits],
        "to_served_s": [None if s.to_served_s is None else round(s.to_served_s, 3) for s in splits]}
    return {"split": split, "runs": len(runs.seconds), "failed": len(runs.seconds) - len(done),
            "median_s": round(statistics.median(done), 3) if done else None,
            "worst_s": round(max(done), 3) if done else None,
            "takeover_median_s": round(statistics.median(over), 3) if over else None,
            "seconds": [None if s is None else round(s, 3) for s in runs.seconds],
            "takeover_s": [None if s is None else round(s, 3) for s in runs.takeover], "crashed": runs.crashed,
            "unsettled": runs.unsettled}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = ["failover: crash of the active router -> first successful client request to the VIP (seconds)",
             f"{'keepalive/deadtime':<19} {'N':>3}  {'shoal median':>12} {'worst':>6}  "
             f"{'keepalived median':>17} {'worst':>6}  {'ratio median':>12} {'worst':>6}"]
    for r in results:
        s, k = r["shoal"], r["keepalived"]
        lines.append(f"{r['timers']:<19} {s['runs']:>3}  {_s(s['median_s']):>12} {_s(s['worst_s']):>6}  "
                     f"{_s(k['median_s']):>17} {_s(k['worst_s']):>6}  "
                     f"{_ratio(s['median_s'], k['median_s']):>12} {_ratio(s['worst_s'], k['worst_s']):>6}")
        lines.append(f"{'':<19} {'':>3}  survivor active (median): shoal {_s(s['takeover_median_s'])}, "
                     f"keepalived {_s(k['takeover_median_s'])}")
        if s.get("split"):
            sp = s["split"]
            lines.append(f"{'':<19} {'':>3}  shoal split (medians of {sp['runs']}): detection "
                         f"{_s(sp['detection_median_s'])}, decision to VIP {_s(sp['to_vip_median_s'])}, "
                         f"VIP to first client served {_s(sp['to_served_median_s'])}")
        if r.get("mixed"):
            m = r["mixed"]
            lines.append(f"{'':<19} {m['runs']:>3}  mixed pair (shoal + keepalived, VRRP): median {_s(m['median_s'])}, "
                         f"worst {_s(m['worst_s'])}; survivor active (median) {_s(m['takeover_median_s'])}")
        for who, x in (("shoal", s), ("keepalived", k), ("mixed", r.get("mixed"))):
            if x is None:
                continue
            if x["unsettled"]:
                lines.append(f"  {who}: {x['unsettled']} look(s) before a crash found the pair not yet settled")
            if x["failed"]:
                lines.append(f"  {who}: {x['failed']} of {x['runs']} runs never served again (left out above)")
    lines.append("ratio = shoal / keepalived (below 1: shoal recovers sooner); keepalived: VRRPv3, "
                 "advert_int = keepalive")
    return "\n".join(lines)


def parse_timers(text: str, runs: int | None) -> list[tuple[float, float, int]]:
    out = []
    for item in text.split(","):
        keepalive, deadtime = (float(x) for x in item.split("/"))
        default = next((d[2] for d in DEFAULT_TIMERS if d[:2] == (keepalive, deadtime)), 10)
        out.append((keepalive, deadtime, runs or default))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int,
                        help="crashes per setting and per pair (default 10 at 1/3 s, 20 at 0.1/0.3 and 0.02/0.1 s)")
    parser.add_argument("--timers", default="1/3,0.1/0.3,0.02/0.1",
                        help="keepalive/deadtime settings, comma separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-mixed", dest="mixed", action="store_false",
                        help="leave out the mixed pair (shoal on the primary, keepalived on the backup, over VRRP)")
    args = parser.parse_args(argv)
    if shutil.which("keepalived") is None:
        print("bench/failover.py: keepalived not found (apt-get install keepalived)", file=sys.stderr)
        return 2
    echo = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    results = []
    started = time.monotonic()
    try:
        preflight()
        for keepalive, deadtime, n in parse_timers(args.timers, args.runs):
            config = parse(CONFIG.format(keepalive=keepalive, deadtime=deadtime), "failover.cf")
            echo(f"# keepalive {keepalive:g} s, deadtime {deadtime:g} s: {n} crashes each")
            shoal = shoal_runs(config, n, echo)
            keepalived = keepalived_runs(config, n, echo)
            mixed = mixed_runs(config, n, echo) if args.mixed else None
            results.append({"timers": f"{keepalive:g}/{deadtime:g} s", "keepalive_s": keepalive, "deadtime_s": deadtime,
                            "shoal": summary(shoal), "keepalived": summary(keepalived),
                            **({"mixed": summary(mixed)} if mixed is not None else {})})
    except (LabError, BenchError) as e:
        print(f"bench/failover.py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench/failover.py: interrupted; everything it started is stopped and removed", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        left = [ns for ns in lab_namespaces() if ns.startswith(f"{PREFIX}fo{os.getpid()}")]
        if left:
            print(f"bench/failover.py: namespaces left behind: {' '.join(left)}", file=sys.stderr)
    wall_s = time.monotonic() - started
    if args.json:
        print(json.dumps({"results": results, "wall_s": round(wall_s, 1)}, indent=2))
    else:
        print()
        print(table(results))
        print(f"# {wall_s:.0f} wall seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
