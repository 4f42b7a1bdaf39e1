"""The running lab: two `shoal run` daemons, the real servers and the client
in their namespaces; the scenario's faults carried out for real; what the
lab sees, as `scenario.checks.RouterView`s.

Every process is started here and killed here by its PID (`close`), on
every exit path; the namespaces belong to `Topology`.

`open_world(configs)` is the lab's public entry point for anything that
drives it other than a scenario (bench/failover.py): the network of the
configs, a working directory and a `LabWorld`, all removed on exit.

A single director (a config without `backup`) has no backup router here:
its view is always down, and a fault naming it is a LabError.

`load_monitor` (`uptime`, `rup`, `ruptime`) reads a remote host's load,
which the daemon cannot do without a remote shell (adapters/checks.py):
the daemons' config gives each such virtual a `load_command` reading the
load file the lab server writes (`load` faults), the lab's stand-in for
`rup HOST`.  The configs the scenario judges are unchanged.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from adapters.control import ask
from adapters.lab import daemons
from adapters.lab import server as lab_server
from adapters.lab.plan import LabError, Plan, plan as make_plan
from adapters.lab.topology import Topology, port, preflight
from engine.config import render
from engine.model import Config, Virtual
from engine.pool import service_key
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey, Table
from scenario.checks import RouterView
from scenario.model import Fault

ROUTERS = ("primary", "backup")
# Generous bounds (adapters/lab/daemons.py), reached only when something is wrong: under qemu's
# software emulation (the kernel suite's `shoal lab --dataplane ipvs`) a daemon takes half a
# minute to start and a control-socket answer can take seconds; on a host, milliseconds.
START_TIMEOUT_S = daemons.START_TIMEOUT_S
ASK_TIMEOUT_S = daemons.ASK_TIMEOUT_S


@dataclass
class RouterState:
    name: str
    config_path: Path
    state_dir: Path
    log_path: Path
    daemon: daemons.Daemon | None = None  # the running (or last) `shoal run` of this router
    host_up: bool = True
    cables_down: set[str] = field(default_factory=set)  # link_down: stays down across a crash and a restart


@dataclass
class HeartbeatFaults:
    cuts: set[tuple[str, str]] = field(default_factory=set)  # (path, from router)
    loss: dict[str, float] = field(default_factory=dict)  # path -> probability


class LabWorld:
    def __init__(self, topo: Topology, config: Config, workdir: Path, client_timeout_s: float,
                 python: str = sys.executable, dataplane: str = "nft") -> None:
        self.topo, self.plan, self.config = topo, topo.plan, config
        self.dataplane = dataplane  # the daemons' `--dataplane`: "nft" or "ipvs"
        self.workdir, self.python = workdir, python
        self.client_timeout_s = client_timeout_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.routers = {r: RouterState(r, workdir / f"{r}.cf", workdir / r, workdir / f"{r}.log")
                        for r in self.plan.routers}
        self.servers: dict[str, str] = {}  # server name (SERVER, VIRTUAL/SERVER, sorry) -> control socket
        self.client_out = workdir / "client.txt"
        self.client: subprocess.Popen[bytes] | None = None
        self.hb = HeartbeatFaults()
        self.refusals: list[tuple[str, str]] = []  # (router, what): operator orders a daemon refused
        self.last_status: dict[str, dict[str, Any]] = {}  # per router, from the last `router_view`
        # JSON log lines (docs/LOGS.md): the runner judges each line's level and kind (runner.py)
        self.daemon_args: tuple[str, ...] = ("--log-format", "json")

    # ------------------------------------------------------------ processes

    def _spawn(self, node: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        proc = daemons.spawn(self.topo.ns(node), args, log, self.python)
        self.procs.append(proc)
        return proc

    def start_servers(self) -> None:
        started = []
        for node in self.plan.servers:
            control = str(self.workdir / f"{node.name}.sock")
            # UDP sockets bound to each address the server answers on: its own and the VIPs it holds
            addresses = [a.split("/")[0] for i in node.ifaces for a in i.addresses] + list(node.vips)
            started.append(self._spawn(node.name, ["-m", "adapters.lab.server", "--ports",
                                                   ",".join(map(str, node.ports)), "--control", control,
                                                   "--udp-ports", ",".join(map(str, node.udp_ports)),
                                                   "--addresses", ",".join(addresses),
                                                   "--load", str(self.workdir / f"{node.name}.load")],
                                       self.workdir / f"{node.name}.log"))
            for name in node.servers:
                self.servers[name] = control
        deadline = time.monotonic() + START_TIMEOUT_S
        for control in set(self.servers.values()):
            while True:
                try:
                    lab_server.ask(control, "ping")
                    break
                except OSError:
                    dead = [p.returncode for p in started if p.poll() is not None]
                    if dead or time.monotonic() > deadline:
                        why = f"a server exited with {dead[0]}" if dead else f"no answer in {START_TIMEOUT_S:g} s"
                        raise LabError(f"the lab server behind {control} did not start ({why})") from None
                    time.sleep(0.05)

    def start_client(self, rate: float | None = None) -> None:
        """The client (adapters/lab/client.py) on every target; `rate`: its connections a second
        (default: the client's own)."""
        targets = [a for host, port in self.plan.targets for a in ("--target", f"{host}:{port}")]
        targets += [a for host, port in self.plan.udp_targets for a in ("--udp-target", f"{host}:{port}")]
        rate_args = ["--rate", str(rate)] if rate is not None else []
        self.client = self._spawn("client", ["-m", "adapters.lab.client", *targets, *rate_args, "--timeout",
                                             f"{self.client_timeout_s:g}", "--out", str(self.client_out)],
                                  self.workdir / "client.log")

    def stop_client(self) -> None:
        if self.client is not None and self.client.poll() is None:
            self.client.send_signal(signal.SIGTERM)
            try:
                self.client.wait(self.client_timeout_s + 5)
            except subprocess.TimeoutExpired:
                self.client.kill()

    def write_config(self, config: Config) -> None:
        text = render(self.daemon_config(config))
        for r in self.routers.values():
            r.config_path.write_text(text)
        self.config = config

    def daemon_config(self, config: Config) -> Config:
        return daemon_config(config, self.workdir)

    def router(self, name: str) -> RouterState:
        """Router `name` (LabError when the config has none: a single director's backup)."""
        if name not in self.routers:
            raise LabError(f"the config has no {name} router (a single director)")
        return self.routers[name]

    def start_daemon(self, name: str) -> daemons.Daemon:
        """`shoal run` for router `name` in its namespace (adapters/lab/daemons.py), not waited for."""
        r = self.router(name)
        r.daemon = daemons.start(self.topo.ns(name), r.config_path, r.state_dir, r.log_path, self.dataplane,
                                 name=name, python=self.python, args=self.daemon_args)
        self.procs.append(r.daemon.proc)
        return r.daemon

    def daemon(self, name: str) -> daemons.Daemon | None:
        """Router `name`'s daemon as last started (running or not), None before its first start."""
        r = self.routers.get(name)
        return r.daemon if r is not None else None

    def wait_daemon(self, daemon: daemons.Daemon, timeout_s: float | None = None) -> None:
        """Until `daemon` serves its status (or died: LabError with its log)."""
        try:
            daemon.wait_ready(START_TIMEOUT_S if timeout_s is None else timeout_s)
        except daemons.DaemonFailed as e:
            raise LabError(str(e)) from None

    def wait_daemons(self, timeout_s: float | None = None) -> None:
        """Until both daemons serve their status (or one died: LabError with its log)."""
        started = [r.daemon for r in self.routers.values() if r.daemon is not None]
        missing = [r.name for r in self.routers.values() if r.daemon is None]
        if missing:
            raise LabError(f"the {missing[0]} daemon was never started")
        try:
            daemons.wait_ready(started, START_TIMEOUT_S if timeout_s is None else timeout_s)
        except daemons.DaemonFailed as e:
            raise LabError(str(e)) from None

    def wait_first_checks(self, slack_s: float = 5.0) -> None:
        """Until every active daemon has a first check result for each of its servers, as the
        simulator's routers have at time 0; at most the longest check timeout + `slack_s` (a
        server that is never checked does not hold the lab up longer)."""
        timeouts = [v.timeout_ms for v in self.config.virtuals if v.timeout_ms]
        deadline = time.monotonic() + max(timeouts, default=0) / 1000 + slack_s
        while time.monotonic() < deadline:
            statuses = [s for s in (self.status(r) for r in self.routers if self.daemon_running(r))
                        if s.get("role") == "active"]
            if all(server.get("last_check") is not None for s in statuses
                   for service in s.get("services", []) for server in service.get("servers", [])):
                return
            time.sleep(0.05)

    def log_tail(self, name: str, lines: int = 25) -> str:
        return daemons.log_tail(self.routers[name].log_path, lines) if name in self.routers else "(no such router)"

    def _kill_daemon(self, name: str) -> None:
        r = self.router(name)
        if r.daemon is not None:
            r.daemon.kill()

    def close(self) -> None:
        """Kill every process this lab started, by PID."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # ------------------------------------------------------------ faults

    def apply(self, fault: Fault) -> None:
        kind, value = fault.kind, fault.value
        if kind == "crash":
            self._kill_daemon(value)
            self.topo.links(value, up=False)
            self.router(value).host_up = False
        elif kind == "restart":
            r = self.router(value)
            if not (r.host_up and not self.daemon_running(value)):  # not after a kill: the host boots
                self._kill_daemon(value)
                own = {a.split("/")[0] for i in self.plan.node(value).ifaces for a in i.addresses}
                self.topo.flush_router(value, own | {"127.0.0.1", "::1"}, ipvs=self.dataplane == "ipvs")
                self.topo.links(value, up=True, except_=r.cables_down)
                r.host_up = True
            self.start_daemon(value)  # after a kill: over what the kernel kept, which it adopts
        elif kind == "kill":
            self._kill_daemon(value)
        elif kind.startswith("server_"):
            mode = {"server_down": "down", "server_up": "up", "server_hang": "hang", "server_wrong": "wrong",
                    "server_slow": f"slow {fault.extra.get('delay', 0)}"}[kind]
            self._server(value, mode)
        elif kind == "load":
            self._server(value, f"load {fault.extra['value']}")
        elif kind in ("partition", "heal", "loss"):
            self._heartbeat(fault)
        elif kind == "reload":
            self.write_config(value)
            for r in self.routers.values():
                if r.daemon is not None:
                    r.daemon.signal(signal.SIGHUP)
        elif kind == "admin":
            self._admin(str(value).split())
        elif kind in ("link_down", "link_up"):
            self._link(value, fault.extra["device"], up=kind == "link_up")
        else:
            raise LabError(f"the lab cannot carry out {kind!r}")

    def _link(self, name: str, device: str, up: bool) -> None:
        """The router's interface `device` loses or regains its link, as a cable would (a crashed
        host's links are all down anyway: a restart brings up all but these)."""
        if device not in {i.name for i in self.plan.node(name).ifaces}:
            raise LabError(f"the lab's {name} router has no interface {device}")
        r = self.router(name)
        (r.cables_down.discard if up else r.cables_down.add)(device)
        if r.host_up:
            self.topo.link(name, device, up)

    def _server(self, name: str, command: str) -> None:
        answer = lab_server.ask(self.servers[name], command)
        if answer != "ok":
            raise LabError(f"server {name}: {command}: {answer}")

    def _heartbeat(self, fault: Fault) -> None:
        paths = ["public", "private"] if fault.value == "all" else [fault.value]
        if fault.kind == "partition":
            senders = [fault.extra["from"]] if "from" in fault.extra else list(ROUTERS)
            self.hb.cuts |= {(p, s) for p in paths for s in senders}
        elif fault.kind == "heal":
            self.hb.cuts = {(p, s) for p, s in self.hb.cuts if p not in paths}
        else:
            for p in ([fault.extra["path"]] if "path" in fault.extra else ["public", "private"]):
                self.hb.loss[p] = float(fault.value)
        self.topo.set_heartbeat_rules(self.heartbeat_rules())

    def heartbeat_rules(self) -> list[str]:
        c, port, rules = self.config, self.config.heartbeat_port, []
        for path in ("public", "private"):
            for sender, receiver in (("primary", "backup"), ("backup", "primary")):
                src, dst = c.address_of(sender, path), c.address_of(receiver, path)  # type: ignore[arg-type]
                if not (src and dst):
                    continue
                family = "ip6" if ":" in src else "ip"
                match = f"{family} saddr {src} {family} daddr {dst} udp dport {port}"
                if c.heartbeat_protocol == "vrrp":  # adverts (protocol 112) on the public link, multicast or not
                    if path != "public":
                        continue
                    match = f"iifname {self._port(sender, src)} meta l4proto 112"
                if (path, sender) in self.hb.cuts:
                    rules.append(f"{match} drop")
                elif self.hb.loss.get(path, 0) >= 1:
                    rules.append(f"{match} drop")
                elif self.hb.loss.get(path, 0) > 0:
                    rules.append(f"{match} numgen random mod 1000 < {round(self.hb.loss[path] * 1000)} drop")
        return rules

    def _port(self, router: str, address: str) -> str:
        """The bridge port of the interface of `router` that holds `address` (adapters.lab.topology's names)."""
        index = next(i for i, n in enumerate(self.plan.nodes) if n.name == router)
        iface = next(i for i in self.plan.node(router).ifaces if any(a.split("/")[0] == address for a in i.addresses))
        return f'"{port(index, iface.net)}"'

    def paths_all_cut(self) -> bool:
        """No heartbeat gets through either way on any path (a cut, or loss, everywhere)."""
        paths = [p for p in ("public", "private") if self.config.address_of("primary", p)]  # type: ignore[arg-type]
        return all((p, s) in self.hb.cuts or self.hb.loss.get(p, 0) > 0 for p in paths for s in ROUTERS)

    def _admin(self, words: list[str]) -> None:
        """An operator's order to the running daemons.  A daemon may refuse it
        (a failover without a partner heard both ways): that is the daemon's
        answer, kept in `refusals` for the timeline, not a lab error."""
        running = [r for r in self.routers if self.daemon_running(r)]
        if words[0] == "failover":
            running = [r for r in running if self.status(r).get("role") == "active"][:1]
            request = {"cmd": "admin", "action": "failover"}
        else:
            request = {"cmd": "admin", "action": words[0], "server": words[1]}
        for r in running:
            try:
                answer = ask(str(self.routers[r].state_dir), request, 2.0)
            except OSError as e:  # the daemon is restarting: it never heard the order
                answer = {"error": f"not answering: {e}"}
            if "error" in answer:
                self.refusals.append((r, f"admin {' '.join(words)} refused: {answer['error']}"))

    # ------------------------------------------------------------ observations

    def host_up(self, name: str) -> bool:
        """Router `name`'s host runs (not crashed): its kernel holds its addresses."""
        r = self.routers.get(name)
        return r is not None and r.host_up

    def daemon_running(self, name: str) -> bool:
        d = self.daemon(name)
        return d is not None and d.running()

    def status(self, name: str) -> dict[str, Any]:
        if name not in self.routers:
            return {}
        try:
            return ask(str(self.routers[name].state_dir), {"cmd": "status"}, ASK_TIMEOUT_S)
        except (OSError, ValueError):
            return {}

    def table(self, name: str) -> Table:
        if name not in self.routers:
            return {}
        try:
            answer = ask(str(self.routers[name].state_dir), {"cmd": "table"}, ASK_TIMEOUT_S)
        except (OSError, ValueError):
            return {}
        return table_from_json(answer.get("table", []), self.config)

    def vips(self, name: str) -> frozenset[str]:
        return self.topo.addresses(name) & frozenset(self.plan.vips) if name in self.routers else frozenset()

    def arp_holder(self, address: str) -> str:
        """Who the client's neighbour table says holds `address`: the router
        whose interface has the entry's MAC, "nobody" (no usable entry) or
        "MAC" (a MAC no router has)."""
        import json

        out = subprocess.run(["ip", "-n", self.topo.ns("client"), "-j", "neigh", "show", address],
                             capture_output=True, text=True).stdout
        entries = [e for e in json.loads(out or "[]")
                   if e.get("lladdr") and not {"FAILED", "INCOMPLETE"} & set(e.get("state", []))]
        if not entries:
            return "nobody"
        mac = str(entries[0]["lladdr"]).lower()
        for name in self.routers:
            links = subprocess.run(["ip", "-n", self.topo.ns(name), "-j", "link", "show"],
                                   capture_output=True, text=True).stdout
            if any(str(link.get("address", "")).lower() == mac for link in json.loads(links or "[]")):
                return name
        return mac

    def router_view(self, name: str, with_table: bool = True) -> RouterView:
        daemon = self.daemon_running(name)
        host_up = self.host_up(name)
        status = self.status(name) if daemon else {}
        self.last_status[name] = status
        role = str(status.get("role", "down")) if daemon else "down"
        vips = self.vips(name) if host_up else frozenset()
        table = self.table(name) if daemon and with_table else {}
        return RouterView(name, daemon, host_up, role, vips, table)

    def client_records(self) -> list[tuple[float, bool]]:
        try:
            lines = self.client_out.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            words = line.split()
            if len(words) == 3:
                out.append((float(words[0]), words[1] == "1"))
        return out


def daemon_config(config: Config, workdir: Path) -> Config:
    """`config` as the lab's daemons get it: a `load_monitor` virtual without `load_command`
    reads the load file of the lab server at `%h` in `workdir` (the module doc)."""
    def lab(v: Virtual) -> Virtual:
        if v.load_monitor == "none" or v.load_command:
            return v
        return replace(v, load_command=f"cat {workdir}/srv-%h.load")
    return replace(config, virtuals=tuple(lab(v) for v in config.virtuals))


def table_from_json(rows: list[dict[str, Any]], config: Config) -> Table:
    """The control socket's table back as an `engine.table.Table`, with names from `config`."""
    names: dict[tuple[ServiceKey, DestKey], str] = {}
    vnames: dict[ServiceKey, str] = {}
    for v in config.virtuals:
        key = service_key(v)
        if key is None:
            continue
        vnames[key] = v.name
        for s in v.servers:
            if s.address:
                names[(key, DestKey(s.address, s.port or v.port))] = s.name
        if v.sorry_server:
            names[(key, DestKey(v.sorry_server, v.sorry_port or v.port))] = "sorry"
    table: dict[ServiceKey, ServiceEntry] = {}
    for row in rows:
        key = ServiceKey(row["protocol"], row["address"], row["port"], row.get("fwmark", 0), row.get("family", 4))
        service = Service(key, row.get("scheduler", "wlc"), tuple(row.get("sched_flags", ())),
                          row.get("persistent_s", 0), row.get("pmask"), vnames.get(key, ""))
        dests = {}
        for d in row.get("dests", []):
            dk = DestKey(d["address"], d["port"])
            dests[dk] = Dest(dk, d["weight"], d.get("forward", "masq"), names.get((key, dk), ""))
        table[key] = ServiceEntry(service, dests)
    return table


@contextmanager
def open_world(configs: Sequence[Config], client_timeout_s: float, dataplane: str = "nft",
               tag: str | None = None, workdir_prefix: str = "shoal-lab-") -> Iterator[LabWorld]:
    """The lab for `configs` (the first is written for the daemons; the others, reloads to come,
    only shape the network): root and tools checked (`preflight`), the namespaces built, a
    working directory; on exit every process is killed by PID, the namespaces and the directory
    removed.  Nothing is started: `start_servers`, `start_client`, `start_daemon` are the
    caller's.  LabError when the lab cannot run here."""
    lab_plan = make_plan(list(configs), dataplane)
    preflight(dataplane)
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    try:
        with Topology(lab_plan, tag=tag) as topo:
            world = LabWorld(topo, configs[0], workdir, client_timeout_s, dataplane=dataplane)
            try:
                world.write_config(configs[0])
                yield world
            finally:
                world.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
