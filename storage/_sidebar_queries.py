"""The queries every page runs: the sidebar's options and what the empty states need."""

# The SQL below is concatenated from constant fragments only (this module's and those of
# storage._scope and storage._tasks); every value is a bound parameter, so the S608
# string-built-SQL heuristic does not apply to anything here.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from agentwatch.storage._scope import IN_RANGE, MODEL_NAME, SPANS, Filters
from agentwatch.storage._store import Store
from agentwatch.storage._tasks import HAS_TOKENS, first_row


# --- sidebar and empty states -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FilterOptions:
    """The values the sidebar offers, from the agent spans in the time range."""

    services: list[str]
    agents: list[str]
    task_types: list[str]
    environments: list[str]
    models: list[str]


_OPTIONS_SQL: Final = (
    "SELECT * FROM ("
    "SELECT groupUniqArrayIf(500)(ServiceName, ServiceName != '') AS services, "
    "groupUniqArrayIf(500)(AgentName, AgentName != '') AS agents, "
    "groupUniqArrayIf(500)(TaskType, TaskType != '') AS task_types, "
    "groupUniqArrayIf(500)(Environment, Environment != '') AS environments "
    f"FROM {SPANS} WHERE {IN_RANGE} AND Operation = 'invoke_agent'"
    ") AS agent_values CROSS JOIN ("
    f"SELECT groupUniqArrayIf(500)({MODEL_NAME}, {MODEL_NAME} != '') AS models "
    f"FROM {SPANS} WHERE {IN_RANGE} AND {HAS_TOKENS}"
    ") AS model_values"
)


def filter_options(store: Store, filters: Filters) -> FilterOptions:
    """Services, agents, task types, environments and models seen in the time range."""
    row = first_row(store, _OPTIONS_SQL, filters.params(store))

    def values(key: str) -> list[str]:
        found: Sequence[str] = row[key] or []
        return sorted(found)

    return FilterOptions(
        values("services"),
        values("agents"),
        values("task_types"),
        values("environments"),
        values("models"),
    )


@dataclass(frozen=True, slots=True)
class DataPresence:
    """Whether there is anything to show: spans in the range, spans at all, the newest one."""

    spans_in_range: int
    spans_total: int
    latest: datetime | None


_PRESENCE_SQL: Final = (
    "SELECT * FROM ("
    f"SELECT count() AS spans_in_range FROM {SPANS} WHERE {IN_RANGE}"
    ") AS in_range CROSS JOIN ("
    "SELECT count() AS spans_total, "
    "if(spans_total > 0, toUnixTimestamp64Milli(max(Timestamp)), 0) AS latest_ms "
    f"FROM {SPANS}"
    ") AS everything"
)


def data_presence(store: Store, filters: Filters) -> DataPresence:
    """For empty states: no data at all (start something) versus none in this range."""
    row = first_row(store, _PRESENCE_SQL, filters.params(store))
    total = int(row["spans_total"] or 0)
    latest = (
        datetime.fromtimestamp(int(row["latest_ms"]) / 1000, tz=UTC)
        if total and row["latest_ms"]
        else None
    )
    return DataPresence(int(row["spans_in_range"] or 0), total, latest)
