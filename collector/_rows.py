"""Decoded spans to one Arrow table for a columnar insert, with each LLM call priced.

Only the exporter-compatible columns and the cost columns are written: the typed analytics
columns are DEFAULT expressions in ClickHouse, computed from SpanAttributes on insert.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from agentwatch.collector._decode import SpanColumns
from agentwatch.collector._pricing import PriceTable
from agentwatch.storage._conventions import COLUMN_BY_NAME, first_value, token_count

_MAP: Final = pa.map_(pa.string(), pa.string())
_TS: Final = pa.timestamp("ns", tz="UTC")
_MODEL_KEYS: Final = COLUMN_BY_NAME["ResponseModel"].keys + COLUMN_BY_NAME["RequestModel"].keys
_PROVIDER_KEYS: Final = COLUMN_BY_NAME["Provider"].keys


def price_spans(cols: SpanColumns, prices: PriceTable) -> tuple[list[float], list[int]]:
    """(CostUsd, Priced) per span; spans without tokens are neither priced nor unpriced."""
    costs: list[float] = []
    priced: list[int] = []
    for attributes in cols.span_attributes:
        input_tokens = token_count(attributes, "InputTokens")
        output_tokens = token_count(attributes, "OutputTokens")
        if input_tokens == 0 and output_tokens == 0:
            costs.append(0.0)
            priced.append(0)
            continue
        cost = prices.cost(
            first_value(attributes, _MODEL_KEYS),
            first_value(attributes, _PROVIDER_KEYS),
            input_tokens,
            output_tokens,
            token_count(attributes, "CacheReadTokens"),
            token_count(attributes, "CacheWriteTokens"),
        )
        costs.append(cost or 0.0)
        priced.append(0 if cost is None else 1)
    return costs, priced


def _maps(values: list[dict[str, str]]) -> pa.Array:
    return pa.array([list(d.items()) for d in values], type=_MAP)


def _map_lists(values: list[list[dict[str, str]]]) -> pa.Array:
    return pa.array([[list(d.items()) for d in row] for row in values], type=pa.list_(_MAP))


def spans_to_arrow(cols: SpanColumns, prices: PriceTable) -> pa.Table:
    costs, priced = price_spans(cols, prices)
    string = pa.string()
    return pa.table(
        {
            "Timestamp": pa.array(cols.timestamp, type=_TS),
            "TraceId": pa.array(cols.trace_id, type=string),
            "SpanId": pa.array(cols.span_id, type=string),
            "ParentSpanId": pa.array(cols.parent_span_id, type=string),
            "TraceState": pa.array(cols.trace_state, type=string),
            "SpanName": pa.array(cols.span_name, type=string),
            "SpanKind": pa.array(cols.span_kind, type=string),
            "ServiceName": pa.array(cols.service_name, type=string),
            "ResourceAttributes": _maps(cols.resource_attributes),
            "ScopeName": pa.array(cols.scope_name, type=string),
            "ScopeVersion": pa.array(cols.scope_version, type=string),
            "SpanAttributes": _maps(cols.span_attributes),
            "Duration": pa.array(cols.duration, type=pa.uint64()),
            "StatusCode": pa.array(cols.status_code, type=string),
            "StatusMessage": pa.array(cols.status_message, type=string),
            "Events.Timestamp": pa.array(cols.events_timestamp, type=pa.list_(_TS)),
            "Events.Name": pa.array(cols.events_name, type=pa.list_(string)),
            "Events.Attributes": _map_lists(cols.events_attributes),
            "Links.TraceId": pa.array(cols.links_trace_id, type=pa.list_(string)),
            "Links.SpanId": pa.array(cols.links_span_id, type=pa.list_(string)),
            "Links.TraceState": pa.array(cols.links_trace_state, type=pa.list_(string)),
            "Links.Attributes": _map_lists(cols.links_attributes),
            "CostUsd": pa.array(costs, type=pa.float64()),
            "Priced": pa.array(priced, type=pa.uint8()),
        }
    )
