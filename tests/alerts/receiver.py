"""A real HTTP webhook receiver on loopback, and polling with a deadline."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from tests import polling

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    return polling.wait_until(predicate, timeout, what)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """Records every POST (JSON body). ``statuses`` are answered in turn (then 200);
    while ``gate`` is clear, requests are held open."""

    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)
    arrived: int = 0
    """Requests received so far, held or answered."""
    url: str = ""

    def __post_init__(self) -> None:
        self.gate.set()
        self._lock = threading.Lock()

    def arrive(self) -> None:
        with self._lock:
            self.arrived += 1

    def record(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else 200

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]


@contextmanager
def receiving(receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Serve ``receiver`` on a free loopback port for the duration of the block."""
    served = receiver or Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            served.arrive()
            served.gate.wait(30)
            status = served.record(
                Request(self.path, dict(self.headers.items()), json.loads(raw or b"null"))
            )
            self.send_response(status)
            if status != 200 and served.retry_after is not None:
                self.send_header("Retry-After", served.retry_after)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield served
    finally:
        served.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused): a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
