"""``agentwatch health run``: runs probes once, prints results, exit code for CI and cron."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

REPO = Path(__file__).resolve().parents[2]
FIXTURE = "tests.app.probes_fixture"

# Each test starts with an empty probe registry and leaves no scheduler running.
pytestmark = pytest.mark.usefixtures("isolated_registry")


def health_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentwatch", "health", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_passing_probe_exits_zero_and_prints_pass() -> None:
    done = health_run(f"{FIXTURE}:passing")
    assert (done.returncode, done.stdout.splitlines()[0].split(" (")[0]) == (
        0,
        "PASS fixture-passing",
    )


def test_a_failing_probe_exits_one() -> None:
    assert health_run(f"{FIXTURE}:failing").returncode == 1


def test_a_failing_probe_prints_the_failed_expectation_and_why() -> None:
    line = health_run(f"{FIXTURE}:failing").stdout.splitlines()[0]
    assert (line.split(" (")[0], line.split("): ", 1)[1]) == (
        "FAIL fixture-failing",
        "max_length(10): the answer is 47 characters long, more than 10",
    )


def test_a_module_alone_runs_every_probe_it_registers() -> None:
    done = health_run(FIXTURE)
    assert done.stdout.splitlines()[-1] == "2 health checks, 1 failed"


def test_several_targets_run_in_order() -> None:
    done = health_run(f"{FIXTURE}:failing", f"{FIXTURE}:passing")
    names = [line.split(" (")[0] for line in done.stdout.splitlines()[:2]]
    assert names == ["FAIL fixture-failing", "PASS fixture-passing"]


def test_an_attribute_that_is_not_a_probe_exits_two() -> None:
    done = health_run(f"{FIXTURE}:not_a_probe")
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"agentwatch health run: error: '{FIXTURE}:not_a_probe' is a str, "
        "not a function decorated with @health_check",
    )


def test_a_module_that_cannot_be_imported_exits_two() -> None:
    done = health_run("no_such_module_here:probe")
    assert done.returncode == 2
    assert "cannot import 'no_such_module_here'" in done.stderr


def test_a_module_that_raises_on_import_exits_two(tmp_path: Path) -> None:
    (tmp_path / "broken_probes.py").write_text("raise RuntimeError('no config')\n")
    done = health_run("broken_probes:probe", cwd=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "agentwatch health run: error: 'broken_probes:probe': cannot import 'broken_probes': "
        "RuntimeError: no config",
    )


def test_an_endpoint_that_is_not_a_url_exits_two() -> None:
    done = health_run(f"{FIXTURE}:passing", "--endpoint", "localhost:4318")
    assert (done.returncode, "endpoint must be an http(s) URL" in done.stderr) == (2, True)


def test_the_console_script_imports_probes_from_the_current_directory(tmp_path: Path) -> None:
    """The installed script, unlike ``python -m``, does not put the cwd on sys.path itself."""
    script = shutil.which("agentwatch", path=str(Path(sys.executable).parent))
    assert script is not None
    (tmp_path / "my_probes.py").write_text(
        "import agentwatch as aw\n\n"
        "@aw.health_check(name='local', expect=aw.expect.contains('pong'))\n"
        "def ping():\n"
        "    return 'pong'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [script, "health", "run", "my_probes:ping"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "1 health check, 0 failed")


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    assert kind is not None
    return getattr(value, kind)


class _Receiver:
    """A loopback OTLP/HTTP receiver that keeps every exported span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, object]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            values = {a.key: _value(a.value) for a in span.attributes}
                            receiver.spans.append((span.name, values))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_endpoint_exports_the_health_check_spans(receiver: _Receiver) -> None:
    done = health_run(f"{FIXTURE}:failing", "--endpoint", receiver.url)
    assert done.returncode == 1
    [(name, values)] = receiver.spans
    assert (name, values["agentwatch.health.check"], values["agentwatch.health.passed"]) == (
        "health_check fixture-failing",
        "fixture-failing",
        False,
    )


def test_without_endpoint_nothing_is_exported(receiver: _Receiver) -> None:
    """Even with the standard endpoint variable set: exporting is asked for with --endpoint."""
    env_run = subprocess.run(
        [sys.executable, "-m", "agentwatch", "health", "run", f"{FIXTURE}:passing"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
    )
    assert (env_run.returncode, receiver.spans) == (0, [])
