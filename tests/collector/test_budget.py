"""The shared decode budget: room is held while a request works and given back after."""

from __future__ import annotations

import threading

import pytest

from agentwatch.collector._budget import MemoryBudget, MemoryBusy


def test_holds_add_up_and_are_given_back() -> None:
    budget = MemoryBudget(100)
    with budget.hold(60, wait_s=0), budget.hold(40, wait_s=0):
        assert budget.held_bytes == 100
    assert budget.held_bytes == 0


def test_a_hold_that_does_not_fit_in_time_is_busy_and_holds_nothing() -> None:
    budget = MemoryBudget(100)
    with budget.hold(80, wait_s=0):
        with pytest.raises(MemoryBusy, match="hold 0 MiB of its 0 MiB"), budget.hold(30, 0.01):
            pass  # pragma: no cover - never entered
        assert budget.held_bytes == 80


def test_a_waiting_hold_proceeds_when_room_is_given_back() -> None:
    budget = MemoryBudget(100)
    first_in = threading.Event()
    release = threading.Event()
    got: list[int] = []

    def first() -> None:
        with budget.hold(80, wait_s=0):
            first_in.set()
            release.wait(10)

    def second() -> None:
        with budget.hold(50, wait_s=10):
            got.append(budget.held_bytes)

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    release.set()
    holder.join(10)
    waiter.join(10)
    assert got == [50]


def test_an_error_inside_a_hold_gives_the_room_back() -> None:
    budget = MemoryBudget(100)
    with pytest.raises(RuntimeError), budget.hold(70, wait_s=0):
        raise RuntimeError("decode failed")
    assert budget.held_bytes == 0


def test_a_hold_bigger_than_the_budget_is_clamped_not_deadlocked() -> None:
    budget = MemoryBudget(100)
    with budget.hold(500, wait_s=0):
        assert budget.held_bytes == 100


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryBudget(0)
