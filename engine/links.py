"""monitor_links: which interfaces the router needs have no link, and what
a change asks of the engine.

The driver says which interfaces a router needs (its VIPs', `nat_router`'s,
its heartbeat paths') and sends the set of those without link after every
change (`LinksChanged`).  PIRANHA.md: with `monitor_links = 1` "a link down
on a VIP interface makes the router give up".  The rules:

| change                                   | monitor_links = 1                   | = 0   |
|------------------------------------------|-------------------------------------|-------|
| a needed link goes down, none was        | give up if active: release, tell    | noted |
|                                          | the partner (`leaving`: it takes    |       |
|                                          | over at once)                       |       |
| while a link is down                     | take nothing (no verdict to go      | -     |
|                                          | active is carried out)              |       |
| the last one comes back                  | the usual rules, now                | noted |
|                                          | (`Failover.links_back`)             |       |
| one comes back while active              | re-announce the VIPs (the gratuitous ARPs sent  |
|                                          | while it was down never left)               |
| a reload turns monitor_links on / off    | as if the links had just gone down / come back |
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.events import Notify
from engine.model import Config


@dataclass(frozen=True, slots=True)
class LinkChange:
    notice: Notify
    give_up: bool  # the router became unfit: an active one gives up
    back: bool  # it is fit again: the usual rules decide now
    rearp: bool  # a link came back: an active router re-announces


class Links:
    def __init__(self) -> None:
        self.down: frozenset[str] = frozenset()

    def unfit(self, config: Config) -> bool:
        """A link this router needs is down and `monitor_links = 1`: it takes nothing."""
        return config.monitor_links and bool(self.down)

    def change(self, down: frozenset[str], config: Config) -> LinkChange | None:
        before, was_unfit = self.down, self.unfit(config)
        if down == before:
            return None
        self.down = down
        notice = Notify("links", {"down": " ".join(sorted(down)), "went_down": " ".join(sorted(down - before)),
                                  "came_up": " ".join(sorted(before - down)),
                                  "monitor_links": int(config.monitor_links)})
        unfit = self.unfit(config)
        return LinkChange(notice, unfit and not was_unfit, was_unfit and not unfit, bool(before - down))

    def reason(self) -> str:
        return f"link down on {', '.join(sorted(self.down))}: monitor_links = 1"
