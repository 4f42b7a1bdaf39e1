"""The journal's encoding of the engine's inputs and commands: JSON values,
compact, canonical, and decoded back into equal objects.

    value = encode_input(event)      # a list: [tag, field, ...], JSON-ready
    event = decode_input(value)      # equal to the original (CodecError if not an encoding)
    value = encode_command(command)  # the same for commands

The rules that keep it honest:

- One row per type of `engine.events.Input` and `Command` (the tests check
  that every type of both unions round-trips); a type without a row is a
  `CodecError` at the writer, never a silently lost record.
- An encoding is a list whose first item is the type's tag (its class name);
  the other items are the fields in their declared order.  Bytes are
  base64 text; a table is a list of services, each with its destinations
  in the order the table holds them; a set (`LinksChanged.down`) is sorted.
- Canonical: equal objects encode to equal values, so a replay compares
  encodings (what `json.loads` gives back of a journal line compares equal
  to a fresh encoding: lists, never tuples).
- `ConfigLoaded` carries the configuration as the lvs.cf text it was
  parsed from (`engine.config.render` of an unchanged config gives the
  text back, comments and all) and the heartbeat key only as a fingerprint
  (`key_fingerprint`): a journal never holds the key.  Decoding it needs the
  key itself (`decode_input(value, keys=...)`), looked up by fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import fields
from operator import attrgetter
from typing import Any

from engine.config import ConfigError, parse, render
from engine.events import (
    AddDest, AddService, AddVip, AdminRequested, AdvertReceived, CheckCompleted, CheckSpec, Command, CommandFailed,
    ConfigLoaded, DelDest, DelService, DelVip, EditDest, EditService, HeartbeatReceived, Input, LinksChanged, LoadRead,
    Notify, ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts,
    ShutdownRequested, StartCheck, StartSyncDaemon, StopSyncDaemon, TableRead, Tick,
)
from engine.model import Config
from engine.table import Dest, DestKey, Service, ServiceEntry, ServiceKey, Table

Value = list[Any]


class CodecError(ValueError):
    """Not an encoding this module wrote (or a type it has no row for)."""


def key_fingerprint(key: bytes | None) -> str | None:
    """What a journal says of a heartbeat key: the first 16 hex digits of its SHA-256."""
    return None if key is None else hashlib.sha256(key).hexdigest()[:16]


def config_text(config: Config) -> str:
    """The lvs.cf text `config` was parsed from (or the writer's rendering of it)."""
    return render(config)


# ---------------------------------------------------------------- table values


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise CodecError(f"expected base64 text, found {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as e:
        raise CodecError(f"not base64: {e}") from None


def _skey(k: ServiceKey) -> Value:
    return [k.protocol, k.address, k.port, k.fwmark, k.family]


def _service(s: Service) -> Value:
    return [_skey(s.key), s.scheduler, list(s.sched_flags), s.persistent_s, s.pmask, s.name]


def _dest(d: Dest) -> Value:
    return [[d.key.address, d.key.port], d.weight, d.forward, d.name]


def _table(table: Table) -> Value:
    return [[_service(e.service), [_dest(d) for d in e.dests.values()]] for e in table.values()]


def _unskey(v: Any) -> ServiceKey:
    return ServiceKey(*v)


def _unservice(v: Any) -> Service:
    key, scheduler, flags, persistent_s, pmask, name = v
    return Service(_unskey(key), scheduler, tuple(flags), persistent_s, pmask, name)


def _undest(v: Any) -> Dest:
    (address, port), weight, forward, name = v
    return Dest(DestKey(address, port), weight, forward, name)


def _untable(v: Any) -> Table:
    out: dict[ServiceKey, ServiceEntry] = {}
    for service_v, dests_v in v:
        service = _unservice(service_v)
        dests = [_undest(d) for d in dests_v]
        out[service.key] = ServiceEntry(service, {d.key: d for d in dests})
    return out


# ---------------------------------------------------------------- commands

# Commands whose fields are all JSON scalars (or, for Notify, a flat mapping).
_FLAT_COMMANDS: tuple[type, ...] = (AddVip, DelVip, SendGratuitousArp, SetTimeouts, StartSyncDaemon, StopSyncDaemon,
                                    ReadTable, ReadLoad, RunCommand)


def _getter(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """The fields of a `cls`, in declared order, as a tuple (attrgetter: one C call)."""
    names = tuple(f.name for f in fields(cls))
    if len(names) > 1:
        return attrgetter(*names)
    return lambda o: tuple(getattr(o, name) for name in names)


_GETTERS = {cls: _getter(cls) for cls in (*_FLAT_COMMANDS, CheckSpec, CheckCompleted, LoadRead, AdminRequested)}
_CHECK_SPEC = _GETTERS[CheckSpec]


_SPECS: dict[int, tuple[CheckSpec, Value]] = {}  # by identity: the engine keeps one spec a check


def _spec(spec: CheckSpec) -> Value:
    """A check's spec, encoded once per spec object (a check's spec is the same object every
    time it starts; the entry holds it, so its id is not reused while cached)."""
    hit = _SPECS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_SPECS) >= 65536:
        _SPECS.clear()
    value = list(_CHECK_SPEC(spec))
    _SPECS[id(spec)] = (spec, value)
    return value


def encode_command(c: Command) -> Value:
    cls = type(c)
    getter = _GETTERS.get(cls)
    if getter is not None:
        return [cls.__name__, *getter(c)]
    match c:
        case SendHeartbeat(path, address, port, payload):
            return ["SendHeartbeat", path, address, port, _b64(payload)]
        case SendAdvert(payload):
            return ["SendAdvert", _b64(payload)]
        case StartCheck(check_id, spec):
            return ["StartCheck", check_id, _spec(spec)]
        case Notify(kind, data):
            return ["Notify", kind, dict(data)]
        case AddService(service) | EditService(service):
            return [cls.__name__, _service(service)]
        case DelService(key, name):
            return ["DelService", _skey(key), name]
        case AddDest(service, dest) | EditDest(service, dest):
            return [cls.__name__, _skey(service), _dest(dest)]
        case DelDest(service, dest, name):
            return ["DelDest", _skey(service), [dest.address, dest.port], name]
    raise CodecError(f"no journal encoding for a {cls.__name__}")


_FLAT_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in _FLAT_COMMANDS}


def decode_command(v: Any) -> Command:
    try:
        tag, *rest = v
        cls = _FLAT_BY_NAME.get(tag)
        if cls is not None:
            return cls(*rest)  # type: ignore[no-any-return]
        match tag:
            case "SendHeartbeat":
                path, address, port, payload = rest
                return SendHeartbeat(path, address, port, _unb64(payload))
            case "SendAdvert":
                return SendAdvert(_unb64(rest[0]))
            case "StartCheck":
                check_id, spec = rest
                return StartCheck(check_id, CheckSpec(*spec))
            case "Notify":
                kind, data = rest
                if not isinstance(data, dict):
                    raise CodecError("a Notify's data must be an object")
                return Notify(kind, data)
            case "AddService":
                return AddService(_unservice(rest[0]))
            case "EditService":
                return EditService(_unservice(rest[0]))
            case "DelService":
                return DelService(_unskey(rest[0]), rest[1])
            case "AddDest":
                return AddDest(_unskey(rest[0]), _undest(rest[1]))
            case "EditDest":
                return EditDest(_unskey(rest[0]), _undest(rest[1]))
            case "DelDest":
                (address, port) = rest[1]
                return DelDest(_unskey(rest[0]), DestKey(address, port), rest[2])
    except CodecError:
        raise
    except (TypeError, ValueError) as e:
        raise CodecError(f"not a command's encoding: {e}") from None
    raise CodecError(f"not a command: {str(tag)[:40]}")


# ---------------------------------------------------------------- inputs


def encode_input(event: Input) -> Value:
    match event:
        case Tick():
            return ["Tick"]
        case HeartbeatReceived(path, source, payload):
            return ["HeartbeatReceived", path, source, _b64(payload)]
        case AdvertReceived(source, destination, ttl, payload):
            return ["AdvertReceived", source, destination, ttl, _b64(payload)]
        case CheckCompleted() | LoadRead() | AdminRequested():
            return [type(event).__name__, *_GETTERS[type(event)](event)]
        case ConfigLoaded(config, key):
            return ["ConfigLoaded", config_text(config), key_fingerprint(key)]
        case CommandFailed(command, error):
            return ["CommandFailed", encode_command(command), error]
        case TableRead(table, vips):
            return ["TableRead", _table(table), *([sorted(vips)] if vips else [])]
        case ShutdownRequested():
            return ["ShutdownRequested"]
        case LinksChanged(down):
            return ["LinksChanged", sorted(down)]
    raise CodecError(f"no journal encoding for a {type(event).__name__}")


def decode_input(v: Any, keys: Mapping[str, bytes] | None = None, filename: str = "lvs.cf") -> Input:
    """The input `v` encodes; a `ConfigLoaded` is parsed from its text (as
    `filename`) and given the key of its fingerprint from `keys` (KeyError
    naming the fingerprint when `keys` lacks it)."""
    try:
        tag, *rest = v
        match tag:
            case "Tick":
                return Tick()
            case "HeartbeatReceived":
                path, source, payload = rest
                return HeartbeatReceived(path, source, _unb64(payload))
            case "AdvertReceived":
                source, destination, ttl, payload = rest
                return AdvertReceived(source, destination, ttl, _unb64(payload))
            case "CheckCompleted":
                check_id, ok, detail = rest
                return CheckCompleted(check_id, ok, detail)
            case "LoadRead":
                load_id, load = rest
                return LoadRead(load_id, load)
            case "AdminRequested":
                return AdminRequested(*rest)
            case "ConfigLoaded":
                text, fingerprint = rest
                key = None if fingerprint is None else (keys or {})[fingerprint]
                try:
                    return ConfigLoaded(parse(text, filename), key)
                except ConfigError as e:
                    raise CodecError(f"the reloaded lvs.cf does not parse: {e.issues[0]}") from None
            case "CommandFailed":
                command, error = rest
                return CommandFailed(decode_command(command), error)
            case "TableRead":
                return TableRead(_untable(rest[0]), frozenset(rest[1]) if len(rest) > 1 else frozenset())
            case "ShutdownRequested":
                return ShutdownRequested()
            case "LinksChanged":
                return LinksChanged(frozenset(rest[0]))
    except (CodecError, KeyError):
        raise
    except (TypeError, ValueError) as e:
        raise CodecError(f"not an input's encoding: {e}") from None
    raise CodecError(f"not an input: {str(tag)[:40]}")
