"""From the applied table to the desired one: the minimal ordered operations.

The order (each group sorted by key, so the output is deterministic):

1. services added (`AddService`), then
2. services edited (`EditService`: scheduler, flags, persistence, pmask;
   a changed key is a delete and an add, never an edit),
3. destinations added (`AddDest`; a new service's come after it),
4. destinations edited (`EditDest`: weight or forwarding; one edit, never
   a delete and an add),
5. destinations deleted (`DelDest`),
6. services deleted (`DelService`; deleting a service removes its
   destinations, so they are not deleted one by one).

Adding before deleting means a service being moved from one real server to
another is never left empty in between.

Only the services that differ are walked: an entry shared by both tables
(the same object) is skipped by identity, an equal one by equality, and only
the keys that differ are sorted; so diffing a large table after one health
change costs a pass over its keys (see bench/diff.py).  `diff_service` told
which destinations may differ (the caller knows the rest are the same: the
engine after one member's change, `engine.desired`) looks at those only.

`apply` is the kernel's behaviour as a pure function: it refuses what IPVS
refuses, with the errno IPVS's netlink interface (`ip_vs_genl_set_cmd`)
gives: adding a service or destination that exists: EEXIST; any other
operation on a service that does not exist: ESRCH; editing or deleting a
destination that does not exist: ENOENT.  The simulator uses it as its model
of the kernel.
"""

from __future__ import annotations

from typing import Collection, Iterable, Mapping

from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, TableOp
from engine.table import Dest, DestKey, ServiceEntry, ServiceKey, Table


class TableOpError(ValueError):
    """An operation the kernel would refuse (`code` names its errno: EEXIST, ESRCH, ENOENT)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _split(
    key: ServiceKey, applied: ServiceEntry | None, desired: ServiceEntry | None,
    only: Collection[DestKey] | None = None,
) -> tuple[list[TableOp], list[TableOp], list[TableOp], list[TableOp], list[TableOp], list[TableOp]]:
    add_s: list[TableOp] = []
    edit_s: list[TableOp] = []
    add_d: list[TableOp] = []
    edit_d: list[TableOp] = []
    del_d: list[TableOp] = []
    del_s: list[TableOp] = []
    if applied is desired:
        pass
    elif desired is None:
        if applied is not None:
            del_s.append(DelService(key, applied.service.name))
    elif applied is None:
        add_s.append(AddService(desired.service))
        add_d.extend(AddDest(key, desired.dests[d]) for d in sorted(desired.dests))
    else:
        if applied.service != desired.service:
            edit_s.append(EditService(desired.service))
        old, new = applied.dests, desired.dests
        if only is not None:
            keys = sorted(only)
            add_d.extend(AddDest(key, new[d]) for d in keys if d in new and d not in old)
            edit_d.extend(EditDest(key, new[d]) for d in keys if d in new and d in old and old[d] != new[d])
            del_d.extend(DelDest(key, d, old[d].name) for d in keys if d in old and d not in new)
        elif old is not new and old != new:
            # Sort only what changed: most of a service's destinations did not.
            added = sorted(d for d in new if d not in old)
            edited = sorted(d for d, dest in new.items() if d in old and old[d] != dest)
            removed = sorted(d for d in old if d not in new)
            add_d.extend(AddDest(key, new[d]) for d in added)
            edit_d.extend(EditDest(key, new[d]) for d in edited)
            del_d.extend(DelDest(key, d, old[d].name) for d in removed)
    return add_s, edit_s, add_d, edit_d, del_d, del_s


def diff_service(
    key: ServiceKey, applied: ServiceEntry | None, desired: ServiceEntry | None,
    only: Collection[DestKey] | None = None,
) -> list[TableOp]:
    """The operations for one service, in the module's order (`only`: the
    destinations that may differ, when the caller knows every other one is
    the same in both; None: any)."""
    groups = _split(key, applied, desired, only)
    return [op for group in groups for op in group]


def diff(applied: Table, desired: Table) -> list[TableOp]:
    """The minimal ordered operations that turn `applied` into `desired`."""
    if applied is desired:
        return []
    # Find the services that differ without sorting the whole table: an entry
    # shared by both tables is the same (identity), an equal one is the same
    # (equality; walks its destinations), and only what differs is sorted.
    changed = [key for key, new in desired.items() if (old := applied.get(key)) is not new and old != new]
    changed.extend(key for key in applied if key not in desired)
    changed.sort()
    groups: tuple[list[TableOp], ...] = ([], [], [], [], [], [])
    for key in changed:
        for into, part in zip(groups, _split(key, applied.get(key), desired.get(key))):
            into.extend(part)
    return [op for group in groups for op in group]


def apply(table: Table, ops: Iterable[TableOp]) -> dict[ServiceKey, ServiceEntry]:
    """A new table with `ops` carried out in order; `table` is never mutated.

    The first operation the kernel would refuse raises `TableOpError` and
    nothing is returned: to model the kernel carrying out the operations
    before a refused one, apply them one at a time (as the simulator does).
    """
    out: dict[ServiceKey, ServiceEntry] = dict(table)
    for op in ops:
        match op:
            case AddService(service):
                if service.key in out:
                    raise TableOpError("EEXIST", f"service {service.key} exists")
                out[service.key] = ServiceEntry(service, {})
            case EditService(service):
                entry = _entry(out, service.key)
                out[service.key] = ServiceEntry(service, entry.dests)
            case DelService(key):
                _entry(out, key)
                del out[key]
            case AddDest(key, dest):
                entry = _entry(out, key)
                if dest.key in entry.dests:
                    raise TableOpError("EEXIST", f"destination {dest.key} exists in {key}")
                out[key] = ServiceEntry(entry.service, _with(entry.dests, dest))
            case EditDest(key, dest):
                entry = _entry(out, key)
                if dest.key not in entry.dests:
                    raise TableOpError("ENOENT", f"no destination {dest.key} in {key}")
                out[key] = ServiceEntry(entry.service, _with(entry.dests, dest))
            case DelDest(key, dkey):
                entry = _entry(out, key)
                if dkey not in entry.dests:
                    raise TableOpError("ENOENT", f"no destination {dkey} in {key}")
                dests = dict(entry.dests)
                del dests[dkey]
                out[key] = ServiceEntry(entry.service, dests)
            case _:
                raise TypeError(f"not a table operation: {op!r}")
    return out


def _entry(table: Mapping[ServiceKey, ServiceEntry], key: ServiceKey) -> ServiceEntry:
    entry = table.get(key)
    if entry is None:
        raise TableOpError("ESRCH", f"no service {key}")
    return entry


def _with(dests: Mapping[DestKey, Dest], dest: Dest) -> dict[DestKey, Dest]:
    out = dict(dests)
    out[dest.key] = dest
    return out
