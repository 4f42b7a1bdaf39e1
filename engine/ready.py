"""What a step hands back (`Ready`), and the engine's two exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.events import Command
from engine.status import Status


@dataclass(frozen=True, slots=True)
class Ready:
    """What one step decided: commands to carry out in order (see
    `engine.events`), when to wake next, and the status snapshot.

    `status` is built when first read (most steps' status is never read,
    and building it is most of a step's cost); read it before the next
    step, or read `Engine.status` for the current one.  How a `ReadTable`
    is answered: `engine.events.ReadTable`.
    """

    commands: tuple[Command, ...]
    next_deadline_ms: int | None
    _status_of_step: Callable[[int], Status] = field(repr=False, compare=False)
    _step: int = field(repr=False, compare=False)

    @property
    def status(self) -> Status:
        return self._status_of_step(self._step)


class EngineMisuse(Exception):
    """The caller broke the engine's contract (time going backwards, unknown names...)."""


class InvariantBroken(Exception):
    """The engine contradicts itself: a bug, checked on every step, in production too."""
