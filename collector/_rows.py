"""Decoded spans to one Arrow table for a columnar insert, with each LLM call priced.

Only the exporter-compatible columns and the cost columns are written: the typed analytics
columns are DEFAULT expressions in ClickHouse, computed from SpanAttributes on insert.
"""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa

from agentwatch.collector._decode import SpanColumns
from agentwatch.collector._pricing import PriceTable
from agentwatch.storage._conventions import COLUMN_BY_NAME, first_value, token_count

MAP_TYPE: Final = pa.map_(pa.string(), pa.string())
TIMESTAMP_TYPE: Final = pa.timestamp("ns", tz="UTC")
_MODEL_KEYS: Final = COLUMN_BY_NAME["ResponseModel"].keys + COLUMN_BY_NAME["RequestModel"].keys
_PROVIDER_KEYS: Final = COLUMN_BY_NAME["Provider"].keys


_INPUT_KEYS: Final = COLUMN_BY_NAME["InputTokens"].keys
_OUTPUT_KEYS: Final = COLUMN_BY_NAME["OutputTokens"].keys
_CACHE_READ_KEYS: Final = COLUMN_BY_NAME["CacheReadTokens"].keys
_CACHE_WRITE_KEYS: Final = COLUMN_BY_NAME["CacheWriteTokens"].keys
# What pricing reads, in the order the native decoder takes them (collector/_native_rows.py).
PRICE_KEYS: Final = (
    _MODEL_KEYS,
    _PROVIDER_KEYS,
    _INPUT_KEYS,
    _OUTPUT_KEYS,
    _CACHE_READ_KEYS,
    _CACHE_WRITE_KEYS,
)


def _tokens(attributes: dict[str, str], keys: tuple[str, ...], column: str) -> int:
    """``token_count`` with its common case (a short run of ASCII digits) parsed directly."""
    for key in keys:
        raw = attributes.get(key)
        if raw:
            if len(raw) < 16 and raw.isascii() and raw.isdigit():
                return int(raw)
            return token_count(attributes, column)
    return 0


def price_spans(cols: SpanColumns, prices: PriceTable) -> tuple[list[float], list[int]]:
    """(CostUsd, Priced) per span; spans without tokens are neither priced nor unpriced."""
    costs: list[float] = []
    priced: list[int] = []
    add_cost = costs.append
    add_priced = priced.append
    for attributes in cols.span_attributes:
        input_tokens = _tokens(attributes, _INPUT_KEYS, "InputTokens")
        output_tokens = _tokens(attributes, _OUTPUT_KEYS, "OutputTokens")
        if input_tokens == 0 and output_tokens == 0:
            add_cost(0.0)
            add_priced(0)
            continue
        cost = prices.cost(
            first_value(attributes, _MODEL_KEYS),
            first_value(attributes, _PROVIDER_KEYS),
            input_tokens,
            output_tokens,
            _tokens(attributes, _CACHE_READ_KEYS, "CacheReadTokens"),
            _tokens(attributes, _CACHE_WRITE_KEYS, "CacheWriteTokens"),
        )
        add_cost(cost or 0.0)
        add_priced(0 if cost is None else 1)
    return costs, priced


def _maps(values: list[dict[str, str]]) -> pa.Array:
    """A Map(String, String) array from flat key and value lists (no per-row tuples)."""
    offsets = [0]
    keys: list[str] = []
    items: list[str] = []
    end = 0
    add_offset = offsets.append
    add_keys = keys.extend
    add_items = items.extend
    for d in values:
        add_keys(d)
        add_items(d.values())
        end += len(d)
        add_offset(end)
    return pa.MapArray.from_arrays(
        pa.array(offsets, type=pa.int32()),
        pa.array(keys, type=pa.string()),
        pa.array(items, type=pa.string()),
        type=MAP_TYPE,
    )


def _shared_maps(values: list[dict[str, str]]) -> pa.Array:
    """``_maps`` for a column that repeats a few dict objects (each resource's attributes are
    one dict shared by all its spans): each distinct dict is converted once."""
    position: dict[int, int] = {}
    distinct: list[dict[str, str]] = []
    indices: list[int] = []
    add_index = indices.append
    for d in values:
        index = position.get(id(d))  # every dict is alive in ``values``, so ids are unique
        if index is None:
            index = position[id(d)] = len(distinct)
            distinct.append(d)
        add_index(index)
    if len(distinct) == len(values):
        return _maps(values)
    return _maps(distinct).take(pa.array(indices, type=pa.int32()))


def _lists(values: list[list[Any]], item_type: pa.DataType) -> pa.Array:
    """A list column; spans rarely have events or links, so all-empty columns are built
    from offsets alone."""
    if any(values):
        return pa.array(values, type=pa.list_(item_type))
    return pa.ListArray.from_arrays(
        pa.array([0] * (len(values) + 1), type=pa.int32()), pa.array([], type=item_type)
    )


def _map_lists(values: list[list[dict[str, str]]]) -> pa.Array:
    """A list-of-maps column (event and link attributes) from offsets and one flat map array."""
    offsets = [0]
    flat: list[dict[str, str]] = []
    end = 0
    add_offset = offsets.append
    for row in values:
        if row:
            flat.extend(row)
            end += len(row)
        add_offset(end)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), _maps(flat))


def spans_to_arrow(cols: SpanColumns, prices: PriceTable) -> pa.Table:
    costs, priced = price_spans(cols, prices)
    string = pa.string()
    return pa.table(
        {
            "Timestamp": pa.array(cols.timestamp, type=TIMESTAMP_TYPE),
            "TraceId": pa.array(cols.trace_id, type=string),
            "SpanId": pa.array(cols.span_id, type=string),
            "ParentSpanId": pa.array(cols.parent_span_id, type=string),
            "TraceState": pa.array(cols.trace_state, type=string),
            "SpanName": pa.array(cols.span_name, type=string),
            "SpanKind": pa.array(cols.span_kind, type=string),
            "ServiceName": pa.array(cols.service_name, type=string),
            "ResourceAttributes": _shared_maps(cols.resource_attributes),
            "ScopeName": pa.array(cols.scope_name, type=string),
            "ScopeVersion": pa.array(cols.scope_version, type=string),
            "SpanAttributes": _maps(cols.span_attributes),
            "Duration": pa.array(cols.duration, type=pa.uint64()),
            "StatusCode": pa.array(cols.status_code, type=string),
            "StatusMessage": pa.array(cols.status_message, type=string),
            "Events.Timestamp": _lists(cols.events_timestamp, TIMESTAMP_TYPE),
            "Events.Name": _lists(cols.events_name, string),
            "Events.Attributes": _map_lists(cols.events_attributes),
            "Links.TraceId": _lists(cols.links_trace_id, string),
            "Links.SpanId": _lists(cols.links_span_id, string),
            "Links.TraceState": _lists(cols.links_trace_state, string),
            "Links.Attributes": _map_lists(cols.links_attributes),
            "CostUsd": pa.array(costs, type=pa.float64()),
            "Priced": pa.array(priced, type=pa.uint8()),
        }
    )
