"""Ack after commit, proven the hard way: the ``agentwatch collector`` command is SIGKILLed while
clients are sending, and every span of every request it answered 200 is in the store when the
data directory is opened again."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.storage._store import EmbeddedStore
from tests.collector.conftest import get, post_request, span_counts, trace_batch, wait_until

pytestmark = pytest.mark.slow

SPANS_PER_REQUEST = 40
SENDERS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CollectorProcess:
    """``python -m agentwatch collector`` on free loopback ports, embedded store in ``data_dir``."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.http_port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AGENTWATCH_CLICKHOUSE_URL", "AGENTWATCH_INGEST_TOKEN")
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentwatch",
                    "collector",
                    "--data-dir",
                    str(data_dir),
                    "--http-port",
                    str(self.http_port),
                    "--no-grpc",
                    "--query-port",
                    str(free_port()),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"collector exited with {self.process.returncode}:\n{self.log.read_text()}"
            )
        try:
            return bool(get(self.url, "/healthz").json()["status"] == "ok")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[CollectorProcess]:
    child = CollectorProcess(tmp_path / "agentwatch", tmp_path / "collector.log")
    try:
        wait_until(child.healthy, timeout=60, what="the collector's /healthz")
        yield child
    finally:
        child.kill()


def test_sigkill_mid_load_loses_no_acknowledged_span(collector_process: CollectorProcess):
    acked: list[bytes] = []
    failed: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            request = trace_batch(SPANS_PER_REQUEST)
            trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
            try:
                reply = post_request(collector_process.url, request)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failed.append(exc)
                return  # the collector is gone
            if reply.status == 200:
                with lock:
                    acked.append(trace_id)

    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    try:
        wait_until(lambda: len(acked) >= 25, timeout=60, what="25 acknowledged requests")
        os.kill(collector_process.process.pid, signal.SIGKILL)
        assert collector_process.process.wait(30) == -signal.SIGKILL
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)

    assert failed, "no request was in flight when the collector was killed"
    store = EmbeddedStore(collector_process.data_dir / "data")
    try:
        counts = span_counts(store, acked)
    finally:
        store.close()
    lost = {tid: n for tid, n in counts.items() if n != SPANS_PER_REQUEST}
    assert lost == {}, f"{len(lost)} of {len(acked)} acknowledged requests lost spans"
