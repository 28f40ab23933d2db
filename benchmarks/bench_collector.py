"""Collector throughput: realistic agent traces over OTLP/HTTP protobuf, end to end into storage.

    python -m benchmarks.bench_collector [--spans N] [--batch B] [--clients C] [--procs P]
                                         [--clickhouse-url URL | --server-shim]
                                         [--json PATH] [--py-spy PATH [--py-spy-gil]]
    python -m benchmarks.bench_collector --stages [--spans N] [--batch B]

Figures, commands and what they mean: benchmarks/BENCHMARKS.md, "Collector throughput".

What is measured: spans per second from the first request until every span is queryable, and
the collector's peak RSS, with the collector running as its own process
(``python -m agentwatch collector``), exactly as an operator runs it.

- The load is a fleet of agents: each request body is one agent process's export (one resource,
  one ``agentwatch`` scope, ``--batch`` spans) of whole traces, each an ``invoke_agent`` root
  with chat / execute_tool iterations, a decision span and a final answer, carrying the GenAI
  and agentwatch.* attributes the SDK sets (models from several providers, priced and not,
  cache tokens, tool tiers, errors with exception events). Every id is unique.
- Bodies are built BEFORE the clock starts, inside the client processes (so building them is
  parallel and never measured). ``--clients`` concurrent keep-alive connections
  (``http.client``) are spread over ``--procs`` processes, so the client side has no shared GIL
  with the collector and little of its own. A 503 is retried after its Retry-After; retries are
  counted.
- The clock starts when every client is released (just before the first request) and stops when
  the store reports all spans queryable: ``SELECT count()`` through the collector's read-only
  ClickHouse HTTP endpoint when it has one (embedded mode), the server itself with
  ``--clickhouse-url``, else the collector's ``/stats`` ``spans_stored``, which counts rows whose
  insert has returned (committed, so queryable). The report says which was used.
- Peak RSS is the collector's ``VmHWM`` from ``/proc/<pid>/status`` (the kernel's high-water
  mark, so no peak is missed between samples); embedded chDB lives in that process, so its
  memory is included.
- Bytes per span on disk: ``sum(bytes_on_disk)`` of the active parts of ``otel_traces`` in
  ``system.parts`` (compressed columns, marks, indexes and checksums; not directory overhead),
  divided by the span count; for the embedded store this is read after the collector has
  stopped (the store is reopened by this process, chDB allowing one process at a time), and
  ``du`` of the data directory is reported beside it.

``--stages`` times each step of the ingest path in this process on the same bodies (parse,
decode to columns, pricing, Arrow build, chDB insert), without HTTP, to see where time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

THROUGHPUT_TARGET = 50_000.0  # spans/s end to end into embedded chDB
RSS_TARGET_MB = 500.0
PROTOBUF = "application/x-protobuf"

# -- the load: realistic agent traces --------------------------------------------------------------

# (provider, requested model, response model); the last two have no price in genai-prices.
MODELS: tuple[tuple[str, str, str], ...] = (
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
    ("gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash"),
    ("mistral_ai", "mistral-large-latest", "mistral-large-2411"),
    ("openai", "ft:gpt-4o-mini:acme:support-v3", "ft:gpt-4o-mini:acme:support-v3"),
    ("acme", "acme-support-7b", "acme-support-7b"),
)
MODEL_WEIGHTS = (30, 25, 8, 12, 8, 7, 4, 3, 3)
AGENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("support_agent", ("refund", "order_status", "address_change", "complaint")),
    ("billing_agent", ("invoice_dispute", "plan_change", "payment_failed")),
    ("triage_agent", ("classify", "route")),
    ("research_agent", ("market_scan", "competitor_brief", "summarize_docs")),
)
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("lookup_order", "read", "Look up an order by id."),
    ("search_kb", "read", "Search the knowledge base."),
    ("get_customer", "read", "Fetch the customer record."),
    ("issue_refund", "write_risky", "Refund an order, fully or partly."),
    ("update_address", "write_safe", "Change the shipping address of an open order."),
    ("send_email", "write_safe", "Email the customer."),
    ("cancel_subscription", "destructive", "Cancel the customer's subscription."),
    ("web_search", "read", "Search the web."),
)
OUTCOMES = ("completed", "completed", "completed", "completed", "escalated", "failed")
ROUTES = ("auto", "review", "escalate")
ERROR_TYPES = ("TimeoutError", "RateLimitError", "ValueError", "ConnectionError")


def _kv(key: str, value: str | int | float | bool | list[str]) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, list):
        kv.value.array_value.values.extend(AnyValue(string_value=v) for v in value)
    else:
        kv.value.string_value = value
    return kv


class TraceFactory:
    """Whole agent traces as protobuf spans, deterministic for a seed, with unique ids."""

    def __init__(self, seed: int, start_ns: int) -> None:
        self.rng = random.Random(seed)
        self.clock = start_ns
        self.ids = seed << 40  # unique across factories with distinct seeds

    def _id(self, size: int) -> bytes:
        self.ids += 1
        tail = self.ids.to_bytes(8, "big")
        head = self.rng.getrandbits(8 * (size - 8)).to_bytes(size - 8, "big") if size > 8 else b""
        return head + tail

    def _span(
        self,
        spans: list[Span],
        trace_id: bytes,
        parent: bytes,
        name: str,
        kind: int,
        start: int,
        duration: int,
        attributes: dict[str, Any],
    ) -> Span:
        span = Span(
            trace_id=trace_id,
            span_id=self._id(8),
            parent_span_id=parent,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
        )
        span.attributes.extend(_kv(k, v) for k, v in attributes.items())
        spans.append(span)
        return span

    def trace(self) -> list[Span]:
        """One agent run: root, 1-3 (chat -> tool) iterations, a decision, a final chat."""
        rng = self.rng
        spans: list[Span] = []
        trace_id = self._id(16)
        agent, task_types = rng.choice(AGENTS)
        conversation = f"conv-{self._id(8).hex()}"
        provider, model, response_model = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        self.clock += rng.randrange(1_000_000, 20_000_000)
        start = self.clock
        cursor = start + rng.randrange(100_000, 2_000_000)
        root = Span()  # placeholder, filled once the children's timing is known
        spans.append(root)
        root_id = self._id(8)
        failed = False
        for iteration in range(rng.randint(1, 3)):
            tokens_in = rng.randrange(300, 6000)
            cached = rng.choice((0, 0, tokens_in // 2, tokens_in // 4))
            chat_ms = rng.randrange(300, 4000)
            chat_attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.response.model": response_model,
                "gen_ai.response.id": f"chatcmpl-{self._id(12).hex()}",
                "gen_ai.response.finish_reasons": ["tool_calls"],
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": rng.randrange(20, 600),
                "gen_ai.conversation.id": conversation,
            }
            if cached:
                chat_attrs["gen_ai.usage.cache_read.input_tokens"] = cached
            self._span(
                spans,
                trace_id,
                root_id,
                f"chat {model}",
                3,
                cursor,
                chat_ms * 1_000_000,
                chat_attrs,
            )
            cursor += chat_ms * 1_000_000 + rng.randrange(50_000, 500_000)
            tool_name, tier, description = rng.choice(TOOLS)
            tool_ms = rng.randrange(5, 800)
            tool = self._span(
                spans,
                trace_id,
                root_id,
                f"execute_tool {tool_name}",
                1,
                cursor,
                tool_ms * 1_000_000,
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool_name,
                    "gen_ai.tool.type": "function",
                    "gen_ai.tool.description": description,
                    "gen_ai.tool.call.id": f"call_{self._id(12).hex()}",
                    "agentwatch.tool.tier": tier,
                    "agentwatch.task.type": rng.choice(task_types),
                },
            )
            if rng.random() < 0.03:
                error = rng.choice(ERROR_TYPES)
                tool.attributes.append(_kv("error.type", error))
                tool.status.CopyFrom(
                    Status(code=Status.STATUS_CODE_ERROR, message=f"{error}: upstream call failed")
                )
                event = tool.events.add(
                    time_unix_nano=cursor + tool_ms * 1_000_000 - 1000, name="exception"
                )
                event.attributes.extend(
                    [
                        _kv("exception.type", error),
                        _kv("exception.message", f"{tool_name} failed on attempt {iteration}"),
                        _kv("exception.escaped", True),
                    ]
                )
                failed = True
            cursor += tool_ms * 1_000_000 + rng.randrange(50_000, 500_000)
        confidence = round(rng.betavariate(5, 1.5), 3)
        route = "auto" if confidence > 0.8 else rng.choice(ROUTES[1:])
        self._span(
            spans,
            trace_id,
            root_id,
            "decision approve_refund",
            1,
            cursor,
            rng.randrange(10_000, 200_000),
            {
                "gen_ai.operation.name": "decision",
                "agentwatch.decision.name": "approve_refund",
                "agentwatch.decision.confidence": confidence,
                "agentwatch.decision.route": route,
            },
        )
        cursor += 300_000
        tokens_in = rng.randrange(500, 8000)
        final_ms = rng.randrange(300, 3000)
        self._span(
            spans,
            trace_id,
            root_id,
            f"chat {model}",
            3,
            cursor,
            final_ms * 1_000_000,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.response.model": response_model,
                "gen_ai.response.id": f"chatcmpl-{self._id(12).hex()}",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": rng.randrange(40, 900),
                "gen_ai.conversation.id": conversation,
            },
        )
        cursor += final_ms * 1_000_000 + rng.randrange(50_000, 500_000)
        outcome = "failed" if failed else rng.choice(OUTCOMES)
        root.CopyFrom(
            Span(
                trace_id=trace_id,
                span_id=root_id,
                name=f"invoke_agent {agent}",
                kind=1,  # type: ignore[arg-type]
                start_time_unix_nano=start,
                end_time_unix_nano=cursor,
            )
        )
        root_attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": conversation,
            "agentwatch.task.type": rng.choice(task_types),
            "agentwatch.task.outcome": outcome,
            "agentwatch.task.iterations": len(spans) // 2,
        }
        root.attributes.extend(_kv(k, v) for k, v in root_attributes.items())
        if outcome == "failed":
            root.attributes.append(_kv("error.type", "AgentFailed"))
            root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="agent gave up"))
        return spans

    def request(self, spans_per_request: int, service_index: int) -> ExportTraceServiceRequest:
        """One agent process's export: one resource, one scope, whole traces."""
        agent, _ = AGENTS[service_index % len(AGENTS)]
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [
                _kv("service.name", agent.replace("_", "-")),
                _kv("service.version", "1.4.2"),
                _kv("service.instance.id", f"{agent}-{service_index}"),
                _kv("deployment.environment.name", "production"),
                _kv("host.name", f"agent-host-{service_index % 16:02d}"),
                _kv("process.pid", 1000 + service_index),
                _kv("telemetry.sdk.language", "python"),
                _kv("telemetry.sdk.name", "opentelemetry"),
                _kv("telemetry.sdk.version", "1.27.0"),
            ]
        )
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "agentwatch"
        scope_spans.scope.version = "0.1.0"
        count = 0
        while count < spans_per_request:
            spans = self.trace()[: spans_per_request - count]
            scope_spans.spans.extend(spans)
            count += len(spans)
        return request


def build_bodies(seed: int, n_bodies: int, spans_per_body: int, start_ns: int) -> list[bytes]:
    factory = TraceFactory(seed, start_ns)
    return [
        factory.request(spans_per_body, seed * 7919 + i).SerializeToString()
        for i in range(n_bodies)
    ]


# -- the client side: processes of keep-alive connections ------------------------------------------


@dataclass
class ClientResult:
    requests: int = 0
    spans: int = 0
    retries_503: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    build_s: float = 0.0
    body_bytes: int = 0


def _post_all(port: int, bodies: list[bytes], spans_per_body: int, out: ClientResult) -> None:
    """One exporter: sends its bodies one at a time on a keep-alive connection."""
    headers = {"Content-Type": PROTOBUF}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for body in bodies:
        for _attempt in range(100):
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/traces", body, headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                out.reconnects += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                if out.reconnects > 50:
                    out.errors.append(f"connection: {exc!r}")
                    return
                time.sleep(0.1)
                continue
            if response.status == 200:
                out.latencies_ms.append((time.perf_counter() - started) * 1000)
                out.requests += 1
                out.spans += spans_per_body
                break
            if response.status == 503:
                out.retries_503 += 1
                time.sleep(float(response.getheader("Retry-After") or 1))
                continue
            out.errors.append(f"HTTP {response.status}: {payload[:200]!r}")
            break
        else:
            out.errors.append("gave up after 100 attempts")
    conn.close()


def _client_process(
    seeds: list[int],
    bodies_per_client: list[int],
    spans_per_body: int,
    port: int,
    start_ns: int,
    barrier: Any,
    results: Any,
) -> None:
    """Builds its clients' bodies, waits for the start, then runs one thread per client."""
    began = time.perf_counter()
    bodies = [
        build_bodies(seed, count, spans_per_body, start_ns)
        for seed, count in zip(seeds, bodies_per_client, strict=True)
    ]
    build_s = time.perf_counter() - began
    outs = [ClientResult() for _ in seeds]
    threads = [
        threading.Thread(target=_post_all, args=(port, b, spans_per_body, o))
        for b, o in zip(bodies, outs, strict=True)
    ]
    barrier.wait()
    cpu0 = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = ClientResult(
        cpu_s=time.process_time() - cpu0,
        build_s=build_s,
        body_bytes=sum(len(body) for mine in bodies for body in mine),
    )
    for o in outs:
        merged.requests += o.requests
        merged.spans += o.spans
        merged.retries_503 += o.retries_503
        merged.reconnects += o.reconnects
        merged.errors += o.errors
        merged.latencies_ms += o.latencies_ms
    results.put(asdict(merged))


# -- the collector process -------------------------------------------------------------------------

# The same Collector, built in a child process with settings the CLI does not expose: used when
# this build has no query endpoint module, and for the --writer-* / --gc-threshold experiments.
_SERVE_WITH_SETTINGS = """
import gc, json, logging, sys
from pathlib import Path
from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.collector._writer import WriterSettings
options = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO)
if options["gc_threshold"]:
    gc.set_threshold(options["gc_threshold"], 10, 10)
config = CollectorConfig(
    data_dir=Path(options["data_dir"]),
    clickhouse_url=options["clickhouse_url"],
    http_port=options["http_port"],
    grpc_port=None,
    query_port=options["query_port"],
    writer=WriterSettings(**options["writer"]),
    native_decoder=options.get("native_decoder", True),
    max_concurrent_requests=options.get("max_concurrent_requests", 16),
    content=options.get("content", "redact"),
)
Collector(config).serve_forever()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_query_endpoint() -> bool:
    return importlib.util.find_spec("agentwatch.query._endpoint") is not None


def http_json(port: int, path: str, timeout: float = 5.0) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return json.loads(body)
    finally:
        conn.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile (kB) of a process, from /proc."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.max_rss_kb = 0
        self.max_anon_kb = 0
        self.file_kb = 0
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                status = proc_status(self.pid)
            except OSError:
                return
            rss = status.get("VmRSS", 0)
            self.samples.append(rss)
            self.max_rss_kb = max(self.max_rss_kb, rss)
            self.max_anon_kb = max(self.max_anon_kb, status.get("RssAnon", 0))
            self.file_kb = status.get("RssFile", 0)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Target:
    """Where the collector stores, and how this process reads it back."""

    mode: str  # "embedded" | "server"
    data_dir: Path
    clickhouse_url: str | None
    database: str = "agentwatch"
    query_port: int | None = None
    count_via: str = ""
    client: Any = None
    drop: bool = False

    def count(self) -> int:
        sql = f"SELECT count() FROM {self.database}.otel_traces"
        return int(self.client.command(sql))

    def parts(self) -> dict[str, Any]:
        return parts_summary(lambda sql: [tuple(r) for r in self.client.query(sql).result_rows])


def parts_summary(query: Any, database: str = "agentwatch") -> dict[str, Any]:
    """Active parts of the span table: rows, bytes on disk, compressed and raw column bytes."""
    rows, on_disk, compressed, uncompressed, parts = query(
        "SELECT sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), "
        "sum(data_uncompressed_bytes), count() FROM system.parts "
        f"WHERE database = '{database}' AND table = 'otel_traces' AND active"
    )[0]
    columns = query(
        "SELECT name, data_compressed_bytes FROM system.columns "
        f"WHERE database = '{database}' AND table = 'otel_traces' "
        "ORDER BY data_compressed_bytes DESC LIMIT 6"
    )
    rows = int(rows or 0)
    return {
        "rows": rows,
        "parts": int(parts or 0),
        "bytes_on_disk": int(on_disk or 0),
        "compressed_bytes": int(compressed or 0),
        "uncompressed_bytes": int(uncompressed or 0),
        "bytes_per_span": (int(on_disk or 0) / rows) if rows else None,
        "top_columns": {str(name): int(size) for name, size in columns},
    }


def start_collector(
    target: Target,
    http_port: int,
    log_path: Path,
    experiment: dict[str, Any] | None = None,
    content: str = "redact",
) -> subprocess.Popen[bytes]:
    """``python -m agentwatch collector`` as an operator runs it (or, for an experiment or a
    build without the query endpoint, the same Collector with the given settings)."""
    python = sys.executable
    if experiment or (target.mode == "embedded" and target.query_port is None):
        options = {
            "data_dir": str(target.data_dir),
            "clickhouse_url": target.clickhouse_url,
            "http_port": http_port,
            "query_port": target.query_port,
            "writer": {},
            "gc_threshold": 0,
            "content": content,
            **(experiment or {}),
        }
        command = [python, "-c", _SERVE_WITH_SETTINGS, json.dumps(options)]
    elif target.mode == "server":
        assert target.clickhouse_url is not None
        command = [python, "-m", "agentwatch", "collector", "--clickhouse-url"]
        command += [target.clickhouse_url, "--data-dir", str(target.data_dir)]
        command += ["--http-port", str(http_port), "--no-grpc", "--content", content]
    else:
        command = [python, "-m", "agentwatch", "collector", "--data-dir", str(target.data_dir)]
        command += ["--http-port", str(http_port), "--no-grpc"]
        command += ["--query-port", str(target.query_port), "--content", content]
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it until it exits
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, deadline_s: float) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < deadline_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the collector exited with {proc.returncode} before it was ready")
        try:
            if http_json(port, "/healthz", timeout=1.0).get("status") == "ok":
                return time.perf_counter() - began
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the collector was not healthy within {deadline_s:g}s")


def stop_collector(proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> float:
    began = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - began


def du_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def server_target(url: str, data_dir: Path, *, fresh_database: bool) -> Target:
    """The server run's target: a fresh database for this run (dropped afterwards) on a real
    server; ``agentwatch`` on the shim, whose engine is new and takes inserts only there."""
    from urllib.parse import urlparse, urlunparse

    import clickhouse_connect

    parsed = urlparse(url)
    database = f"agentwatch_bench_{os.getpid()}" if fresh_database else "agentwatch"
    client = clickhouse_connect.get_client(
        host=parsed.hostname,
        port=parsed.port or 8123,
        username=parsed.username or "default",
        password=parsed.password or "",
        autogenerate_session_id=False,
    )
    if fresh_database:
        client.command(f"DROP DATABASE IF EXISTS {database}")
    run_url = urlunparse(parsed._replace(path=f"/{database}"))
    return Target(
        "server",
        data_dir,
        run_url,
        database,
        count_via="SELECT count() on the server",
        client=client,
        drop=fresh_database,
    )


# A "ClickHouse server" for ServerStore runs when no real one can be installed here (see
# tests/storage/test_server_store.py): the collector's ClickHouse HTTP endpoint with writes
# allowed, over a chDB engine in its own process. clickhouse-connect's real protocol is used
# end to end (INSERT ... FORMAT Arrow over HTTP); ClickHouse's own HTTP handler is not.
_SERVER_SHIM = """
import signal, sys, threading
from pathlib import Path
from agentwatch.query._endpoint import EndpointLimits, QueryEndpoint
from agentwatch.storage._store import EmbeddedStore
store = EmbeddedStore(Path(sys.argv[1]))
# The writer's batches are large; its inserts are the load under test, not a client's abuse.
big = EndpointLimits(max_body_bytes=1 << 30, max_decoded_bytes=1 << 31, readers=4)
endpoint = QueryEndpoint(
    store, port=int(sys.argv[2]), allow_write=True, password=sys.argv[3], limits=big
)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *args: done.set())
endpoint.start()
done.wait()
endpoint.stop()
store.close()
"""


def start_server_shim(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = secrets.token_hex(16)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - the child writes to it until it exits
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SHIM, str(workdir / "engine"), str(port), password],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    began = time.perf_counter()
    while time.perf_counter() - began < 60:
        if proc.poll() is not None:
            raise RuntimeError(f"the ClickHouse shim exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return proc, f"http://default:{password}@127.0.0.1:{port}"
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the ClickHouse shim did not answer /ping within 60s")


# -- py-spy: where the collector's time goes -------------------------------------------------------

# First match wins, checked from the innermost frame outwards: (bucket, function names).
_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store insert (insert_arrow)", ("insert_arrow",)),
    ("pricing (price_spans)", ("price_spans",)),
    ("Arrow build (spans_to_arrow)", ("spans_to_arrow", "concat_tables")),
    ("decode + flatten (request_to_columns)", ("request_to_columns",)),
    ("protobuf parse (parse_protobuf)", ("parse_protobuf",)),
    ("body read", ("_read_body",)),
    ("waiting for the commit (Future.result)", ("result",)),
    ("writer thread (batching, acks)", ("_loop",)),
    (
        "HTTP handling (server, headers, reply)",
        ("handle", "process_request_thread", "serve_forever"),
    ),
)


def summarize_raw_profile(path: Path) -> dict[str, float]:
    """Share of samples per bucket from py-spy's ``--format raw`` (collapsed stacks)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        n = int(number)
        total += n
        # "EmbeddedStore.insert_arrow (storage/_store.py:140)" -> {"EmbeddedStore", "insert_arrow"}
        names = {part for frame in stack.split(";") for part in frame.split(" (", 1)[0].split(".")}
        bucket = "other"
        for name, markers in _BUCKETS:
            if names.intersection(markers):
                bucket = name
                break
        counts[bucket] = counts.get(bucket, 0) + n
    return {k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda i: -i[1])}


def start_py_spy(pid: int, path: Path, gil_only: bool) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    command = [exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    command += ["--output", str(path), "--nonblocking"]
    if gil_only:
        command.append("--gil")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- one run ---------------------------------------------------------------------------------------


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "collector", "storage"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}+dirty" if dirty else rev or "unknown"


def machine() -> dict[str, Any]:
    from importlib import metadata

    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("chdb", "pyarrow", "protobuf", "clickhouse-connect"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "revision": git_revision(),
    }


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_load(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "collector"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.clickhouse_url:
        target = server_target(args.clickhouse_url, data_dir, fresh_database=not args.shim)
    elif has_query_endpoint():
        target = Target(
            "embedded",
            data_dir,
            None,
            query_port=free_port(),
            count_via="SELECT count() through the collector's ClickHouse HTTP endpoint",
        )
    else:
        target = Target(
            "embedded",
            data_dir,
            None,
            count_via="/stats spans_stored (rows whose insert returned; this build has no "
            "query/_endpoint.py, so the collector runs without it)",
        )
    batch = args.batch
    n_bodies = max(1, -(-args.spans // batch))
    n_clients = max(1, min(args.clients, n_bodies))
    n_procs = max(1, min(args.procs, n_clients))
    per_client = [n_bodies // n_clients + (i < n_bodies % n_clients) for i in range(n_clients)]
    start_ns = time.time_ns() - 3600 * 10**9  # traces of the last hour
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n_procs + 1)
    results = ctx.Queue()
    http_port = free_port()
    clients = []
    for p in range(n_procs):
        mine = list(range(p, n_clients, n_procs))
        clients.append(
            ctx.Process(
                target=_client_process,
                args=(
                    [i + 1 for i in mine],
                    [per_client[i] for i in mine],
                    batch,
                    http_port,
                    start_ns,
                    barrier,
                    results,
                ),
                daemon=True,
            )
        )
    for client in clients:
        client.start()

    experiment: dict[str, Any] = {}
    writer = {
        key: value
        for key, value in (
            ("max_delay_s", args.writer_max_delay),
            ("max_batch_rows", args.writer_max_batch),
            ("max_queued_rows", args.writer_max_queued),
            ("flush_when_waiting", args.writer_flush_when_waiting),
            ("release_memory_every_s", args.writer_release_every),
            ("idle_flush_rows", args.writer_idle_flush_rows),
        )
        if value is not None
    }
    if writer:
        experiment["writer"] = writer
    if args.gc_threshold:
        experiment["gc_threshold"] = args.gc_threshold
    if args.python_decoder:
        experiment["native_decoder"] = False
    if args.max_concurrent is not None:
        experiment["max_concurrent_requests"] = args.max_concurrent
    collector = start_collector(
        target, http_port, workdir / "collector.log", experiment, args.content
    )
    pid = collector.pid
    outcome: dict[str, Any] = {
        "store": target.mode,
        "count_via": target.count_via,
        "experiment": experiment or None,
        "content": args.content,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    spy: subprocess.Popen[bytes] | None = None
    sampler = RssSampler(pid)
    try:
        outcome["startup_s"] = round(wait_healthy(collector, http_port, args.startup_timeout), 2)
        if target.query_port is not None:
            import clickhouse_connect

            # The collector keeps the query endpoint's password in its data directory.
            password = (target.data_dir / "query-password").read_text(encoding="utf-8").strip()
            target.client = clickhouse_connect.get_client(
                host="127.0.0.1",
                port=target.query_port,
                password=password,
                autogenerate_session_id=False,
            )
        # Warm-up: one request resolves the price of every model and makes the first part.
        warm = ClientResult()
        _post_all(http_port, build_bodies(999_999, 1, batch, start_ns), batch, warm)
        if warm.errors:
            raise RuntimeError(f"warm-up request failed: {warm.errors[0]}")
        expected = (n_bodies + 1) * batch
        idle_rss_kb = proc_status(pid)["VmRSS"]
        sampler.start()
        if args.py_spy:
            spy = start_py_spy(pid, Path(args.py_spy), args.py_spy_gil)
            time.sleep(0.5)
        cpu_before = proc_cpu_s(pid)
        barrier.wait(timeout=args.startup_timeout + 600)  # every client has built its bodies
        t0 = time.perf_counter()
        done: list[dict[str, Any]] = []
        stored = 0
        while True:
            while not results.empty():
                done.append(results.get())
            stored = int(http_json(http_port, "/stats")["spans_stored"])
            if stored >= expected:
                break
            if len(done) == n_procs:  # every client finished: expect what was acknowledged
                expected = batch + sum(d["spans"] for d in done)
                if stored >= expected:
                    break
            if time.perf_counter() - t0 > args.timeout:
                raise RuntimeError(f"timed out with {stored} of {expected} spans stored")
            if collector.poll() is not None:
                raise RuntimeError(f"the collector exited with {collector.returncode}")
            time.sleep(0.02)
        count = stored
        if target.client is not None:
            while (count := target.count()) < expected:
                if time.perf_counter() - t0 > args.timeout:
                    raise RuntimeError(f"timed out with {count} of {expected} spans queryable")
                time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        cpu_s = proc_cpu_s(pid) - cpu_before
        status = proc_status(pid)
        stop_py_spy(spy)
        spy = None
        sampler.stop()
        while len(done) < n_procs:
            done.append(results.get(timeout=60))
        for client in clients:
            client.join(30)
        stats = http_json(http_port, "/stats")
        # The embedded store's query endpoint does not serve system.parts: read the store after.
        parts = target.parts() if target.client is not None and target.mode == "server" else None
    finally:
        stop_py_spy(spy)
        if sampler.is_alive():
            sampler.stop()
        outcome["shutdown_s"] = round(stop_collector(collector), 2)
        for client in clients:
            if client.is_alive():
                client.terminate()
    if parts is None:  # embedded: the collector is gone, read the store here
        from agentwatch.storage._store import EmbeddedStore

        store = EmbeddedStore(data_dir / "data")
        try:
            parts = parts_summary(lambda sql: store.query(sql).rows)
        finally:
            store.close()
    if target.drop and not args.keep:
        target.client.command(f"DROP DATABASE IF EXISTS {target.database}")
    latencies = [x for d in done for x in d["latencies_ms"]]
    spans_sent = (n_bodies + 1) * batch
    outcome.update(
        {
            "spans": n_bodies * batch,
            "batch": batch,
            "clients": n_clients,
            "client_processes": n_procs,
            "spans_stored": count,
            "complete": count == spans_sent,
            "elapsed_s": round(elapsed, 3),
            "spans_per_s": round(n_bodies * batch / elapsed),
            "peak_rss_mb": round(status["VmHWM"] / 1024, 1),
            "peak_rss_sampled_mb": round(sampler.max_rss_kb / 1024, 1),
            "rss_timeline_mb": [round(kb / 1024) for kb in sampler.samples[::10]],
            "peak_rss_anon_sampled_mb": round(sampler.max_anon_kb / 1024, 1),
            "rss_file_mb": round(sampler.file_kb / 1024, 1),
            "idle_rss_mb": round(idle_rss_kb / 1024, 1),
            "collector_cpu_cores": round(cpu_s / elapsed, 2),
            "client_cpu_cores": round(sum(d["cpu_s"] for d in done) / elapsed, 2),
            "client_build_s": round(max(d["build_s"] for d in done), 1),
            "retries_503": sum(d["retries_503"] for d in done),
            "reconnects": sum(d["reconnects"] for d in done),
            "errors": [e for d in done for e in d["errors"]][:10],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "request_ms_p50": round(percentile(latencies, 0.5), 1),
            "request_ms_p99": round(percentile(latencies, 0.99), 1),
            "inserts": stats.get("inserts"),
            "insert_s_total": stats.get("insert_seconds_total"),
            "insert_s_max": stats.get("insert_seconds_max"),
            "rejected": stats.get("rejected"),
            "disk": parts,
            "bytes_per_span": round(parts["bytes_per_span"], 1) if parts["rows"] else None,
            "du_bytes_per_span": round(du_bytes(data_dir) / count, 1)
            if target.mode == "embedded" and count
            else None,
            "request_body_bytes_per_span": round(
                sum(d["body_bytes"] for d in done) / (n_bodies * batch), 1
            ),
        }
    )
    return outcome


def run_server(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The same load through ServerStore: a real server's URL, or the shim (see above)."""
    shim: subprocess.Popen[bytes] | None = None
    try:
        if not args.clickhouse_url:
            shim, url = start_server_shim(workdir)
            args = argparse.Namespace(**{**vars(args), "clickhouse_url": url, "shim": True})
        result = run_load(args, workdir)
        if shim is not None:
            result["store"] = "server (shim)"
            result["server_peak_rss_mb"] = round(proc_status(shim.pid)["VmHWM"] / 1024, 1)
        return result
    except Exception as exc:
        return {"store": "server", "error": repr(exc)[:300]}
    finally:
        if shim is not None:
            stop_collector(shim)


# -- --stages: the ingest path step by step, in this process ---------------------------------------


def run_stages(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Per-span cost of each step, one request at a time as a receiver thread runs them (GC on,
    only the Arrow tables kept for the insert)."""
    import gc

    import pyarrow as pa

    from agentwatch.collector._decode import DecodeLimits, parse_protobuf, request_to_columns
    from agentwatch.collector._native_rows import native_spans_to_arrow
    from agentwatch.collector._pricing import PriceTable
    from agentwatch.collector._rows import price_spans, spans_to_arrow
    from agentwatch.storage._store import EmbeddedStore, apply_migrations

    n_bodies = max(1, -(-args.spans // args.batch))
    spans = n_bodies * args.batch
    start_ns = time.time_ns() - 3600 * 10**9
    # Two price tables, so the Arrow step's pricing is as cold as the pricing step's.
    for_pricing, for_arrow, for_native = PriceTable(), PriceTable(), PriceTable()
    limits = DecodeLimits()
    warm = request_to_columns(parse_protobuf(build_bodies(999_999, 1, args.batch, start_ns)[0]))
    spans_to_arrow(warm, for_pricing)
    spans_to_arrow(warm, for_arrow)
    native_spans_to_arrow(build_bodies(999_999, 1, args.batch, start_ns)[0], limits, for_native)
    store = EmbeddedStore(workdir / "stages" / "data")
    apply_migrations(store)
    per_insert = max(1, 50_000 // args.batch)  # the writer's max_batch_rows
    names = (
        "protobuf parse",
        "decode + flatten",
        "pricing",
        "Arrow build incl. pricing",
        "chDB insert (50k-row batches)",
        "native decode + pricing + Arrow (same bodies)",
    )
    timings: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for round_index in range(args.rounds):
        # New traces each round, so pricing's per-call cache (tiered models) is as cold as in a
        # real run; building them is not timed.
        bodies = build_bodies(round_index + 1, n_bodies, args.batch, start_ns)
        gc.collect()
        totals = dict.fromkeys(names, 0.0)
        tables: list[pa.Table] = []
        for body in bodies:
            t0 = clock()
            request = parse_protobuf(body)
            t1 = clock()
            columns = request_to_columns(request)
            t2 = clock()
            price_spans(columns, for_pricing)
            t3 = clock()
            tables.append(spans_to_arrow(columns, for_arrow))
            t4 = clock()
            del request, columns
            totals["protobuf parse"] += t1 - t0
            totals["decode + flatten"] += t2 - t1
            totals["pricing"] += t3 - t2
            totals["Arrow build incl. pricing"] += t4 - t3
            t6 = clock()
            native = native_spans_to_arrow(body, limits, for_native)
            totals["native decode + pricing + Arrow (same bodies)"] += clock() - t6
            if native is None or native.num_rows != args.batch:
                raise RuntimeError("the native decoder declined a benchmark body")
            del native
            if len(tables) == per_insert or body is bodies[-1]:
                t5 = clock()
                store.insert_arrow("otel_traces", pa.concat_tables(tables))
                totals["chDB insert (50k-row batches)"] += clock() - t5
                tables = []
        for name, seconds in totals.items():
            timings[name].append(seconds / spans * 1e6)
        del bodies
    store.close()
    medians = {name: round(statistics.median(v), 2) for name, v in timings.items()}
    python_path = sum(medians[n] for n in names[:2]) + medians["Arrow build incl. pricing"]
    native_path = medians["protobuf parse"] + medians[names[-1]]
    return {
        "spans": spans,
        "batch": args.batch,
        "rounds": args.rounds,
        "us_per_span": medians,
        "python_us_per_span": round(python_path, 2),
        "python_bound_spans_per_s": round(1e6 / python_path) if python_path else None,
        "native_us_per_span": round(native_path, 2),
        "native_bound_spans_per_s": round(1e6 / native_path) if native_path else None,
    }


# -- report ----------------------------------------------------------------------------------------


def render(results: list[dict[str, Any]]) -> str:
    lines = [
        "| store | spans | clients (procs) x batch | wall s | spans/s (target >= 50,000) "
        "| peak RSS MB (target < 500) | bytes/span on disk | 503 retries | request p50 / p99 ms "
        "| collector CPU cores |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['store']} | — | — | — | not measured: {r['error']} | | | | | |")
            continue
        ok_rate = "met" if r["spans_per_s"] >= THROUGHPUT_TARGET else "MISSED"
        ok_rss = "met" if r["peak_rss_mb"] < RSS_TARGET_MB else "MISSED"
        store = r["store"]
        if r.get("experiment"):
            store += " " + json.dumps(r["experiment"], separators=(",", "="))
        lines.append(
            f"| {store} | {r['spans']:,} | {r['clients']} ({r['client_processes']}) x "
            f"{r['batch']} | {r['elapsed_s']:.1f} | **{r['spans_per_s']:,}** ({ok_rate}) | "
            f"{r['peak_rss_mb']:.0f} ({ok_rss}) | {r['bytes_per_span']} | {r['retries_503']} | "
            f"{r['request_ms_p50']} / {r['request_ms_p99']} | {r['collector_cpu_cores']} |"
        )
    return "\n".join(lines)


def render_stages(stages: dict[str, Any]) -> str:
    lines = ["| step (in process, GC on) | µs per span |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in stages["us_per_span"].items()]
    lines.append(
        f"| Python path (parse + decode + Arrow incl. pricing) | {stages['python_us_per_span']} "
        f"(≤ {stages['python_bound_spans_per_s']:,} spans/s on one core) |"
    )
    lines.append(
        f"| native path (parse + native decode incl. pricing and Arrow) | "
        f"{stages['native_us_per_span']} (≤ {stages['native_bound_spans_per_s']:,} spans/s on one "
        "core) |"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_collector",
        description="Collector throughput: OTLP/HTTP protobuf agent traces, end to end.",
    )
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to send (1,000,000)")
    parser.add_argument("--batch", type=int, default=1000, help="spans per request (1000)")
    parser.add_argument(
        "--clients", type=int, default=32, help="concurrent exporters / connections (32)"
    )
    parser.add_argument("--procs", type=int, default=2, help="client processes (2)")
    parser.add_argument(
        "--clickhouse-url",
        default=None,
        help="also run against a ClickHouse server (ServerStore), e.g. http://default:@127.0.0.1:8123",
    )
    parser.add_argument(
        "--server-shim",
        action="store_true",
        help="also run ServerStore against a chDB engine behind the collector's ClickHouse "
        "HTTP endpoint with writes allowed (no real ClickHouse server can be installed here)",
    )
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded run")
    parser.add_argument(
        "--content",
        choices=("keep", "redact", "drop"),
        default="redact",
        help="the collector's --content policy (redact, its default)",
    )
    experiments = parser.add_argument_group(
        "experiments", "collector settings the CLI does not expose (the run says it used them)"
    )
    experiments.add_argument("--writer-max-delay", type=float, default=None, metavar="S")
    experiments.add_argument("--writer-max-batch", type=int, default=None, metavar="ROWS")
    experiments.add_argument("--writer-max-queued", type=int, default=None, metavar="ROWS")
    experiments.add_argument("--writer-flush-when-waiting", type=int, default=None, metavar="N")
    experiments.add_argument("--writer-release-every", type=float, default=None, metavar="S")
    experiments.add_argument("--writer-idle-flush-rows", type=int, default=None, metavar="ROWS")
    experiments.add_argument("--gc-threshold", type=int, default=0, metavar="N", help="gen0")
    experiments.add_argument(
        "--python-decoder", action="store_true", help="decode in Python only (no native decoder)"
    )
    experiments.add_argument(
        "--max-concurrent", type=int, default=None, metavar="N", help="requests admitted at once"
    )
    parser.add_argument("--json", default=None, help="write the results as JSON to this path")
    parser.add_argument("--py-spy", default=None, help="profile the collector (raw stacks) here")
    parser.add_argument("--py-spy-gil", action="store_true", help="sample GIL holders only")
    parser.add_argument("--stages", action="store_true", help="time the ingest steps in process")
    parser.add_argument("--rounds", type=int, default=3, help="rounds for --stages (3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="healthz deadline")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="agentwatch-bench-collector-"))
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.bench_collector " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "runs": [],
    }
    try:
        if args.stages:
            report["stages"] = run_stages(args, workdir)
            print(render_stages(report["stages"]))
        else:
            if not args.no_embedded:
                report["runs"].append(run_load(args, workdir / "embedded"))
            if args.clickhouse_url or args.server_shim:
                report["runs"].append(run_server(args, workdir / "server"))
            print(render(report["runs"]))
            for r in report["runs"]:
                if "error" not in r:
                    print(f"\n{r['store']}: {json.dumps(r)}")
            if args.py_spy and Path(args.py_spy).exists():
                report["profile"] = summarize_raw_profile(Path(args.py_spy))
                print("\nprofile (% of samples):", json.dumps(report["profile"], indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data kept in {workdir}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
