"""Heartbeat wire formats: pure encoders and decoders.

Adapters only move bytes; every byte's meaning lives here.  `decode` never
raises on any input: garbage from the network is data (`WireError`), which
the engine counts and drops.  A caller misusing `encode` raises.

shoal format (network byte order, 32 bytes, + 32 with a MAC):

| offset | size | field                                                    |
|-------:|-----:|----------------------------------------------------------|
|      0 |    4 | magic `SHOL`                                             |
|      4 |    1 | version (1)                                              |
|      5 |    1 | state: 0 standby, 1 active, 2 leaving                    |
|      6 |    1 | flags: bit 0 HMAC-SHA256 trailer present; bit 1 probe   |
|        |      | (answer at once); bit 2 yielded (was active within the   |
|        |      | last deadtime); bit 3 sent on the private path (so a     |
|        |      | signed heartbeat captured on one path cannot be replayed |
|        |      | on the other); other bits 0                              |
|      7 |    1 | node: 0 primary, 1 backup                                |
|      8 |    8 | seq: sequence number (u64, starts at 1, never repeats)   |
|     16 |    8 | ack: the last seq heard from the partner (u64, 0: never) |
|     24 |    8 | serial_no of the sender's configuration (u64)            |
|     32 |   32 | HMAC-SHA256 over bytes 0..31 (only with flag bit 0)      |

piranha format (the original pulse, byte-exact): 4 bytes, an unsigned
32-bit magic in little-endian order, 0xbdaddbda "I am active", 0xadbddabd
"I am standby".  It has no room for a sequence or a MAC; "leaving" is sent
as standby.

With a key configured, only shoal packets with a valid MAC are accepted;
without one, a packet carrying a MAC is refused (`unexpected-mac`): the two
routers disagree about authentication, which the operator must see.  An
empty key authenticates nothing and is refused (ValueError) by both `encode`
and `decode`: the driver must refuse an empty key file when it loads it.

Sequence numbers start at 1 and never repeat for one sender, across its
restarts too (the driver picks the start).  `decode` does not judge them;
`ReplayWindow` does, and never accepts 0.  `ack` 0 means "never heard you".
`Heartbeat.authenticated` is what `decode` found (a valid MAC); `encode`
ignores it and signs when given a key.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Literal

MAGIC = b"SHOL"
VERSION = 1
PIRANHA_ACTIVE = 0xBDADDBDA
PIRANHA_STANDBY = 0xADBDDABD
MAC_SIZE = 32
FLAG_MAC = 0x01
FLAG_PROBE = 0x02
FLAG_YIELDED = 0x04
FLAG_PRIVATE = 0x08
_KNOWN_FLAGS = FLAG_MAC | FLAG_PROBE | FLAG_YIELDED | FLAG_PRIVATE

_HEADER = struct.Struct("!4sBBBBQQQ")
_PIRANHA = struct.Struct("<I")
_STATES: tuple[Literal["standby", "active", "leaving"], ...] = ("standby", "active", "leaving")
_NODES: tuple[Literal["primary", "backup"], ...] = ("primary", "backup")
_U64 = 2**64

State = Literal["active", "standby", "leaving"]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    format: Literal["shoal", "piranha"]
    state: State
    node: Literal["primary", "backup"] | None
    seq: int
    ack: int
    serial_no: int
    authenticated: bool = False
    probe: bool = False  # "answer at once": the sender has missed a round of ours
    yielded: bool = False  # the sender was active within the last deadtime
    private: bool = False  # sent on the private path (shoal format; the receiver checks it)


@dataclass(frozen=True, slots=True)
class WireError:
    """Why a datagram is not a heartbeat.

    reason: short, length, magic, version, state, node, flags,
    unauthenticated (a key is configured and the packet has no MAC),
    bad-mac, unexpected-mac (a MAC but no key configured here).
    """

    reason: str
    detail: str = ""


AUTH_ERRORS = frozenset({"unauthenticated", "bad-mac", "unauthenticated-peer", "unexpected-mac"})  # the key's refusals


def encode(heartbeat: Heartbeat, key: bytes | None = None) -> bytes:
    """The datagram for `heartbeat`; signed when `key` is given (shoal only).

    Raises ValueError for what cannot be sent: a key with the piranha
    format, an empty key, a piranha heartbeat carrying a node, sequence,
    ack or serial (the format has no room for them), a shoal heartbeat
    without a node, a number outside u64, an unknown state or format.
    """
    _check_key(key)
    if heartbeat.state not in _STATES:
        raise ValueError(f"unknown heartbeat state {heartbeat.state!r}")
    if heartbeat.format == "piranha":
        if key is not None:
            raise ValueError("the piranha heartbeat format has no room for a MAC")
        if (heartbeat.node is not None or heartbeat.seq or heartbeat.ack or heartbeat.serial_no
                or heartbeat.probe or heartbeat.yielded or heartbeat.private):
            raise ValueError("the piranha heartbeat format carries only the state")
        magic = PIRANHA_ACTIVE if heartbeat.state == "active" else PIRANHA_STANDBY
        return _PIRANHA.pack(magic)
    if heartbeat.format != "shoal":
        raise ValueError(f"unknown heartbeat format {heartbeat.format!r}")
    for name in ("seq", "ack", "serial_no"):
        value = getattr(heartbeat, name)
        if not 0 <= value < _U64:
            raise ValueError(f"{name} out of range for u64: {value}")
    if heartbeat.node not in _NODES:
        raise ValueError(f"shoal heartbeats name their node: {heartbeat.node!r}")
    header = _HEADER.pack(
        MAGIC, VERSION, _STATES.index(heartbeat.state),
        (FLAG_MAC if key is not None else 0) | (FLAG_PROBE if heartbeat.probe else 0)
        | (FLAG_YIELDED if heartbeat.yielded else 0) | (FLAG_PRIVATE if heartbeat.private else 0),
        _NODES.index(heartbeat.node), heartbeat.seq, heartbeat.ack, heartbeat.serial_no,
    )
    if key is None:
        return header
    return header + hmac.new(key, header, hashlib.sha256).digest()


def decode(payload: bytes, key: bytes | None = None) -> Heartbeat | WireError:
    """The heartbeat in `payload`, or why it is not one.

    Never raises on any payload (an empty `key` is the caller's mistake and
    raises ValueError).
    """
    _check_key(key)
    if len(payload) == _PIRANHA.size and payload[:4] != MAGIC:
        return _decode_piranha(payload, key)
    if len(payload) < _HEADER.size:
        return WireError("short", f"{len(payload)} bytes")
    magic, version, state, flags, node, seq, ack, serial = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        return WireError("magic", payload[:4].hex())
    if version != VERSION:
        return WireError("version", str(version))
    if state >= len(_STATES):
        return WireError("state", str(state))
    if node >= len(_NODES):
        return WireError("node", str(node))
    if flags & ~_KNOWN_FLAGS:
        return WireError("flags", hex(flags))
    has_mac = bool(flags & FLAG_MAC)
    expected = _HEADER.size + (MAC_SIZE if has_mac else 0)
    if len(payload) != expected:
        return WireError("length", f"{len(payload)} bytes, expected {expected}")
    if key is None and has_mac:
        return WireError("unexpected-mac", "a MAC, but no heartbeat_key_file here")
    if key is not None:
        if not has_mac:
            return WireError("unauthenticated", "no MAC")
        mac = hmac.new(key, payload[: _HEADER.size], hashlib.sha256).digest()
        if not hmac.compare_digest(mac, payload[_HEADER.size:]):
            return WireError("bad-mac")
    return Heartbeat("shoal", _STATES[state], _NODES[node], seq, ack, serial, authenticated=key is not None,
                     probe=bool(flags & FLAG_PROBE), yielded=bool(flags & FLAG_YIELDED),
                     private=bool(flags & FLAG_PRIVATE))


def plausible(payload: bytes) -> bool:
    """Whether `payload` has the shape of a heartbeat (a length one of the
    formats has, the shoal magic where it applies): a check cheap enough for
    a socket to make before it spends anything on a datagram (its rate
    budget among others).  `decode` still judges every byte."""
    size = len(payload)
    return size == _PIRANHA.size or (size in (_HEADER.size, _HEADER.size + MAC_SIZE) and payload[:4] == MAGIC)


def _check_key(key: bytes | None) -> None:
    if key is not None and not key:
        raise ValueError("an empty heartbeat key authenticates nothing")


def _decode_piranha(payload: bytes, key: bytes | None) -> Heartbeat | WireError:
    (magic,) = _PIRANHA.unpack(payload)
    if magic not in (PIRANHA_ACTIVE, PIRANHA_STANDBY):
        return WireError("magic", f"incompatible heartbeat {magic:#010x}")
    if key is not None:
        return WireError("unauthenticated", "piranha heartbeat while a key is configured")
    state: State = "active" if magic == PIRANHA_ACTIVE else "standby"
    return Heartbeat("piranha", state, None, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """The anti-replay sliding window of RFC 4303 section 3.4.3.

    `highest` is the highest sequence accepted; bit i of `bitmap` says that
    `highest - i` was accepted.  A sequence is accepted once, and only if
    it is above `highest - size`.  Sequence 0 is never valid, so
    `ReplayWindow(0, 0)` is a window that has seen nothing.
    """

    highest: int
    bitmap: int
    size: int = 64

    def __post_init__(self) -> None:
        if self.size < 1 or self.highest < 0 or not 0 <= self.bitmap < 1 << self.size:
            raise ValueError(f"not a replay window: {self!r}")

    def accept(self, seq: int) -> tuple[bool, ReplayWindow]:
        if seq <= 0:
            return False, self
        if seq > self.highest:
            shift = seq - self.highest
            bitmap = ((self.bitmap << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            return True, ReplayWindow(seq, bitmap, self.size)
        offset = self.highest - seq
        if offset >= self.size or self.bitmap >> offset & 1:
            return False, self
        return True, ReplayWindow(self.highest, self.bitmap | 1 << offset, self.size)
