"""State machines as tables: which state may follow which, and the one way a state changes.

The job in the queue, the glidein at its site, the pilot on its node and a job on that
pilot each have one table (their modules say why each state exists) and change state only
through ``advance``, which refuses what the table does not allow.  A test walks every table:
each state reaches an end, and no end has a way out.
Standard library only (Python >= 3.9): the pilot bundles it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from updraft.core.errors import IllegalTransition

State = TypeVar("State", bound=enum.Enum)


def _shown(state: enum.Enum) -> str:
    return state.name if isinstance(state.value, int) else str(state.value)


class StateMachine(Generic[State]):
    """The allowed transitions of one kind of thing, named for the messages (``job``, ``glidein``)."""

    def __init__(self, name: str, allowed: Mapping[State, Iterable[State]]) -> None:
        self.name = name
        self.allowed: dict[State, frozenset[State]] = {
            state: frozenset(nexts) for state, nexts in allowed.items()
        }
        self.states = frozenset(self.allowed)
        unknown = {target for nexts in self.allowed.values() for target in nexts} - self.states
        if unknown:
            raise ValueError(f"{name}: transitions to states the table does not list: {unknown}")
        #: the states nothing follows
        self.terminal = frozenset(state for state, nexts in self.allowed.items() if not nexts)

    def can(self, current: State, new: State) -> bool:
        return new in self.allowed[current]

    def advance(self, current: State, new: State, what: str = "") -> State:
        """``new`` if the table allows ``current -> new`` (staying put always is); else IllegalTransition."""
        if new == current:
            return current
        if new not in self.allowed[current]:
            subject = f"{self.name} {what}".strip()
            raise IllegalTransition(f"{subject}: cannot go from {_shown(current)} to {_shown(new)}")
        return new

    def reaches_an_end(self, start: State) -> bool:
        """Whether some path of allowed transitions leads from ``start`` to a terminal state."""
        seen: set[State] = set()
        todo = [start]
        while todo:
            state = todo.pop()
            if state in self.terminal:
                return True
            if state not in seen:
                seen.add(state)
                todo.extend(self.allowed[state])
        return False
