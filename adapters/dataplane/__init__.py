"""Dataplanes: where the engine's table operations land.

One interface, three implementations:

| name      | module     | what it programs                                          |
|-----------|------------|-----------------------------------------------------------|
| `ipvs`    | `ipvs.py`  | the kernel's IPVS over generic netlink (pyroute2)         |
| `nft`     | `nft.py`   | nftables NAT rules approximating IPVS (no IPVS needed)    |
| `dry-run` | `dryrun.py`| nothing: prints each operation as an `ipvsadm` restore line |

The contract every implementation keeps (the daemon relies on it):

- `apply(ops)` carries the operations out in order.  The first one that
  fails raises `DataplaneError` carrying that operation (`.op`); the ones
  before it stay applied.  The ones after it are not attempted, except by
  `ipvs`, which sends operations in netlink batches (genl.BATCH): the
  kernel carries out the rest of the failing batch too.  Either way the
  caller reads the table back after a failure and reconciles.  An
  operation the kernel refuses (adding what exists, touching what does not)
  fails the same way `engine.diff.apply` says it would (`.code`: EEXIST,
  ESRCH, ENOENT; other failures have code "EIO" or "EINVAL").
- `read()` returns what the kernel really holds now, as a `Table`; after a
  failed `apply` the caller reads and reconciles.
- Starting a dataplane never flushes anything: an existing table is adopted
  (connections survive a daemon restart).
- `set_timeouts` and `sync_daemon` carry out the commands of the same name
  (the `nft` and `dry-run` dataplanes accept and record them).
- `connections()` reads the per real server connection counters, as
  `{(ServiceKey, DestKey): Counters}`, or returns None when the dataplane
  has none (`nft`, `dry-run`): not an error.  It may block (a netlink dump
  of every service): the daemon calls it in an executor thread, at most
  every few seconds, so it must not share a socket with `apply`/`read`.
- `close()` releases sockets; it never removes the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

from engine.events import SetTimeouts, StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import DestKey, ServiceKey, Table

NAMES = ("ipvs", "nft", "dry-run")


class DataplaneError(Exception):
    """An operation the dataplane could not carry out.

    `op` is the operation that failed (None when the failure is not one
    operation's, e.g. reading the table); `code` is "EEXIST", "ESRCH",
    "ENOENT" (refused as the kernel refuses), "EINVAL" (not expressible by
    this dataplane) or "EIO" (the kernel or tool failed).
    """

    def __init__(self, message: str, op: object | None = None, code: str = "EIO") -> None:
        super().__init__(message)
        self.op = op
        self.code = code


@dataclass(frozen=True, slots=True)
class Counters:
    """One real server's connection counters, as `ipvsadm -Ln` and
    `ipvsadm -Ln --stats` show them: `active` (ActiveConn: established TCP),
    `inactive` (InActConn: every other state), `total` (Conns: scheduled to
    it since it was added), and its packets and bytes in and out."""

    active: int
    inactive: int
    total: int
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


Connections = Mapping[tuple[ServiceKey, DestKey], Counters]


class Dataplane(Protocol):
    name: str

    def apply(self, ops: Sequence[TableOp]) -> None:
        """Carry out `ops` in order; raise `DataplaneError` on the first failure."""

    def read(self) -> Table:
        """What the kernel holds now."""

    def set_timeouts(self, cmd: SetTimeouts) -> None:
        """The kernel's tcp/tcpfin/udp connection timeouts (0 = leave as is)."""

    def sync_daemon(self, cmd: StartSyncDaemon | StopSyncDaemon) -> None:
        """Start or stop the connection sync daemon."""

    def connections(self) -> Connections | None:
        """Each real server's counters, or None: this dataplane has none."""

    def close(self) -> None:
        """Release resources; the table stays in the kernel."""


def make(name: str, netns: str | None = None) -> Dataplane:
    """The dataplane called `name` ("ipvs", "nft" or "dry-run"), in network
    namespace `netns` (None: the current one)."""
    if name == "dry-run":
        from adapters.dataplane.dryrun import DryRun

        return DryRun()
    if name == "nft":
        from adapters.dataplane.nft import Nft

        return Nft(netns=netns)
    if name == "ipvs":
        from adapters.dataplane.ipvs import Ipvs

        return Ipvs(netns=netns)
    raise ValueError(f"unknown dataplane {name!r}: expected one of {', '.join(NAMES)}")
