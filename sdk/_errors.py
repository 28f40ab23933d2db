"""The exceptions agentwatch raises: one root, configuration errors are also ValueErrors.

Our exception hierarchy (catch ``AgentwatchError`` for anything from us)::

    AgentwatchError                      sdk/_errors.py (agentwatch.AgentwatchError)
    ├── ConfigurationError (ValueError)  sdk/_errors.py (agentwatch.ConfigurationError)
    │   └── AlertRulesError              alerts/_rules.py
    ├── AgentLimitExceeded               sdk/_errors.py (agentwatch.AgentLimitExceeded)
    ├── ReplayError                      sdk/_errors.py (agentwatch.ReplayError)
    │   └── ReplayMismatch               sdk/_errors.py (agentwatch.ReplayMismatch)
    ├── ReplayedToolError                sdk/_errors.py (agentwatch.ReplayedToolError)
    ├── InvalidRequest (ValueError)      collector/_decode.py
    ├── StoreTimeout                     collector/_ingest.py
    ├── MemoryBusy                       collector/_budget.py
    ├── Overloaded                       collector/_writer.py
    ├── WriterStopped                    collector/_writer.py
    ├── RowsRefused                      collector/_writer.py
    ├── StorageError                     storage/_store.py
    ├── DeliveryError                    alerts/_notify.py
    ├── Refusal                          query/_policy.py (becomes an EndpointError)
    ├── EndpointError                    query/_protocol.py
    └── Unavailable                      dashboards/_data.py

Only those in sdk/_errors.py are public (the replay's three are raised by ``aw.replay`` in
tests); the rest are raised and caught inside the collector, the query
endpoint, alerting and the dashboards (``agentwatch`` commands print any of them as one line).
tests/test_errors.py fails on an exception class defined outside this tree.
"""

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


class ReplayError(AgentwatchError):
    """A trace cannot be replayed: the log is malformed, holds several traces, or lacks the
    content (arguments, results) a call needs because capture was off when it was recorded."""


class ReplayMismatch(ReplayError):
    """The replayed run did not do what the recorded one did: another tool, other arguments, a
    call beyond the recorded ones, or recorded calls never made. A test failure, on purpose."""


class ReplayedToolError(AgentwatchError):
    """A recorded call's error, raised again by a replay (``error_type`` is the recorded
    ``error.type``, ``str()`` the recorded message). When the type is a builtin exception, the
    raised error is also an instance of it, so ``except TimeoutError`` acts as it did."""

    def __init__(self, message: str, *, error_type: str, name: str, seq: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.name = name
        self.seq = seq
