"""OTLP trace requests (protobuf or JSON) to span columns, with validation. Pure: no I/O.

Attribute values are stored as strings the way the OpenTelemetry Collector ClickHouse exporter
stores them (bools as true/false, arrays and maps as JSON), so rows from either writer read
the same.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentwatch._errors import AgentwatchError

SPAN_KINDS: Final = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES: Final = ("Unset", "Ok", "Error")


class InvalidRequest(AgentwatchError, ValueError):
    """The request cannot be stored; the message says what is wrong (sent back as ``status``,
    a 400 unless the request is merely too big). Also a ``ValueError``, as it always was."""

    def __init__(self, message: str, reason: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on one request's content; anything beyond them is rejected, not truncated."""

    max_attributes_per_span: int = 512
    max_attribute_value_bytes: int = 256 * 1024
    max_events_per_span: int = 256
    max_links_per_span: int = 128
    max_spans_per_request: int = 100_000
    # A resource's attributes and a scope's name and version are stored with every one of its
    # spans: bounded, so a small request cannot decode into gigabytes of rows.
    max_resource_bytes: int = 64 * 1024
    max_scope_bytes: int = 1024


@dataclass(slots=True)
class SpanColumns:
    """Decoded spans, column by column (the layout of the span table)."""

    timestamp: list[int] = field(default_factory=list)
    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent_span_id: list[str] = field(default_factory=list)
    trace_state: list[str] = field(default_factory=list)
    span_name: list[str] = field(default_factory=list)
    span_kind: list[str] = field(default_factory=list)
    service_name: list[str] = field(default_factory=list)
    resource_attributes: list[dict[str, str]] = field(default_factory=list)
    scope_name: list[str] = field(default_factory=list)
    scope_version: list[str] = field(default_factory=list)
    span_attributes: list[dict[str, str]] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)
    status_code: list[str] = field(default_factory=list)
    status_message: list[str] = field(default_factory=list)
    events_timestamp: list[list[int]] = field(default_factory=list)
    events_name: list[list[str]] = field(default_factory=list)
    events_attributes: list[list[dict[str, str]]] = field(default_factory=list)
    links_trace_id: list[list[str]] = field(default_factory=list)
    links_span_id: list[list[str]] = field(default_factory=list)
    links_trace_state: list[list[str]] = field(default_factory=list)
    links_attributes: list[list[dict[str, str]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.span_id)


_GO_JSON_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_GO_JSON_SPECIAL: Final = re.compile("[<>&\u2028\u2029]")


def _go_float(number: float) -> str:
    """A double as Go's encoding/json writes it (ES6 number-to-string), as the exporter does:
    shortest round-trip digits, fixed notation for 1e-6 <= |x| < 1e21, else ``1e-7``/``1e+21``."""
    if not math.isfinite(number):
        return repr(number)
    text = repr(number)
    magnitude = abs(number)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return re.sub(r"e-0(\d)$", r"e-\1", text)
    text = format(Decimal(text), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _go_json_string(text: str) -> str:
    """A JSON string as Go's encoding/json writes it (HTML characters escaped)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.translate(_GO_JSON_ESCAPES) if _GO_JSON_SPECIAL.search(quoted) else quoted


def _go_json(value: AnyValue) -> str:
    """A nested value as json.Marshal(value.AsRaw()) writes it: map keys sorted."""
    kind = value.WhichOneof("value")
    if kind is None:
        return "null"
    if kind == "string_value":
        return _go_json_string(value.string_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        number = value.double_value
        return _go_float(number) if math.isfinite(number) else json.dumps(str(number))
    if kind == "bytes_value":
        return '"' + base64.b64encode(value.bytes_value).decode() + '"'
    if kind == "array_value":
        return "[" + ",".join(_go_json(v) for v in value.array_value.values) + "]"
    entries = {kv.key: kv.value for kv in value.kvlist_value.values}
    return (
        "{"
        + ",".join(f"{_go_json_string(k)}:{_go_json(entries[k])}" for k in sorted(entries))
        + "}"
    )


def value_to_string(value: AnyValue) -> str:
    """An attribute value as the ClickHouse exporter stores it in a Map(String, String):
    pcommon.Value.AsString() (bytes as base64, arrays and maps as Go's JSON)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _go_float(value.double_value)
    if kind is None:
        return ""
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return _go_json(value)


def _bytes_over(text: str, limit: int) -> int:
    """The UTF-8 size of ``text`` when it is over ``limit``, else 0. A character is at most 4
    bytes, so only long texts are encoded to count."""
    if len(text) * 4 > limit and (size := len(text.encode())) > limit:
        return size
    return 0


def _attributes(kvs: Any, limits: DecodeLimits, where: str) -> dict[str, str]:
    if len(kvs) > limits.max_attributes_per_span:
        raise InvalidRequest(
            f"{where}: {len(kvs)} attributes, more than the limit of "
            f"{limits.max_attributes_per_span}",
            "too_many_attributes",
        )
    out: dict[str, str] = {}
    kv: KeyValue
    for kv in kvs:
        text = value_to_string(kv.value)
        limit = limits.max_attribute_value_bytes
        if size := _bytes_over(text, limit):
            raise InvalidRequest(
                f"{where}: attribute {kv.key[:100]!r} is {size} bytes, more than the "
                f"limit of {limit}",
                "attribute_too_large",
            )
        out[kv.key] = text
    return out


_encode_json_string: Final = json.encoder.encode_basestring


def _convert(value: AnyValue) -> str:
    """``value_to_string`` for a value whose ``string_value`` is empty (the hot path's tail)."""
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return _go_float(value.double_value)
    if kind is None or kind == "string_value":
        return ""
    if kind == "array_value":
        # Arrays of strings (finish reasons, ...): the text _go_json writes, without its
        # per-element calls (json.dumps(s, ensure_ascii=False) is encode_basestring(s)).
        strings = [v.string_value for v in value.array_value.values]
        if strings and all(strings):  # all strings: an empty one may be another kind
            quoted = "[" + ",".join(map(_encode_json_string, strings)) + "]"
            return quoted.translate(_GO_JSON_ESCAPES) if _GO_JSON_SPECIAL.search(quoted) else quoted
    return value_to_string(value)


def _attributes_or_none(kvs: Any, max_count: int, limit: int) -> dict[str, str] | None:
    """``_attributes`` for the hot path: None instead of the error when a limit is exceeded.

    Every upb field access builds a Python object, so this reads as few as it can: a non-empty
    ``string_value`` (most attributes) settles the kind without ``WhichOneof``.
    """
    if len(kvs) > max_count:
        return None
    out: dict[str, str] = {}
    for kv in kvs:
        value = kv.value
        text = value.string_value or _convert(value)
        if len(text) * 4 > limit and len(text.encode()) > limit:  # _bytes_over, inlined
            return None
        out[kv.key] = text
    return out


def _hex_id(raw: bytes, size: int, what: str, where: str, *, required: bool) -> str:
    if not raw:
        if required:
            raise InvalidRequest(f"{where}: {what} is missing", "missing_id")
        return ""
    if len(raw) != size:
        raise InvalidRequest(f"{where}: {what} must be {size} bytes, got {len(raw)}", "invalid_id")
    if raw == bytes(size):
        raise InvalidRequest(f"{where}: {what} is all zeros", "invalid_id")
    return raw.hex()


def _span_error(span: Any, limits: DecodeLimits, where: str) -> InvalidRequest:
    """What is wrong with a span the hot path flagged, checked in the documented order (ids,
    start time, attributes, events, links); the id and attribute checks raise themselves."""
    _hex_id(span.trace_id, 16, "trace_id", where, required=True)
    _hex_id(span.span_id, 8, "span_id", where, required=True)
    _hex_id(span.parent_span_id, 8, "parent_span_id", where, required=False)
    if span.start_time_unix_nano == 0:
        return InvalidRequest(f"{where}: start_time_unix_nano is missing", "missing_time")
    if span.start_time_unix_nano > MAX_TIME_NS:
        return _time_error(where, "start_time_unix_nano", span.start_time_unix_nano)
    _attributes(span.attributes, limits, where)
    if len(span.events) > limits.max_events_per_span:
        return InvalidRequest(
            f"{where}: {len(span.events)} events, more than the limit of "
            f"{limits.max_events_per_span}",
            "too_many_events",
        )
    if len(span.links) > limits.max_links_per_span:
        return InvalidRequest(
            f"{where}: {len(span.links)} links, more than the limit of {limits.max_links_per_span}",
            "too_many_links",
        )
    for event in span.events:
        if event.time_unix_nano > MAX_TIME_NS:
            return _time_error(f"{where}.events", "time_unix_nano", event.time_unix_nano)
    return InvalidRequest(f"{where}: span cannot be stored", "invalid")  # pragma: no cover


# Timestamps are stored as signed 64-bit nanoseconds (DateTime64(9)): up to 2262-04-11.
MAX_TIME_NS: Final = 2**63 - 1


def _time_error(where: str, field: str, value: int) -> InvalidRequest:
    return InvalidRequest(
        f"{where}: {field} {value} is beyond the latest storable time (2262-04-11, "
        f"{MAX_TIME_NS} ns)",
        "invalid_time",
    )


_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
_N_KINDS: Final = len(SPAN_KINDS)


def request_to_columns(
    request: ExportTraceServiceRequest, limits: DecodeLimits | None = None
) -> SpanColumns:
    """Flatten a decoded request into columns, rejecting what cannot be stored.

    The collector's hottest loop (benchmarks/bench_collector.py), so written for speed: column
    appends bound once, a valid span recognised by a few comparisons, no per-span location
    string; a span that fails them goes to ``_span_error`` for the precise error.
    """
    limits = limits or DecodeLimits()
    cols = SpanColumns()
    max_spans = limits.max_spans_per_request
    max_attributes = limits.max_attributes_per_span
    max_bytes = limits.max_attribute_value_bytes
    max_events = limits.max_events_per_span
    max_links = limits.max_links_per_span
    timestamps = cols.timestamp.append
    trace_ids = cols.trace_id.append
    span_ids = cols.span_id.append
    parent_ids = cols.parent_span_id.append
    trace_states = cols.trace_state.append
    names = cols.span_name.append
    kinds = cols.span_kind.append
    services = cols.service_name.append
    resources = cols.resource_attributes.append
    scope_names = cols.scope_name.append
    scope_versions = cols.scope_version.append
    span_attributes = cols.span_attributes.append
    durations = cols.duration.append
    status_codes = cols.status_code.append
    status_messages = cols.status_message.append
    events_timestamp = cols.events_timestamp.append
    events_name = cols.events_name.append
    events_attributes = cols.events_attributes.append
    links_trace_id = cols.links_trace_id.append
    links_span_id = cols.links_span_id.append
    links_trace_state = cols.links_trace_state.append
    links_attributes = cols.links_attributes.append
    total = 0
    for r_index, resource_spans in enumerate(request.resource_spans):
        where = f"resource_spans[{r_index}].resource"
        resource = _attributes(resource_spans.resource.attributes, limits, where)
        size = sum(len(key.encode()) + len(value.encode()) for key, value in resource.items())
        if size > limits.max_resource_bytes:
            raise InvalidRequest(
                f"{where}: attributes total {size} bytes, more than the limit of "
                f"{limits.max_resource_bytes} (they are stored with every span)",
                "resource_too_large",
            )
        service = resource.get("service.name", "unknown_service")
        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            scope_name = scope.name
            scope_version = scope.version
            for what, text in (("name", scope_name), ("version", scope_version)):
                if size := _bytes_over(text, limits.max_scope_bytes):
                    raise InvalidRequest(
                        f"resource_spans[{r_index}].scope_spans[{s_index}].scope: {what} is "
                        f"{size} bytes, more than the limit of {limits.max_scope_bytes}",
                        "scope_too_large",
                    )
            for index, span in enumerate(scope_spans.spans):
                total += 1
                if total > max_spans:
                    raise InvalidRequest(
                        f"more than {max_spans} spans in one request", "too_many_spans"
                    )
                trace_id = span.trace_id
                span_id = span.span_id
                parent_id = span.parent_span_id
                start = span.start_time_unix_nano
                attributes = _attributes_or_none(span.attributes, max_attributes, max_bytes)
                events = span.events
                links = span.links
                if (
                    len(trace_id) != 16
                    or trace_id == _ZERO_TRACE_ID
                    or len(span_id) != 8
                    or span_id == _ZERO_SPAN_ID
                    or (parent_id and (len(parent_id) != 8 or parent_id == _ZERO_SPAN_ID))
                    or start == 0
                    or start > MAX_TIME_NS
                    or attributes is None
                    or len(events) > max_events
                    or len(links) > max_links
                ):
                    where = f"resource_spans[{r_index}].scope_spans[{s_index}].spans[{index}]"
                    raise _span_error(span, limits, where)
                trace_ids(trace_id.hex())
                span_ids(span_id.hex())
                parent_ids(parent_id.hex())
                end = span.end_time_unix_nano
                timestamps(start)
                durations(end - start if end >= start else 0)
                trace_states(span.trace_state)
                names(span.name)
                kind = span.kind
                kinds(SPAN_KINDS[kind] if 0 <= kind < _N_KINDS else "Unspecified")
                services(service)
                resources(resource)
                scope_names(scope_name)
                scope_versions(scope_version)
                span_attributes(attributes)
                status = span.status
                code = status.code
                status_codes(STATUS_CODES[code] if 0 <= code < 3 else "Unset")
                status_messages(status.message)
                if events:
                    where = f"resource_spans[{r_index}].scope_spans[{s_index}].spans[{index}]"
                    times = [e.time_unix_nano for e in events]
                    if max(times) > MAX_TIME_NS:
                        raise _span_error(span, limits, where)
                    events_timestamp(times)
                    events_name([e.name for e in events])
                    events_attributes(
                        [_attributes(e.attributes, limits, f"{where}.events") for e in events]
                    )
                else:
                    events_timestamp([])
                    events_name([])
                    events_attributes([])
                if links:
                    where = f"resource_spans[{r_index}].scope_spans[{s_index}].spans[{index}]"
                    links_trace_id([link.trace_id.hex() for link in links])
                    links_span_id([link.span_id.hex() for link in links])
                    links_trace_state([link.trace_state for link in links])
                    links_attributes(
                        [_attributes(link.attributes, limits, f"{where}.links") for link in links]
                    )
                else:
                    links_trace_id([])
                    links_span_id([])
                    links_trace_state([])
                    links_attributes([])
    return cols


# No encoded byte decodes into more than this many bytes of columns: the worst is an empty
# event or link (2 bytes on the wire, four 4-byte offsets in the rows).
COLUMN_BYTES_PER_ENCODED_BYTE: Final = 8
# What a span's row costs beyond its encoded bytes: fixed-width columns, offsets, hex ids.
COLUMN_BYTES_PER_SPAN: Final = 256
# What parsing a JSON body costs: the text, then a Python object (and a message) per container.
JSON_BYTES_PER_BYTE: Final = 4
JSON_BYTES_PER_CONTAINER: Final = 200


def decoded_size(request: ExportTraceServiceRequest, encoded_bytes: int) -> int:
    """An upper bound on the bytes the request's rows take once decoded, found before decoding.

    A resource's attributes and a scope's name and version are copied into each of their spans'
    rows, so they count once per span: that is where a small request becomes gigabytes of rows.
    Walks resources and scopes only, not spans (cheap beside the decode it guards).
    """
    size = COLUMN_BYTES_PER_ENCODED_BYTE * encoded_bytes
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource.ByteSize()
        for scope_spans in resource_spans.scope_spans:
            per_span = resource + scope_spans.scope.ByteSize() + COLUMN_BYTES_PER_SPAN
            size += per_span * len(scope_spans.spans)
    return size


def json_parse_size(body: bytes) -> int:
    """An upper bound on what parsing a JSON body takes, from a scan at C speed: ``{},{},...``
    is small gzipped and small as text, but millions of objects once parsed."""
    containers = body.count(b"{") + body.count(b"[")
    return JSON_BYTES_PER_BYTE * len(body) + JSON_BYTES_PER_CONTAINER * containers


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidRequest(
            f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}",
            "malformed_protobuf",
        ) from exc
    return request


def _hex_to_b64(value: Any, what: str) -> Any:
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidRequest(
            f"{what} must be hex in OTLP/JSON, got {value[:40]!r}", "invalid_id"
        ) from exc
    return base64.b64encode(raw).decode()


_TOO_DEEP: Final = (
    "body is not a valid OTLP/JSON trace request: it nests deeper than the 100 levels "
    "protobuf allows"
)


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: ids are hex (not base64 as in proto3 JSON), enums may be numbers."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not valid UTF-8: {exc}", "invalid_utf8") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", "malformed_json") from exc
    except RecursionError as exc:
        raise InvalidRequest(_TOO_DEEP, "too_deep") from exc
    if not isinstance(document, dict):
        raise InvalidRequest(
            "OTLP/JSON body must be an object with resourceSpans", "malformed_json"
        )
    try:
        for resource_spans in document.get("resourceSpans") or ():
            for scope_spans in resource_spans.get("scopeSpans") or ():
                for span in scope_spans.get("spans") or ():
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = _hex_to_b64(span[key], key)
                    for link in span.get("links") or ():
                        for key in ("traceId", "spanId"):
                            if key in link:
                                link[key] = _hex_to_b64(link[key], f"links.{key}")
        request = ExportTraceServiceRequest()
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except InvalidRequest:
        raise
    except RecursionError as exc:
        raise InvalidRequest(_TOO_DEEP, "too_deep") from exc
    except (json_format.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"body is not a valid OTLP/JSON trace request: {exc}", "malformed_json"
        ) from exc
    return request
