"""Table keeping: what was applied to the kernel, what is desired, and drift.

Everything about the kernel's IPVS table as this router knows it lives here.
This module does not decide what a service holds (`engine.pool` does, from
the members `engine.registry` describes); the router's role does not
matter to it (both roles keep the table): it returns table operations and
notices.

Rules:

- the desired table is one entry per virtual (`engine.pool.desired_entry`),
  kept by `engine.desired`: recomputed for a virtual at start and reload,
  updated in place for one member's change; the whole table is
  `engine.pool.desired_table` of those entries;
- a recomputed virtual's change goes to the kernel at once as the minimal
  operations of `engine.diff` (of the destinations that changed, when the
  kernel holds the entry it replaces), whatever the router's role: a
  standby keeps the table in step, so that taking over is adding the
  addresses (the engine empties it only at shutdown);
- a virtual's quorum is kept with hysteresis across recomputes and reloads;
  a change is noticed (`quorum`);
- every batch of operations bumps the table generation; each `ReadTable`
  remembers the generation it was asked at, and reads are answered in the
  order asked.  A read asked before the last operations may miss them: it
  is discarded (`stale_reads`) and the table read again, never taken for
  drift.  One read at a time from the periodic check;
- a fresh read that differs from what was applied is drift (a change
  behind shoal's back, or a command that failed): counted, the reconciling
  operations kept for the status (`DRIFT_OPS_KEPT`), noticed, and carried
  out; one that matches what was applied but not what is desired is
  reconciled too;
- a table operation that failed makes the table be read again; a failed
  read drops the oldest pending one.
"""

from __future__ import annotations

from engine.desired import Change, Desired
from engine.diff import diff, diff_service
from engine.events import TABLE_OPS, Command, Notify, ReadTable, TableOp
from engine.model import Config, Virtual
from engine.pool import Member, desired_table, service_key
from engine.status import TableStatus, op_text
from engine.table import ServiceEntry, ServiceKey, Table

DRIFT_OPS_KEPT = 20  # reconciling operations kept in the status for the last drift


class Keeper:
    """The table of one router.  Mutable, owned by one `Engine`."""

    def __init__(self) -> None:
        self.applied: dict[ServiceKey, ServiceEntry] = {}
        self.wanted = Desired()  # the desired entries (by virtual name) and quorums
        self.service_keys: dict[str, ServiceKey | None] = {}
        self._gen = 0  # bumped whenever table operations go out
        self._reads: list[int] = []  # the generation each pending `ReadTable` was asked at, oldest first
        self._checks = 0
        self._stale_reads = 0
        self._drifts = 0
        self._last_drift_ms: int | None = None
        self._last_drift: tuple[str, ...] = ()

    def configure(self, config: Config) -> None:
        """A new config: every entry to be recomputed (`recompute`)."""
        self.wanted.reset()
        self.service_keys = {v.name: service_key(v) for v in config.virtuals}

    # ------------------------------------------------------------ desired

    @property
    def entries(self) -> dict[str, ServiceEntry | None]:
        """The desired entries, by virtual name."""
        return self.wanted.entries

    @property
    def quorum(self) -> dict[str, bool]:
        return self.wanted.quorum

    def recompute(self, config: Config, virtual: Virtual, members: list[Member]) -> None:
        """One virtual's entry, quietly (at start, adoption and reload)."""
        self.wanted.rebuild(config, virtual, members, self.service_keys[virtual.name])

    def refresh(self, config: Config, virtual: Virtual, members: list[Member]) -> list[Command]:
        """One virtual's entry after a change of its members, and the kernel's."""
        change = self.wanted.rebuild(config, virtual, members, self.service_keys[virtual.name])
        return self._changed(virtual.name, change)

    def refresh_member(self, config: Config, virtual: Virtual, member: Member) -> tuple[list[Command], bool]:
        """One member's change (`member`: its new view), as `refresh`; and
        whether the rest of its virtual may have changed too (rebuilt)."""
        change = self.wanted.member(config, virtual, member)
        return self._changed(virtual.name, change), change.dests is None

    def _changed(self, name: str, change: Change) -> list[Command]:
        out: list[Command] = []
        if change.quorum is not None:
            out.append(Notify("quorum", {"service": name, "ok": change.quorum}))
        old, new = change.old, change.new
        if change.same:
            return out
        key = (new or old).service.key  # type: ignore[union-attr]
        applied = self.applied.get(key)
        # The kernel holds the entry this one replaces: only the destinations that changed can differ.
        ops = diff_service(key, applied, new, change.dests if applied is old else None)
        out.extend(ops)
        if ops:
            self._gen += 1
        if new is None:
            self.applied.pop(key, None)
        else:
            self.applied[key] = new
        return out

    def desired(self) -> Table:
        return desired_table(self.entries)

    def apply(self, desired: Table) -> list[TableOp]:
        """The operations that bring the applied table to `desired` (now applied)."""
        ops = diff(self.applied, desired)
        self.applied = dict(desired)
        if ops:
            self._gen += 1
        return ops

    # ------------------------------------------------------------ reads

    def ask(self) -> ReadTable:
        self._reads.append(self._gen)
        return ReadTable()

    def check_due(self) -> list[Command]:
        """The periodic check: a read, unless one is pending (a slow driver does not pile them up)."""
        return [] if self._reads else [self.ask()]

    def failed(self, command: Command) -> list[Command]:
        if isinstance(command, ReadTable):
            if self._reads:  # reads are answered in order: the oldest pending one failed
                self._reads.pop(0)
        elif isinstance(command, TABLE_OPS):
            return [self.ask()]
        return []

    def read(self, table: Table, now_ms: int) -> list[Command]:
        """Reconcile: the kernel holds `table`; bring it to what we want (see the rules)."""
        asked = self._reads.pop(0) if self._reads else self._gen
        if asked != self._gen:
            self._stale_reads += 1
            return [] if self._reads else [self.ask()]
        self._checks += 1
        drifted = table != self.applied
        self.applied = dict(table)
        desired = self.desired()
        if not drifted and self.applied == desired:
            return []
        ops = self.apply(desired)
        texts = [op_text(op) for op in ops]
        if drifted:
            self._drifts += 1
            self._last_drift_ms = now_ms
            kept = texts[:DRIFT_OPS_KEPT]
            if len(texts) > len(kept):
                kept.append(f"... {len(texts) - len(kept)} more")
            self._last_drift = tuple(kept)
        return [*ops, Notify("drift", {
            "what": "kernel table differs from what was applied; reconciling" if drifted
                    else "applied table differs from the desired one; reconciling",
            "ops": len(ops), "diff": "; ".join(texts[:5]) + (f"; ... {len(texts) - 5} more" if len(texts) > 5 else ""),
        })]

    def status(self, check_interval_ms: int) -> TableStatus:
        return TableStatus(
            check_interval_ms=check_interval_ms, checks=self._checks, stale_reads=self._stale_reads,
            drifts=self._drifts, last_drift_ms=self._last_drift_ms, last_drift=self._last_drift,
        )
