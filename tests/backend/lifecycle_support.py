"""What the lifecycle tests of runs, evaluations and studies share: a stand-in for the Celery
queue, and the checks every table of moves must pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class FakeQueue:
    """Records what would be sent to Celery; can be made to fail like an unreachable broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, ...]] = []
        self.down = False

    def __call__(self, name: str, *args: object) -> str:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append((name, *args))
        return "id"


def assert_closed_table(
    transitions: Mapping[str, Sequence[str]], states: Sequence[str], start: str
) -> None:
    """Every state has its moves, every move ends in a state, no state moves to itself, and
    every state can be reached from `start`."""
    assert set(transitions) == set(states)
    for state, targets in transitions.items():
        assert set(targets) <= set(states), state
        assert state not in targets, "a state never moves to itself"
    seen, todo = {start}, [start]
    while todo:
        for nxt in transitions[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(states)
