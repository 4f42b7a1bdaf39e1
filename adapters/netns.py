"""Network namespaces for tests and labs: created by name, always removed.

A small helper, not a product feature.  Everything a `Topology` creates
lives inside namespaces it named itself (a unique prefix per process and
per topology, e.g. ``sh4242-1-a``), so removing those namespaces removes
every veth, bridge and address with them; nothing is ever created in the
host's own namespace.  Processes started with `Topology.spawn` are killed
(by PID, whole process group) on exit.

Typical use::

    with Topology() as topo:
        a, b = topo.namespace("a"), topo.namespace("b")   # lo is up
        topo.veth(a, "va", b, "vb")                        # both ends up
        topo.address(a, "va", "10.9.0.1/24")               # IPv6: nodad
        topo.address(b, "vb", "10.9.0.2/24")
        topo.run(a, ["ping", "-c1", "10.9.0.2"])           # CompletedProcess
        server = topo.spawn(b, ["python3", "-m", "http.server"])
        with entered(a):                                   # this thread only
            sock = socket.socket(...)                      # lives in `a`

Bridges: ``topo.bridge(ns, "br0")`` then ``topo.veth(a, "eth0", ns,
"pa", bridge="br0")`` puts the far end into the bridge.

`entered(ns)` switches the *calling thread's* network namespace (setns(2))
and switches it back on exit; sockets created inside keep the namespace
they were created in.  `/sys` is not remounted, so read interface facts
with ioctl or netlink there, not from `/sys/class/net`.

`require()` raises `NetnsUnavailable` with a clear message when the host
cannot do this (not root, no `ip netns`): tests turn that into a failure,
never a skip.  `sweep()` removes namespaces left by dead processes (a
SIGKILLed test run cannot clean up after itself).

This is the one namespace helper of the repository: `shoal lab`'s network
(adapters/lab/topology.py), the adapters' real-network tests and the
kernel suite's guest (tests/kernel/guest/netlab.py, which imports it from
the host's checkout shared read-only over 9p) all build with it.  For
many commands at once where every process costs (qemu's software
emulation): `batch(ns, lines)` (one `ip -batch`), `run_entered(ns, argv)`
(started from a thread inside `ns`: no `ip netns exec`), `write_sysctl`
(through /proc, no process at all), and `new_prefix()` for names that
`sweep()` knows.  Every failed command raises `NetnsCommandFailed` with
the command and its stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_PREFIX = "sh"
_counter = itertools.count(1)
_libc: Any = None


class NetnsUnavailable(RuntimeError):
    """This host cannot create network namespaces (not root, no `ip`)."""


class NetnsCommandFailed(RuntimeError):
    """A command run by the helper failed."""


def require() -> None:
    """Raise NetnsUnavailable saying what is missing, or return."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespace tests need root (run pytest as root)")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("network namespace tests need `ip` (apt-get install iproute2)")
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if done.returncode != 0:
        raise NetnsUnavailable(f"`ip netns list` fails: {done.stderr.strip()}")


def ip(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS...`; raise NetnsCommandFailed with its stderr on failure."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, input=input)
    if check and done.returncode != 0:
        raise NetnsCommandFailed(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def run_in(ns: str, argv: Sequence[str], check: bool = True, timeout_s: float | None = 10.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv inside `ns` (`ip netns exec`: /sys is that namespace's)."""
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout_s, input=input)
    if check and done.returncode != 0:
        raise NetnsCommandFailed(f"[{ns}] {' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def run_entered(ns: str | None, argv: Sequence[str], input: str | None = None, timeout_s: float = 30.0) -> str:
    """Run argv from this thread switched into `ns` (None: where it is), cheaper than `ip netns
    exec` (no `ip` process, /sys not remounted); its stdout, or NetnsCommandFailed."""
    with entered(ns) if ns else contextlib.nullcontext():
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise NetnsCommandFailed(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}\n{input or ''}")
    return done.stdout


def batch(ns: str | None, lines: Sequence[str], force: bool = False, timeout_s: float = 30.0) -> None:
    """`ip [-n NS] -batch -` with `lines`: one process for many commands.  With `force`, every
    line is tried and failures are ignored (removing what may be gone already)."""
    argv = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    text = "\n".join(lines) + "\n"
    if force:
        subprocess.run(argv, input=text, capture_output=True, text=True, timeout=timeout_s)
    else:
        run_entered(None, argv, text, timeout_s)


def write_sysctl(ns: str, key: str, value: str) -> None:
    """Write a net sysctl in `ns` (/proc/sys/net follows the calling thread's namespace)."""
    with entered(ns):
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


def new_prefix() -> str:
    """A namespace name prefix unique to this process and call (`sh<pid>-<n>-`): `sweep()`
    removes what a dead process left under it."""
    return f"{_PREFIX}{os.getpid()}-{next(_counter)}-"


def listed(prefix: str) -> list[str]:
    """The namespaces on this host whose names start with `prefix`, sorted."""
    names = os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []
    return sorted(n for n in names if n.startswith(prefix))


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def preexec(ns: str) -> Callable[[], None]:
    """A subprocess `preexec_fn` that enters network namespace `ns` in the
    child (cheaper than `ip netns exec`, which also remounts /sys); a child
    that cannot enter it exits 120 before running anything."""
    def enter() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
            _setns(fd)
            os.close(fd)
        except OSError:
            os._exit(120)
    return enter


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace `ns`."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(back)


def sweep(prefix: str = _PREFIX) -> list[str]:
    """Remove namespaces named `<prefix><pid>-...` whose process is gone."""
    removed = []
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-\d+-")
    names = os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []
    for name in sorted(names):
        match = pattern.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


class Topology:
    """Namespaces, veths, bridges and processes; all removed on exit.

    Every name given to `namespace()` is short ("a", "client"); the real
    namespace name (returned, and in `self.names`) carries the unique
    prefix.  Methods take the real name.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or new_prefix()
        self.names: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill spawned processes, then delete every namespace created."""
        for proc in reversed(self.processes):
            _kill_group(proc)
        self.processes.clear()
        for name in reversed(list(self.names.values())):
            ip("netns", "del", name, check=False)
        self.names.clear()

    # ------------------------------------------------------------ building

    def namespace(self, short: str) -> str:
        """Create namespace `<prefix><short>` with `lo` up; return its name."""
        name = self.prefix + short
        ip("netns", "add", name)
        self.names[short] = name
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str, bridge: str | None = None) -> None:
        """A veth pair dev_a (in ns_a) <-> dev_b (in ns_b), both up.

        With `bridge`, dev_b becomes a port of that bridge in ns_b.
        """
        ip("-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        if bridge is not None:
            ip("-n", ns_b, "link", "set", dev_b, "master", bridge)
        ip("-n", ns_a, "link", "set", dev_a, "up")
        ip("-n", ns_b, "link", "set", dev_b, "up")

    def bridge(self, ns: str, name: str) -> None:
        """A bridge `name` in `ns`, up, forwarding at once (no STP delay)."""
        ip("-n", ns, "link", "add", name, "type", "bridge", "forward_delay", "0")
        ip("-n", ns, "link", "set", name, "up")

    def address(self, ns: str, dev: str, cidr: str) -> None:
        """Add an address (IPv6 with nodad: usable at once)."""
        extra = ["nodad"] if ":" in cidr else []
        ip("-n", ns, "addr", "add", cidr, "dev", dev, *extra)

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.run(ns, ["sysctl", "-qw", f"{key}={value}"])

    def mac(self, ns: str, dev: str) -> str:
        """The link-layer address of `dev` in `ns` ("aa:bb:...")."""
        out = ip("-n", ns, "-o", "link", "show", "dev", dev).stdout
        match = re.search(r"link/ether ([0-9a-f:]{17})", out)
        if not match:
            raise NetnsCommandFailed(f"no MAC for {dev} in {ns}: {out.strip()}")
        return match.group(1)

    # ------------------------------------------------------------ running

    def run(self, ns: str, argv: Sequence[str], check: bool = True, timeout_s: float | None = 10.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside `ns` (`run_in`)."""
        return run_in(ns, argv, check, timeout_s, input)

    def spawn(self, ns: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start argv inside `ns` in a new session; killed on exit."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], start_new_session=True, **popen)
        self.processes.append(proc)
        return proc


def _kill_group(proc: subprocess.Popen[Any], grace_s: float = 1.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
