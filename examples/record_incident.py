"""Record examples/incident_trace.jsonl, the "production incident" test_replay_incident.py replays.

    python examples/record_incident.py          # rewrites examples/incident_trace.jsonl
    python examples/record_incident.py FILE     # writes FILE instead

The incident: a ticket about a parcel still in transit was refunded automatically (310.00).
It is recorded through the real path: the support agent runs through the SDK with content
capture on (and the example's redactor), sends OTLP/HTTP to a collector on a temporary
embedded store, and the stored trace is written as `agentwatch export trace TRACE_ID` writes
it. Needs the collector's dependencies (`pip install -e '.[collector]'`); the test that replays
the file does not.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from pathlib import Path

import agentwatch as aw

# examples/ is not a package: run as a script (or from a test beside it), this folder is on
# sys.path, so the agent imports by name.
support_agent = importlib.import_module("support_agent")

OUTPUT = Path(__file__).resolve().with_name("incident_trace.jsonl")
INCIDENT_TICKET = support_agent.Ticket(
    "T-9", "C-9", "A-200", "My parcel is late, refund me now. jane@example.com", 0.91
)
# One run of handle_refund: the agent, lookup_order, two search_kb, the model call, the
# decision, issue_refund; then the action log's outcome line.
EXPECTED_LINES = 8


def record(output: Path = OUTPUT) -> str:
    """Run the incident through SDK -> collector -> store -> export; returns its trace id."""
    from agentwatch.app._collector import Collector, CollectorConfig
    from agentwatch.app._export import export_trace
    from agentwatch.collector._writer import WriterSettings
    from agentwatch.storage._action_log import trace_action_log

    with tempfile.TemporaryDirectory() as data_dir:
        collector = Collector(
            CollectorConfig(
                data_dir=Path(data_dir),
                http_port=0,
                grpc_port=None,
                query_port=None,
                writer=WriterSettings(max_delay_s=0.005),
            )
        )
        collector.start()
        try:
            aw.configure(
                service_name="example-support-agent",
                endpoint=f"http://127.0.0.1:{collector.http.port}",
                environment="production",
                capture_content=True,
                redact=support_agent.REDACT,
                max_content_chars=2000,
            )
            try:
                ref = aw.TraceRef.parse(support_agent.handle_refund(INCIDENT_TICKET)["ref"])
            finally:
                aw.shutdown()  # flushes the batch to the collector
            trace_id = f"{ref.trace_id:032x}"
            deadline = time.monotonic() + 30
            while len(trace_action_log(collector.store, trace_id)) < EXPECTED_LINES:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the collector did not store trace {trace_id} in 30 s")
                time.sleep(0.05)  # polling the store for the writer's batch, with a deadline
            with output.open("w", encoding="utf-8") as out:
                export_trace(collector.store, trace_id, out)
        finally:
            collector.stop()
    return trace_id


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    print(f"recorded trace {record(target)} into {target}", file=sys.stderr)
