"""The native OTLP decoder (collector/_otlp_native.c) against the Python reference decoder.

For every request it handles, ``native_spans_to_arrow`` must return exactly the table of
``spans_to_arrow(request_to_columns(parse_protobuf(body)))``; for everything else it must decline
(None), so that the Python decoder gives the rows or the error. Checked on benchmark and SDK
traffic, on every attribute kind and span field, on pricing, on documented declines, on seeded
random requests and on seeded mutations of valid bodies; and end to end through the HTTP
receiver against a collector that runs the Python decoder only.
"""

from __future__ import annotations

import math
import os
import random
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa
import pytest
from benchmarks.bench_collector import build_bodies
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentwatch._testing import capture_spans
from agentwatch.app._collector import Collector
from agentwatch.collector import _native_rows
from agentwatch.collector._decode import (
    DecodeLimits,
    InvalidRequest,
    parse_protobuf,
    request_to_columns,
)
from agentwatch.collector._native_rows import NATIVE_DECODER_AVAILABLE, native_spans_to_arrow
from agentwatch.collector._pricing import PriceOverride, PriceTable
from agentwatch.collector._rows import spans_to_arrow
from agentwatch.storage._conventions import COLUMN_BY_NAME
from agentwatch.storage._schema import SPANS_TABLE
from tests.collector.conftest import (
    UNSET,
    StartCollector,
    get,
    http_url,
    post,
    run_sdk_agent,
    set_any,
    wait_until,
)

REQUIRE_NATIVE: Final = os.environ.get("AGENTWATCH_REQUIRE_NATIVE_DECODER") == "1"

if not NATIVE_DECODER_AVAILABLE and not REQUIRE_NATIVE:
    pytest.skip(
        "the native OTLP decoder is not built (set AGENTWATCH_REQUIRE_NATIVE_DECODER=1 to fail)",
        allow_module_level=True,
    )


def test_native_decoder_is_built() -> None:
    """The C extension imports (fails, not skips, under AGENTWATCH_REQUIRE_NATIVE_DECODER=1)."""
    assert NATIVE_DECODER_AVAILABLE, "agentwatch.collector._otlp_native did not import"


# -- comparing the two decoders -------------------------------------------------------------------

LIMITS: Final = DecodeLimits()
OVERRIDES: Final = (
    PriceOverride(
        model="acme-internal-9b", provider="acme", input_per_mtok=1.0, output_per_mtok=2.0
    ),
    PriceOverride(
        model="house-model",
        provider="",
        input_per_mtok=3.0,
        output_per_mtok=15.0,
        cache_read_per_mtok=0.3,
        cache_write_per_mtok=3.75,
    ),
)
PRICES: Final = PriceTable(list(OVERRIDES))


def reference(body: bytes, limits: DecodeLimits = LIMITS, prices: PriceTable = PRICES) -> pa.Table:
    """The Python decoder's table for ``body`` (raises what it raises)."""
    return spans_to_arrow(request_to_columns(parse_protobuf(body), limits), prices)


def first_difference(native: pa.Table, python: pa.Table) -> str:
    """Where two tables first differ: schema, row count, or the first differing column and row."""
    if native.schema != python.schema:
        return f"schemas differ:\nnative:\n{native.schema}\npython:\n{python.schema}"
    if native.num_rows != python.num_rows:
        return f"row counts differ: native {native.num_rows}, python {python.num_rows}"
    for name in python.column_names:
        ours, theirs = native.column(name), python.column(name)
        if ours.equals(theirs):
            continue
        for row, (n, p) in enumerate(zip(ours.to_pylist(), theirs.to_pylist(), strict=True)):
            if n != p or repr(n) != repr(p):  # repr tells -0.0 from 0.0
                return f"column {name!r}, row {row}: native {n!r} != python {p!r}"
        return f"column {name!r} differs in layout only:\nnative: {ours!r}\npython: {theirs!r}"
    return "tables differ, but no column does"


def assert_same(
    body: bytes, limits: DecodeLimits = LIMITS, prices: PriceTable = PRICES
) -> pa.Table:
    """The native decoder handles ``body`` and returns the Python decoder's exact table."""
    python = reference(body, limits, prices)
    native = native_spans_to_arrow(body, limits, prices)
    assert native is not None, "the native decoder declined a request it should handle"
    assert native.equals(python), first_difference(native, python)
    return native


def decode_raw(body: bytes, limits: DecodeLimits) -> dict[str, Any] | None:
    """The C function alone, before any pricing: column buffers, or None when it declines."""
    assert _native_rows._native is not None, "the native decoder is not built"
    return _native_rows.native_columns(body, limits)


def outcome(decode: Callable[[], pa.Table | None]) -> tuple[pa.Table | None, Exception | None]:
    try:
        return decode(), None
    except Exception as exc:
        return None, exc


def check_consistent(
    body: bytes, limits: DecodeLimits = LIMITS, prices: PriceTable = PRICES, where: str = ""
) -> bool | None:
    """The rule for any body: protobuf rejects it (None), or the native decoder declines it
    (False), or it handles it (True) and gives the Python decoder's exact table. When the Python
    decoder rejects the request, the native one must have declined.

    The C function must return (a result or None) on any body, even one protobuf rejects.
    Pricing runs after it, in Python, and is shared by both paths: when it raises, both raise
    the same error (that is a pricing problem, not a decoder difference)."""
    raw = decode_raw(body, limits)
    try:
        parse_protobuf(body)
    except InvalidRequest:
        return None
    context = f"{where}\nlimits {limits}\nbody {body.hex()}"
    native, native_error = outcome(lambda: native_spans_to_arrow(body, limits, prices))
    python, python_error = outcome(lambda: reference(body, limits, prices))
    assert (raw is None) == (native is None and native_error is None), context
    if isinstance(python_error, InvalidRequest):
        assert raw is None, f"native decoded a request Python rejects ({python_error!r}); {context}"
        return False
    if native_error is not None:  # only shared pricing code may raise, and then both paths do
        assert repr(native_error) == repr(python_error), (
            f"native raised {native_error!r}, Python gave {python_error!r}; {context}"
        )
        return True
    if python_error is not None:
        assert native is None, f"native gave rows, Python raised {python_error!r}; {context}"
        return False
    if native is None:
        return False
    assert python is not None
    assert native.equals(python), f"{first_difference(native, python)}\n{context}"
    return True


# -- building requests ----------------------------------------------------------------------------


Attributes = Mapping[str, object] | Sequence[tuple[str, object]]

TRACE_ID: Final = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
START: Final = 1_700_000_000_123_456_789
_ids = iter(range(1, 1 << 62))


def next_id(size: int = 8) -> bytes:
    """A fresh, non-zero id of ``size`` bytes."""
    return next(_ids).to_bytes(size, "big")


def add_attributes(container: Any, attributes: Attributes) -> None:
    """Append KeyValues in order; a list of pairs may repeat a key."""
    items = attributes.items() if isinstance(attributes, Mapping) else attributes
    for key, value in items:
        kv: KeyValue = container.add()
        kv.key = key
        set_any(kv.value, value)


def event(
    name: str = "exception", time_ns: int = START + 10, attributes: Attributes = ()
) -> Span.Event:
    result = Span.Event(name=name, time_unix_nano=time_ns)
    add_attributes(result.attributes, attributes)
    return result


def link(
    trace_id: bytes = TRACE_ID,
    span_id: bytes | None = None,
    trace_state: str = "",
    attributes: Attributes = (),
) -> Span.Link:
    result = Span.Link(
        trace_id=trace_id,
        span_id=next_id() if span_id is None else span_id,
        trace_state=trace_state,
    )
    add_attributes(result.attributes, attributes)
    return result


def make_span(
    *,
    trace_id: bytes = TRACE_ID,
    span_id: bytes | None = None,
    parent: bytes = b"",
    name: str = "op",
    kind: int = Span.SPAN_KIND_INTERNAL,
    start: int = START,
    end: int | None = None,
    attributes: Attributes = (),
    events: Sequence[Span.Event] = (),
    links: Sequence[Span.Link] = (),
    status_code: int = Status.STATUS_CODE_UNSET,
    status_message: str = "",
    trace_state: str = "",
) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=next_id() if span_id is None else span_id,
        parent_span_id=parent,
        name=name,
        kind=Span.SpanKind.ValueType(kind),
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1_000_000 if end is None else end,
        trace_state=trace_state,
    )
    add_attributes(span.attributes, attributes)
    span.events.extend(events)
    span.links.extend(links)
    if status_code or status_message:
        span.status.code = Status.StatusCode.ValueType(status_code)
        span.status.message = status_message
    return span


Scope = tuple[str, str, Sequence[Span]]  # name, version, spans
SERVICE: Final[Mapping[str, object]] = {"service.name": "svc"}


def make_body(*resources: tuple[Attributes, Sequence[Scope]]) -> bytes:
    """A serialized request of (resource attributes, [(scope name, version, spans)])."""
    request = ExportTraceServiceRequest()
    for attributes, scopes in resources:
        resource_spans = request.resource_spans.add()
        add_attributes(resource_spans.resource.attributes, attributes)
        for name, version, spans in scopes:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = name
            scope_spans.scope.version = version
            scope_spans.spans.extend(spans)
    return request.SerializeToString()


def spans_body(*spans: Span, resource: Attributes = SERVICE) -> bytes:
    return make_body((resource, [("tests.native", "1.0", spans)]))


# -- handled: identical tables --------------------------------------------------------------------


@pytest.mark.parametrize(("spans_per_body", "seed"), [(5, 1), (40, 2), (500, 3)])
def test_benchmark_bodies_decode_identically(spans_per_body: int, seed: int) -> None:
    """Benchmark agent traffic (several providers, cache tokens, errors) decodes identically."""
    for body in build_bodies(seed, 3, spans_per_body, START):
        table = assert_same(body)
        assert table.num_rows == spans_per_body
        assert 0 < sum(table.column("Priced").to_pylist()) < spans_per_body


@pytest.mark.parametrize("capture_content", [False, True])
def test_sdk_spans_decode_identically(capture_content: bool) -> None:
    """Spans from agentwatch's own decorators, encoded by the OTLP exporter, decode identically."""
    with capture_spans(capture_content=capture_content) as captured:
        run_sdk_agent()
        run_sdk_agent("T-2")
        spans = captured.spans
    table = assert_same(encode_spans(spans).SerializeToString())
    assert table.num_rows == 10
    assert table.column("Priced").to_pylist().count(1) == 2


ESCAPED: Final = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "\x7f", "<", ">", "&"]
VALUES: Final[list[tuple[str, object]]] = [
    ("ascii", "hello world"),
    ("utf8", "héllo wörld ✓ 日本語 🎉"),
    ("empty-string", ""),
    ("json-like-string", '{"a": "<b>&</b>"}\n'),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("negative", -42),
    ("int64-min", -(2**63)),
    ("int64-max", 2**63 - 1),
    *((f"double-{x!r}", x) for x in (0.0, -0.0, 0.85, 1.0, 123.0, -2.5, 1e-7, 1.5e-5)),
    *((f"double-{x!r}", x) for x in (1e-6, 9.99e-7, 1e16, 1.5e16, 1e20, 1e21, 1.5e300, 5e-324)),
    *((f"double-{x!r}", x) for x in (0.1 + 0.2, 1 / 3, 2.0**53, 2.0**53 + 2, 1e-5, 123456.789)),
    *((f"double-{x!r}", x) for x in (9.999999999999999e20, 1e22, 1e-300, -1e-7, 1e100)),
    ("double-max", 1.7976931348623157e308),
    ("double-min-normal", 2.2250738585072014e-308),
    ("array-one", ["stop"]),
    ("array-several", ["tool_calls", "stop", "length"]),
    ("array-escapes", ESCAPED),
    ("array-escapes-joined", ["".join(ESCAPED)]),
    ("array-line-separators", ["\u2028", "\u2029", "a\u2028b\u2029c", "\u2027\u202a"]),
    ("array-unicode", ["é", "日本", "🎉", "\U0010ffff", "\u00a0"]),
    ("array-empty", []),
    ("unset-anyvalue", UNSET),
    ("no-value", None),
]


@pytest.mark.parametrize("value", [v for _, v in VALUES], ids=[name for name, _ in VALUES])
def test_attribute_values_decode_identically(value: object) -> None:
    """Each attribute kind converts to the same text in span, resource, event and link maps."""
    body = spans_body(
        make_span(
            attributes=[("v", value), ("", value), ("other", "x")],
            events=[event(attributes={"e": value})],
            links=[link(attributes={"l": value})],
        ),
        resource={"service.name": "svc", "r": value},
    )
    assert_same(body)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (0.85, "0.85"),
        (123.0, "123"),
        (1e-6, "0.000001"),
        (9.99e-7, "9.99e-7"),
        (1e-7, "1e-7"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (5e-324, "5e-324"),
        (["a\u2028", '"<&>"'], '["a\\u2028","\\"\\u003c\\u0026\\u003e\\""]'),
    ],
)
def test_values_are_written_as_go_does(value: object, text: str) -> None:
    """The shared text is Go's encoding/json text (so the comparison above is not vacuous)."""
    table = assert_same(spans_body(make_span(attributes={"v": value})))
    assert table.column("SpanAttributes").to_pylist() == [[("v", text)]]


def test_span_fields_decode_identically() -> None:
    """Every span field, odd kinds and status codes, events, links and resources: same rows."""
    odd_ids = [b"", b"\x01", b"\x01\x02\x03", bytes(8), bytes(16), next_id(17), next_id(16)]
    kinds = [*range(8), 100, -1, -(2**31), 2**31 - 1]
    statuses = [(code, message) for code in (0, 1, 2, 3, -1, 99) for message in ("", "boom ✗")]
    first_scope = [
        *(make_span(kind=k, name=f"kind {k}") for k in kinds),
        *(make_span(status_code=c, status_message=m, name="status") for c, m in statuses),
        make_span(parent=next_id(), trace_state="vendor=a,other=b", name="child"),
        make_span(name="", end=START - 5),  # ends before it starts: duration 0
        make_span(name="unended", end=0),
        make_span(start=1, end=2**64 - 1, name="longest"),
        make_span(start=2**63 - 1, end=2**63 - 1, name="latest"),
        make_span(
            name="with events",
            events=[
                event("exception", START + 1, {"exception.type": "ValueError", "n": 3}),
                event("", 0),
                event("checkpoint ✓", 2**63 - 1, [("a", 1.5), ("b", ["x", "y"])]),
            ],
        ),
        make_span(
            name="with links",
            links=[
                *(link(trace_id=t, span_id=s) for t, s in zip(odd_ids, odd_ids[::-1], strict=True)),
                link(trace_state="k=v", attributes={"link.kind": "follows", "n": -1}),
            ],
        ),
    ]
    body = make_body(
        (
            {"service.name": "svc-a", "host.name": "h1", "process.pid": 42},
            [
                ("scope-a", "1.0", first_scope),
                ("", "", [make_span(name="empty scope")]),
                ("scope-without-spans", "9", []),
            ],
        ),
        ({"host.name": "h2"}, [("scope-b", "", [make_span(name="no service")])]),
        ({}, []),
        ({"service.name": 7}, [("scope-c", "2", [make_span(name="int service")])]),
        ({"service.name": ""}, [("scope-d", "", [make_span(), make_span()])]),
        (SERVICE, [("scope-e", "", [make_span(trace_id=next_id(16))])]),
    )
    table = assert_same(body)
    assert table.num_rows == len(first_scope) + 6
    assert set(table.column("ServiceName").to_pylist()) == {
        "svc-a",
        "unknown_service",
        "7",
        "",
        "svc",
    }
    assert "Unspecified" in table.column("SpanKind").to_pylist()


def test_requests_without_spans_decode_identically() -> None:
    """Empty bodies and requests whose resources hold no spans give the same empty table."""
    request = ExportTraceServiceRequest()
    request.resource_spans.add()
    request.resource_spans.add().scope_spans.add()
    for body in (b"", request.SerializeToString()):
        assert assert_same(body).num_rows == 0


TOKEN_COLUMNS: Final = ("InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens")
MODEL_KEYS: Final = COLUMN_BY_NAME["ResponseModel"].keys + COLUMN_BY_NAME["RequestModel"].keys
PROVIDER_KEYS: Final = COLUMN_BY_NAME["Provider"].keys
TOKEN_TEXTS: Final[list[object]] = [
    "12",
    "+12",
    "0012",
    "12.5",
    "abc",
    "1" * 25,
    " 12",
    "12 ",
    "",
    "+",
    "++12",
    "-12",
    "18446744073709551615",
    "18446744073709551616",
    "1" * 15,
    "1" * 16,
    "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to ClickHouse
    "\uff11\uff12",  # fullwidth 12
    12.0,
    12.5,
    1e21,
    True,
    0,
    -5,
    2**63 - 1,
    ["12"],
]
MODELS: Final[list[tuple[str, str]]] = [
    ("gpt-4o", "openai"),
    ("gpt-4o", ""),
    ("openai/gpt-4o", ""),
    ("openai/gpt-4o", "azure.ai.openai"),
    (" gpt-4o ", "OpenAI"),
    ("gpt-4o-2024-08-06", "openai"),
    ("gpt-4o-mini-2024-07-18", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-sonnet-4-5-20250929", "anthropic"),
    ("gemini-2.0-flash", "gcp.gemini"),
    ("no-such-model-xyz", "openai"),
    ("no-such-model-xyz", ""),
    ("acme-internal-9b", "acme"),
    ("acme-internal-9b", ""),
    ("house-model", "whoever"),
    ("", "openai"),
]


def pricing_spans() -> list[Span]:
    """Spans covering every token/model/provider key, token texts and priced or unpriced models."""
    spans: list[Span] = []

    def add(**attributes: object) -> None:
        spans.append(make_span(name=f"chat {len(spans)}", attributes=attributes))

    def add_pairs(pairs: Sequence[tuple[str, object]]) -> None:
        spans.append(make_span(name=f"chat {len(spans)}", attributes=pairs))

    base = [("gen_ai.request.model", "gpt-4o"), ("gen_ai.provider.name", "openai")]
    for column in TOKEN_COLUMNS:
        for key in COLUMN_BY_NAME[column].keys:
            add_pairs([*base, (key, 1000)])
            for other, value in (
                ("gen_ai.usage.input_tokens", "700"),
                ("llm.usage.completion_tokens", 300),
            ):
                if other != key:
                    add_pairs([*base, (other, 5000), (key, value)])
    for text in TOKEN_TEXTS:
        add_pairs([*base, ("gen_ai.usage.input_tokens", text), ("gen_ai.usage.output_tokens", 7)])
        add_pairs([*base, ("gen_ai.usage.output_tokens", text)])
        add_pairs([*base, ("gen_ai.usage.input_tokens", 100), ("llm.token_count.prompt", text)])
        add_pairs(
            [
                *base,
                ("gen_ai.usage.input_tokens", 5000),
                ("gen_ai.usage.cache_read_input_tokens", text),
                ("llm.usage.cache_creation_input_tokens", text),
            ]
        )
    usage = [("gen_ai.usage.input_tokens", 300_000), ("gen_ai.usage.output_tokens", 2000)]
    cached = [*usage, ("gen_ai.usage.cache_read.input_tokens", 1000)]
    for model, provider in MODELS:
        for model_key in MODEL_KEYS:
            for provider_key in PROVIDER_KEYS:
                add_pairs([(model_key, model), (provider_key, provider), *cached])
        add_pairs([("gen_ai.response.model", model), *usage])  # no provider at all
        add_pairs([("gen_ai.request.model", model), ("gen_ai.system", provider), *usage])
    add(**{"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5})  # tokens, no model
    add(**{"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"})  # model, no tokens
    add(  # the response model wins over the request model
        **{
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1000,
        }
    )
    add(  # an empty response model falls through to the request model
        **{
            "gen_ai.response.model": "",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.provider.name": "",
            "gen_ai.system": "anthropic",
            "gen_ai.usage.input_tokens": "",
            "gen_ai.usage.prompt_tokens": "250",
        }
    )
    add(**{"llm.model_name": "house-model", "llm.token_count.completion": 1, "x": "y"})
    return spans


def test_pricing_inputs_decode_identically() -> None:
    """All token/model/provider keys, token texts and known/unknown models: same cost columns."""
    table = assert_same(spans_body(*pricing_spans()))
    priced = table.column("Priced").to_pylist()
    costs = table.column("CostUsd").to_pylist()
    assert priced.count(1) > 100
    assert priced.count(0) > 100
    assert all(cost > 0 for cost, p in zip(costs, priced, strict=True) if p)
    # In smaller requests with fresh tables too: each resolves its (model, provider) pairs anew.
    spans = pricing_spans()
    for chunk in range(0, len(spans), 97):
        assert_same(spans_body(*spans[chunk : chunk + 97]), prices=PriceTable(list(OVERRIDES)))


def test_override_price_is_applied_natively() -> None:
    """A model known only from a PriceOverride is priced at the override's rates."""
    span = make_span(
        attributes={
            "gen_ai.request.model": "acme-internal-9b",
            "gen_ai.provider.name": "acme",
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.output_tokens": "500000",
        }
    )
    table = assert_same(spans_body(span))
    assert table.column("Priced").to_pylist() == [1]
    assert table.column("CostUsd").to_pylist() == [pytest.approx(2.0)]
    without = assert_same(spans_body(span), prices=PriceTable())
    assert (without.column("Priced").to_pylist(), without.column("CostUsd").to_pylist()) == (
        [0],
        [0.0],
    )


@pytest.mark.parametrize(("pairs", "handled"), [(256, True), (257, False)])
def test_distinct_price_pairs_per_request(pairs: int, handled: bool) -> None:
    """256 distinct (model, provider) pairs are priced natively; one more falls back to Python."""
    spans = [
        make_span(
            attributes={
                "gen_ai.request.model": "house-model",
                "gen_ai.provider.name": f"provider-{i}",
                "gen_ai.usage.input_tokens": i + 1,
            }
        )
        for i in range(pairs)
    ]
    body = spans_body(*spans)
    if handled:
        assert sum(assert_same(body).column("Priced").to_pylist()) == pairs
    else:
        assert native_spans_to_arrow(body, LIMITS, PRICES) is None
        assert sum(reference(body).column("Priced").to_pylist()) == pairs


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            spans_body(make_span(), resource={"service.name": "s", "k": "x" * 70_000}),
            "resource_too_large",
        ),
        (make_body((SERVICE, [("n" * 1025, "1.0", [make_span()])])), "scope_too_large"),
        (make_body((SERVICE, [("n", "v" * 1025, [make_span()])])), "scope_too_large"),
    ],
    ids=["resource", "scope-name", "scope-version"],
)
def test_what_every_span_repeats_is_bounded_by_both_decoders(body: bytes, reason: str) -> None:
    """Resource attributes and scope names are stored with every span of the request, so a
    small body could decode into gigabytes: past max_resource_bytes / max_scope_bytes the
    native decoder declines and the Python one rejects the request, saying why."""
    assert native_spans_to_arrow(body, LIMITS, PRICES) is None
    with pytest.raises(InvalidRequest) as raised:
        reference(body)
    assert raised.value.reason == reason
    assert "more than the limit" in str(raised.value)


def test_resource_and_scope_at_their_limits_are_handled() -> None:
    """Exactly at the limits both decoders store the request, identically."""
    limits = DecodeLimits(max_resource_bytes=100, max_scope_bytes=10)
    resource = {"service.name": "s", "k": "x" * (100 - len("service.name") - 1 - 1)}
    assert_same(make_body((resource, [("n" * 10, "v" * 10, [make_span()])])), limits)


def test_a_request_that_would_cost_quadratic_comparisons_is_declined() -> None:
    """Many long, distinct model names of one length make each priced span compare against all
    earlier ones. The native decoder stops at a budget proportional to the body and declines
    (the Python decoder hashes them); the same shape, smaller, is handled."""

    def body(spans: int, models: int) -> bytes:
        return spans_body(
            *(
                make_span(
                    attributes={
                        "gen_ai.request.model": f"{i % models:04d}" + "m" * 4000,
                        "gen_ai.usage.input_tokens": 1,
                    }
                )
                for i in range(spans)
            )
        )

    assert_same(body(20, 20))
    attack = body(2000, 200)
    assert native_spans_to_arrow(attack, LIMITS, PRICES) is None
    assert reference(attack).column("Priced").to_pylist() == [0] * 2000


# -- wire-format variations protobuf accepts --------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One field: a tag, then a varint/fixed payload as given, or a length-delimited one."""
    tag = varint(number << 3 | wire_type)
    return tag + (varint(len(payload)) + payload if wire_type == 2 else payload)


UNKNOWN: Final = (
    field(1000, 0, varint(2**64 - 1))
    + field(1001, 1, bytes(8))
    + field(1002, 2, b"\xff\x00junk")
    + field(1003, 5, bytes(4))
)


def wire_body(span: bytes, scope_extra: bytes = b"", resource_extra: bytes = b"") -> bytes:
    """A request around raw span bytes; ``*_extra`` are appended to the enclosing messages."""
    resource = field(
        1, 2, KeyValue(key="service.name", value=AnyValue(string_value="svc")).SerializeToString()
    )
    scope_spans = field(1, 2, field(1, 2, b"scope")) + field(2, 2, span) + scope_extra
    resource_spans = field(1, 2, resource) + field(2, 2, scope_spans) + resource_extra
    return field(1, 2, resource_spans)


def kv_bytes(key: str, value: bytes) -> bytes:
    return field(1, 2, key.encode()) + field(2, 2, value)


BASE_SPAN: Final = make_span(attributes={"a": "b"}).SerializeToString()
WIRE_CASES: Final[list[tuple[str, bytes, bool]]] = [
    # (id, body, the native decoder must handle it)
    ("unknown-fields-everywhere", wire_body(BASE_SPAN + UNKNOWN, UNKNOWN, UNKNOWN) + UNKNOWN, True),
    (
        "unknown-fields-in-values",
        wire_body(
            BASE_SPAN
            + field(9, 2, kv_bytes("k", field(1, 2, b"v") + UNKNOWN) + UNKNOWN)
            + field(11, 2, field(2, 2, b"ev") + UNKNOWN)
            + field(13, 2, field(1, 2, TRACE_ID) + UNKNOWN)
            + field(15, 2, field(3, 0, varint(2)) + UNKNOWN)
        ),
        True,
    ),
    ("name-twice-last-wins", wire_body(BASE_SPAN + field(5, 2, b"second")), True),
    ("trace-id-twice", wire_body(BASE_SPAN + field(1, 2, next_id(16))), True),
    ("kind-64-bit-varint", wire_body(BASE_SPAN + field(6, 0, varint(2**32 + 2))), True),
    ("kind-negative", wire_body(BASE_SPAN + field(6, 0, varint(-3))), True),
    (
        "status-code-64-bit",
        wire_body(BASE_SPAN + field(15, 2, field(3, 0, varint(2**40 + 1)))),
        True,
    ),
    (
        "fields-out-of-order",
        wire_body(
            field(9, 2, kv_bytes("z", field(3, 0, varint(5))))
            + field(8, 1, (START + 9).to_bytes(8, "little"))
            + field(2, 2, next_id())
            + field(7, 1, START.to_bytes(8, "little"))
            + field(1, 2, TRACE_ID)
        ),
        True,
    ),
    (
        "spans-before-scope",
        field(1, 2, field(2, 2, field(2, 2, BASE_SPAN) + field(1, 2, field(1, 2, b"s")))),
        True,
    ),
    (
        "scope-spans-before-resource",
        field(
            1,
            2,
            field(2, 2, field(2, 2, BASE_SPAN))
            + field(1, 2, field(1, 2, kv_bytes("service.name", field(1, 2, b"x")))),
        ),
        True,
    ),
    (
        "value-kinds-last-wins",
        wire_body(
            BASE_SPAN + field(9, 2, kv_bytes("k", field(1, 2, b"s") + field(3, 0, varint(9))))
        ),
        True,
    ),
    (
        "bool-as-big-varint",
        wire_body(BASE_SPAN + field(9, 2, kv_bytes("k", field(2, 0, varint(300))))),
        True,
    ),
    (
        "key-twice-last-wins",
        wire_body(BASE_SPAN + field(9, 2, field(1, 2, b"x") + kv_bytes("k", b""))),
        True,
    ),
    # Merged repeated messages: declining is allowed, a different table is not.
    (
        "status-twice",
        wire_body(
            BASE_SPAN + field(15, 2, field(2, 2, b"m")) + field(15, 2, field(3, 0, varint(2)))
        ),
        False,
    ),
    (
        "value-twice",
        wire_body(
            BASE_SPAN
            + field(9, 2, kv_bytes("k", field(1, 2, b"a")) + field(2, 2, field(3, 0, varint(1))))
        ),
        False,
    ),
    (
        "array-twice",
        wire_body(
            BASE_SPAN
            + field(
                9,
                2,
                kv_bytes(
                    "k",
                    field(5, 2, field(1, 2, field(1, 2, b"a")))
                    + field(5, 2, field(1, 2, field(1, 2, b"b"))),
                ),
            )
        ),
        False,
    ),
    (
        "scope-twice",
        field(
            1,
            2,
            field(
                2,
                2,
                field(1, 2, field(1, 2, b"a"))
                + field(1, 2, field(2, 2, b"v"))
                + field(2, 2, BASE_SPAN),
            ),
        ),
        False,
    ),
    (
        "resource-twice",
        wire_body(
            BASE_SPAN, resource_extra=field(1, 2, field(1, 2, kv_bytes("r", field(1, 2, b"v"))))
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("body", "must_handle"),
    [(body, must) for _, body, must in WIRE_CASES],
    ids=[name for name, _, _ in WIRE_CASES],
)
def test_wire_format_variations(body: bytes, must_handle: bool) -> None:
    """Unknown, reordered, repeated fields and wide varints: same table, or a decline on merges."""
    handled = check_consistent(body)
    assert handled is not None, "protobuf rejected the test's own body"
    if must_handle:
        assert handled, "the native decoder declined"


# -- declined: the Python decoder answers ---------------------------------------------------------

TABLE: Final = "table"  # the Python decoder returns rows


def one(**overrides: Any) -> bytes:
    return spans_body(make_span(**overrides))


SMALL: Final = DecodeLimits(
    max_attributes_per_span=3,
    max_attribute_value_bytes=8,
    max_events_per_span=2,
    max_links_per_span=2,
    max_spans_per_request=3,
)
DECLINES: Final[list[tuple[str, Callable[[], bytes], DecodeLimits, object]]] = [
    (
        "duplicate-span-key",
        lambda: one(attributes=[("k", "a"), ("j", 1), ("k", "b")]),
        LIMITS,
        TABLE,
    ),
    (
        "duplicate-resource-key",
        lambda: spans_body(make_span(), resource=[("service.name", "a"), ("service.name", "b")]),
        LIMITS,
        TABLE,
    ),
    (
        "duplicate-event-key",
        lambda: one(events=[event(attributes=[("k", 1), ("k", 2)])]),
        LIMITS,
        TABLE,
    ),
    (
        "duplicate-link-key",
        lambda: one(links=[link(attributes=[("k", 1), ("k", 2)])]),
        LIMITS,
        TABLE,
    ),
    ("duplicate-empty-key", lambda: one(attributes=[("", "a"), ("", "b")]), LIMITS, TABLE),
    ("bytes-value", lambda: one(attributes={"k": b"\x00\xff"}), LIMITS, TABLE),
    ("bytes-in-resource", lambda: spans_body(make_span(), resource={"k": b"x"}), LIMITS, TABLE),
    ("kvlist-value", lambda: one(attributes={"k": {"b": 1, "a": "x"}}), LIMITS, TABLE),
    ("empty-kvlist", lambda: one(attributes={"k": {}}), LIMITS, TABLE),
    ("array-with-int", lambda: one(attributes={"k": ["a", 1]}), LIMITS, TABLE),
    ("array-of-ints", lambda: one(attributes={"k": [1, 2]}), LIMITS, TABLE),
    ("array-of-bools", lambda: one(attributes={"k": [True]}), LIMITS, TABLE),
    ("array-with-empty-string", lambda: one(attributes={"k": ["a", ""]}), LIMITS, TABLE),
    ("array-with-unset", lambda: one(attributes={"k": [UNSET]}), LIMITS, TABLE),
    ("nested-array", lambda: one(attributes={"k": [["a"]]}), LIMITS, TABLE),
    ("nan", lambda: one(attributes={"k": math.nan}), LIMITS, TABLE),
    ("inf", lambda: one(attributes={"k": math.inf}), LIMITS, TABLE),
    ("-inf-in-event", lambda: one(events=[event(attributes={"k": -math.inf})]), LIMITS, TABLE),
    (
        "too-many-span-attributes",
        lambda: one(attributes={f"k{i}": i for i in range(4)}),
        SMALL,
        "too_many_attributes",
    ),
    (
        "too-many-resource-attributes",
        lambda: spans_body(make_span(), resource={f"k{i}": i for i in range(4)}),
        SMALL,
        "too_many_attributes",
    ),
    (
        "too-many-event-attributes",
        lambda: one(events=[event(attributes={f"k{i}": i for i in range(4)})]),
        SMALL,
        "too_many_attributes",
    ),
    (
        "too-many-link-attributes",
        lambda: one(links=[link(attributes={f"k{i}": i for i in range(4)})]),
        SMALL,
        "too_many_attributes",
    ),
    ("value-too-large", lambda: one(attributes={"k": "x" * 9}), SMALL, "attribute_too_large"),
    ("utf8-value-too-large", lambda: one(attributes={"k": "é" * 5}), SMALL, "attribute_too_large"),
    ("double-text-too-large", lambda: one(attributes={"k": 1e20}), SMALL, "attribute_too_large"),
    (
        "array-text-too-large",
        lambda: one(attributes={"k": ["abc", "de"]}),
        SMALL,
        "attribute_too_large",
    ),
    (
        "resource-value-too-large",
        lambda: spans_body(make_span(), resource={"k": "x" * 9}),
        SMALL,
        "attribute_too_large",
    ),
    (
        "event-value-too-large",
        lambda: one(events=[event(attributes={"k": "x" * 9})]),
        SMALL,
        "attribute_too_large",
    ),
    ("missing-trace-id", lambda: one(trace_id=b""), LIMITS, "missing_id"),
    ("short-trace-id", lambda: one(trace_id=TRACE_ID[:15]), LIMITS, "invalid_id"),
    ("long-trace-id", lambda: one(trace_id=TRACE_ID + b"\x01"), LIMITS, "invalid_id"),
    ("zero-trace-id", lambda: one(trace_id=bytes(16)), LIMITS, "invalid_id"),
    ("missing-span-id", lambda: one(span_id=b""), LIMITS, "missing_id"),
    ("short-span-id", lambda: one(span_id=b"\x01" * 7), LIMITS, "invalid_id"),
    ("zero-span-id", lambda: one(span_id=bytes(8)), LIMITS, "invalid_id"),
    ("zero-parent", lambda: one(parent=bytes(8)), LIMITS, "invalid_id"),
    ("short-parent", lambda: one(parent=b"\x01" * 7), LIMITS, "invalid_id"),
    ("start-zero", lambda: one(start=0, end=5), LIMITS, "missing_time"),
    ("too-many-events", lambda: one(events=[event(), event(), event()]), SMALL, "too_many_events"),
    ("too-many-links", lambda: one(links=[link(), link(), link()]), SMALL, "too_many_links"),
    (
        "too-many-spans",
        lambda: make_body(
            (SERVICE, [("a", "", [make_span(), make_span()])]),
            (SERVICE, [("b", "", [make_span(), make_span()])]),
        ),
        SMALL,
        "too_many_spans",
    ),
    ("event-time-beyond-int64", lambda: one(events=[event(time_ns=2**63)]), LIMITS, "invalid_time"),
    ("start-beyond-int64", lambda: one(start=2**63, end=2**63 + 1), LIMITS, "invalid_time"),
]


@pytest.mark.parametrize(
    ("build", "limits", "python_gives"),
    [(build, limits, gives) for _, build, limits, gives in DECLINES],
    ids=[name for name, *_ in DECLINES],
)
def test_declined_requests_fall_back_to_python(
    build: Callable[[], bytes], limits: DecodeLimits, python_gives: object
) -> None:
    """The native decoder declines; the Python decoder returns rows, or the error it documents."""
    body = build()
    parse_protobuf(body)  # valid protobuf: the ingest path would reach the native decoder
    assert native_spans_to_arrow(body, limits, PRICES) is None
    if python_gives == TABLE:
        assert reference(body, limits).num_rows >= 1
    elif isinstance(python_gives, str):
        with pytest.raises(InvalidRequest) as raised:
            reference(body, limits)
        assert raised.value.reason == python_gives
    else:
        assert isinstance(python_gives, type)
        with pytest.raises(python_gives):
            reference(body, limits)


def test_limits_at_the_boundary_are_handled() -> None:
    """Exactly at each limit the native decoder still handles the request (it declines beyond)."""
    body = make_body(
        (
            {"a": "12345678", "b": 1, "c": 2},
            [
                (
                    "s",
                    "",
                    [
                        make_span(
                            attributes={"k": "é" * 4, "d": 1e-7, "e": ["abc"]},
                            events=[event(attributes={"x": "y"}), event()],
                            links=[link(), link(attributes={"a": "b", "c": 1, "d": True})],
                        ),
                        make_span(),
                        make_span(),
                    ],
                )
            ],
        )
    )
    assert_same(body, SMALL)


# -- seeded random requests -----------------------------------------------------------------------

RANDOM_KEYS: Final = (
    "k",
    "",
    "service.name",
    "agentwatch.task.type",
    "gen_ai.operation.name",
    "é",
    *MODEL_KEYS,
    *PROVIDER_KEYS,
    *(key for column in TOKEN_COLUMNS for key in COLUMN_BY_NAME[column].keys),
)
DOUBLES: Final = tuple(v for _, v in VALUES if isinstance(v, float))
STRINGS: Final = (
    "a",
    "hello",
    "日本語",
    "🎉",
    '"q"',
    "<&>",
    "\u2028",
    "x" * 40,
    "gpt-4o",
    "openai",
)


def random_string(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.5:
        return rng.choice(STRINGS)
    if choice < 0.8:
        return "".join(
            rng.choice('ab1 "\\\n\t\x01<>&é€🎉\u2028\u2029') for _ in range(rng.randint(1, 12))
        )
    return str(rng.choice((0, 1, 12, 1000, 2**64, -3)))


def random_double(rng: random.Random) -> float:
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(DOUBLES)
    if choice < 0.7:
        return rng.uniform(-1, 1) * 10.0 ** rng.randint(-330, 308)
    if choice < 0.85:
        return float(struct.unpack("<d", rng.randbytes(8))[0])  # any bits, rarely NaN or inf
    return float(rng.randint(-(10**18), 10**18)) / rng.choice((1, 10, 1000, 3))


def random_value(rng: random.Random, key: str) -> object:
    """A random attribute value; rarely one the native decoder declines."""
    choice = rng.random()
    if "tokens" in key or "token_count" in key:
        return rng.choice(TOKEN_TEXTS) if choice < 0.5 else rng.randrange(0, 100_000)
    if key in MODEL_KEYS:
        return rng.choice(MODELS)[0]
    if key in PROVIDER_KEYS:
        return rng.choice(MODELS)[1]
    if choice < 0.35:
        return random_string(rng)
    if choice < 0.45:
        return rng.choice((0, 1, -1, 2**63 - 1, -(2**63), rng.randint(-(2**63), 2**63 - 1)))
    if choice < 0.5:
        return rng.random() < 0.5
    if choice < 0.7:
        return random_double(rng)
    if choice < 0.85:
        return [random_string(rng) for _ in range(rng.randint(0, 4))]
    if choice < 0.9:
        return rng.choice((None, UNSET, ""))
    return rng.choice(  # declined kinds
        (b"raw", {"a": 1}, ["a", 1], ["a", ""], [UNSET], math.nan, math.inf, [["x"]], "ok", 1.5)
    )


def random_attributes(rng: random.Random, most: int) -> list[tuple[str, object]]:
    keys = rng.sample(RANDOM_KEYS, rng.randint(0, most))
    if keys and rng.random() < 0.03:
        keys.append(rng.choice(keys))  # a duplicate key
    return [(key, random_value(rng, key)) for key in keys]


def random_id(rng: random.Random, size: int, broken: float) -> bytes:
    if rng.random() < broken:
        return rng.choice((b"", bytes(size), rng.randbytes(size - 1), rng.randbytes(size + 1)))
    return rng.randbytes(size - 1) + bytes([rng.randint(1, 255)])


def random_span(rng: random.Random) -> Span:
    start = rng.choice((rng.randint(1, 2**63 - 1), START + rng.randint(0, 10**12)))
    if rng.random() < 0.01:
        start = rng.choice((0, 2**63, 2**64 - 1))
    end = rng.choice((start + rng.randint(0, 10**10), start - 1, 0, rng.randint(0, 2**64 - 1)))
    parent = b"" if rng.random() < 0.4 else random_id(rng, 8, 0.01)
    return make_span(
        trace_id=random_id(rng, 16, 0.01),
        span_id=random_id(rng, 8, 0.01),
        parent=parent,
        name=random_string(rng) if rng.random() < 0.9 else "",
        kind=rng.choice((*range(7), 7, -1, 2**31 - 1)),
        start=start,
        end=min(max(end, 0), 2**64 - 1),
        attributes=random_attributes(rng, 9),
        events=[
            event(
                random_string(rng),
                rng.choice(
                    (START, 0, rng.randint(0, 2**63 - 1), 2**63 + 5 if rng.random() < 0.05 else 1)
                ),
                random_attributes(rng, 3),
            )
            for _ in range(rng.choice((0, 0, 0, 1, 2, 3)))
        ],
        links=[
            link(
                rng.randbytes(rng.choice((16, 16, 0, 3))),
                rng.randbytes(rng.choice((8, 8, 0, 5))),
                random_string(rng) if rng.random() < 0.3 else "",
                random_attributes(rng, 3),
            )
            for _ in range(rng.choice((0, 0, 0, 1, 2, 3)))
        ],
        status_code=rng.choice((0, 0, 1, 2, 3, -1)),
        status_message=random_string(rng) if rng.random() < 0.3 else "",
        trace_state=random_string(rng) if rng.random() < 0.2 else "",
    )


def random_body(rng: random.Random) -> bytes:
    resources = []
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        attributes = random_attributes(rng, 4)
        if rng.random() < 0.8:
            attributes.insert(0, ("service.name", random_string(rng)))
        scopes = [
            (
                rng.choice(("", "agentwatch", "scope ✓")),
                rng.choice(("", "1.0")),
                [random_span(rng) for _ in range(rng.choice((0, 1, 2, 3, 5)))],
            )
            for _ in range(rng.choice((0, 1, 1, 2)))
        ]
        resources.append((attributes, scopes))
    return make_body(*resources)


def random_limits(rng: random.Random) -> DecodeLimits:
    if rng.random() < 0.8:
        return LIMITS
    return DecodeLimits(
        max_attributes_per_span=rng.randint(2, 8),
        max_attribute_value_bytes=rng.randint(4, 64),
        max_events_per_span=rng.randint(0, 3),
        max_links_per_span=rng.randint(0, 3),
        max_spans_per_request=rng.randint(1, 12),
    )


@pytest.mark.parametrize("seed", [20260101, 7, 99])
def test_random_requests_decode_identically_or_decline(seed: int) -> None:
    """Random mixed requests: same table or a decline (always on a reject), mostly handled."""
    rng = random.Random(seed)
    outcomes: list[bool | None] = []
    for case in range(200):
        body = random_body(rng)
        limits = random_limits(rng)
        outcomes.append(check_consistent(body, limits, PRICES, f"seed {seed}, case {case}"))
    assert None not in outcomes, "protobuf rejected a request built by protobuf"
    assert outcomes.count(True) > 0.3 * len(outcomes), outcomes.count(True)
    assert outcomes.count(False) > 0.05 * len(outcomes), outcomes.count(False)


# -- mutation fuzz --------------------------------------------------------------------------------


def mutate(rng: random.Random, body: bytes) -> bytes:
    """One to three random edits: flip a bit, set a byte, truncate, insert, duplicate, delete."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        if not data:
            data = bytearray(rng.randbytes(rng.randint(1, 8)))
            continue
        i = rng.randrange(len(data))
        j = rng.randint(i, min(len(data), i + 64))
        kind = rng.randrange(7)
        if kind == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:
            del data[i:]
        elif kind == 3:
            data[i:i] = rng.randbytes(rng.randint(1, 4))
        elif kind == 4:
            data[j:j] = data[i:j]
        elif kind == 5:
            del data[i:j]
        else:
            data[i] = (data[i] + rng.choice((1, -1))) % 256  # off-by-one lengths
    return bytes(data)


WireField = tuple[int, int, bytes]  # field number, wire type, value (payload if length-delimited)


def read_varint(data: bytes, i: int) -> tuple[int, int] | None:
    value = shift = 0
    while i < len(data) and shift < 70:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7
    return None


def parse_fields(data: bytes) -> list[WireField] | None:
    """A message's fields, or None when ``data`` does not read as a sequence of fields."""
    fields: list[WireField] = []
    i = 0
    while i < len(data):
        tag = read_varint(data, i)
        if tag is None or tag[0] >> 3 == 0:
            return None
        number, wire_type, i = tag[0] >> 3, tag[0] & 7, tag[1]
        if wire_type == 0:
            end = read_varint(data, i)
            if end is None:
                return None
            start, i = i, end[1]
        elif wire_type in (1, 5):
            start, i = i, i + (8 if wire_type == 1 else 4)
        elif wire_type == 2:
            size = read_varint(data, i)
            if size is None:
                return None
            start, i = size[1], size[1] + size[0]
        else:
            return None
        if i > len(data):
            return None
        fields.append((number, wire_type, data[start:i]))
    return fields


INTERESTING_VARINTS: Final = (0, 1, 2, 5, 7, 2**31 - 1, 2**31, 2**32 + 1, 2**63, 2**64 - 1)
INTERESTING_FIXED: Final = tuple(
    struct.pack("<d", x) for x in (0.0, -0.0, math.nan, math.inf, 1e21, 1e-7, 5e-324)
) + tuple(n.to_bytes(8, "little") for n in (0, 1, 2**63 - 1, 2**63, 2**64 - 1))


def mutate_fields(rng: random.Random, data: bytes) -> bytes:
    """A structure-aware edit: descend into a nested message, then duplicate, drop, reorder or
    rewrite one of its fields (lengths re-encoded), so that protobuf accepts most results."""
    fields = parse_fields(data)
    if not fields:
        return mutate(rng, data)
    nested = [
        i
        for i, (_, wire_type, value) in enumerate(fields)
        if wire_type == 2 and parse_fields(value)
    ]
    if nested and rng.random() < 0.7:
        i = rng.choice(nested)
        number, wire_type, value = fields[i]
        fields[i] = (number, wire_type, mutate_fields(rng, value))
    else:
        i = rng.randrange(len(fields))
        number, wire_type, value = fields[i]
        op = rng.randrange(6)
        if op == 0:
            fields.insert(rng.randint(0, len(fields)), fields[i])
        elif op == 1:
            del fields[i]
        elif op == 2:
            j = rng.randrange(len(fields))
            fields[i], fields[j] = fields[j], fields[i]
        elif op == 3 and wire_type == 0:
            fields[i] = (number, 0, varint(rng.choice(INTERESTING_VARINTS)))
        elif op == 3 and wire_type == 1:
            fields[i] = (number, 1, rng.choice(INTERESTING_FIXED))
        elif op == 3 and wire_type == 2:
            fields[i] = (number, 2, rng.choice((b"", value[:-1], value + value[-1:], value[1:])))
        elif op == 4:
            fields.insert(rng.randint(0, len(fields)), rng.choice(UNKNOWN_FIELDS))
        else:
            fields[i] = (number, wire_type, mutate(rng, value) if wire_type == 2 else value)
    return b"".join(field(number, wire_type, value) for number, wire_type, value in fields)


UNKNOWN_FIELDS: Final = tuple(f for f in parse_fields(UNKNOWN) or ())


def test_mutated_bodies_decode_identically_or_decline() -> None:
    """2000 mutated bodies: same table or a decline, and the C decoder never crashes or raises."""
    rng = random.Random(424242)
    seeds = [
        *build_bodies(9, 2, 5, START),
        spans_body(*pricing_spans()[:6]),
        spans_body(
            make_span(
                kind=3,
                parent=next_id(),
                attributes={"s": "é", "b": True, "i": -7, "d": 1e-7, "a": ["x", "<"], "u": UNSET},
                events=[event(attributes={"e": 1.5})],
                links=[link(attributes={"l": "v"})],
                status_code=2,
                status_message="bad",
                trace_state="k=v",
            ),
            resource={"service.name": "svc", "n": 3},
        ),
        *(random_body(random.Random(seed)) for seed in range(3)),
    ]
    outcomes: list[bool | None] = []
    for case in range(2000):
        edit = mutate if case % 2 else mutate_fields
        body = edit(rng, rng.choice(seeds))
        outcomes.append(check_consistent(body, LIMITS, PRICES, f"mutation case {case}"))
    accepted = [o for o in outcomes if o is not None]
    assert len(accepted) > 600, len(accepted)
    assert accepted.count(True) > 300, accepted.count(True)
    assert accepted.count(False) > 30, accepted.count(False)


# -- the ingest path over HTTP, natively and not --------------------------------------------------

STORED_COLUMNS: Final = (
    "SpanId",
    "SpanName",
    "ServiceName",
    "CostUsd",
    "Priced",
    "InputTokens",
    "OutputTokens",
    "CacheReadTokens",
    "TaskType",
    "ToolTier",
    "ResponseModel",
    "Duration",
    "StatusCode",
    "SpanAttributes",
    "ResourceAttributes",
    "`Events.Name`",
    "`Events.Attributes`",
)


def post_and_read(
    collector: Collector, body: bytes, spans: int
) -> tuple[int, list[tuple[Any, ...]]]:
    """POST ``body`` to the collector's OTLP/HTTP receiver; (natively decoded requests, rows)."""
    url = http_url(collector)
    reply = post(url, body)
    assert reply.status == 200, reply.body
    wait_until(lambda: get(url, "/stats").json()["spans_stored"] >= spans, what="spans stored")
    stats = get(url, "/stats").json()
    assert stats["requests"] == 1
    store = collector.store
    rows = store.query(
        f"SELECT {', '.join(STORED_COLUMNS)} FROM {store.database}.{SPANS_TABLE} ORDER BY SpanId"
    ).rows
    return int(stats["requests_decoded_natively"]), rows


@pytest.mark.slow
def test_http_ingest_stores_the_same_rows_natively(start_collector: StartCollector) -> None:
    """Over HTTP a body is decoded natively (/stats) and stored as a Python-only collector does."""
    spans = 120
    body = build_bodies(21, 1, spans, time.time_ns())[0]
    native = start_collector(native_decoder=True)
    native_count, native_rows = post_and_read(native, body, spans)
    native.stop()  # chDB opens one data directory per process
    python = start_collector(native_decoder=False)
    python_count, python_rows = post_and_read(python, body, spans)
    assert (native_count, python_count) == (1, 0)
    assert len(native_rows) == spans
    assert native_rows == python_rows
    priced = [row for row in native_rows if row[STORED_COLUMNS.index("Priced")] == 1]
    assert priced
    assert all(row[STORED_COLUMNS.index("CostUsd")] > 0 for row in priced)
    assert any(row[STORED_COLUMNS.index("TaskType")] for row in native_rows)
