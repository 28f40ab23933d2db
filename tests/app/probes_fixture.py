"""Probes for the command-line tests (`agentwatch health run tests.app.probes_fixture`)."""

from __future__ import annotations

import agentwatch as aw


@aw.health_check(name="fixture-passing", expect=aw.expect.contains("30 days"))
def passing() -> str:
    return "Items can be returned within 30 days."


@aw.health_check(name="fixture-failing", expect=aw.expect.max_length(10))
def failing() -> str:
    return "A long and rambling answer that goes on and on."


not_a_probe = "just a string"
