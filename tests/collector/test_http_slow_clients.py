"""Slow clients cannot hold what others need: the OTLP/HTTP receiver gives each phase of a request
a total deadline, takes a decoding slot only once a body has arrived, bounds the bodies still
arriving and the connections open, and answers a burst of connections rather than resetting them.

Every test drives a real ``HttpReceiver`` (real ``Ingestor``, ``BatchWriter`` and embedded store)
over loopback sockets; slow clients are raw sockets that pace their bytes.
"""

from __future__ import annotations

import errno
import http.client
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentwatch.collector._http import _SMALL_BODY_GRACE_S, HttpLimits, HttpReceiver
from agentwatch.collector._ingest import Ingestor, IngestSettings
from agentwatch.collector._pricing import PriceTable
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter
from agentwatch.storage._store import EmbeddedStore, apply_migrations
from tests.collector.conftest import (
    FAST_WRITER,
    PROTOBUF,
    Reply,
    SharedCollector,
    post_request,
    rejected,
    trace_batch,
    wait_until,
)

pytestmark = pytest.mark.slow


@dataclass
class Receiver:
    http: HttpReceiver
    stats: Stats

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


StartReceiver = Callable[..., Receiver]


@pytest.fixture(scope="module")
def store(
    shared_collector: SharedCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedStore]:
    """One store for the module (chDB opens one data directory per process; opening is slow)."""
    shared_collector.close()
    opened = EmbeddedStore(tmp_path_factory.mktemp("slow-clients") / "data")
    apply_migrations(opened)
    yield opened
    opened.close()


@pytest.fixture
def start_receiver(store: EmbeddedStore) -> Iterator[StartReceiver]:
    """Start a real receiver (its own stats, writer and ingestor over the module's store) with
    the given ``HttpLimits``; keyword arguments become ``IngestSettings``."""
    started: list[tuple[HttpReceiver, BatchWriter]] = []

    def start(limits: HttpLimits | None = None, **settings: Any) -> Receiver:
        stats = Stats()
        writer = BatchWriter(store, stats, FAST_WRITER)
        ingestor = Ingestor(writer, PriceTable(), stats, IngestSettings(**settings))
        receiver = HttpReceiver(ingestor, "127.0.0.1", 0, limits)
        writer.start()
        receiver.start()
        started.append((receiver, writer))
        return Receiver(receiver, stats)

    yield start
    for receiver, writer in reversed(started):
        receiver.stop()
        writer.stop()


# -- raw clients --------------------------------------------------------------------------------
def head(length: int) -> bytes:
    """The request line and headers of a protobuf export with a body of ``length`` bytes."""
    return (
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {PROTOBUF}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def export_request() -> bytes:
    """One whole, valid OTLP/HTTP protobuf export of one span."""
    body = trace_batch(1).SerializeToString()
    return head(len(body)) + body


def read_reply(sock: socket.socket, timeout: float = 5.0) -> Reply:
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    response.begin()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, response.read())


def hung_up(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the collector closed the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


@dataclass
class Trickler:
    """A client that sends ``prefix`` at once, then ``drip`` one byte every ``pace`` s, until it
    is answered or cut off. Its wait for an answer paces it: no sleeping."""

    port: int
    prefix: bytes
    drip: bytes
    pace: float = 1.0
    started_at: float = 0.0
    finished_at: float = 0.0
    reply: Reply | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = None

    def start(self) -> Trickler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                self._sock = sock
                self.started_at = time.monotonic()
                sock.sendall(self.prefix)
                for byte in self.drip:
                    sock.settimeout(self.pace)
                    try:
                        answered = sock.recv(1, socket.MSG_PEEK)
                    except TimeoutError:
                        if self._stop.is_set():
                            return
                        sock.sendall(bytes([byte]))
                        continue
                    if answered:
                        self.reply = read_reply(sock)
                    else:
                        self.error = "closed without an answer"
                    return
                self.error = "sent everything"
        except OSError as exc:
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.monotonic()
            self.done.set()


def body_trickler(port: int, pace: float = 1.0) -> Trickler:
    """Sends the head of a 100-byte request (and its first body byte) at once, then trickles."""
    return Trickler(port, head(100) + b"\0", b"\0" * 99, pace)


# -- (a) bodies ---------------------------------------------------------------------------------
def test_trickling_bodies_hold_no_decoding_slot_and_get_408_after_the_total_deadline(
    start_receiver: StartReceiver,
) -> None:
    """More tricklers than decoding slots (1 byte a second, so a per-read timeout never fires)
    leave a whole request served at once; each is answered 408 once its body deadline passes."""
    receiver = start_receiver(HttpLimits(body_timeout_s=2.0), max_concurrent_requests=4)
    tricklers = [body_trickler(receiver.port).start() for _ in range(24)]
    wait_until(lambda: receiver.http.receiving == 24, timeout=5, what="24 bodies trickling in")

    started = time.monotonic()
    reply = post_request(receiver.url, trace_batch(3))
    took = time.monotonic() - started
    assert reply.status == 200
    assert took < 1.0, f"a whole request waited {took:.2f}s behind tricklers"

    wait_until(lambda: all(t.done.is_set() for t in tricklers), timeout=10, what="408s")
    for trickler in tricklers:
        assert trickler.error is None
        assert trickler.reply is not None
        assert trickler.reply.status == 408
        assert trickler.reply.headers["connection"] == "close"
        assert trickler.reply.json()["error"] == "client_timeout"
        assert 1.9 <= trickler.finished_at - trickler.started_at < 4.0
    assert rejected(receiver.url)["client_timeout"] == 24
    assert receiver.http.receiving == 0


# -- (b) headers --------------------------------------------------------------------------------
def test_a_client_dribbling_its_headers_is_cut_off_after_the_header_deadline(
    start_receiver: StartReceiver,
) -> None:
    receiver = start_receiver(HttpLimits(header_timeout_s=1.0))
    line = b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    dribbler = Trickler(receiver.port, line, b"a" * 100, pace=0.2).start()
    wait_until(dribbler.done.is_set, timeout=5, what="the dribbler to be cut off")
    assert dribbler.error is None
    assert dribbler.reply is not None
    assert dribbler.reply.status == 408
    assert dribbler.reply.json()["error"] == "header_timeout"
    assert 0.9 <= dribbler.finished_at - dribbler.started_at < 2.5
    assert rejected(receiver.url)["header_timeout"] == 1
    wait_until(lambda: receiver.http.open_connections == 0, timeout=5, what="its thread to end")


# -- keep-alive ---------------------------------------------------------------------------------
def test_idle_connections_are_closed_after_the_idle_timeout_and_hold_no_slot(
    start_receiver: StartReceiver,
) -> None:
    """Idle keep-alive connections (and ones that never send) hold no receiving or decoding slot
    and are closed after ``idle_timeout_s``."""
    receiver = start_receiver(
        HttpLimits(idle_timeout_s=0.5, max_receiving=1), max_concurrent_requests=1
    )
    kept = socket.create_connection(("127.0.0.1", receiver.port))
    silent = socket.create_connection(("127.0.0.1", receiver.port))
    try:
        kept.sendall(export_request())
        assert read_reply(kept).status == 200
        wait_until(lambda: receiver.http.open_connections == 2, timeout=5, what="2 connections")
        # While both sit idle, the one receiving slot and the one decoding slot are free.
        for _ in range(3):
            assert post_request(receiver.url, trace_batch(1)).status == 200
        started = time.monotonic()
        assert hung_up(kept)
        assert hung_up(silent)
        assert time.monotonic() - started < 2.0
        wait_until(lambda: receiver.http.open_connections == 0, timeout=5, what="threads to end")
    finally:
        kept.close()
        silent.close()


# -- (c) fan-in ---------------------------------------------------------------------------------
@dataclass
class _Client:
    index: int
    sock: socket.socket
    sent: bool = False
    received: bytes = b""


def fan_in(port: int, clients: int, timeout: float = 20.0) -> list[Reply | str]:
    """``clients`` raw connections opened at once (all connects before any request is sent),
    each sending one whole export; each one's reply, or what went wrong as a string."""
    results: list[Reply | str] = ["no answer in time"] * clients
    selector = selectors.DefaultSelector()
    requests = [export_request() for _ in range(clients)]
    for index in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            results[index] = f"connect: {errno.errorcode.get(err, err)}"
            sock.close()
            continue
        selector.register(sock, selectors.EVENT_WRITE, _Client(index, sock))
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            client: _Client = key.data
            finished = False
            try:
                if not client.sent:
                    err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, errno.errorcode.get(err, str(err)))
                    request = requests[client.index]
                    assert client.sock.send(request) == len(request)  # small: sent whole
                    client.sent = True
                    selector.modify(client.sock, selectors.EVENT_READ, client)
                    continue
                data = client.sock.recv(65536)
                client.received += data
                reply = _parse(client.received)
                if reply is not None:
                    results[client.index] = reply
                    finished = True
                elif not data:
                    results[client.index] = f"closed after {client.received!r}"
                    finished = True
            except OSError as exc:
                results[client.index] = f"{type(exc).__name__}: {exc}"
                finished = True
            if finished:
                selector.unregister(client.sock)
                client.sock.close()
    for key in list(selector.get_map().values()):
        key.data.sock.close()
    selector.close()
    return results


def _parse(received: bytes) -> Reply | None:
    """The reply in ``received`` once all of it (by Content-Length) is there."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return None
    status_line, *lines = received[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = received[end + 4 :]
    if len(body) < int(headers.get("content-length", "0")):
        return None
    return Reply(int(status_line.split()[1]), headers, body)


@pytest.mark.parametrize("max_connections", [1024, 100])
def test_500_clients_connecting_at_once_each_get_an_answer_never_a_reset(
    start_receiver: StartReceiver, max_connections: int
) -> None:
    """500 exporters at once, within and beyond ``max_connections``: each gets 200, or 503 with
    Retry-After; no connection is refused or reset."""
    receiver = start_receiver(HttpLimits(max_connections=max_connections))
    results = fan_in(receiver.port, 500)
    failures = [r for r in results if isinstance(r, str)]
    assert not failures, f"{len(failures)} without an answer, e.g. {sorted(set(failures))[:5]}"
    replies = [r for r in results if isinstance(r, Reply)]
    assert {r.status for r in replies} <= {200, 503}
    refused = [r for r in replies if r.status == 503]
    assert all(r.headers.get("retry-after") for r in refused)
    assert len(refused) < 500
    counts = rejected(receiver.url)
    assert len(refused) == sum(
        counts.get(reason, 0) for reason in ("overloaded", "too_many_connections")
    )
    wait_until(lambda: receiver.http.open_connections == 0, timeout=10, what="threads to end")


def test_connections_beyond_max_connections_get_503_without_a_thread(
    start_receiver: StartReceiver,
) -> None:
    receiver = start_receiver(HttpLimits(max_connections=4))
    holders = [socket.create_connection(("127.0.0.1", receiver.port)) for _ in range(4)]
    try:
        wait_until(lambda: receiver.http.open_connections == 4, timeout=5, what="4 connections")
        threads = threading.active_count()
        with socket.create_connection(("127.0.0.1", receiver.port)) as extra:
            extra.sendall(export_request())
            reply = read_reply(extra)
            assert hung_up(extra)
        assert (reply.status, reply.headers["retry-after"]) == (503, "1")
        assert reply.json()["error"] == "too_many_connections"
        assert threading.active_count() == threads
        assert receiver.stats.snapshot()["rejected"]["too_many_connections"] == 1
    finally:
        for holder in holders:
            holder.close()
    wait_until(lambda: receiver.http.open_connections == 0, timeout=5, what="threads to end")
    assert post_request(receiver.url, trace_batch(1)).status == 200


# -- (d) bodies still arriving ------------------------------------------------------------------
def test_beyond_max_receiving_a_trickling_body_gets_503_at_once_but_whole_ones_are_served(
    start_receiver: StartReceiver,
) -> None:
    receiver = start_receiver(HttpLimits(max_receiving=2, body_timeout_s=10.0))
    tricklers = [body_trickler(receiver.port).start() for _ in range(2)]
    try:
        wait_until(lambda: receiver.http.receiving == 2, timeout=5, what="2 bodies trickling")
        with socket.create_connection(("127.0.0.1", receiver.port)) as third:
            third.sendall(head(100) + b"\0" * 10)
            started = time.monotonic()
            reply = read_reply(third)
            # A small body gets a short grace to arrive whole before it needs a slot.
            assert time.monotonic() - started < _SMALL_BODY_GRACE_S + 1.0
            assert hung_up(third)
        assert (reply.status, reply.headers["retry-after"]) == (503, "1")
        assert reply.headers["connection"] == "close"
        assert reply.json()["error"] == "too_many_receiving"
        # A request whose body came with its headers needs no receiving slot.
        assert post_request(receiver.url, trace_batch(2)).status == 200
        # Nor does one whose body trails its headers in a second write, as http.client and
        # urllib3 (the OTel Python exporter) send them.
        with socket.create_connection(("127.0.0.1", receiver.port)) as split:
            body = trace_batch(1).SerializeToString()
            split.sendall(head(len(body)))
            time.sleep(_SMALL_BODY_GRACE_S / 5)  # the client's pause, not a wait for data
            split.sendall(body)
            assert read_reply(split).status == 200
    finally:
        for trickler in tricklers:
            trickler.stop()
    wait_until(lambda: receiver.http.receiving == 0, timeout=5, what="the slots to be freed")
    assert rejected(receiver.url)["too_many_receiving"] == 1
