"""Which interface of a router carries what: the names a scenario's
`link_down = ROUTER` / `device = NAME` may use, one rule for both worlds.

lvs.cf names some of a router's interfaces and not others; a world needs
all of them.  The rule, the same in `shoal sim` and `shoal lab`:

| interface | named by | carries |
|---|---|---|
| each VIP's (`address = IP eth0:1` gives `eth0`) | the virtuals | the VIPs and the clients' traffic |
| the first of those (`eth0` if none) | (the rule) | the public heartbeat path too |
| `nat_router`'s (`eth1` if it names none) | `nat_router` | the real servers: checks and forwarded traffic |
| the first of `eth2`, `eth3`, `hb0` not taken | (the rule) | the private heartbeat path, when `primary_private` is set |

An interface that carries several of these loses them all with its link.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import Config

PRIVATE_CANDIDATES = ("eth2", "eth3", "hb0")


@dataclass(frozen=True, slots=True)
class Devices:
    vips: frozenset[str]  # every interface a VIP is on
    public: str  # the public heartbeat path's
    server: str  # towards the real servers
    private: str | None  # the private heartbeat path's, if the config has one

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.vips | {self.public, self.server} | ({self.private} if self.private else set())))

    def carries(self, device: str) -> tuple[str, ...]:
        """What losing `device` cuts: `vip`, `public`, `server`, `private` (in that order)."""
        return tuple(what for what, on in (("vip", device in self.vips), ("public", device == self.public),
                                           ("server", device == self.server), ("private", device == self.private))
                     if on)


def base(device: str | None) -> str | None:
    """`eth0:1` -> `eth0`: an alias label shares its interface's link."""
    return device.split(":", 1)[0] if device else None


def devices(config: Config) -> Devices:
    vips = sorted({base(v.device) or "eth0" for v in config.virtuals if v.active and v.address})
    public = vips[0] if vips else "eth0"
    server = base(config.nat_router_device) or "eth1"
    taken = {*vips, public, server}
    private = None
    if config.primary_private and config.backup_private:
        private = next((n for n in PRIVATE_CANDIDATES if n not in taken), None)
    return Devices(frozenset(vips), public, server, private)
