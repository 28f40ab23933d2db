"""The exceptions agentwatch raises: one root, configuration errors are also ValueErrors."""

from __future__ import annotations


class AgentwatchError(Exception):
    """Root of every exception agentwatch raises on purpose."""


class ConfigurationError(AgentwatchError, ValueError):
    """agentwatch was configured with a value it cannot use."""


class AgentLimitExceeded(AgentwatchError):
    """An agent run crossed one of the limits it was given (iterations, tokens, cost, ...).

    Raised into the agent on purpose: a budget guard that only logs does not stop a runaway agent.
    """

    def __init__(self, limit: str, value: float, maximum: float) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        super().__init__(f"agent limit exceeded: {limit} reached {value:g} (maximum {maximum:g})")
