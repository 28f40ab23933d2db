"""The exceptions agentwatch raises: one root, configuration errors are also ValueErrors.

Our exception hierarchy (catch ``AgentwatchError`` for anything from us)::

    AgentwatchError                      sdk/_errors.py (agentwatch.AgentwatchError)
    ├── ConfigurationError (ValueError)  sdk/_errors.py (agentwatch.ConfigurationError)
    │   └── AlertRulesError              alerts/_rules.py
    ├── AgentLimitExceeded               sdk/_errors.py (agentwatch.AgentLimitExceeded)
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

Only the first three are public; the rest are raised and caught inside the collector, the query
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
