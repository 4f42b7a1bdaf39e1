"""Heartbeat sockets: UDP on `heartbeat_port`, one socket per path.

This adapter only moves bytes.  What a payload means (shoal or piranha
format, MAC, sequence) is `engine.wire`'s business.  What it decides is
*whose* bytes are worth queueing at all: only the partner's, on the link
they must come from, at a rate the protocol can explain.  Everything else
is dropped before it costs the daemon anything, and counted.

- One socket per configured path, bound to this node's address on it
  (`config.address_of(node, path)`): the public path always, the private
  path when both private addresses are set.  A datagram's path is the
  socket it arrived on.  IPv4 or IPv6, by the address.
- The sockets are bound with IP_FREEBIND, so an IPv6 address still in
  duplicate address detection (or an interface not up yet) does not stop
  the daemon from starting: datagrams flow once the address is usable.
- Every heartbeat leaves with TTL (hop limit) 255, whatever the format, so
  the partner can tell it was sent on the link: a router on the way would
  have lowered it, and no off-link host can make it arrive at 255.
- What is accepted on a path, checked in this order:

  | reason           | the datagram is dropped when                          |
  |------------------|-------------------------------------------------------|
  | `oversize`       | longer than the largest heartbeat (64 bytes), but an  |
  |                  | overrides datagram (`engine.overrides_wire`: signed,  |
  |                  | at most 4096 bytes; the kernel filter's bound)        |
  | `foreign_source` | its source is not the partner's address on this path  |
  | `interface`      | it arrived on another interface than the one holding  |
  |                  | our address (when known at open: see below)          |
  | `ttl`            | its TTL / hop limit is below `heartbeat_min_ttl`      |
  |                  | (255 with the shoal format, 1 with piranha's: the     |
  |                  | original pulse sends with the system's default, 64)   |
  | `malformed`      | not the shape of a heartbeat (`engine.wire.plausible`:|
  |                  | a length one of the formats has, the shoal magic) nor |
  |                  | of an overrides datagram                              |
  | `rate`           | it passed all of the above, but the path's token      |
  |                  | bucket is empty (`RATE_PER_KEEPALIVE` a keepalive,   |
  |                  | at least `RATE_MIN_PER_S` a second, bursts of         |
  |                  | `BURST`): a flood forging the partner's address       |
  |                  | cannot grow memory or starve the loop                 |

  The same rules run twice.  In the kernel, as a classic BPF socket filter
  attached before the socket is bound (it reads the IP header through
  SKF_NET_OFF): a dropped datagram is never queued to the socket, never
  wakes the daemon.  The kernel does not say why it dropped a datagram, so
  those drops are counted together, with the datagrams a full receive
  buffer refused, as `kernel` (the socket's own drop counter, SO_MEMINFO).
  In userland, on every datagram read (IP_RECVTTL / IPV6_RECVHOPLIMIT and
  IP_PKTINFO / IPV6_RECVPKTINFO ancillary data), counted per reason: this
  is all there is when the filter cannot be attached (`kernel_filter[path]`
  says whether it is), and it covers datagrams queued before a `commit`.
- The interface holding our address is looked up when the socket is bound
  (getifaddrs in the calling thread's network namespace).  Unknown (an
  address not configured yet: IP_FREEBIND) means not checked; an address
  held by this host for the partner too (both nodes on one host) means
  loopback, not checked either.  Moving the address to another interface
  needs a reload.
- Reading: `loop.add_reader` on the non-blocking socket and `recvmsg`,
  at most `BATCH` datagrams a wake-up, so one socket cannot hog the loop.
- `drops` counts per reason (all reasons present, 0 when none); `errors`
  counts send errors (ENETUNREACH, EAGAIN when the socket buffer is full,
  an unconfigured path...) by name, failures of `on_datagram`
  (`callback`) and receive errors.  Nothing here raises on the network's
  behalf; only a caller's mistake or a socket that cannot be bound raises.
- `source` is the sender's address as normalised text (no IPv6 scope).

Reloads (`heartbeat_port`, an address, `heartbeat_min_ttl`, `keepalive`
changed): `prepare(config)` binds, beside the running sockets, every
socket the new configuration needs that is not already bound (same
address and port: kept), and raises `HeartbeatError` with nothing changed
when one cannot be bound.  The `Rebind` it returns is then either
`commit()`ed (kept sockets get the new partner, TTL, rate and filter, new
ones start being read, the others are closed) or `abort()`ed (the new ones
closed; the running ones untouched), once; committing one prepared before
another commit (or a close) raises RuntimeError.  `reconfigure(config)`
does both at once.  `prepare` must run in the network namespace the
sockets live in.  (A filter that cannot be replaced on commit is removed:
the userland checks then apply alone, never the old rules.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.events import Path, SendHeartbeat
from engine.model import Config
from engine import overrides_wire
from engine.wire import plausible

log = logging.getLogger("shoal.heartbeat")

PATHS: tuple[Path, ...] = ("public", "private")
MAX_DATAGRAM = 64  # engine.wire: a shoal heartbeat's 32-byte header and its 32-byte MAC
MAX_RECEIVE = overrides_wire.MAX_SIZE  # the overrides datagram, the largest this port takes
SEND_TTL = 255
BATCH = 64  # datagrams read per wake-up of one socket, at most
RATE_PER_KEEPALIVE = 16  # one heartbeat, probes every keepalive/4, answers to ours: ~6
RATE_MIN_PER_S = 50.0
BURST = 32
LOG_EVERY_S = 10.0
DROP_REASONS = ("foreign_source", "interface", "ttl", "oversize", "malformed", "rate", "kernel")

# Linux constants the socket module lacks.
IP_FREEBIND = 15
IPV6_FREEBIND = 78
IP_PKTINFO = 8
IP_RECVTTL = 12
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_MEMINFO = 55
SK_MEMINFO_DROPS = 8
SKF_AD_OFF = -0x1000
SKF_AD_IFINDEX = 8
SKF_NET_OFF = -0x100000
# Classic BPF opcodes.
_LD_W_ABS, _LD_B_ABS, _LD_W_LEN = 0x20, 0x30, 0x80
_JEQ, _JGT, _JGE = 0x15, 0x25, 0x35
_RET = 0x06
_UDP_HEADER = 8
_ANCILLARY_SIZE = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)  # TTL, in6_pktinfo (in_pktinfo: 12)

OnDatagram = Callable[[Path, str, bytes], None]


class HeartbeatError(OSError):
    """A heartbeat socket cannot be opened (address in use, bad address)."""


def _error_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _normalise(host: str) -> str:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).compressed
    except ValueError:
        return host


@dataclass
class _Bucket:
    rate_per_s: float
    burst: float
    tokens: float
    last_s: float

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)
        self.last_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True)
class _Rules:
    """What one path accepts (the same rules in the kernel and here)."""

    family: int
    partner: bytes | None  # packed; None: no partner, nothing is accepted
    min_ttl: int
    ifindex: int | None  # None: not checked


@dataclass
class _Socket:
    path: Path
    sock: socket.socket
    address: str
    port: int
    rules: _Rules
    bucket: _Bucket
    kernel_filter: bool = False
    ancillary: bool = True  # TTL and arrival interface read from ancillary data


@dataclass
class Rebind:
    """Sockets for a new configuration, bound beside the running ones.

    `commit()` or `abort()`, once (see the module's docstring).
    """

    owner: HeartbeatSockets
    node: Literal["primary", "backup"]
    generation: int  # the owner's when prepared: a commit or close since makes this stale
    plan: dict[Path, _Socket] = field(default_factory=dict)  # kept sockets with new rules, and fresh ones
    fresh: list[_Socket] = field(default_factory=list)  # bound by `prepare`
    done: bool = False

    def commit(self) -> None:
        if self.done:
            raise RuntimeError("Rebind already committed or aborted")
        self.done = True
        self.owner._commit(self)

    def abort(self) -> None:
        if self.done:
            raise RuntimeError("Rebind already committed or aborted")
        self.done = True
        for new in self.fresh:
            new.sock.close()


class HeartbeatSockets:
    """The heartbeat sockets of one node.  `open`, then `send`, then `close`.

    `kernel_filter=False` leaves the BPF filter off (the userland checks
    alone: for tests of those, and for kernels without socket filters).
    """

    def __init__(self, kernel_filter: bool = True) -> None:
        self.errors: dict[str, int] = {}
        self.sockets: dict[Path, socket.socket] = {}
        self.addresses: dict[Path, str] = {}
        self.partners: dict[Path, str | None] = {}
        self.kernel_filter: dict[Path, bool] = {}
        self.on_datagram: OnDatagram = lambda path, source, payload: None
        self.node: Literal["primary", "backup"] | None = None
        self._use_filter = kernel_filter
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._kernel_drops_closed = 0
        self._paths: dict[Path, _Socket] = {}
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logged_s = 0.0
        self._logged = dict(self._drops)
        self._last_foreign = ""

    @property
    def drops(self) -> dict[str, int]:
        """Datagrams dropped, by reason; `kernel` read from the sockets now."""
        drops = dict(self._drops)
        drops["kernel"] = self._kernel_drops_closed + sum(_kernel_drops(s.sock) for s in self._paths.values())
        return drops

    def _count(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    # ------------------------------------------------------------ opening

    async def open(self, config: Config, node: Literal["primary", "backup"],
                   on_datagram: OnDatagram) -> None:
        """Bind the port on this node's address on each configured path."""
        if self._loop is not None:
            raise RuntimeError("HeartbeatSockets.open called twice")
        self._loop = asyncio.get_running_loop()
        self.on_datagram = on_datagram
        try:
            self.prepare(config, node).commit()
        except BaseException:
            self._loop = None
            raise

    def prepare(self, config: Config, node: Literal["primary", "backup"] | None = None) -> Rebind:
        """Bind what `config` needs beside the running sockets; nothing else changes.

        Raises HeartbeatError (with every socket it bound closed again) when
        a socket cannot be bound or the configuration cannot be carried out.
        """
        node = node or self.node
        if node is None:
            raise RuntimeError("HeartbeatSockets.prepare before open needs the node")
        paths: list[Path] = ["public"]
        if config.primary_private and config.backup_private:
            paths.append("private")
        partner_node: Literal["primary", "backup"] = "backup" if node == "primary" else "primary"
        min_ttl = _min_ttl(config)
        rate_per_s = max(RATE_MIN_PER_S, RATE_PER_KEEPALIVE * 1000 / max(1, config.keepalive_ms))
        rebind = Rebind(self, node, self._generation)
        running = {(s.address, s.port): s for s in self._paths.values()}
        try:
            for path in paths:
                address = config.address_of(node, path)
                if address is None:
                    raise HeartbeatError(f"no {path} address configured for the {node}")
                family = _family(address, path)
                rules = _rules(family, address, config.address_of(partner_node, path), min_ttl)
                key = (_normalise(address), config.heartbeat_port)
                kept = running.pop(key, None)
                if kept is not None:
                    bucket = _Bucket(rate_per_s, BURST, min(kept.bucket.tokens, BURST), kept.bucket.last_s)
                    rebind.plan[path] = _Socket(path, kept.sock, kept.address, kept.port, rules, bucket,
                                                kept.kernel_filter, kept.ancillary)
                    continue
                new = self._bind(path, family, address, config.heartbeat_port, rules,
                                 _Bucket(rate_per_s, BURST, BURST, time.monotonic()))
                rebind.fresh.append(new)
                rebind.plan[path] = new
        except BaseException:
            rebind.abort()
            raise
        return rebind

    def reconfigure(self, config: Config) -> None:
        """`prepare(config).commit()`: all of it, or HeartbeatError and nothing changed."""
        self.prepare(config).commit()

    def _bind(self, path: Path, family: int, address: str, port: int, rules: _Rules,
              bucket: _Bucket) -> _Socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        state = _Socket(path, sock, _normalise(address), port, rules, bucket)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, SEND_TTL)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, SEND_TTL)
            state.ancillary = _ask_ancillary(sock, family, path)
            state.kernel_filter = self._use_filter and _attach(sock, rules, path)
            sock.bind((address, port))  # after the filter: nothing unfiltered is ever queued
        except OSError as e:
            sock.close()
            raise HeartbeatError(e.errno, f"cannot bind the {path} heartbeat socket on "
                                 f"[{address}]:{port}: {e.strerror}") from None
        return state

    def _commit(self, rebind: Rebind) -> None:
        if self._loop is None or rebind.generation != self._generation:
            for new in rebind.fresh:
                new.sock.close()
            raise RuntimeError("HeartbeatSockets: a Rebind committed before open, after close "
                               "or after another commit")
        self._generation += 1
        running = {id(state.sock): state for state in self._paths.values()}
        for path, new in rebind.plan.items():
            kept = running.pop(id(new.sock), None)
            if kept is not None:
                if kept.rules != new.rules and self._use_filter:
                    new.kernel_filter = _attach(new.sock, new.rules, path)
                    if not new.kernel_filter:  # the old rules must not stay: userland checks alone
                        with contextlib.suppress(OSError):
                            new.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
                self._loop.remove_reader(new.sock.fileno())
            self._loop.add_reader(new.sock.fileno(), self._drain, new)
        for old in running.values():
            self._close_one(old)
        self._paths = dict(rebind.plan)
        self.node = rebind.node
        self._mirror()

    def _mirror(self) -> None:
        self.sockets = {p: s.sock for p, s in self._paths.items()}
        self.addresses = {p: s.address for p, s in self._paths.items()}
        self.partners = {p: (None if s.rules.partner is None else _text(s.rules.family, s.rules.partner))
                         for p, s in self._paths.items()}
        self.kernel_filter = {p: s.kernel_filter for p, s in self._paths.items()}

    # ------------------------------------------------------------ receiving

    def _drain(self, state: _Socket) -> None:
        """Read what is queued on one socket, `BATCH` datagrams at most."""
        now_s = time.monotonic()
        for _ in range(BATCH):
            try:
                payload, ancdata, flags, addr = state.sock.recvmsg(MAX_RECEIVE, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._count(_error_name(e))
                return
            reason = _judge(state, payload, ancdata, flags, addr)
            overrides = overrides_wire.plausible(payload)
            if reason is None and len(payload) > MAX_DATAGRAM and not overrides:
                reason = "oversize"
            if reason is None and not (plausible(payload) or overrides):
                reason = "malformed"  # before the rate budget: garbage cannot spend it
            if reason is None and not state.bucket.take(now_s):
                reason = "rate"
            if reason is not None:
                self._drops[reason] += 1
                if reason == "foreign_source":
                    self._last_foreign = str(addr[0])
                self._log_drops(now_s)
                continue
            try:
                self.on_datagram(state.path, _normalise(str(addr[0])), payload)
            except Exception:  # the callback's bug must not kill the socket
                self._count("callback")
                log.exception("heartbeat: on_datagram failed for a datagram on the %s path", state.path,
                              extra={"fields": {"kind": "heartbeat_error", "path": state.path}})

    def _log_drops(self, now_s: float) -> None:
        if now_s - self._logged_s < LOG_EVERY_S:
            return
        self._logged_s = now_s
        new = {r: n - self._logged.get(r, 0) for r, n in self._drops.items() if n > self._logged.get(r, 0)}
        self._logged = dict(self._drops)
        last = f" (last foreign source {self._last_foreign})" if "foreign_source" in new else ""
        log.warning("heartbeat: datagrams dropped: %s%s",
                    " ".join(f"{r}={n}" for r, n in new.items()), last,
                    extra={"fields": {"kind": "heartbeat_dropped", **new,
                                      **({"last_foreign": self._last_foreign} if last else {})}})

    # ------------------------------------------------------------ sending

    def send(self, cmd: SendHeartbeat) -> None:
        """Send cmd.payload to (cmd.address, cmd.port) from cmd.path's socket."""
        state = self._paths.get(cmd.path)
        if state is None:
            self._count(f"no-{cmd.path}-socket")
            return
        try:
            state.sock.sendto(cmd.payload, (cmd.address, cmd.port))
        except OSError as e:
            self._count(_error_name(e))
        except (ValueError, TypeError, OverflowError):  # an unusable address or port
            self._count("bad-address")

    def close(self) -> None:
        for state in self._paths.values():
            self._close_one(state)
        self._paths = {}
        self._mirror()
        self._generation += 1
        self._loop = None

    def _close_one(self, state: _Socket) -> None:
        self._kernel_drops_closed += _kernel_drops(state.sock)
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, KeyError, OSError):
                self._loop.remove_reader(state.sock.fileno())
        state.sock.close()


# ---------------------------------------------------------------- the rules


def _min_ttl(config: Config) -> int:
    """`heartbeat_min_ttl` (the config holds the effective value: 255 with the
    shoal format, 1 with piranha's, unless set)."""
    value = config.heartbeat_min_ttl
    if not 1 <= value <= 255:
        raise HeartbeatError(f"heartbeat_min_ttl {value} is not a TTL (1..255)")
    return value


def _family(address: str, path: Path) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        raise HeartbeatError(f"{path} heartbeat address {address} is not an IP address") from None


def _rules(family: int, own: str, partner: str | None, min_ttl: int) -> _Rules:
    packed: bytes | None = None
    if partner is not None:
        try:
            ip = ipaddress.ip_address(partner)
        except ValueError:
            ip = None
        if ip is not None and (ip.version == 6) == (family == socket.AF_INET6):
            packed = ip.packed
    ifindex = None
    local = _local_addresses()
    if packed is not None and packed not in local:
        ifindex = local.get(ipaddress.ip_address(own).packed)
    return _Rules(family, packed, min_ttl, ifindex)


def _text(family: int, packed: bytes) -> str:
    return _normalise(socket.inet_ntop(family, packed))


def _judge(state: _Socket, payload: bytes, ancdata: list[tuple[int, int, bytes]], flags: int,
           addr: Any) -> str | None:
    """Why this datagram is dropped, or None."""
    rules = state.rules
    if flags & socket.MSG_TRUNC:
        return "oversize"
    try:
        source = socket.inet_pton(rules.family, str(addr[0]).split("%", 1)[0])
    except (OSError, ValueError, IndexError, TypeError):
        return "foreign_source"
    if rules.partner is None or source != rules.partner:
        return "foreign_source"
    if not state.ancillary:
        return None
    ttl = ifindex = None
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == socket.IP_TTL and len(data) >= 4:
            ttl = struct.unpack_from("i", data)[0]
        elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            ttl = struct.unpack_from("i", data)[0]
        elif level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 4:
            ifindex = struct.unpack_from("i", data)[0]
        elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            ifindex = struct.unpack_from("i", data, 16)[0]
    if rules.ifindex is not None and ifindex != rules.ifindex:
        return "interface"
    if rules.min_ttl > 1 and (ttl is None or ttl < rules.min_ttl):
        return "ttl"
    return None


def _ask_ancillary(sock: socket.socket, family: int, path: Path) -> bool:
    """Ask for each datagram's TTL and arrival interface; False if refused."""
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        return True
    except OSError as e:
        log.warning("heartbeat: %s socket: no TTL or interface of received datagrams (%s): "
                    "only the source is checked here", path, e.strerror,
                    extra={"fields": {"kind": "heartbeat_socket", "path": path, "error": e.strerror}})
        return False


def _program(rules: _Rules) -> list[tuple[int, int, int, int]]:
    """The classic BPF program of `rules`: (code, jt, jf, k) per instruction.

    A UDP socket's filter sees the datagram from its UDP header: the IP
    header is read at SKF_NET_OFF, the arrival interface at SKF_AD_OFF.
    """
    if rules.partner is None:
        return [(_RET, 0, 0, 0)]
    v6 = rules.family == socket.AF_INET6
    source_at, ttl_at = (8, 7) if v6 else (12, 8)
    program: list[tuple[int, int, int, int]] = []
    to_patch: dict[int, bool] = {}  # a jump's index: whether its true branch drops

    def check(load: int, offset: int, jump: int, k: int, *, drop_when: bool) -> None:
        """Load, compare with k, drop when the comparison is `drop_when`."""
        program.append((load, 0, 0, offset & 0xFFFFFFFF))
        to_patch[len(program)] = drop_when
        program.append((jump, 0, 0, k))

    check(_LD_W_LEN, 0, _JGT, _UDP_HEADER + MAX_RECEIVE, drop_when=True)
    check(_LD_B_ABS, SKF_NET_OFF + ttl_at, _JGE, rules.min_ttl, drop_when=False)
    for i in range(0, len(rules.partner), 4):
        word = int.from_bytes(rules.partner[i:i + 4], "big")
        check(_LD_W_ABS, SKF_NET_OFF + source_at + i, _JEQ, word, drop_when=False)
    if rules.ifindex is not None:
        check(_LD_W_ABS, SKF_AD_OFF + SKF_AD_IFINDEX, _JEQ, rules.ifindex, drop_when=False)
    program.append((_RET, 0, 0, 0xFFFFFFFF))  # accept, whole
    program.append((_RET, 0, 0, 0))  # drop
    for at, drop_when in to_patch.items():
        jump, _, _, k = program[at]
        to_drop = len(program) - 1 - at - 1  # jumps count from the next instruction
        program[at] = (jump, to_drop, 0, k) if drop_when else (jump, 0, to_drop, k)
    return program


def _attach(sock: socket.socket, rules: _Rules, path: Path) -> bool:
    """Attach (or replace) the socket filter of `rules`; False if refused."""
    program = _program(rules)
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        return True
    except OSError as e:
        log.warning("heartbeat: %s socket: no kernel filter (%s): datagrams are filtered after "
                    "they are queued", path, e.strerror,
                    extra={"fields": {"kind": "heartbeat_socket", "path": path, "error": e.strerror}})
        return False


def _kernel_drops(sock: socket.socket) -> int:
    """The socket's drop counter: its filter's drops and a full buffer's."""
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * (SK_MEMINFO_DROPS + 1))
        return int(struct.unpack_from("I", info, 4 * SK_MEMINFO_DROPS)[0])
    except (OSError, struct.error):
        return 0


# ---------------------------------------------------------------- local addresses


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("next", ctypes.POINTER(_Ifaddrs)), ("name", ctypes.c_char_p), ("flags", ctypes.c_uint),
    ("addr", ctypes.c_void_p), ("netmask", ctypes.c_void_p),
    ("ifu", ctypes.c_void_p), ("data", ctypes.c_void_p),
]


def _local_addresses() -> dict[bytes, int]:
    """Every address of this network namespace (packed): its interface's index.

    getifaddrs(3) asks over netlink, in the calling thread's namespace.
    Empty when it cannot be asked: then no interface is checked.
    """
    libc = ctypes.CDLL(None)  # the process's own symbols: libc's among them
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        return {}
    found: dict[bytes, int] = {}
    try:
        entry = head
        while entry:
            ifa = entry.contents
            if ifa.addr and ifa.name:
                (family,) = struct.unpack("H", ctypes.string_at(ifa.addr, 2))  # sa_family
                packed = b""
                if family == socket.AF_INET:  # sockaddr_in: family, port, address
                    packed = ctypes.string_at(ifa.addr, 8)[4:8]
                elif family == socket.AF_INET6:  # sockaddr_in6: family, port, flow info, address
                    packed = ctypes.string_at(ifa.addr, 24)[8:24]
                if packed:
                    name = ifa.name.decode(errors="replace").split(":", 1)[0]  # eth0:1, a label
                    with contextlib.suppress(OSError):
                        found.setdefault(packed, socket.if_nametoindex(name))
            entry = ifa.next
    finally:
        libc.freeifaddrs(head)
    return found
