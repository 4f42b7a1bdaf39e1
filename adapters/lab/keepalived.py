"""Debian's keepalived as one router of a lab (issue 14): the other half of a VRRP pair.

`Keepalived(world, name)` runs `keepalived` in router `name`'s namespace
with a keepalived.conf written from the lab's lvs.cf (`heartbeat_protocol
= vrrp`): one `vrrp_instance` on the interface holding the router's own
address, `virtual_router_id`, `priority` (shoal's `vrrp_priority` unless
given), `advert_int` = keepalive, `version`, preemption as `preempt` says
(`state BACKUP` and `nopreempt` without it), `unicast_peer` with
`vrrp_unicast = 1`, and as virtual addresses the
same list shoal advertises (the VIPs of that family, then `nat_router`),
each on the interface its label names.  What keepalived says is read from
its log; what it holds, from the namespace.  Started, stopped (SIGTERM: a
clean stop, priority 0), frozen (SIGSTOP of its VRRP child: a crash) and
killed by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from adapters.lab.plan import LabError
from adapters.lab.world import LabWorld
from engine.model import vrrp_priority

CONF = """global_defs {{
    router_id {name}
}}
vrrp_instance VI_1 {{
    state BACKUP
    {preempt}
    interface {device}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert:g}
    version {version}
{unicast}    virtual_ipaddress {{
{addresses}
    }}
}}
"""


class Keepalived:
    def __init__(self, world: LabWorld, name: str, priority: int | None = None) -> None:
        self.world, self.name = world, name
        c = world.config
        own = c.primary if name == "primary" else c.backup
        assert own is not None and c.virtual_router_id is not None
        node = world.plan.node(name)
        self.device = next(i.name for i in node.ifaces if any(a.split("/")[0] == own for a in i.addresses))
        family_v6 = ":" in own
        lines = []
        for v in c.virtuals:
            if v.active and v.address and (":" in v.address) == family_v6:
                dev = (v.device or self.device).split(":")[0]
                lines.append(f"        {v.address} dev {dev}")
        if c.nat_router and (":" in c.nat_router) == family_v6:
            lines.append(f"        {c.nat_router} dev {(c.nat_router_device or self.device).split(':')[0]}")
        self.priority = priority if priority is not None else vrrp_priority(c, name)  # type: ignore[arg-type]
        self.path = world.workdir / f"keepalived-{name}.conf"
        partner = c.backup if name == "primary" else c.primary
        unicast = f"    unicast_src_ip {own}\n    unicast_peer {{\n        {partner}\n    }}\n" if c.vrrp_unicast else ""
        self.path.write_text(CONF.format(
            name=name, preempt="" if c.preempt else "nopreempt", device=self.device, vrid=c.virtual_router_id,
            priority=self.priority, advert=c.keepalive_ms / 1000, version=c.vrrp_version, unicast=unicast,
            addresses="\n".join(lines)))
        self.log_path = world.workdir / f"keepalived-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.child: int | None = None

    def start(self) -> None:
        work = self.world.workdir
        pid_file, vrrp_file = work / f"keepalived-{self.name}.pid", work / f"keepalived-{self.name}-vrrp.pid"
        for f in (pid_file, vrrp_file):
            f.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.world.topo.ns(self.name), "keepalived", "-n", "-l", "-D", "-P",
                 "-f", str(self.path), "-p", str(pid_file), "-r", str(vrrp_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.world.procs.append(self.proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                pid = int(vrrp_file.read_text().strip())
                if _alive(pid):
                    self.child = pid
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"keepalived on {self.name} did not start its VRRP child:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def entered(self, state: str) -> int:
        """How often its log says it entered `state` (MASTER, BACKUP) since the lab began."""
        return self.log().count(f"Entering {state} STATE")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.child is not None and _alive(self.child)

    def freeze(self) -> None:
        """Its VRRP child stopped (SIGSTOP) at once: a crash as the advertising side sees it (a kill
        would wait for the child to be reaped).  `kill` ends it."""
        if self.child is not None and _alive(self.child):
            os.kill(self.child, signal.SIGSTOP)

    def stop(self) -> None:
        """A clean stop (SIGTERM): a master says priority 0 and removes its addresses."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """Every process of it killed (SIGKILL), by PID: the parent, then its VRRP child."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.child is not None and _alive(self.child):
            os.kill(self.child, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(self.child) and time.monotonic() < deadline:
                time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived"
    except OSError:
        return False
