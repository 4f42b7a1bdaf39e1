"""The operator's rules, a part of `Engine` kept in a module of its own:
a request (drain, undrain, weight, force_*, failover) refused with a
reason or carried out, and the overrides shared with the partner
(`engine.sync`: sent on every change and on its timer, a newer set from the
partner taken in place of ours).  They span machines (the registry, the
failover, the sync), as every rule of `engine.engine` does.
"""

from __future__ import annotations

from engine import overrides_wire
from engine.events import AdminRequested, Command, Notify, Path
from engine.failover import Failover
from engine.vrrp_failover import VrrpFailover
from engine.model import Config
from engine.registry import MemberKey, Override, Registry
from engine.sync import Sync


class OperatorRules:
    # What these rules use of the engine (engine.engine.Engine has them all).
    config: Config
    now_ms: int | None
    failover: Failover | VrrpFailover
    registry: Registry
    sync: Sync

    def _refresh(self, virtual_name: str, out: list[Command]) -> None:
        raise NotImplementedError  # Engine's

    def _refresh_member(self, key: MemberKey, out: list[Command]) -> None:
        raise NotImplementedError  # Engine's

    def admin_refusal(self, request: AdminRequested) -> str | None:
        """Why `request` would be refused now, in the operator's terms; None:
        it would be carried out.  A pure query: the driver answers the
        operator with it, and `step` asks again (the state may have moved
        between the two).  A failover's conditions: `Failover.handover_refusal`.
        """
        if request.action == "failover":
            return self.failover.handover_refusal(self.now_ms or 0)
        return self.registry.refusal(request)

    def _admin(self, request: AdminRequested, out: list[Command]) -> None:
        refusal = self.admin_refusal(request)
        if refusal is not None:
            data: dict[str, str | int | None] = {"action": request.action, "server": request.server}
            if request.action == "weight":
                data["weight"] = request.weight
            out.append(Notify("admin_refused", {**data, "reason": refusal}))
            return
        if request.action == "failover":  # make before break: the VIPs go when the partner has them
            out.extend(self.failover.hand_over(self.now_ms or 0))
            return
        for key in self.registry.matching(request.server, request.virtual):
            self.registry.override(key, request.action, request.weight)
            self._refresh_member(key, out)
        if not request.replayed:
            self.sync.changed()
            self._send_overrides(out)

    def _send_overrides(self, out: list[Command]) -> None:
        fo = self.failover
        if fo.key is not None and fo.enabled:
            out.extend(self.sync.sends(self.overrides, self.config.serial_no, fo.key,
                                       [(p, fo.partner_address(p)) for p in fo.paths], self.config.heartbeat_port))

    def _overrides_received(self, now_ms: int, path: Path, source: str, payload: bytes, out: list[Command]) -> None:
        fo = self.failover
        ours = fo.enabled and path in fo.paths and source == fo.partner_address(path)
        message = overrides_wire.decode(payload, fo.key) if ours else "foreign"
        if isinstance(message, str):
            self.sync.counters["overrides_ignored"] += 1
            return
        decision = self.sync.received(message, now_ms, self.config.keepalive_ms)
        if decision == "answer":
            self._send_overrides(out)
        elif decision == "take":
            for virtual in self.registry.replace_overrides(message.entries):
                self._refresh(virtual, out)
            out.append(Notify("overrides", {"from": "partner", "generation": message.generation,
                                            "count": len(message.entries)}))

    @property
    def overrides(self) -> tuple[Override, ...]:
        """The operator's overrides in force (drain, weight, force_*), in
        config order: what a driver keeps across restarts and replays, as
        `Override.request()`, after its first step."""
        return self.registry.overrides()
