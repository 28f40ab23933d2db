"""The collector benchmark's load is what it claims to be: valid, unique, priced agent traces."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_collector import build_bodies, summarize_raw_profile

from agentwatch.collector._decode import parse_protobuf, request_to_columns
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._rows import price_spans


def test_bodies_decode_into_unique_agent_traces() -> None:
    bodies = build_bodies(seed=3, n_bodies=2, spans_per_body=500, start_ns=1_700_000_000 * 10**9)
    columns = [request_to_columns(parse_protobuf(body)) for body in bodies]
    assert [len(c) for c in columns] == [500, 500]
    span_ids = [s for c in columns for s in c.span_id]
    assert len(set(span_ids)) == len(span_ids)
    operations = {a["gen_ai.operation.name"] for c in columns for a in c.span_attributes}
    assert operations == {"invoke_agent", "chat", "execute_tool", "decision"}
    costs, priced = price_spans(columns[0], PriceTable())
    chats = [a for a in columns[0].span_attributes if a["gen_ai.operation.name"] == "chat"]
    assert 0 < sum(priced) < len(chats)  # priced models and unpriced (fine-tuned, custom) ones
    assert sum(costs) > 0
    # another seed gives other ids: client processes never send the same span twice
    other = request_to_columns(parse_protobuf(build_bodies(4, 1, 500, 1_700_000_000 * 10**9)[0]))
    assert not set(other.span_id) & set(span_ids)


def test_profile_summary_buckets_by_innermost_known_frame(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    handler = "Thread.run (threading.py:1);_Handler._traces (collector/_http.py:2)"
    raw.write_text(
        f"{handler};Ingestor.ingest (collector/_ingest.py:3);request_to_columns (x.py:4) 3\n"
        f"{handler};spans_to_arrow (x.py:5);price_spans (x.py:6) 1\n"
        "Thread.run (threading.py:1);BatchWriter._loop (x.py:7);"
        "EmbeddedStore.insert_arrow (x.py:8) 1\n",
        encoding="utf-8",
    )
    summary = summarize_raw_profile(raw)
    assert summary == {
        "decode + flatten (request_to_columns)": 60.0,
        "pricing (price_spans)": 20.0,
        "store insert (insert_arrow)": 20.0,
    }
