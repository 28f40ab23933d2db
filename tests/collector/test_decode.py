"""Decoding OTLP into span columns: attribute strings as the ClickHouse exporter writes them,
ids and enums as the exporter's otel_traces rows have them, and every invalid input rejected
with a reason and a message that names the problem."""

from __future__ import annotations

import base64
import json
import random
import tracemalloc

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch.collector._decode import (
    DecodeLimits,
    InvalidRequest,
    decoded_size,
    json_parse_size,
    parse_json,
    parse_protobuf,
    request_to_columns,
    value_to_string,
)
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import spans_to_arrow
from tests.collector.conftest import any_value, make_request, make_span, new_trace_id

TRACE = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
SPAN = bytes.fromhex("1112131415161718")
PARENT = bytes.fromhex("2122232425262728")


# -- attribute values: pcommon.Value.AsString() --------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        ("ünïcødé ✓", "ünïcødé ✓"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (2**63 - 1, "9223372036854775807"),
    ],
)
def test_scalar_values_are_stored_as_the_exporter_stores_them(value: object, expected: str):
    assert value_to_string(any_value(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, "0.5"),
        (0.93, "0.93"),
        (1.0, "1"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (123456.789, "123456.789"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
    ],
)
def test_doubles_are_formatted_like_the_exporters_es6_number_format(value: float, expected: str):
    """The exporter formats doubles as Go's encoding/json does (ES6 number-to-string): no
    trailing ``.0``, fixed notation between 1e-6 and 1e21, exponents without padding."""
    assert value_to_string(any_value(value)) == expected


def test_empty_value_is_an_empty_string():
    assert value_to_string(any_value(None)) == ""


def test_bytes_are_standard_base64():
    raw = bytes(range(250, 256)) + b"\x00\x01"
    assert value_to_string(any_value(raw)) == base64.b64encode(raw).decode()


def test_arrays_are_compact_json():
    value = any_value(["a", 1, True, 0.5, 2.0, None])
    assert value_to_string(value) == '["a",1,true,0.5,2,null]'


def test_maps_are_json_with_sorted_keys_like_go_encoding_json():
    value = any_value({"zeta": 1, "alpha": {"y": [1, 2], "x": "s"}, "mid": False})
    assert value_to_string(value) == '{"alpha":{"x":"s","y":[1,2]},"mid":false,"zeta":1}'


def test_json_strings_escape_html_characters_like_go_encoding_json():
    value = any_value({"html": "<b>&</b>", "text": "é\n"})
    assert (
        value_to_string(value) == '{"html":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e","text":"é\\n"}'
    )


def test_bytes_inside_arrays_are_base64_json_strings():
    value = any_value([b"\x00\xff"])
    assert json.loads(value_to_string(value)) == [base64.b64encode(b"\x00\xff").decode()]


# -- request_to_columns -------------------------------------------------------------------------
def test_ids_are_lowercase_hex_and_a_root_span_has_an_empty_parent():
    request = make_request(
        make_span("root", trace_id=TRACE, span_id=PARENT),
        make_span("child", trace_id=TRACE, span_id=SPAN, parent_span_id=PARENT),
    )
    cols = request_to_columns(request)
    assert cols.trace_id == [TRACE.hex(), TRACE.hex()]
    assert cols.span_id == [PARENT.hex(), SPAN.hex()]
    assert cols.parent_span_id == ["", PARENT.hex()]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (Span.SPAN_KIND_UNSPECIFIED, "Unspecified"),
        (Span.SPAN_KIND_INTERNAL, "Internal"),
        (Span.SPAN_KIND_SERVER, "Server"),
        (Span.SPAN_KIND_CLIENT, "Client"),
        (Span.SPAN_KIND_PRODUCER, "Producer"),
        (Span.SPAN_KIND_CONSUMER, "Consumer"),
    ],
)
def test_span_kinds_are_the_exporters_strings(kind: int, name: str):
    cols = request_to_columns(make_request(make_span(kind=kind)))
    assert cols.span_kind == [name]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (Status.STATUS_CODE_UNSET, "Unset"),
        (Status.STATUS_CODE_OK, "Ok"),
        (Status.STATUS_CODE_ERROR, "Error"),
    ],
)
def test_status_codes_are_the_exporters_strings(code: int, name: str):
    cols = request_to_columns(make_request(make_span(status_code=code, status_message="why")))
    assert cols.status_code == [name]
    assert cols.status_message == ["why"]


def test_timestamp_is_the_start_and_duration_is_end_minus_start():
    cols = request_to_columns(make_request(make_span(start_ns=1_700_000_000_000_000_000)))
    assert cols.timestamp == [1_700_000_000_000_000_000]
    assert cols.duration == [1_000_000]


def test_an_end_before_the_start_gives_zero_duration_not_a_huge_unsigned_one():
    span = make_span(start_ns=2_000_000_000)
    span.end_time_unix_nano = 1_000_000_000
    assert request_to_columns(make_request(span)).duration == [0]


def test_service_name_and_scope_come_from_the_resource_and_scope():
    request = make_request(
        make_span(), resource={"service.name": "billing", "host.name": "h1"}, scope="my.lib"
    )
    cols = request_to_columns(request)
    assert cols.service_name == ["billing"]
    assert cols.resource_attributes == [{"service.name": "billing", "host.name": "h1"}]
    assert (cols.scope_name, cols.scope_version) == (["my.lib"], ["1.0"])


def test_a_resource_without_service_name_gets_the_sdk_default():
    assert request_to_columns(make_request(make_span(), resource={})).service_name == [
        "unknown_service"
    ]


def test_events_and_links_are_flattened_into_nested_columns():
    span = make_span()
    event = span.events.add()
    event.time_unix_nano = 123
    event.name = "exception"
    event.attributes.add(key="exception.type", value=any_value("ValueError"))
    link = span.links.add()
    link.trace_id = TRACE
    link.span_id = SPAN
    link.trace_state = "k=v"
    link.attributes.add(key="n", value=any_value(3))
    cols = request_to_columns(make_request(span))
    assert cols.events_timestamp == [[123]]
    assert cols.events_name == [["exception"]]
    assert cols.events_attributes == [[{"exception.type": "ValueError"}]]
    assert cols.links_trace_id == [[TRACE.hex()]]
    assert cols.links_span_id == [[SPAN.hex()]]
    assert cols.links_trace_state == [["k=v"]]
    assert cols.links_attributes == [[{"n": "3"}]]


def test_spans_from_several_resources_and_scopes_are_all_decoded():
    request = make_request(make_span("a"), make_span("b"))
    second = make_request(make_span("c"), resource={"service.name": "other"})
    request.resource_spans.extend(second.resource_spans)
    cols = request_to_columns(request)
    assert cols.span_name == ["a", "b", "c"]
    assert cols.service_name == ["test-service", "test-service", "other"]
    assert len(cols) == 3


# -- validation ---------------------------------------------------------------------------------
def rejection(request: object, limits: DecodeLimits | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        request_to_columns(request, limits)  # type: ignore[arg-type]
    return caught.value


def test_a_missing_trace_id_is_rejected_naming_the_field():
    error = rejection(make_request(make_span(trace_id=b"")))
    assert error.reason == "missing_id"
    assert "trace_id is missing" in str(error)
    assert "spans[0]" in str(error)


def test_a_missing_span_id_is_rejected_naming_the_field():
    error = rejection(make_request(make_span(span_id=b"")))
    assert error.reason == "missing_id"
    assert "span_id is missing" in str(error)


@pytest.mark.parametrize(
    ("field", "span"),
    [
        ("trace_id must be 16 bytes, got 8", make_span(trace_id=b"12345678")),
        ("span_id must be 8 bytes, got 16", make_span(span_id=b"1234567812345678")),
        ("parent_span_id must be 8 bytes, got 3", make_span(parent_span_id=b"abc")),
        ("trace_id is all zeros", make_span(trace_id=bytes(16))),
        ("span_id is all zeros", make_span(span_id=bytes(8))),
    ],
)
def test_wrong_length_or_zero_ids_are_rejected_naming_the_field(field: str, span: Span):
    error = rejection(make_request(span))
    assert error.reason == "invalid_id"
    assert field in str(error)


def test_a_missing_start_time_is_rejected():
    span = make_span()
    span.start_time_unix_nano = 0
    error = rejection(make_request(span))
    assert error.reason == "missing_time"
    assert "start_time_unix_nano is missing" in str(error)


def test_times_beyond_what_datetime64_holds_are_rejected_not_crashed_on():
    """Start and event times past 2**63 - 1 ns (year 2262) cannot be stored: a 400 naming the
    field, not an overflow while building the rows."""
    span = make_span()
    span.start_time_unix_nano = 2**63
    span.end_time_unix_nano = 2**63 + 5
    error = rejection(make_request(span))
    assert (error.reason, "start_time_unix_nano 9223372036854775808") == (
        "invalid_time",
        str(error).split(": ", 1)[1].split(" is ")[0],
    )
    late_event = make_span()
    late_event.events.add(time_unix_nano=2**64 - 1, name="late")
    error = rejection(make_request(late_event))
    assert error.reason == "invalid_time"
    assert ".events: time_unix_nano 18446744073709551615 is beyond" in str(error)


def test_too_many_span_attributes_are_rejected_not_truncated():
    span = make_span(attributes={f"k{i}": i for i in range(5)})
    error = rejection(make_request(span), DecodeLimits(max_attributes_per_span=4))
    assert error.reason == "too_many_attributes"
    assert "5 attributes, more than the limit of 4" in str(error)


def test_too_many_resource_attributes_are_rejected():
    request = make_request(make_span(), resource={f"r{i}": "x" for i in range(3)})
    error = rejection(request, DecodeLimits(max_attributes_per_span=2))
    assert error.reason == "too_many_attributes"
    assert "resource" in str(error)


def test_an_attribute_value_over_the_size_limit_is_rejected_naming_the_key():
    span = make_span(attributes={"gen_ai.input.messages": "x" * 101})
    error = rejection(make_request(span), DecodeLimits(max_attribute_value_bytes=100))
    assert error.reason == "attribute_too_large"
    assert "'gen_ai.input.messages'" in str(error)
    assert "limit of 100" in str(error)


def test_the_attribute_size_limit_counts_utf8_bytes_not_characters():
    """60 characters of 'é' are 120 bytes: over a 100-byte limit."""
    span = make_span(attributes={"text": "é" * 60})
    error = rejection(make_request(span), DecodeLimits(max_attribute_value_bytes=100))
    assert error.reason == "attribute_too_large"


def test_an_attribute_value_at_the_size_limit_is_accepted():
    span = make_span(attributes={"text": "x" * 100})
    cols = request_to_columns(make_request(span), DecodeLimits(max_attribute_value_bytes=100))
    assert cols.span_attributes == [{"text": "x" * 100}]


def test_too_many_events_are_rejected():
    span = make_span()
    for _ in range(3):
        span.events.add(name="e", time_unix_nano=1)
    error = rejection(make_request(span), DecodeLimits(max_events_per_span=2))
    assert error.reason == "too_many_events"


def test_too_many_links_are_rejected():
    span = make_span()
    for _ in range(3):
        span.links.add(trace_id=new_trace_id(), span_id=SPAN)
    error = rejection(make_request(span), DecodeLimits(max_links_per_span=2))
    assert error.reason == "too_many_links"


def test_too_many_spans_in_one_request_are_rejected():
    request = make_request(*(make_span() for _ in range(4)))
    error = rejection(request, DecodeLimits(max_spans_per_request=3))
    assert error.reason == "too_many_spans"
    assert "more than 3 spans" in str(error)


# -- protobuf and JSON bodies -------------------------------------------------------------------
def test_protobuf_bodies_round_trip():
    request = make_request(make_span("x", trace_id=TRACE, span_id=SPAN))
    assert parse_protobuf(request.SerializeToString()) == request


def test_a_body_that_is_not_protobuf_is_rejected():
    with pytest.raises(InvalidRequest) as caught:
        parse_protobuf(b"\x0a\xff\xff\xff\xff")
    assert caught.value.reason == "malformed_protobuf"
    assert "not a valid OTLP protobuf" in str(caught.value)


def test_invalid_utf8_in_a_protobuf_string_field_is_rejected_naming_utf8():
    body = make_request(make_span("ABCDEFGH")).SerializeToString()
    with pytest.raises(InvalidRequest) as caught:
        parse_protobuf(body.replace(b"ABCDEFGH", b"AB\xff\xfeEFGH"))
    assert caught.value.reason == "malformed_protobuf"
    assert "UTF-8" in str(caught.value)


OTLP_JSON = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "json-scope"},
                    "spans": [
                        {
                            "traceId": TRACE.hex(),
                            "spanId": SPAN.hex(),
                            "parentSpanId": PARENT.hex(),
                            "name": "chat",
                            "kind": 3,
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": "1700000000500000000",
                            "attributes": [
                                {"key": "n", "value": {"intValue": "42"}},
                                {"key": "ok", "value": {"boolValue": True}},
                            ],
                            "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                            "links": [{"traceId": TRACE.hex(), "spanId": PARENT.hex()}],
                        }
                    ],
                }
            ],
        }
    ]
}


def test_otlp_json_takes_hex_ids_camel_case_and_numeric_or_named_enums():
    cols = request_to_columns(parse_json(json.dumps(OTLP_JSON).encode()))
    assert (cols.trace_id, cols.span_id, cols.parent_span_id) == (
        [TRACE.hex()],
        [SPAN.hex()],
        [PARENT.hex()],
    )
    assert cols.span_kind == ["Client"]
    assert cols.status_code == ["Error"]
    assert cols.duration == [500_000_000]
    assert cols.span_attributes == [{"n": "42", "ok": "true"}]
    assert cols.service_name == ["js"]
    assert cols.links_span_id == [[PARENT.hex()]]


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        (b"{not json", "malformed_json", "not valid JSON"),
        (b"[1, 2]", "malformed_json", "must be an object"),
        (b'{"resourceSpans": [1]}', "malformed_json", "not a valid OTLP/JSON"),
        (b'{"resourceSpans": [{"scopeSpans": 5}]}', "malformed_json", "not a valid OTLP/JSON"),
        (b'{"resourceSpans": "x"}', "malformed_json", "not a valid OTLP/JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "invalid_id",
            "traceId must be hex",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff"}]}]}]}',
            "invalid_utf8",
            "UTF-8",
        ),
    ],
)
def test_invalid_json_bodies_are_rejected_naming_the_problem(body: bytes, reason: str, words: str):
    with pytest.raises(InvalidRequest) as caught:
        parse_json(body)
    assert caught.value.reason == reason
    assert words in str(caught.value)


# -- what a request will cost, known before decoding it ------------------------------------------
def _with_events(count: int, *, empty: bool) -> Span:
    span = make_span("evented")
    for _ in range(count):
        event = span.events.add()
        if not empty:
            event.name = "e"
            event.time_unix_nano = span.start_time_unix_nano
    return span


def _with_links(count: int) -> Span:
    span = make_span("linked")
    for _ in range(count):
        span.links.add()
    return span


COST_SHAPES = {
    "plain spans": make_request(*(make_span(f"op {i}", {"k": "v", "n": i}) for i in range(500))),
    "big resource": make_request(
        *(make_span("s") for _ in range(500)), resource={"blob": "x" * 20_000}
    ),
    "empty events": make_request(*(_with_events(256, empty=True) for _ in range(50))),
    "named events": make_request(*(_with_events(100, empty=False) for _ in range(50))),
    "empty links": make_request(*(_with_links(128) for _ in range(50))),
    "doubles and arrays": make_request(
        *(
            make_span("d", {"x": 1.2345678901234567e-300, "a": [1, 2, 3], "m": {}})
            for _ in range(500)
        )
    ),
}


@pytest.mark.parametrize("shape", COST_SHAPES, ids=list(COST_SHAPES))
def test_the_decoded_size_bound_is_not_below_the_rows(shape: str) -> None:
    """``decoded_size`` is what the budget reserves before decoding: the columns made are never
    more (here through the Python decoder's Arrow table; the native one builds the same)."""
    request = COST_SHAPES[shape]
    body = request.SerializeToString()
    rows = spans_to_arrow(request_to_columns(request), PriceTable())
    assert rows.nbytes <= decoded_size(request, len(body))


def test_the_bound_counts_the_resource_once_per_span() -> None:
    request = COST_SHAPES["big resource"]
    assert decoded_size(request, 0) >= 500 * 20_000


def test_json_parse_size_counts_every_container() -> None:
    assert json_parse_size(b'{"resourceSpans":[' + b"{}," * 999 + b"{}]}") >= 1000 * 200


def _random_json(rng: random.Random, depth: int) -> object:
    kind = rng.randrange(7 if depth < 30 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**64, 1.5e308, "1", ""])
    if kind == 2:
        return rng.choice(["resourceSpans", "scopeSpans", "spans", "x" * rng.randrange(50)])
    if kind == 3:
        return "00" * rng.choice([8, 16, 3])
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "attributes",
        "key",
        "value",
        "traceId",
        "spanId",
        "startTimeUnixNano",
        "arrayValue",
        "values",
        "kvlistValue",
        "events",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_json_bodies_of_random_shape_decode_or_are_refused_cleanly() -> None:
    """A fuzz of the JSON decoder: whatever shape, a request or ``InvalidRequest`` (never another
    exception), and parsing never allocates more than ``json_parse_size`` said it would."""
    rng = random.Random(20261203)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(300):
        body = json.dumps({"resourceSpans": _random_json(rng, 0)}).encode()
        if rng.random() < 0.1:
            body = body[: rng.randrange(len(body))]  # cut short
        tracemalloc.start()
        try:
            parse_json(body)
            outcomes["decoded"] += 1
        except InvalidRequest:
            outcomes["refused"] += 1
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak <= json_parse_size(body) + 64 * 1024, body[:200]
    assert outcomes["decoded"]
    assert outcomes["refused"]
