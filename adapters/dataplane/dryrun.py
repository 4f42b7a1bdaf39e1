"""The dry-run dataplane: programs nothing, prints what it would do.

Each table operation is printed as an `ipvsadm` restore line (see
`ipvsadm.restore_line`); timeouts and the sync daemon as the `ipvsadm`
commands that would set them (`--set`, `--start-daemon`, `--stop-daemon`).
It keeps the table in memory and refuses what the kernel refuses
(`engine.diff.apply`), so a daemon running on it behaves as on a kernel:
`read()` returns that table.
"""

from __future__ import annotations

import sys
from typing import Sequence, TextIO

from adapters.dataplane import Connections, DataplaneError
from adapters.dataplane.ipvsadm import restore_line
from engine.diff import TableOpError, apply
from engine.events import SetTimeouts, StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import EMPTY_TABLE, Table


class DryRun:
    name = "dry-run"

    def __init__(self, out: TextIO | None = None, table: Table = EMPTY_TABLE) -> None:
        self.out = out
        self.table: Table = dict(table)
        self.timeouts: SetTimeouts | None = None
        self.daemons: dict[str, StartSyncDaemon] = {}

    def _print(self, line: str) -> None:
        out = self.out if self.out is not None else sys.stdout
        print(line, file=out, flush=True)

    def apply(self, ops: Sequence[TableOp]) -> None:
        for op in ops:
            try:
                self.table = apply(self.table, (op,))
            except TableOpError as e:
                raise DataplaneError(str(e), op, e.code) from None
            self._print(restore_line(op))

    def read(self) -> Table:
        return self.table

    def set_timeouts(self, cmd: SetTimeouts) -> None:
        self.timeouts = cmd
        self._print(f"--set {cmd.tcp_s} {cmd.tcpfin_s} {cmd.udp_s}")

    def sync_daemon(self, cmd: StartSyncDaemon | StopSyncDaemon) -> None:
        if isinstance(cmd, StartSyncDaemon):
            self.daemons[cmd.state] = cmd
            self._print(f"--start-daemon {cmd.state} --mcast-interface {cmd.iface} --syncid {cmd.syncid}")
        else:
            self.daemons.pop(cmd.state, None)
            self._print(f"--stop-daemon {cmd.state}")

    def connections(self) -> Connections | None:
        """None: nothing is forwarded, so nothing is counted."""
        return None

    def close(self) -> None:
        pass
