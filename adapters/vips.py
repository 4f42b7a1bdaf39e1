"""VIPs: add and remove addresses with pyroute2 (netlink), idempotently.

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

pyroute2 0.9's synchronous sockets run an event loop of their own and cannot
be made inside a running asyncio loop, so one private worker thread owns the
netlink socket: every call goes through it (callers may use any thread, as
the daemon does with `run_in_executor`).
"""

from __future__ import annotations

import errno
import ipaddress
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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
        self._ipr: Any = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="shoal-vips")
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[Any], T]) -> T:
        def inside() -> T:
            if self._ipr is None:
                from pyroute2 import IPRoute, NetNS  # type: ignore[import-untyped]

                self._ipr = NetNS(self.netns) if self.netns else IPRoute()
            return fn(self._ipr)

        with self._lock:
            return self._worker.submit(inside).result()

    def _index(self, ipr: Any, device: str) -> int | None:
        found = ipr.link_lookup(ifname=device)
        return int(found[0]) if found else None

    def add(self, cmd: AddVip) -> None:
        address = _norm(cmd.address)
        v6 = ":" in address

        def do(ipr: Any) -> None:
            from pyroute2 import NetlinkError

            index = self._index(ipr, cmd.device)
            if index is None:
                raise VipError(f"cannot add VIP {address}/{cmd.prefix}: no such device {cmd.device}")
            extra: dict[str, Any] = {}
            if v6:
                extra["flags"] = IFA_F_NODAD
            elif cmd.label and valid_label(cmd.label, cmd.device):
                extra["label"] = cmd.label
            try:
                ipr.addr("add", index=index, address=address, prefixlen=cmd.prefix, **extra)
            except NetlinkError as e:
                if e.code == errno.EEXIST:
                    return
                raise VipError(f"cannot add VIP {address}/{cmd.prefix} on {cmd.device}: "
                               f"{_strerror(e)}") from None

        self._call(do)

    def delete(self, cmd: DelVip) -> bool:
        """Remove the VIP; True when it was on the device, False when absent."""
        address = _norm(cmd.address)

        def do(ipr: Any) -> bool:
            from pyroute2 import NetlinkError

            index = self._index(ipr, cmd.device)
            if index is None:
                return False
            removed = False
            for prefix in self._prefixes(ipr, index, address):
                try:
                    ipr.addr("del", index=index, address=address, prefixlen=prefix)
                    removed = True
                except NetlinkError as e:
                    if e.code == errno.EADDRNOTAVAIL:
                        continue
                    raise VipError(f"cannot remove VIP {address}/{prefix} from {cmd.device}: "
                                   f"{_strerror(e)}") from None
            return removed

        return self._call(do)

    def _prefixes(self, ipr: Any, index: int, address: str) -> list[int]:
        return sorted({int(msg["prefixlen"]) for msg in ipr.get_addr(index=index)
                       if _local(msg) == address})

    def held(self, addresses: Iterable[str]) -> set[str]:
        """Those of `addresses` that are on any interface here (as given)."""
        wanted = {a: _norm(a) for a in addresses}
        present = set(self._call(lambda ipr: [_local(msg) for msg in ipr.get_addr()]))
        return {given for given, norm in wanted.items() if norm in present}

    def close(self) -> None:
        def shut(ipr: Any) -> None:
            ipr.close()

        with self._lock:
            if self._ipr is not None:
                self._worker.submit(shut, self._ipr).result()
                self._ipr = None
        self._worker.shutdown(wait=True)


def _local(msg: Any) -> str:
    value = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS") or ""
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return str(value)


def _strerror(e: Any) -> str:
    code = getattr(e, "code", 0) or 0
    return f"{errno.errorcode.get(code, code)} ({e})"
