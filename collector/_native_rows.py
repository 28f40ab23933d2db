"""Span rows from OTLP protobuf bytes through the native decoder, priced; same table as the
Python path (``request_to_columns`` + ``spans_to_arrow``), faster (benchmarks/BENCHMARKS.md).

The native decoder writes Arrow-layout buffers that are wrapped here without copying. It
declines (None) whatever it does not handle, and the caller falls back to the Python decoder,
which gives the exact rows or the exact error.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

import pyarrow as pa

from agentwatch.collector._decode import DecodeLimits
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import MAP_TYPE, PRICE_KEYS, TIMESTAMP_TYPE


def _load_native() -> ModuleType | None:
    try:
        from agentwatch.collector import _otlp_native
    except ImportError:  # built without a C compiler: the Python decoder does all the work
        return None
    return _otlp_native


_native: Final = _load_native()
NATIVE_DECODER_AVAILABLE: Final = _native is not None

_STRING: Final = pa.string()
_INT32: Final = pa.int32()


def _offsets(raw: bytes) -> pa.Array:
    return pa.Array.from_buffers(_INT32, len(raw) // 4, [None, pa.py_buffer(raw)])


def _strings(column: tuple[bytes, bytes]) -> pa.Array:
    offsets, data = column
    return pa.Array.from_buffers(
        _STRING, len(offsets) // 4 - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _map(column: tuple[bytes, tuple[bytes, bytes], tuple[bytes, bytes]]) -> pa.Array:
    offsets, keys, values = column
    return pa.MapArray.from_arrays(
        _offsets(offsets), _strings(keys), _strings(values), type=MAP_TYPE
    )


def _timestamps(raw: bytes) -> pa.Array:
    return pa.Array.from_buffers(TIMESTAMP_TYPE, len(raw) // 8, [None, pa.py_buffer(raw)])


def _costs(decoded: dict[str, Any], prices: PriceTable) -> tuple[pa.Array, pa.Array]:
    """(CostUsd, Priced): each distinct (model, provider) is resolved once per request."""
    count = decoded["count"]
    costs = [0.0] * count
    priced = bytearray(count)
    pricers = [prices.pricer(model, provider) for model, provider in decoded["price_pairs"]]
    if pricers:
        index = memoryview(decoded["price_index"]).cast("i")
        input_tokens = memoryview(decoded["input_tokens"]).cast("Q")
        output_tokens = memoryview(decoded["output_tokens"]).cast("Q")
        cache_read = memoryview(decoded["cache_read_tokens"]).cast("Q")
        cache_write = memoryview(decoded["cache_write_tokens"]).cast("Q")
        for row, pair in enumerate(index):
            if pair < 0:
                continue
            pricer = pricers[pair]
            if pricer is not None:
                costs[row] = pricer.cost(
                    input_tokens[row], output_tokens[row], cache_read[row], cache_write[row]
                )
                priced[row] = 1
    return (
        pa.array(costs, type=pa.float64()),
        pa.Array.from_buffers(pa.uint8(), count, [None, pa.py_buffer(bytes(priced))]),
    )


def native_columns(body: bytes, limits: DecodeLimits) -> dict[str, Any] | None:
    """The native decoder's column buffers and pricing inputs for ``body``, or None when it is
    not built or declines the request."""
    if _native is None:
        return None
    decoded: dict[str, Any] | None = _native.decode_traces(
        body,
        limits.max_spans_per_request,
        limits.max_attributes_per_span,
        limits.max_attribute_value_bytes,
        limits.max_events_per_span,
        limits.max_links_per_span,
        limits.max_resource_bytes,
        limits.max_scope_bytes,
        PRICE_KEYS,
    )
    return decoded


def native_spans_to_arrow(body: bytes, limits: DecodeLimits, prices: PriceTable) -> pa.Table | None:
    """The span table for a protobuf body that ``parse_protobuf`` accepted, or None when the
    native decoder is not built or declines this request (use the Python decoder then)."""
    decoded = native_columns(body, limits)
    if decoded is None:
        return None
    count = decoded["count"]
    costs, priced = _costs(decoded, prices)
    events = _offsets(decoded["Events"])
    links = _offsets(decoded["Links"])
    return pa.table(
        {
            "Timestamp": _timestamps(decoded["Timestamp"]),
            "TraceId": _strings(decoded["TraceId"]),
            "SpanId": _strings(decoded["SpanId"]),
            "ParentSpanId": _strings(decoded["ParentSpanId"]),
            "TraceState": _strings(decoded["TraceState"]),
            "SpanName": _strings(decoded["SpanName"]),
            "SpanKind": _strings(decoded["SpanKind"]),
            "ServiceName": _strings(decoded["ServiceName"]),
            "ResourceAttributes": _map(decoded["ResourceAttributes"]),
            "ScopeName": _strings(decoded["ScopeName"]),
            "ScopeVersion": _strings(decoded["ScopeVersion"]),
            "SpanAttributes": _map(decoded["SpanAttributes"]),
            "Duration": pa.Array.from_buffers(
                pa.uint64(), count, [None, pa.py_buffer(decoded["Duration"])]
            ),
            "StatusCode": _strings(decoded["StatusCode"]),
            "StatusMessage": _strings(decoded["StatusMessage"]),
            "Events.Timestamp": pa.ListArray.from_arrays(
                events, _timestamps(decoded["Events.Timestamp"])
            ),
            "Events.Name": pa.ListArray.from_arrays(events, _strings(decoded["Events.Name"])),
            "Events.Attributes": pa.ListArray.from_arrays(
                events, _map(decoded["Events.Attributes"])
            ),
            "Links.TraceId": pa.ListArray.from_arrays(links, _strings(decoded["Links.TraceId"])),
            "Links.SpanId": pa.ListArray.from_arrays(links, _strings(decoded["Links.SpanId"])),
            "Links.TraceState": pa.ListArray.from_arrays(
                links, _strings(decoded["Links.TraceState"])
            ),
            "Links.Attributes": pa.ListArray.from_arrays(links, _map(decoded["Links.Attributes"])),
            "CostUsd": costs,
            "Priced": priced,
        }
    )
