"""The desired table kept per member: one member's change costs the same at 10 and at 10,000 real servers.

`engine.pool.desired_entry` computes a virtual's entry from all its
members.  This module keeps each virtual's entry, its quorum and the two
tallies they depend on (the configured weight of the members up; how many
members would be in the table at a weight above 0), so that a change of one
member updates one destination instead of recomputing the virtual (issue
13).  It does not know what the kernel holds (`engine.keeper` does) nor how
a member stands (`engine.registry` says, as `engine.pool.Member` views).

Rules:

- `rebuild` computes a virtual's entry from scratch, with `engine.pool`'s
  functions (at start, adoption, reload, the partner's overrides): the
  reference every other path must agree with;
- `member` takes one member's new view: the quorum's tally moves by its
  configured weight; a quorum that flips rebuilds the virtual; otherwise
  only that member's destination changes, and the sorry server's when the
  virtual stops or starts serving (no member in at a weight above 0);
- a virtual where two members share a destination (address and port), or
  a member shares the sorry server's, or a member is named `sorry`, is
  always rebuilt: the from-scratch rules decide which destination wins;
- the entry after any sequence of `member` calls equals
  `engine.pool.desired_entry` of the same members
  (tests/engine/test_desired.py); the order of a service's destinations is
  not part of it (every output sorts them);
- an entry is a value: a change makes a new `ServiceEntry` (its
  destinations a copy with the one change), never edits one handed out.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import Config, Virtual
from engine.pool import Member, dest_port, desired_entry, quorum_holds, quorum_state, weight_in_table
from engine.table import FORWARD_OF_NETWORK, Dest, DestKey, ServiceEntry, ServiceKey

SORRY = "sorry"  # the name of the sorry server's destination (engine.pool)


@dataclass(frozen=True, slots=True)
class Change:
    """What one update did to a virtual's entry."""

    old: ServiceEntry | None
    new: ServiceEntry | None
    quorum: bool | None = None  # the quorum's new state when it flipped; None: it did not
    dests: tuple[DestKey, ...] | None = None  # the only destinations that may differ; None: any (rebuilt)

    @property
    def same(self) -> bool:
        """Whether the entry is unchanged."""
        if self.dests is not None:
            return not self.dests
        return self.new == self.old


@dataclass(slots=True)
class _Kept:
    """One virtual's members and tallies (mutable, private to `Desired`)."""

    key: ServiceKey | None  # the virtual's service (None: it has none)
    views: dict[str, Member]  # by server name, in config order
    up_weight: int  # configured weight of the members up (quorum)
    serving: int  # members that would be in at a weight above 0 (sorry server)
    in_place: bool  # a member's change may be made in place (see the rules)


class Desired:
    """Every virtual's desired entry and quorum.  Mutable, owned by one `Keeper`."""

    def __init__(self) -> None:
        self.entries: dict[str, ServiceEntry | None] = {}  # by virtual name
        self.quorum: dict[str, bool] = {}  # kept across reloads (hysteresis)
        self.sorry_in: dict[str, bool] = {}  # whether a destination named "sorry" is in the entry
        self._kept: dict[str, _Kept] = {}

    def reset(self) -> None:
        """A new config: every entry to be rebuilt."""
        self.entries = {}
        self.sorry_in = {}
        self._kept = {}

    def rebuild(self, config: Config, virtual: Virtual, members: list[Member], key: ServiceKey | None) -> Change:
        """One virtual's entry from scratch (`key`: its service key, None: no service)."""
        name = virtual.name
        old = self.entries.get(name)
        was_ok = self.quorum.get(name, True)
        ok = quorum_state(virtual, members, was_ok)
        self.quorum[name] = ok
        new = desired_entry(config, virtual, members, ok, key) if key else None
        self.entries[name] = new
        self.sorry_in[name] = new is not None and any(d.name == SORRY for d in new.dests.values())
        views = {m.name: m for m in members}
        dkeys = {DestKey(m.address, m.port) for m in members}
        sorry = None if virtual.sorry_server is None else \
            DestKey(virtual.sorry_server, dest_port(virtual, virtual.sorry_port))
        in_place = len(views) == len(members) == len(dkeys) and sorry not in dkeys and SORRY not in views
        self._kept[name] = _Kept(
            key=key,
            views=views,
            up_weight=sum(m.configured_weight for m in members if m.standing == "up"),
            serving=sum(1 for m in members if (weight_in_table(virtual, m) or 0) > 0),
            in_place=in_place,
        )
        return Change(old, new, ok if ok != was_ok else None)

    def member(self, config: Config, virtual: Virtual, view: Member) -> Change:
        """One member's new view (the rules say when this rebuilds the virtual)."""
        name = virtual.name
        kept = self._kept[name]
        entry = self.entries[name]
        old_view = kept.views[view.name]
        if view == old_view:
            return Change(entry, entry, dests=())
        kept.views[view.name] = view
        if not kept.in_place:
            return self.rebuild(config, virtual, list(kept.views.values()), kept.key)
        kept.up_weight += (view.configured_weight if view.standing == "up" else 0) - \
            (old_view.configured_weight if old_view.standing == "up" else 0)
        was_ok = self.quorum[name]
        if quorum_holds(virtual, kept.up_weight, was_ok) != was_ok:
            return self.rebuild(config, virtual, list(kept.views.values()), kept.key)
        old_weight, new_weight = weight_in_table(virtual, old_view), weight_in_table(virtual, view)
        serving_before = kept.serving > 0
        kept.serving += ((new_weight or 0) > 0) - ((old_weight or 0) > 0)
        if entry is None or old_weight == new_weight or not (was_ok or virtual.sorry_server is None):
            return Change(entry, entry, dests=())  # no service, the same weight, or the members out (quorum lost)
        forward = FORWARD_OF_NETWORK[config.network]
        dests = dict(entry.dests)
        dkey = DestKey(view.address, view.port)
        changed = [dkey]
        if new_weight is None:
            del dests[dkey]
        else:
            dests[dkey] = Dest(dkey, new_weight, forward, view.name)
        serving = kept.serving > 0
        if virtual.sorry_server is not None and serving != serving_before:
            skey = DestKey(virtual.sorry_server, dest_port(virtual, virtual.sorry_port))
            changed.append(skey)
            if serving:
                del dests[skey]
            else:
                dests[skey] = Dest(skey, 1, forward, SORRY)
            self.sorry_in[name] = not serving
        new = ServiceEntry(entry.service, dests)
        self.entries[name] = new
        return Change(entry, new, dests=tuple(changed))
