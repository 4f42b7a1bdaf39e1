"""What an active router holds besides the table: VIPs, ARP rounds, the sync daemon.

Everything about the addresses this router holds lives here.  This module
does not decide when the router is active (`engine.failover` does; the
engine carries it out) nor what time it is: it returns commands, and says
when the next ARP round is due.

Rules:

- an active router holds each active virtual's address once, in config
  order, then the `nat_router` address (`vip_nmask` / `nat_nmask` give the
  prefix; the device is the label up to its `:`); a standby router holds
  none;
- changing what is held adds what is wanted and not held (in order) and
  removes the rest (in reverse order);
- a takeover (or a re-announce) sends `arp_count` gratuitous ARPs for every
  held address, the first round at once, then one round every
  `arp_interval`; an address added by a reload gets its own `arp_count`; a
  removed one gets no more; a re-announce comes at most once per
  `arp_interval` (both paths' heartbeats often arrive together);
- the sync daemon runs `backup` from start (with `syncdaemon = 1`),
  `master` while active, and stops when the router leaves; changing it
  stops the old state first;
- booting over an empty kernel table, the router starts standby: every
  configured address still on an interface (a previous life crashed with
  it) is removed, with one notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.events import AddVip, Command, DelVip, Notify, SendGratuitousArp, StartSyncDaemon, StopSyncDaemon
from engine.model import Config
from engine.pool import prefix_of

SyncState = Literal["master", "backup"]


@dataclass(frozen=True, slots=True)
class Vip:
    """An address this router holds when active."""

    address: str
    prefix: int  # from vip_nmask / nat_nmask; 32 (128) when unset
    device: str  # the interface ("eth0")
    label: str  # the alias ("eth0:1"), or "" when the config names none

    @classmethod
    def of(cls, address: str, mask: str | None, device: str | None) -> Vip:
        label = device or ""
        return cls(address, prefix_of(mask, address), label.split(":", 1)[0], label)

    def add(self) -> AddVip:
        return AddVip(self.address, self.prefix, self.device, self.label)

    def delete(self) -> DelVip:
        return DelVip(self.address, self.prefix, self.device, self.label)


def wanted_vips(config: Config) -> tuple[Vip, ...]:
    """What an active router holds under `config`: each active virtual's address once, in config
    order, then the `nat_router` address."""
    wanted: list[Vip] = []
    seen: set[str] = set()
    for virtual in config.virtuals:
        if virtual.active and virtual.address and virtual.address not in seen:
            seen.add(virtual.address)
            wanted.append(Vip.of(virtual.address, virtual.vip_nmask, virtual.device))
    if config.nat_router and config.nat_router not in seen:
        wanted.append(Vip.of(config.nat_router, config.nat_nmask, config.nat_router_device))
    return tuple(wanted)


class Holding:
    """The VIPs, ARP rounds and sync daemon state of one router.  Mutable, owned by one `Engine`."""

    def __init__(self) -> None:
        self.held: tuple[Vip, ...] = ()
        self.addresses: tuple[str, ...] = ()  # the held addresses, for the status
        self.sync_state: SyncState | None = None
        self._wanted: tuple[Vip, ...] = ()
        self._wanted_for: Config | None = None
        self._arps_left: dict[str, tuple[str, int]] = {}  # address -> (device, ARPs still to send)
        self._last_rearp_ms = -(2**62)

    def wanted(self, config: Config) -> tuple[Vip, ...]:
        """The addresses an active router holds under `config` (cached per config)."""
        if self._wanted_for is not config:
            self._wanted, self._wanted_for = wanted_vips(config), config
        return self._wanted

    def leftovers(self, config: Config) -> list[Command]:
        """Booting standby over an empty table: remove every configured VIP
        (the driver's delete is a no-op for an address that is not there)."""
        wanted = self.wanted(config)
        if not wanted:
            return []
        return [Notify("vip_cleanup", {"reason": "starting standby: configured VIPs removed if present",
                                       "addresses": " ".join(v.address for v in wanted)}),
                *(vip.delete() for vip in reversed(wanted))]

    def hold(self, wanted: tuple[Vip, ...]) -> list[Command]:
        """Add what is wanted and not held (in order), remove the rest (reverse order)."""
        out: list[Command] = []
        held = set(self.held)
        for vip in reversed(self.held):
            if vip not in wanted:
                out.append(vip.delete())
                self._arps_left.pop(vip.address, None)
        for vip in wanted:
            if vip not in held:
                out.append(vip.add())
        self.held = wanted
        self.addresses = tuple(v.address for v in wanted)
        return out

    def release(self) -> list[Command]:
        """Give every address up; no more ARP rounds."""
        out = self.hold(())
        self._arps_left.clear()
        return out

    # ------------------------------------------------------------ ARP

    def announce(self, arp_count: int) -> None:
        """A new round of gratuitous ARPs for every held address (`arp_round` sends the first)."""
        for vip in self.held:
            self._arps_left[vip.address] = (vip.device, arp_count)

    def announce_new(self, before: set[str], arp_count: int) -> bool:
        """ARPs for the held addresses not in `before` (a reload added them); whether there are any."""
        new = [v for v in self.held if v.address not in before]
        for vip in new:
            self._arps_left[vip.address] = (vip.device, arp_count)
        return bool(new)

    def rearp_allowed(self, now_ms: int, arp_interval_ms: int) -> bool:
        """One re-announce per `arp_interval` at most (this one counts)."""
        if now_ms - self._last_rearp_ms < arp_interval_ms:
            return False
        self._last_rearp_ms = now_ms
        return True

    def arp_round(self) -> list[Command]:
        """One gratuitous ARP per address with some left; `arping` says whether another round is due."""
        out: list[Command] = []
        for address in list(self._arps_left):
            device, left = self._arps_left[address]
            out.append(SendGratuitousArp(address, device))
            if left <= 1:
                del self._arps_left[address]
            else:
                self._arps_left[address] = (device, left - 1)
        return out

    @property
    def arping(self) -> bool:
        return bool(self._arps_left)

    # ------------------------------------------------------------ sync daemon

    def sync(self, config: Config, state: SyncState | None) -> list[Command]:
        """The sync daemon in `state` (None: stopped)."""
        if not config.syncdaemon or state == self.sync_state:
            return []
        out: list[Command] = []
        if self.sync_state is not None:
            out.append(StopSyncDaemon(self.sync_state))
        if state is not None:
            out.append(StartSyncDaemon(state, config.syncd_iface, config.syncd_id))
        self.sync_state = state
        return out
