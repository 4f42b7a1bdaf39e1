"""VIPs: add and remove addresses over rtnetlink (`adapters.rtnl`), idempotently.

- `add` of an address already present, and `delete` of one that is absent,
  succeed: the engine states the goal, not a change.  `delete` removes the
  address from the device whatever its prefix (a reload may have changed
  `vip_nmask` since it was added); a device that does not exist holds no
  address, so deleting from it succeeds too.  `delete` tells whether the
  address was there (the daemon logs a removal only when one happened).
- IPv6 addresses are added with IFA_F_NODAD: usable at once (no duplicate
  address detection delay; the partner has just given the VIP up).
- An IPv4 address gets `cmd.label` ("eth0:1") when it is a valid alias label
  for the device (starts with the device name, at most 15 characters).
- A real failure (no such device on add, permission, an invalid address)
  raises `VipError` with a message naming the address and device.

The netlink socket (`adapters.rtnl`: a few bytes of our own; pyroute2,
which did this before, cost 0.1 s of import before a starting daemon could
hold a VIP) is opened once, by a private worker thread (entering namespace
`netns`, if named, changes only that thread); every later call uses it in
the caller's own thread, under a lock: a takeover's `add` is one netlink
request from the daemon's loop, no thread hop (callers may use any thread).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from adapters.rtnl import Rtnl, RtnlError
from engine.events import AddVip, DelVip

IFA_F_NODAD = 0x02
IFNAMSIZ = 16
T = TypeVar("T")


class VipError(Exception):
    """Adding or removing a VIP failed for a reason the caller must see."""


def _norm(address: str) -> str:
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        raise VipError(f"{address} is not an IP address") from None


def valid_label(label: str, device: str) -> bool:
    """An IPv4 alias label the kernel accepts for `device`."""
    return label.startswith(device) and len(label) < IFNAMSIZ


class Vips:
    """VIPs of this host (or of namespace `netns`)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Rtnl | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="shoal-vips")
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[Rtnl], T]) -> T:
        with self._lock:
            if self._ipr is None:
                self._ipr = self._worker.submit(Rtnl, self.netns).result()
            return fn(self._ipr)

    def _index(self, ipr: Rtnl, device: str) -> int | None:
        return ipr.index(device)

    def add(self, cmd: AddVip) -> None:
        address = _norm(cmd.address)
        v6 = ":" in address

        def do(ipr: Rtnl) -> None:
            index = self._index(ipr, cmd.device)
            if index is None:
                raise VipError(f"cannot add VIP {address}/{cmd.prefix}: no such device {cmd.device}")
            label = cmd.label if not v6 and cmd.label and valid_label(cmd.label, cmd.device) else None
            try:
                ipr.add(index, address, cmd.prefix, label=label, nodad=v6)
            except RtnlError as e:
                if e.errno == errno.EEXIST:
                    return
                raise VipError(f"cannot add VIP {address}/{cmd.prefix} on {cmd.device}: "
                               f"{_strerror(e)}") from None

        self._call(do)

    def delete(self, cmd: DelVip) -> bool:
        """Remove the VIP; True when it was on the device, False when absent."""
        address = _norm(cmd.address)

        def do(ipr: Rtnl) -> bool:
            index = self._index(ipr, cmd.device)
            if index is None:
                return False
            removed = False
            for prefix in self._prefixes(ipr, index, address):
                try:
                    ipr.delete(index, address, prefix)
                    removed = True
                except RtnlError as e:
                    if e.errno == errno.EADDRNOTAVAIL:
                        continue
                    raise VipError(f"cannot remove VIP {address}/{prefix} from {cmd.device}: "
                                   f"{_strerror(e)}") from None
            return removed

        return self._call(do)

    def _prefixes(self, ipr: Rtnl, index: int, address: str) -> list[int]:
        return sorted({prefix for _, local, prefix in ipr.addresses(index) if local == address})

    def device_of(self, address: str) -> str | None:
        """The interface that holds `address` here, None when none does."""
        norm = _norm(address)
        index = next((i for i, local, _ in self._call(lambda ipr: ipr.addresses()) if local == norm), None)
        return None if index is None else socket.if_indextoname(index)

    def held(self, addresses: Iterable[str]) -> set[str]:
        """Those of `addresses` that are on any interface here (as given)."""
        wanted = {a: _norm(a) for a in addresses}
        present = set(self._call(lambda ipr: [local for _, local, _ in ipr.addresses()]))
        return {given for given, norm in wanted.items() if norm in present}

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
        self._worker.shutdown(wait=True)


def _strerror(e: OSError) -> str:
    code = e.errno or 0
    return f"{errno.errorcode.get(code, code)} ({e.strerror or e})"
