"""The end of a run, judged alike by `shoal sim` and `shoal lab`: one
`Verdict` per expectation, in file order, and from them the printed
summary and the exit code (SPEC.md, "The command line": 0 every
expectation holds, 1 any fails).

The rules, whatever the driver:

- an expectation at a time gets the verdict `scenario.checks.judge` gave
  it then (`Verdicts.judged`);
- an `always` expectation is judged at the end from the invariant's first
  violation, if any (`Verdicts.always`);
- one the run never reached (stopped by `--until`, or by the lab at a
  first failure) is not judged: `ok` is None, shown as `skip`, and it does
  not fail the run (`Verdicts.close` says where the run stopped).

Nothing here knows how a verdict was reached or printed elsewhere (the
timeline and its `expect` records belong to the drivers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scenario.model import Expect


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool | None  # None: not judged (the run stopped first)
    what: str
    line: int = 0  # the expectation's line in the scenario file

    @property
    def mark(self) -> str:
        """The summary's four-letter mark: `ok  `, `FAIL` or `skip`."""
        return "ok  " if self.ok else "FAIL" if self.ok is False else "skip"


class Verdicts:
    """The verdicts of one run, gathered by expectation index as they come."""

    def __init__(self, expects: Sequence[Expect]) -> None:
        self.expects = tuple(expects)
        self.by_index: dict[int, Verdict] = {}

    def judged(self, index: int, ok: bool, what: str) -> Verdict:
        """The verdict of expectation `index`, judged during the run."""
        verdict = Verdict(ok, what, self.expects[index].line)
        self.by_index[index] = verdict
        return verdict

    def always(self, index: int, violation: str | None) -> Verdict:
        """An `always` expectation at the end: holds unless `violation` (its first one) is given."""
        e = self.expects[index]
        return self.judged(index, violation is None, e.describe() + (f": {violation}" if violation else ""))

    def close(self, end_ms: float, scale: float = 1.0) -> list[Verdict]:
        """Every verdict in file order; the ones never judged say the run stopped at `end_ms`
        (wall or simulated milliseconds, divided by `scale` to read in scenario seconds)."""
        for index, e in enumerate(self.expects):
            if index not in self.by_index:
                self.by_index[index] = Verdict(
                    None, e.describe() + f" (not judged: the run stopped at {end_ms / scale / 1000:g} s)", e.line)
        return [self.by_index[i] for i in range(len(self.expects))]


def all_hold(verdicts: Iterable[Verdict]) -> bool:
    """No verdict failed (one not judged does not fail a run)."""
    return all(v.ok is not False for v in verdicts)


def summary_lines(verdicts: Iterable[Verdict]) -> list[str]:
    """One line per expectation: its mark and what was judged."""
    return [f"{v.mark} {v.what}" for v in verdicts]


def exit_code(ok: bool) -> int:
    """0 when the run holds, 1 when anything failed (2, a bad scenario, is the loader's)."""
    return 0 if ok else 1
