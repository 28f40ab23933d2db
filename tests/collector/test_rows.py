"""Decoded spans to the Arrow table the writer inserts: exactly the exporter's columns plus cost,
so ClickHouse's DEFAULT expressions (not Python) fill the typed columns; each LLM span priced
from the same attributes those columns come from."""

from __future__ import annotations

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price

from agentwatch.collector._decode import request_to_columns
from agentwatch.collector._pricing import PriceOverride, PriceTable
from agentwatch.collector._rows import price_spans, spans_to_arrow
from agentwatch.storage._conventions import COLUMNS
from agentwatch.storage._schema import spans_table_ddl
from tests.collector.conftest import any_value, make_request, make_span

EXPORTER_COLUMNS = [
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
]


def priced(*attribute_sets: dict[str, object], table: PriceTable | None = None):
    cols = request_to_columns(make_request(*(make_span("s", a) for a in attribute_sets)))
    return price_spans(cols, table or PriceTable())


def reference(model: str, provider: str, **tokens: int) -> float:
    return float(calc_price(Usage(**tokens), model_ref=model, provider_id=provider).total_price)


def test_the_table_has_the_exporter_columns_plus_cost_and_nothing_derived():
    table = spans_to_arrow(request_to_columns(make_request(make_span())), PriceTable())
    assert table.column_names == [*EXPORTER_COLUMNS, "CostUsd", "Priced"]
    derived = {c.name for c in COLUMNS} | {"Operation", "Environment", "ErrorType"}
    assert derived.isdisjoint(table.column_names)


def test_every_column_written_exists_in_the_span_table():
    ddl = spans_table_ddl("agentwatch", 30)
    table = spans_to_arrow(request_to_columns(make_request(make_span())), PriceTable())
    for name in table.column_names:
        assert f"`{name}`" in ddl


def test_column_types_match_the_span_table():
    table = spans_to_arrow(request_to_columns(make_request(make_span())), PriceTable())
    schema = table.schema
    assert schema.field("Timestamp").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("Duration").type == pa.uint64()
    assert schema.field("SpanAttributes").type == pa.map_(pa.string(), pa.string())
    assert schema.field("Events.Attributes").type == pa.list_(pa.map_(pa.string(), pa.string()))
    assert schema.field("CostUsd").type == pa.float64()
    assert schema.field("Priced").type == pa.uint8()


def test_values_survive_the_conversion_row_by_row():
    spans = [
        make_span("a", {"k": "v", "n": 3}, start_ns=1_700_000_000_000_000_001),
        make_span("b", {}, start_ns=1_700_000_000_000_000_002),
    ]
    event = spans[0].events.add(name="exception", time_unix_nano=1_700_000_000_000_000_005)
    event.attributes.add(key="exception.type", value=any_value("ValueError"))
    table = spans_to_arrow(request_to_columns(make_request(*spans)), PriceTable())
    rows = table.to_pylist()
    assert [r["SpanName"] for r in rows] == ["a", "b"]
    assert rows[0]["SpanAttributes"] == [("k", "v"), ("n", "3")]
    assert rows[1]["SpanAttributes"] == []
    assert rows[0]["Events.Name"] == ["exception"]
    assert rows[0]["Events.Attributes"] == [[("exception.type", "ValueError")]]
    assert rows[1]["Events.Name"] == []
    assert table.column("Timestamp").cast(pa.int64()).to_pylist() == [
        1_700_000_000_000_000_001,
        1_700_000_000_000_000_002,
    ]


def test_a_span_without_tokens_is_neither_priced_nor_charged():
    assert priced({"gen_ai.operation.name": "execute_tool"}) == ([0.0], [0])


def test_an_llm_span_is_priced_from_its_response_model_first():
    costs, flags = priced(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.output_tokens": 1_000,
        }
    )
    assert flags == [1]
    expected = reference("gpt-4o-mini", "openai", input_tokens=10_000, output_tokens=1_000)
    assert costs[0] == pytest.approx(expected, rel=1e-9)


def test_cache_tokens_are_passed_to_pricing():
    costs, _ = priced(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest",
            "gen_ai.usage.input_tokens": 5_000,
            "gen_ai.usage.output_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 1_000,
            "gen_ai.usage.cache_creation.input_tokens": 2_000,
        }
    )
    expected = reference(
        "claude-3-5-haiku-latest",
        "anthropic",
        input_tokens=5_000,
        output_tokens=100,
        cache_read_tokens=1_000,
        cache_write_tokens=2_000,
    )
    assert costs[0] == pytest.approx(expected, rel=1e-9)


def test_an_unknown_model_is_flagged_unpriced_with_zero_cost():
    assert priced({"gen_ai.request.model": "mystery", "gen_ai.usage.output_tokens": 5}) == (
        [0.0],
        [0],
    )


def test_tokens_without_any_model_are_flagged_unpriced():
    assert priced({"gen_ai.usage.input_tokens": 5}) == ([0.0], [0])


def test_pricing_uses_the_user_overrides():
    table = PriceTable([PriceOverride("ft:mine", "", input_per_mtok=1, output_per_mtok=2)])
    costs, flags = priced(
        {
            "gen_ai.request.model": "ft:mine",
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.output_tokens": 1_000_000,
        },
        table=table,
    )
    assert (costs, flags) == ([pytest.approx(3.0)], [1])


def test_each_span_of_a_request_is_priced_on_its_own():
    costs, flags = priced(
        {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000},
        {"gen_ai.operation.name": "execute_tool"},
        {"gen_ai.request.model": "mystery", "gen_ai.usage.input_tokens": 1000},
    )
    assert flags == [1, 0, 0]
    assert costs[0] > 0
    assert costs[1:] == [0.0, 0.0]
