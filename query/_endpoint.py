"""The embedded store's ClickHouse HTTP interface: read-only, behind a password, bounded.

chDB locks its data directory to one process, so in embedded mode the collector owns the store
and serves the part of ClickHouse's HTTP interface that clickhouse-connect (the dashboard) and
Grafana's ClickHouse datasource use: ``GET /ping``; queries in the ``query`` URL parameter and/or
the POST body, ``param_<name>`` values for ``{name:Type}`` placeholders, the ``database`` and
``default_format`` parameters, a ``FORMAT`` clause in any output format chDB writes,
gzip/deflate/lz4/zstd request bodies, multipart form-encoded queries, and ClickHouse-style
errors (``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body).

Safe by construction, in this order (``docs/clickhouse.md`` has the whole model):

1. Who may call: only ``/ping`` is open. A request must name this endpoint in ``Host`` (DNS
   rebinding), come from no browser page but its own (``Origin``), and carry the password; all
   three are checked before the body is read.
2. What may run: the engine parses the statement and ``_query_policy`` admits it from that
   parse (one read, allow-listed node kinds, functions and tables; no INTO OUTFILE).
3. Where it runs: a reader connection (``storage/_reader.py``) with ``readonly = 1`` and limits on
   time, memory, rows read and result size; a few of them serve in parallel behind a bounded
   queue (503 with Retry-After when full). A query whose client hangs up, and every query at
   ``stop()``, is killed.

``allow_write=True`` exists for tests and tools that must write through HTTP (the ServerStore
tests drive clickhouse-connect against this engine with it): INSERT / CREATE / DROP / ALTER /
TRUNCATE / OPTIMIZE / RENAME / DELETE / UPDATE then run on the store's own session, and
``INSERT INTO t (cols) FORMAT Arrow|ArrowStream`` with the data in the body goes through
``EmbeddedStore.insert_arrow``. Never enable it on a listening collector.

Not served: the native TCP protocol, HTTPS (put a TLS proxy in front), response compression,
ClickHouse's block compression (``compress``/``decompress=1``), external data, progress headers.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import pyarrow as pa
import pyarrow.ipc

from agentwatch._errors import ConfigurationError
from agentwatch.query._policy import REFUSED, AllowList, Refusal, admit, read_graph
from agentwatch.query._policy import output_format as format_of
from agentwatch.query._protocol import (
    ACCESS_DENIED,
    AUTHENTICATION_FAILED,
    BAD_ARGUMENTS,
    HTTP_PARAMS,
    NOT_IMPLEMENTED,
    READONLY,
    SERVER_NAME,
    SYNTAX_ERROR,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNKNOWN_SETTING,
    EndpointError,
    check_format,
    content_type,
    decode_body,
    engine_error,
    fetched_by_another_page,
    form_fields,
    host_allowed,
    is_loopback,
    is_wildcard,
    lower_headers,
    offered_passwords,
    origin_allowed,
    password_ok,
    summary,
)
from agentwatch.storage._reader import ReaderLimits, ReaderSession
from agentwatch.storage._schema import check_identifier
from agentwatch.storage._store import EmbeddedStore, StorageError

logger = logging.getLogger("agentwatch.collector.query")

T = TypeVar("T")
READ_ONLY: Final = REFUSED
MIB: Final = 1024 * 1024
# INSERT whose data follows the statement (in the body, after one line break): allow_write only.
_INSERT_WITH_DATA: Final = re.compile(
    rb"\s*INSERT\s+INTO\s+(?:TABLE\s+)?(?P<table>[`\"]?[A-Za-z_][\w]*[`\"]?"
    rb"(?:\.[`\"]?[A-Za-z_][\w]*[`\"]?)?)\s*(?:\((?P<columns>[^)]*)\))?\s*"
    rb"FORMAT\s+(?P<format>[A-Za-z][A-Za-z0-9]*)[ \t]*(?:\r?\n)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """What one request may cost the collector, on top of the reader limits per query."""

    readers: int = 2  # queries that run at once
    max_waiting: int = 16  # requests queued for a reader; more get 503
    wait_for_reader_s: float = 10.0
    max_body_bytes: int = 16 * MIB  # as sent
    max_decoded_bytes: int = 16 * MIB  # after Content-Encoding
    read_deadline_s: float = 30.0  # to receive a whole body
    socket_timeout_s: float = 10.0  # per read, and idle keep-alive
    max_connections: int = 64
    reader: ReaderLimits = field(default_factory=ReaderLimits)


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    format: str | None
    summary: dict[str, str]


class _ReaderPool:
    """A few reader connections, lent one request at a time, with a bounded queue."""

    def __init__(self, store: EmbeddedStore, limits: EndpointLimits) -> None:
        self._limits = limits
        self._free = [
            ReaderSession(store, f"agentwatch_reader_{i}_{secrets.token_hex(4)}", limits.reader)
            for i in range(limits.readers)
        ]
        self.all = tuple(self._free)
        self._waiting = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> ReaderSession:
        with self._cond:
            if self._closed:
                raise EndpointError(210, "The query endpoint is shutting down", 503)
            if not self._free and self._waiting >= self._limits.max_waiting:
                raise EndpointError(
                    TOO_MANY_SIMULTANEOUS_QUERIES, "Too many queries waiting; retry shortly"
                )
            self._waiting += 1
            try:
                ready = self._cond.wait_for(
                    lambda: bool(self._free) or self._closed, self._limits.wait_for_reader_s
                )
            finally:
                self._waiting -= 1
            if self._closed:
                raise EndpointError(210, "The query endpoint is shutting down", 503)
            if not ready:
                raise EndpointError(
                    TOO_MANY_SIMULTANEOUS_QUERIES, "No reader became free in time; retry shortly"
                )
            return self._free.pop()

    def release(self, reader: ReaderSession) -> None:
        with self._cond:
            self._free.append(reader)
            self._cond.notify()

    def close(self, wait_s: float) -> None:
        """Refuse new work, kill what runs, wait for it, close every connection."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for reader in self.all:
            if reader not in self._free:
                _cancel(reader)
        with self._cond:
            self._cond.wait_for(lambda: len(self._free) == len(self.all), wait_s)
        for reader in self.all:
            reader.close()


def _discard_leftovers(reader: ReaderSession) -> None:
    """After a failed request, clear what its query left on the reader's connection, so that
    one client's rows never reach the next request on it (in its result, or in the syntax
    error of its mangled parse)."""
    if not reader.discard_leftovers():
        logger.warning("a reader could not be cleared after a failed query")


def _cancel(reader: ReaderSession, *, wait_s: float = 0.0) -> None:
    try:
        reader.cancel(wait_s=wait_s)
    except StorageError as exc:
        logger.warning("could not cancel a reader's query: %s", exc)


class QueryEndpoint:
    """Serve the embedded store over the ClickHouse HTTP interface (read-only by default).

    ``port=0`` picks a free port (read it back from ``port``). ``password`` is required of every
    request but ``/ping``; without one a random password is made for this run (``password``).
    Listening beyond loopback must be asked for with ``allow_remote=True``.
    """

    def __init__(
        self,
        store: EmbeddedStore,
        host: str = "127.0.0.1",
        port: int = 8123,
        allow_write: bool = False,
        *,
        password: str | None = None,
        allow_remote: bool = False,
        allowed_hosts: frozenset[str] = frozenset(),
        readable_databases: frozenset[str] | None = None,
        limits: EndpointLimits | None = None,
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ConfigurationError(
                f"the query endpoint listens on loopback unless told otherwise; to listen on "
                f"{host}, pass allow_remote (--query-allow-remote) and keep its password safe"
            )
        if password is not None and len(password) < 8:
            raise ConfigurationError("the query endpoint's password must be 8 characters or more")
        self.store = store
        self.host = host
        self.allow_write = allow_write
        self.password = password or secrets.token_urlsafe(24)
        self.limits = limits or EndpointLimits()
        self.readable_databases = readable_databases or frozenset({store.database})
        self._extra_hosts = frozenset(h.lower() for h in allowed_hosts)
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pool: _ReaderPool | None = None
        self._allow: AllowList | None = None
        self._settings: dict[str, str] = {}
        self._timezone = "UTC"
        self._watch: _DisconnectWatch | None = None

    # -- lifecycle
    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the query endpoint is already running")
        pool = _ReaderPool(self.store, self.limits)
        reader = pool.acquire()
        try:
            catalog = reader.catalog()
            self._settings = reader.settings()
            self._timezone = reader.timezone()
        finally:
            pool.release(reader)
        self._allow = AllowList.build(
            catalog.functions,
            catalog.combinators,
            catalog.table_functions,
            catalog.databases,
            self.readable_databases,
        )
        self._pool = pool
        self._watch = _DisconnectWatch()
        server = _Server((self.host, self._requested_port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="agentwatch-query-endpoint", daemon=True
        )
        self._thread.start()
        if not is_loopback(self.host):
            logger.warning(
                "the ClickHouse HTTP interface listens beyond loopback on %s: every request needs "
                "its password, and nothing is encrypted; put a TLS proxy in front",
                self.url,
            )
        logger.info(
            "ClickHouse HTTP interface (%s) on %s",
            "read-write, for tests" if self.allow_write else "read-only",
            self.url,
        )

    def stop(self) -> None:
        """Stop listening, kill running queries, drop open connections, close the readers."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._pool is not None:
            self._pool.close(wait_s=5.0)
        if self._watch is not None:
            self._watch.stop()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> QueryEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def client_url(self, database: str = "") -> str:
        """``http://default:<password>@host:port/database``, as clickhouse-connect (ServerStore,
        ``AGENTWATCH_CLICKHOUSE_URL``) takes it."""
        netloc = self.url.removeprefix("http://")
        path = f"/{database}" if database else ""
        return f"http://default:{quote(self.password, safe='')}@{netloc}{path}"

    def allowed_hosts(self) -> frozenset[str]:
        """Names a request's Host may give; empty (any) when bound to every interface."""
        if is_wildcard(self.host):
            return frozenset()
        own = {self.host.strip("[]").lower()}
        if is_loopback(self.host):
            own |= {"localhost", "127.0.0.1", "::1"}
        return frozenset(own) | self._extra_hosts

    # -- serving
    def check_caller(self, headers: Mapping[str, str], params: Mapping[str, str]) -> None:
        """Host, Origin and password, before anything of the request is read or run
        (``headers`` with lower-cased names)."""
        allowed = self.allowed_hosts()
        if not host_allowed(headers.get("host"), allowed):
            raise EndpointError(ACCESS_DENIED, "The Host header does not name this endpoint", 403)
        if fetched_by_another_page(headers) or not origin_allowed(
            headers.get("origin"), allowed, self.port
        ):
            raise EndpointError(ACCESS_DENIED, "Requests from other web pages are refused", 403)
        if not password_ok(self.password, offered_passwords(headers, params)):
            raise EndpointError(
                AUTHENTICATION_FAILED,
                "Authentication failed: the agentwatch query endpoint needs its password "
                "(HTTP basic auth with any user name, X-ClickHouse-Key, or the password parameter)",
            )

    def check_settings(self, params: Mapping[str, str]) -> None:
        """Refuse settings the read-only session cannot take, as ClickHouse does for readonly=1."""
        for name, value in params.items():
            if name in HTTP_PARAMS or name.startswith("param_"):
                continue
            if name not in self._settings:
                raise EndpointError(UNKNOWN_SETTING, f"Unknown setting '{name}'")
            if value != self._settings[name]:
                raise EndpointError(
                    READONLY, f"Cannot modify '{name}' setting in readonly mode ({READ_ONLY})", 403
                )

    def _database(self, params: Mapping[str, str]) -> str:
        database = params.get("database", "")
        if database in self.readable_databases or database in ("", "default"):
            return "" if database == "default" else database
        raise EndpointError(
            ACCESS_DENIED,
            f"{READ_ONLY}: the current database may be "
            f"{', '.join(sorted(self.readable_databases))} or default only",
            403,
        )

    def execute(
        self, params: Mapping[str, str], body: bytes, method: str, connection: Any = None
    ) -> _Answer:
        """Run one request: its query text (URL ``query`` then body), bound params, format."""
        for unsupported in ("compress", "decompress"):
            if params.get(unsupported, "0") not in ("", "0"):
                raise EndpointError(
                    NOT_IMPLEMENTED,
                    f"'{unsupported}=1' (ClickHouse block compression) is not supported",
                )
        self.check_settings(params)
        bound = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
        database = self._database(params)
        query = params.get("query", "")
        allow_write = self.allow_write and method == "POST"  # ClickHouse: GET is read-only
        if allow_write:
            insert = (
                _INSERT_WITH_DATA.fullmatch(query.encode())
                if query
                else _INSERT_WITH_DATA.match(body)
            )
            if insert is not None:
                self._with_reader(
                    lambda r: self._admit(r, insert.group(0).decode(), {}, allow_write=True)
                )
                return self._insert(insert, body if query else body[insert.end() :], database)
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise EndpointError(SYNTAX_ERROR, f"The query is not UTF-8 text: {exc}") from exc
        sql = f"{query}\n{text}" if query and text else (query or text)
        if not sql.strip():
            raise EndpointError(SYNTAX_ERROR, "Empty query")
        return self._with_reader(
            lambda reader: self._read(reader, sql, bound, database, params, allow_write, connection)
        )

    def _with_reader(self, work: Callable[[ReaderSession], T]) -> T:
        if self._pool is None:
            raise EndpointError(210, "The query endpoint is not running", 503)
        reader = self._pool.acquire()
        try:
            with reader.lock:
                try:
                    return work(reader)
                except BaseException:
                    _discard_leftovers(reader)
                    raise
        finally:
            self._pool.release(reader)

    def _admit(
        self, reader: ReaderSession, sql: str, bound: Mapping[str, str], *, allow_write: bool
    ) -> tuple[str, bool]:
        """The engine's rendering of ``sql`` and whether it writes, or the refusal."""
        assert self._allow is not None
        try:
            parsed = reader.parse(sql, bound)
        except StorageError as exc:
            raise engine_error(exc) from exc
        try:
            admission = admit(read_graph(parsed.graph), self._allow, allow_write=allow_write)
        except Refusal as refusal:
            raise EndpointError(refusal.code, str(refusal), 403) from refusal
        return parsed.canonical, admission.writes

    def _read(
        self,
        reader: ReaderSession,
        sql: str,
        bound: Mapping[str, str],
        database: str,
        params: Mapping[str, str],
        allow_write: bool,
        connection: Any,
    ) -> _Answer:
        canonical, writes = self._admit(reader, sql, bound, allow_write=allow_write)
        started = time.perf_counter()
        if writes:
            if database:
                raise EndpointError(
                    BAD_ARGUMENTS,
                    "Statements that write run without a database parameter: qualify the names",
                )
            # The client's own text: the engine's rendering of INSERT ... VALUES drops the rows.
            try:
                self.store.command(sql, bound)
            except StorageError as exc:
                raise engine_error(exc) from exc
            return _Answer(b"", None, summary(elapsed_s=time.perf_counter() - started))
        fmt = check_format(format_of(canonical) or params.get("default_format") or "TabSeparated")
        assert self._watch is not None
        try:
            reader.use(database)
            with self._watch.watching(connection, reader):
                result = reader.run(canonical, fmt, bound)
        except StorageError as exc:
            raise engine_error(exc) from exc
        data = bytes(result.bytes())
        return _Answer(
            data,
            fmt,
            summary(
                read_rows=int(result.rows_read()),
                read_bytes=int(result.bytes_read()),
                result_bytes=len(data),
                elapsed_s=float(result.elapsed()),
            ),
        )

    def _insert(self, insert: re.Match[bytes], data: bytes, database: str) -> _Answer:
        """``INSERT INTO [db.]table (cols) FORMAT Arrow|ArrowStream`` + data, via insert_arrow."""
        names = [n.strip('`"') for n in insert.group("table").decode().split(".")]
        target_db = names[0] if len(names) == 2 else (database or self.store.database)
        table = names[-1]
        if target_db != self.store.database:
            raise EndpointError(
                BAD_ARGUMENTS,
                f"Inserts through this endpoint go to the store's database {self.store.database}",
            )
        fmt = insert.group("format").decode()
        started = time.perf_counter()
        try:
            if fmt == "Arrow":
                arrow = pyarrow.ipc.open_file(pa.py_buffer(data)).read_all()
            elif fmt == "ArrowStream":
                arrow = pyarrow.ipc.open_stream(pa.py_buffer(data)).read_all()
            else:
                raise EndpointError(
                    NOT_IMPLEMENTED,
                    f"Inserts through this endpoint take Arrow or ArrowStream, not {fmt}",
                )
        except pa.ArrowInvalid as exc:
            raise EndpointError(33, f"Cannot read the {fmt} data: {exc}") from exc
        columns_text = insert.group("columns")
        if columns_text is not None:
            columns = [c.strip().strip('`"') for c in columns_text.decode().split(",") if c.strip()]
            if sorted(columns) != sorted(arrow.column_names):
                raise EndpointError(
                    BAD_ARGUMENTS,
                    f"Column list {columns} does not match the data's columns {arrow.column_names}",
                )
            arrow = arrow.select(columns)
        try:
            self.store.insert_arrow(check_identifier(table), arrow)
        except (StorageError, ValueError) as exc:
            raise engine_error(exc) from exc
        return _Answer(
            b"",
            None,
            summary(
                written_rows=arrow.num_rows,
                written_bytes=len(data),
                elapsed_s=time.perf_counter() - started,
            ),
        )


class _DisconnectWatch:
    """Kills a reader's query when its client hangs up (one thread polls every connection)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self._interval_s = interval_s
        self._running: dict[socket.socket, ReaderSession] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="agentwatch-query-watch", daemon=True
        )
        self._thread.start()

    def watching(self, connection: socket.socket | None, reader: ReaderSession) -> _Watched:
        return _Watched(self, connection, reader)

    def add(self, connection: socket.socket, reader: ReaderSession) -> None:
        with self._lock:
            self._running[connection] = reader

    def remove(self, connection: socket.socket) -> None:
        with self._lock:
            self._running.pop(connection, None)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            with self._lock:
                running = dict(self._running)
            for connection, reader in running.items():
                if not _hung_up(connection):
                    continue
                # Under the lock, and waiting for the kill to take effect: the reader goes back
                # to the pool only after its request leaves the watch (which takes the lock), so
                # the kill cannot land on the next request's query.
                with self._lock:
                    if self._running.get(connection) is not reader:
                        continue
                    del self._running[connection]
                    logger.info("client went away: cancelling its query")
                    _cancel(reader, wait_s=5.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class _Watched:
    watch: _DisconnectWatch
    connection: socket.socket | None
    reader: ReaderSession

    def __enter__(self) -> None:
        if self.connection is not None:
            self.watch.add(self.connection, self.reader)

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.watch.remove(self.connection)


def _hung_up(connection: socket.socket) -> bool:
    """The peer closed (a peek reads end of stream); data waiting is a next request.

    A non-blocking peek needs no ``select()``, which refuses descriptors past 1023: a busy
    process has those, and reading that refusal as a hang-up cancelled healthy queries."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset, or closed here: nobody to answer


def _late() -> EndpointError:
    return EndpointError(BAD_ARGUMENTS, "The request body did not arrive in time", 408)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog: many dashboard sessions connect at once

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], endpoint: QueryEndpoint
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.endpoint = endpoint
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, open_: bool) -> bool:
        """Count a connection in or out; False when there are already too many."""
        with self._connections_lock:
            if not open_:
                self._connections.discard(connection)
                return True
            if len(self._connections) >= self.endpoint.limits.max_connections:
                return False
            self._connections.add(connection)
            return True

    def close_connections(self) -> None:
        """End keep-alive connections, whose handler threads would otherwise outlive stop()."""
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's connection pool expects
    server_version = "agentwatch-query"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.endpoint.limits.socket_timeout_s)
        # Headers and body leave in two writes: without this, Nagle holds the body for the
        # client's delayed ACK (~40 ms a query).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._admitted = self.server.track(self.connection, True)

    def handle(self) -> None:
        if self._admitted:
            super().handle()
            return
        self.close_connection = True
        self.raw_requestline = self.rfile.readline(65537)
        if self.raw_requestline and self.parse_request():
            self._send_error(
                EndpointError(TOO_MANY_SIMULTANEOUS_QUERIES, "Too many connections", 503), ""
            )

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._admitted:
                self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        endpoint = self.server.endpoint
        query_id = ""
        try:
            url = urlsplit(self.path)
            if url.path.rstrip("/") == "/ping" or (
                url.path == "/" and method == "GET" and not url.query
            ):
                self._discard_body()
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            headers = lower_headers(self.headers.items())
            endpoint.check_caller(headers, params)
            if url.path != "/":
                raise EndpointError(NOT_IMPLEMENTED, f"There is no handle {url.path}", 404)
            query_id = params.get("query_id") or str(uuid.uuid4())
            body = decode_body(
                self._read_body(),
                self.headers.get("Content-Encoding", ""),
                endpoint.limits.max_decoded_bytes,
            )
            ctype = self.headers.get("Content-Type", "")
            if ctype.lower().startswith("multipart/form-data"):
                params.update(form_fields(body, ctype))
                body = b""
            answer = endpoint.execute(params, body, method, self.connection)
        except EndpointError as exc:
            if exc.status in (401, 403, 404, 413, 503):
                self.close_connection = True  # its body may be unread; do not parse it as a request
            self._send_error(exc, query_id)
            return
        except Exception:  # a client gets an answer, never a dropped socket
            logger.exception("query endpoint failed on a request")
            self._send_error(EndpointError(1001, "agentwatch query endpoint failure"), query_id)
            return
        headers = {
            "Content-Type": content_type(answer.format)
            if answer.format
            else "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": endpoint._timezone,
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
            "X-ClickHouse-Summary": json.dumps(answer.summary, separators=(",", ":")),
        }
        if answer.format:
            headers["X-ClickHouse-Format"] = answer.format
        self._send(200, answer.body, headers)

    def _discard_body(self) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # /ping with a body: answer, then hang up unread

    def _read_body(self) -> bytes:
        """The body as sent, within the size limit and the total deadline (slow senders)."""
        limits = self.server.endpoint.limits
        deadline = time.monotonic() + limits.read_deadline_s
        too_large = EndpointError(
            BAD_ARGUMENTS, f"Request body exceeds {limits.max_body_bytes} bytes", 413
        )
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self._read_line(deadline)
                try:
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError as exc:
                    raise EndpointError(BAD_ARGUMENTS, "Malformed chunked body", 400) from exc
                if size == 0:
                    while self._read_line(deadline) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limits.max_body_bytes:
                    raise too_large
                chunks.append(self._read_exactly(size, deadline))
                self._read_line(deadline)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise EndpointError(BAD_ARGUMENTS, "Malformed Content-Length", 400) from exc
        if length < 0:
            raise EndpointError(BAD_ARGUMENTS, "Malformed Content-Length", 400)
        if length > limits.max_body_bytes:
            raise too_large
        return self._read_exactly(length, deadline) if length else b""

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _late()
        self.connection.settimeout(min(remaining, self.server.endpoint.limits.socket_timeout_s))
        return remaining

    def _read_line(self, deadline: float) -> bytes:
        self._remaining(deadline)
        try:
            return self.rfile.readline(1024)
        except TimeoutError as exc:
            raise _late() from exc

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        parts: list[bytes] = []
        left = size
        while left:
            self._remaining(deadline)
            try:
                part = self.rfile.read1(min(left, 1 << 20))
            except TimeoutError as exc:
                raise _late() from exc
            if not part:
                raise EndpointError(BAD_ARGUMENTS, "The request body ended early", 400)
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def _send_error(self, exc: EndpointError, query_id: str) -> None:
        if exc.status >= 500:
            logger.warning("query endpoint error: %s", exc)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(exc.code),
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
        }
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="agentwatch"'
        if exc.status == 503:
            headers["Retry-After"] = "1"
        self._send(exc.status, exc.body(), headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client is gone; nothing to tell it
