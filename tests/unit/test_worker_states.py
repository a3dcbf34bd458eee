"""The local Lambda worker's lifecycle table: every legal move is taken, every other one refused."""

from __future__ import annotations

import itertools

import pytest

from local_stack.runtime import TRANSITIONS, IllegalTransition, WorkerState, _Worker

S = WorkerState
LEGAL = {
    (S.STARTING, S.IDLE),  # asked for its first event
    (S.STARTING, S.DRAINING),  # init error, or killed while starting
    (S.STARTING, S.DEAD),  # died during init
    (S.IDLE, S.BUSY),  # an invocation handed to it
    (S.IDLE, S.DRAINING),  # killed (recycle, close)
    (S.IDLE, S.DEAD),  # its process died
    (S.BUSY, S.IDLE),  # answered
    (S.BUSY, S.DRAINING),  # recycled (finishes first) or timed out (killed)
    (S.BUSY, S.DEAD),  # died mid-invocation
    (S.DRAINING, S.DEAD),  # its process is gone
}


def worker_in(state: WorkerState) -> _Worker:
    w = _Worker(wid=1)
    w.state = state
    return w


def test_the_table_is_exactly_the_lifecycle() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert set(TRANSITIONS) == set(WorkerState)


@pytest.mark.parametrize(("start", "to"), sorted(LEGAL, key=lambda p: (p[0].value, p[1].value)))
def test_a_legal_transition_moves_the_worker(start: WorkerState, to: WorkerState) -> None:
    w = worker_in(start)
    w.move(to)
    assert w.state is to


ILLEGAL = sorted(
    (pair for pair in itertools.product(WorkerState, repeat=2) if pair not in LEGAL),
    key=lambda p: (p[0].value, p[1].value),
)


@pytest.mark.parametrize(("start", "to"), ILLEGAL)
def test_an_illegal_transition_is_refused_and_the_state_kept(start: WorkerState, to: WorkerState) -> None:
    w = worker_in(start)
    with pytest.raises(IllegalTransition, match=f"{start.value} -> {to.value}"):
        w.move(to)
    assert w.state is start


def test_a_new_worker_is_starting_and_dead_is_final() -> None:
    assert _Worker(wid=7).state is S.STARTING
    assert TRANSITIONS[S.DEAD] == frozenset()
    assert TRANSITIONS[S.DRAINING] == frozenset({S.DEAD})  # a draining worker never takes work again
