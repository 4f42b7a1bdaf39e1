"""The overrides datagram: the operator's drains and weights, sent to the
partner on the heartbeat port (engine.sync decides when).  Signed always:
there is no unsigned form, so a pair without `heartbeat_key_file` never
sends one and ignores any it receives.

| offset | size | field                                                  |
|--------|------|--------------------------------------------------------|
|      0 |    4 | magic `SHOV`                                           |
|      4 |    1 | version (1)                                            |
|      5 |    1 | origin: whose change the set is (0 primary, 1 backup)  |
|      6 |    2 | count of entries                                       |
|      8 |    8 | generation (u64): the set's Lamport clock               |
|     16 |    8 | sender's serial_no (u64)                                |
|     24 |  ... | entries: virtual (u8 length + UTF-8), server (u8 length |
|        |      | + UTF-8), action (u8: drain, weight, force_down,        |
|        |      | force_up), weight (u16; 0 unless `weight`)              |
|    end |   32 | HMAC-SHA256 of everything before it                     |

At most `MAX_SIZE` bytes (about 150 entries of short names): a larger set
is not sent (engine.sync says so), never cut, since a missing entry would
read as "undrained".
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Literal

MAGIC = b"SHOV"
VERSION = 1
MAC_SIZE = 32
MAX_SIZE = 4096
ACTIONS = ("drain", "weight", "force_down", "force_up")
_NODES: tuple[Literal["primary", "backup"], ...] = ("primary", "backup")
_HEADER = struct.Struct("!4sBBHQQ")
_U64 = 2**64


@dataclass(frozen=True, slots=True)
class Entry:
    virtual: str
    server: str
    action: str  # one of ACTIONS
    weight: int = 0


@dataclass(frozen=True, slots=True)
class Overrides:
    origin: Literal["primary", "backup"]  # whose change (the sender is known by its address)
    generation: int
    serial_no: int
    entries: tuple[Entry, ...]


class TooLarge(ValueError):
    """The set does not fit one datagram."""


def encode(message: Overrides, key: bytes) -> bytes:
    if not key:
        raise ValueError("the overrides datagram is always signed: no key, no datagram")
    if not (0 <= message.generation < _U64 and 0 <= message.serial_no < _U64):
        raise ValueError("generation and serial_no are u64")
    body = bytearray(_HEADER.pack(MAGIC, VERSION, _NODES.index(message.origin), len(message.entries),
                                  message.generation, message.serial_no))
    for e in message.entries:
        virtual, server = e.virtual.encode(), e.server.encode()
        if len(virtual) > 255 or len(server) > 255 or e.action not in ACTIONS or not 0 <= e.weight <= 65535:
            raise ValueError(f"an entry that cannot be sent: {e.virtual}/{e.server} {e.action}")
        body += bytes([len(virtual)]) + virtual + bytes([len(server)]) + server
        body += struct.pack("!BH", ACTIONS.index(e.action), e.weight)
    if len(body) + MAC_SIZE > MAX_SIZE:
        raise TooLarge(f"{len(message.entries)} overrides take {len(body) + MAC_SIZE} bytes, "
                       f"more than one datagram ({MAX_SIZE})")
    return bytes(body) + hmac.new(key, bytes(body), hashlib.sha256).digest()


def plausible(payload: bytes) -> bool:
    """The shape of an overrides datagram (cheap: a socket checks it first)."""
    return _HEADER.size + MAC_SIZE <= len(payload) <= MAX_SIZE and payload[:4] == MAGIC


def decode(payload: bytes, key: bytes | None) -> Overrides | str:
    """The message, or why it is refused (a short reason for a counter)."""
    if key is None:
        return "unsigned-pair"
    if not plausible(payload):
        return "shape"
    body, mac = payload[:-MAC_SIZE], payload[-MAC_SIZE:]
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), mac):
        return "bad-mac"
    magic, version, node, count, generation, serial_no = _HEADER.unpack_from(body)
    if version != VERSION or node > 1:
        return "version"
    entries = []
    at = _HEADER.size
    try:
        for _ in range(count):
            vlen = body[at]
            virtual = body[at + 1:at + 1 + vlen].decode()
            at += 1 + vlen
            slen = body[at]
            server = body[at + 1:at + 1 + slen].decode()
            at += 1 + slen
            action, weight = struct.unpack_from("!BH", body, at)
            at += 3
            if action >= len(ACTIONS) or len(virtual.encode()) != vlen or len(server.encode()) != slen:
                return "entry"
            entries.append(Entry(virtual, server, ACTIONS[action], weight if ACTIONS[action] == "weight" else 0))
    except (IndexError, struct.error, UnicodeDecodeError):
        return "entry"
    if at != len(body):
        return "entry"
    return Overrides(_NODES[node], generation, serial_no, tuple(entries))
