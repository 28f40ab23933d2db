"""``agentwatch up`` as a subprocess on free loopback ports, for the end-to-end tests.

Waiting is always polling with a deadline (the collector's ``/healthz``, Streamlit's
``/_stcore/health``, a line of output, rows in the store), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests import polling

T = TypeVar("T")
PORT_NAMES = ("http", "grpc", "query", "dashboard")
# The demo's simulated latency in these tests: tickets take tens of milliseconds, not seconds,
# so a fixed number of them is done at once (unless a test passes its own --demo-latency).
TEST_DEMO_LATENCY = "0.05"


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    return polling.wait_until(predicate, timeout, what, interval=0.1)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (held open together, so
    the kernel hands out different ones)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (with SO_REUSEADDR, as servers do, so the
    closed connections the old server left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a 200 answer, or None when nothing (good) answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode() if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (from /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return found


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Up:
    """A running ``agentwatch up``: its process, ports and everything it printed so far."""

    process: subprocess.Popen[str]
    ports: dict[str, int]
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def healthz_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}/healthz"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def query_url(self) -> str:
        """The collector's read-only ClickHouse endpoint, with its generated password (read
        from the data directory, as a user would) and the database."""
        password = (self.data_dir / "query-password").read_text().strip()
        return f"http://default:{password}@127.0.0.1:{self.ports['query']}/agentwatch"

    def wait_for_line(self, text: str, timeout: float) -> None:
        wait_until(
            lambda: any(text in line for line in self.lines) or self._exited(),
            timeout,
            f"{text!r} in the output of agentwatch up",
        )
        assert any(text in line for line in self.lines), self.output

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Collector healthy and the dashboard answering its health check."""
        wait_until(
            lambda: self._exited() or http_get(self.healthz_url),
            timeout,
            "the collector's /healthz",
        )
        wait_until(
            lambda: self._exited() or http_get(f"{self.dashboard_url}/_stcore/health") == "ok",
            timeout,
            "the dashboard's /_stcore/health",
        )
        assert self.process.poll() is None, f"agentwatch up exited:\n{self.output}"

    def _exited(self) -> bool:
        return self.process.poll() is not None

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the ``up`` process only (as a terminal sends it to the command)."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


@contextlib.contextmanager
def agentwatch_up(data_dir: Path, *args: str) -> Iterator[Up]:
    """Run ``python -m agentwatch up ARGS`` on free ports (with ``--demo``, at
    ``TEST_DEMO_LATENCY``); kill what is left of it at the end (its own process group, so a
    test failure leaves no dashboard behind)."""
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    command = [
        sys.executable,
        "-m",
        "agentwatch",
        "up",
        "--data-dir",
        str(data_dir),
        "--http-port",
        str(ports["http"]),
        "--grpc-port",
        str(ports["grpc"]),
        "--query-port",
        str(ports["query"]),
        "--dashboard-port",
        str(ports["dashboard"]),
        *args,
    ]
    if "--demo" in args and "--demo-latency" not in args:
        command += ["--demo-latency", TEST_DEMO_LATENCY]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AGENTWATCH_CLICKHOUSE_URL", None)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    up = Up(process, ports, data_dir)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield up
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        else:
            # The dashboard runs in up's process group; make sure nothing of it outlives us.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()
