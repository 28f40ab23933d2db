"""The read-only ClickHouse HTTP interface over the embedded store.

chDB locks its data directory to one process, so in embedded mode the collector owns the store
and serves the part of ClickHouse's HTTP interface that clickhouse-connect (the dashboard) and
Grafana's ClickHouse datasource use: ``GET /ping``, and queries in the ``query`` URL parameter
and/or the POST body, with ``param_<name>`` values for ``{name:Type}`` placeholders, the
``database`` and ``default_format`` parameters, a ``FORMAT`` clause in any output format chDB
writes (Native, the JSON and TSV families, CSV, Arrow, Parquet, ...), gzip/deflate/lz4/zstd
request bodies, multipart form-encoded queries (clickhouse-connect switches to them for long
parameters) and ClickHouse-style errors (``X-ClickHouse-Exception-Code`` and a
``Code: N. DB::Exception: ...`` body, so clients raise their usual database error).

Reads are refused twice over. A lexical check (comments and literals stripped first) admits one
SELECT / WITH / SHOW / DESCRIBE / EXISTS / EXPLAIN statement, with no ``INTO OUTFILE`` and no
table function that reaches outside the store; anything else gets HTTP 403 and "agentwatch query
endpoint is read-only: ...". What passes runs on a chDB connection whose session has
``readonly=1`` (``EmbeddedStore.open_reader``), so the engine itself refuses writes, DDL,
setting changes and outside-reaching table functions should the lexical check miss one. That
also fixes what the endpoint reports in ``system.settings``: every setting reads as read-only,
so clickhouse-connect sends none, and a request that tries to change one is refused (code 164)
as a ClickHouse server does for a ``readonly=1`` user. Each request stands alone: sessions
(``session_id``) are accepted and ignored, since ``SET`` and temporary tables are refused anyway.

``allow_write=True`` exists for tests and tools that must write through HTTP (the ServerStore
tests drive the real clickhouse-connect protocol against this engine with it): INSERT / CREATE /
DROP / ALTER / TRUNCATE / OPTIMIZE / RENAME / EXCHANGE / DELETE / UPDATE then run on the store's
own session, and ``INSERT INTO t (cols) FORMAT Arrow|ArrowStream`` with the data in the body goes
through ``EmbeddedStore.insert_arrow``. Never enable it on a listening collector.

Not served: the native TCP protocol, HTTPS (put a TLS proxy in front), response compression
(responses are identity-encoded, which every client accepts), ClickHouse's own block
compression (``compress``/``decompress=1``), external data tables and progress headers.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import importlib
import json
import logging
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.ipc

from agentwatch.storage._schema import check_identifier
from agentwatch.storage._store import EmbeddedStore, StorageError

logger = logging.getLogger("agentwatch.collector.query")

SERVER_NAME: Final = "agentwatch"
READ_ONLY: Final = "agentwatch query endpoint is read-only"
MAX_BODY_BYTES: Final = 256 * 1024 * 1024

# ClickHouse error codes the endpoint raises itself.
SYNTAX_ERROR: Final = 62
UNKNOWN_FORMAT: Final = 73
UNKNOWN_SETTING: Final = 115
READONLY: Final = 164
NOT_IMPLEMENTED: Final = 48
UNKNOWN_DATABASE: Final = 81
AUTHENTICATION_FAILED: Final = 516
_ERROR_NAMES: Final = {
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    READONLY: "READONLY",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    UNKNOWN_DATABASE: "UNKNOWN_DATABASE",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
}
# HTTP status per ClickHouse error code, as ClickHouse's HTTP handler maps them; others get 500.
_HTTP_STATUS: Final = {
    SYNTAX_ERROR: 400,
    UNKNOWN_FORMAT: 400,
    UNKNOWN_SETTING: 400,
    NOT_IMPLEMENTED: 501,
    36: 400,  # BAD_ARGUMENTS
    47: 400,  # UNKNOWN_IDENTIFIER
    46: 404,  # UNKNOWN_FUNCTION
    60: 404,  # UNKNOWN_TABLE
    UNKNOWN_DATABASE: 404,
    READONLY: 403,
    AUTHENTICATION_FAILED: 401,
}

READ_STATEMENTS: Final = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"}
)
# With allow_write only. SET/USE would change the store's own session; SYSTEM, KILL, GRANT and
# the like stay refused in every mode.
WRITE_STATEMENTS: Final = frozenset(
    {
        "INSERT",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "OPTIMIZE",
        "RENAME",
        "EXCHANGE",
        "DELETE",
        "UPDATE",
    }
)
# Table (and scalar) functions that read or write outside the store, or run code.
_OUTSIDE_FUNCTIONS: Final = re.compile(
    r"(file|url|s3|gcs|oss|cosn|hdfs|azureblobstorage|remote|remotesecure|cluster"
    r"|clusterallreplicas|mysql|postgresql|mongodb|redis|sqlite|odbc|jdbc|executable|python"
    r"|input|arrowflight|ytsaurus|s3queue|azurequeue|kafka|nats|rabbitmq"
    r"|deltalake\w*|hudi\w*|iceberg\w*|paimon\w*)(cluster)?",
    re.IGNORECASE,
)
# URL parameters of the HTTP interface itself (or transport-only settings): never settings here.
_HTTP_PARAMS: Final = frozenset(
    {
        "query", "database", "default_format", "user", "password", "quota_key", "query_id",
        "role", "session_id", "session_timeout", "session_check", "close_session", "buffer_size",
        "wait_end_of_query", "http_wait_end_of_query", "client_protocol_version", "stacktrace",
        "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header", "http_response_buffer_size", "compress", "decompress",
    }
)  # fmt: skip
# chDB output "formats" that are Python objects, not ClickHouse formats.
_CHDB_PSEUDO_FORMATS: Final = frozenset({"arrowtable", "dataframe", "datastore", "debug"})
_FORMAT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*|\S")
_HEREDOC: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
# INSERT whose data follows the statement (in the body, after one line break).
_INSERT_WITH_DATA: Final = re.compile(
    rb"\s*INSERT\s+INTO\s+(?:TABLE\s+)?(?P<table>[`\"]?[A-Za-z_][\w]*[`\"]?"
    rb"(?:\.[`\"]?[A-Za-z_][\w]*[`\"]?)?)\s*(?:\((?P<columns>[^)]*)\))?\s*"
    rb"FORMAT\s+(?P<format>[A-Za-z][A-Za-z0-9]*)[ \t]*(?:\r?\n)?",
    re.IGNORECASE,
)
_CONTENT_TYPES: Final = (
    (re.compile(r"(TabSeparated|TSV)", re.IGNORECASE), "text/tab-separated-values; charset=UTF-8"),
    (re.compile(r"CSV", re.IGNORECASE), "text/csv; charset=UTF-8"),
    (re.compile(r"(JSONEachRow|JSONLines|NDJSON|JSONCompactEachRow)", re.IGNORECASE),
     "application/x-ndjson; charset=UTF-8"),
    (re.compile(r"JSON", re.IGNORECASE), "application/json; charset=UTF-8"),
    (re.compile(r"(Pretty|Vertical|Markdown|Values|XML|Template|LineAsString|Raw)", re.IGNORECASE),
     "text/plain; charset=UTF-8"),
)  # fmt: skip


class EndpointError(Exception):
    """A request the endpoint answers with a ClickHouse-style error."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status if status is not None else _HTTP_STATUS.get(code, 500)

    def body(self) -> bytes:
        text = str(self)
        if not text.startswith("Code: "):
            name = _ERROR_NAMES.get(self.code)
            text = f"Code: {self.code}. DB::Exception: {text}" + (f". ({name})" if name else "")
        return (text.rstrip() + "\n").encode()


def _refuse(reason: str) -> EndpointError:
    return EndpointError(READONLY, f"{READ_ONLY}: {reason}", 403)


# -- looking at SQL -------------------------------------------------------------------------------
def scrub(sql: str) -> str:
    """``sql`` with comments removed, string literals emptied and quoted identifiers unquoted.

    What is left is what ClickHouse parses as keywords and names, so the checks below cannot be
    fooled by a keyword inside a string or a comment. Unterminated literals or comments raise.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        pair = sql[i : i + 2]
        if pair == "--" or c == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif pair == "/*":  # ClickHouse nests block comments
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise EndpointError(SYNTAX_ERROR, "Syntax error: unterminated comment")
            out.append(" ")
            i = j
        elif c in "'\"`":
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise EndpointError(SYNTAX_ERROR, "Syntax error: unterminated quoted text")
                d = sql[j]
                if d == "\\":
                    chars.append(sql[j + 1 : j + 2])
                    j += 2
                elif d == c and sql[j + 1 : j + 2] == c:
                    chars.append(c)
                    j += 2
                elif d == c:
                    break
                else:
                    chars.append(d)
                    j += 1
            name = "".join(chars)
            if c == "'":
                out.append(" '' ")
            else:  # a quoted name: keep it, so `file`(...) is still seen as file(...)
                out.append(f" {name} " if _IDENTIFIER.fullmatch(name) else " _quoted_name_ ")
            i = j + 1
        elif c == "$" and (heredoc := _HEREDOC.match(sql, i)):
            end = sql.find(heredoc.group(0), heredoc.end())
            if end < 0:
                raise EndpointError(SYNTAX_ERROR, "Syntax error: unterminated heredoc")
            out.append(" '' ")
            i = end + len(heredoc.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement as the endpoint classifies it."""

    sql: str
    writes: bool
    format: str | None  # its FORMAT clause, if any


def inspect_statement(sql: str, *, allow_write: bool) -> Statement:
    """Classify ``sql``, refusing whatever a read-only endpoint must not run."""
    tokens = _TOKEN.findall(scrub(sql))
    while tokens and tokens[-1] == ";":
        tokens.pop()
    if not tokens:
        raise EndpointError(SYNTAX_ERROR, "Empty query")
    if ";" in tokens:
        raise _refuse("one statement per request (multi-statement queries are refused)")
    keyword = next((t for t in tokens if t != "("), "").upper()
    if keyword in READ_STATEMENTS:
        writes = False
    elif allow_write and keyword in WRITE_STATEMENTS:
        writes = True
    else:
        raise _refuse(f"{keyword or tokens[0]} statements are refused; only SELECT, WITH, SHOW, "
                      "DESCRIBE, EXISTS and EXPLAIN run here")  # fmt: skip
    upper = [t.upper() for t in tokens]
    for k, word in enumerate(upper[:-1]):
        if word == "INTO" and upper[k + 1] == "OUTFILE":
            raise _refuse("INTO OUTFILE is refused")
        if tokens[k + 1] == "(" and _OUTSIDE_FUNCTIONS.fullmatch(word):
            raise _refuse(f"{tokens[k]}() reaches outside the store and is refused")
    fmt = tokens[-1] if len(tokens) >= 2 and upper[-2] == "FORMAT" else None
    if fmt is not None and not _IDENTIFIER.fullmatch(fmt):
        fmt = None
    return Statement(sql, writes, fmt)


def check_format(name: str) -> str:
    if not _FORMAT_NAME.fullmatch(name) or name.lower() in _CHDB_PSEUDO_FORMATS:
        raise EndpointError(UNKNOWN_FORMAT, f"Unknown format {name!r}")
    return name


def content_type(fmt: str) -> str:
    for pattern, value in _CONTENT_TYPES:
        if pattern.match(fmt):
            return value
    return "application/octet-stream"


# -- request bodies -------------------------------------------------------------------------------
def decode_body(body: bytes, encoding: str) -> bytes:
    """Undo a request's Content-Encoding (clickhouse-connect compresses inserts)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "lz4":
            return bytes(importlib.import_module("lz4.frame").decompress(body))
        if encoding == "zstd":
            try:
                zstd = importlib.import_module("compression.zstd")
            except ImportError:
                zstd = importlib.import_module("backports.zstd")
            return bytes(zstd.decompress(body))
        if encoding == "br":
            return bytes(importlib.import_module("brotli").decompress(body))
    except ImportError as exc:
        raise EndpointError(
            NOT_IMPLEMENTED, f"Content-Encoding {encoding} is not available here: {exc}"
        ) from exc
    except Exception as exc:  # any codec failure is the client's bad body
        raise EndpointError(36, f"Cannot decode the {encoding} request body: {exc}") from exc
    raise EndpointError(NOT_IMPLEMENTED, f"Unsupported Content-Encoding {encoding!r}")


def form_fields(body: bytes, content_type_header: str) -> dict[str, str]:
    """The fields of a multipart/form-data body (clickhouse-connect's form-encoded queries)."""
    message = message_from_bytes(
        f"Content-Type: {content_type_header}\r\n\r\n".encode("latin-1") + body,
        policy=email_policy.HTTP,
    )
    if not message.is_multipart():
        raise EndpointError(36, "Malformed multipart/form-data body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_param("filename", header="content-disposition") is not None:
            raise EndpointError(
                NOT_IMPLEMENTED, "External data (form file fields) is not supported"
            )
        if not isinstance(name, str):
            raise EndpointError(36, "A form field without a name")
        payload = part.get_payload(decode=True)
        fields[name] = payload.decode() if isinstance(payload, bytes) else ""
    return fields


# -- the endpoint ---------------------------------------------------------------------------------
@dataclass
class _Reader:
    """A read-only chDB connection (with ``USE database`` applied) and the lock serializing it."""

    session: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    format: str | None
    summary: dict[str, str]


class QueryEndpoint:
    """Serve the embedded store over the ClickHouse HTTP interface (read-only by default).

    ``port=0`` picks a free port (read it back from ``port``). ``token``, when set, must arrive
    as the HTTP basic password (any user), the ``password`` URL parameter, ``X-ClickHouse-Key``
    or ``Authorization: Bearer``; ``/ping`` stays open, like ClickHouse's.
    """

    def __init__(
        self,
        store: EmbeddedStore,
        host: str = "127.0.0.1",
        port: int = 8123,
        allow_write: bool = False,
        *,
        token: str | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.allow_write = allow_write
        self.token = token
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._readers: dict[str, _Reader] = {}
        self._readers_lock = threading.Lock()
        self._settings: dict[str, str] | None = None
        self._timezone = "UTC"
        self._stopping = threading.Event()

    # -- lifecycle
    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the query endpoint is already running")
        self._stopping.clear()
        default = self._reader("")
        with default.lock:
            tz = default.session.query("SELECT timezone()", "TabSeparated")
        self._timezone = bytes(tz.bytes()).decode().strip() or "UTC"
        server = _Server((self.host, self._requested_port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="agentwatch-query-endpoint", daemon=True
        )
        self._thread.start()
        logger.info(
            "ClickHouse HTTP interface (%s) on http://%s:%d",
            "read-write, for tests" if self.allow_write else "read-only",
            self.host,
            self.port,
        )

    def stop(self) -> None:
        """Stop listening, drop open connections, close the read-only chDB connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._readers_lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            with reader.lock:
                reader.session.close()

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

    # -- serving
    def _reader(self, database: str) -> _Reader:
        database = "" if database == "default" else database
        with self._readers_lock:
            reader = self._readers.get(database)
            if reader is not None:
                return reader
            if self._stopping.is_set():
                raise EndpointError(210, "The query endpoint is shutting down", 503)
            session = self.store.open_reader()
            if database:
                try:
                    # A validated identifier: USE takes no bound parameter.
                    session.query(f"USE {check_identifier(database)}")
                except ValueError as exc:
                    session.close()
                    raise EndpointError(UNKNOWN_DATABASE, f"Bad database name: {exc}") from exc
                except Exception as exc:
                    session.close()
                    raise EndpointError(*_chdb_error(exc)) from exc
            reader = _Reader(session)
            self._readers[database] = reader
            return reader

    def _server_settings(self) -> dict[str, str]:
        if self._settings is None:
            reader = self._reader("")
            with reader.lock:
                table = reader.session.query(
                    "SELECT name, value FROM system.settings", "ArrowTable"
                )
            self._settings = dict(
                zip(
                    table.column("name").to_pylist(), table.column("value").to_pylist(), strict=True
                )
            )
        return self._settings

    def check_settings(self, params: Mapping[str, str]) -> None:
        """Refuse settings the read-only session cannot take, as ClickHouse does for readonly=1."""
        known = self._server_settings()
        for name, value in params.items():
            if name in _HTTP_PARAMS or name.startswith("param_"):
                continue
            if name not in known:
                raise EndpointError(UNKNOWN_SETTING, f"Unknown setting '{name}'")
            if value != known[name]:
                raise EndpointError(
                    READONLY,
                    f"Cannot modify '{name}' setting in readonly mode ({READ_ONLY})",
                    403,
                )

    def execute(self, params: Mapping[str, str], body: bytes, method: str) -> _Answer:
        """Run one request: its query text (URL ``query`` then body), bound params, format."""
        for unsupported in ("compress", "decompress"):
            if params.get(unsupported, "0") not in ("", "0"):
                raise EndpointError(
                    NOT_IMPLEMENTED,
                    f"'{unsupported}=1' (ClickHouse block compression) is not supported",
                )
        self.check_settings(params)
        bound = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database", "")
        query = params.get("query", "")
        allow_write = self.allow_write and method == "POST"  # ClickHouse: GET is read-only

        insert = (
            _INSERT_WITH_DATA.fullmatch(query.encode()) if query else _INSERT_WITH_DATA.match(body)
        )
        if insert is not None:
            inspect_statement(insert.group(0).decode(), allow_write=allow_write)  # refuses reads
            data = body if query else body[insert.end() :]
            return self._insert(insert, data, database)

        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise EndpointError(SYNTAX_ERROR, f"The query is not UTF-8 text: {exc}") from exc
        sql = f"{query}\n{text}" if query and text else (query or text)
        statement = inspect_statement(sql, allow_write=allow_write)
        if statement.writes:
            if database not in ("", "default"):
                raise EndpointError(
                    36, "Statements that write run without a database parameter: qualify the names"
                )
            started = time.perf_counter()
            try:
                self.store.command(sql, bound)
            except StorageError as exc:
                raise EndpointError(*_chdb_error(exc)) from exc
            return _Answer(b"", None, _summary(elapsed_s=time.perf_counter() - started))
        fmt = check_format(statement.format or params.get("default_format") or "TabSeparated")
        reader = self._reader(database)
        with reader.lock:
            try:
                result = reader.session.query(sql, fmt, params=bound)
            except Exception as exc:
                raise EndpointError(*_chdb_error(exc)) from exc
        data = bytes(result.bytes())
        summary = _summary(
            read_rows=int(result.rows_read()),
            read_bytes=int(result.bytes_read()),
            result_bytes=len(data),
            elapsed_s=float(result.elapsed()),
        )
        return _Answer(data, fmt, summary)

    def _insert(self, insert: re.Match[bytes], data: bytes, database: str) -> _Answer:
        """``INSERT INTO [db.]table (cols) FORMAT Arrow|ArrowStream`` + data, via insert_arrow."""
        names = [n.strip('`"') for n in insert.group("table").decode().split(".")]
        qualified = len(names) == 2
        target_db = names[0] if qualified else (database or self.store.database)
        table = names[-1]
        if target_db != self.store.database:
            raise EndpointError(
                36,
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
                    36,
                    f"Column list {columns} does not match the data's columns {arrow.column_names}",
                )
            arrow = arrow.select(columns)
        try:
            self.store.insert_arrow(check_identifier(table), arrow)
        except (StorageError, ValueError) as exc:
            raise EndpointError(*_chdb_error(exc)) from exc
        return _Answer(
            b"",
            None,
            _summary(
                written_rows=arrow.num_rows,
                written_bytes=len(data),
                elapsed_s=time.perf_counter() - started,
            ),
        )


def _summary(
    *,
    read_rows: int = 0,
    read_bytes: int = 0,
    written_rows: int = 0,
    written_bytes: int = 0,
    result_bytes: int = 0,
    elapsed_s: float = 0.0,
) -> dict[str, str]:
    """The X-ClickHouse-Summary fields (ClickHouse sends the numbers as strings)."""
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(written_rows),
        "written_bytes": str(written_bytes),
        "total_rows_to_read": str(read_rows),
        "result_bytes": str(result_bytes),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }


_CODE: Final = re.compile(r"Code: (\d+)\.")


def _chdb_error(exc: BaseException) -> tuple[int, str]:
    """ClickHouse's own code and message from a chDB (or StorageError-wrapped) exception."""
    text = str(exc).strip()
    match = _CODE.search(text)
    if match is None:
        return (
            1002,
            f"Code: 1002. DB::Exception: {text}. (UNKNOWN_EXCEPTION)",
        )  # 1002 = UNKNOWN_EXCEPTION
    return int(match.group(1)), text[match.start() :]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], endpoint: QueryEndpoint
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.endpoint = endpoint
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

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
    timeout = 60  # idle keep-alive connections end after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
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
            body = self._read_body()
            if url.path.rstrip("/") == "/ping" or (
                url.path == "/" and method == "GET" and not url.query
            ):
                self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if url.path != "/":
                raise EndpointError(NOT_IMPLEMENTED, f"There is no handle {url.path}", 404)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            query_id = params.get("query_id") or str(uuid.uuid4())
            self._authenticate(endpoint, params)
            body = decode_body(body, self.headers.get("Content-Encoding", ""))
            ctype = self.headers.get("Content-Type", "")
            if ctype.lower().startswith("multipart/form-data"):
                params.update(form_fields(body, ctype))
                body = b""
            answer = endpoint.execute(params, body, method)
        except EndpointError as exc:
            self._send_error(exc, query_id)
            return
        except Exception as exc:  # a client gets an answer, never a dropped socket
            logger.exception("query endpoint failed on a request")
            self._send_error(
                EndpointError(1001, f"agentwatch query endpoint failure: {exc!r}"), query_id
            )
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

    def _authenticate(self, endpoint: QueryEndpoint, params: Mapping[str, str]) -> None:
        if endpoint.token is None:
            return
        offered: list[str] = [params.get("password", ""), self.headers.get("X-ClickHouse-Key", "")]
        authorization = self.headers.get("Authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credentials.strip())
        elif scheme.lower() == "basic":
            try:
                offered.append(base64.b64decode(credentials.strip()).decode().partition(":")[2])
            except (ValueError, UnicodeDecodeError):
                pass
        expected = endpoint.token.encode()
        if not any(hmac.compare_digest(o.encode(), expected) for o in offered if o):
            raise EndpointError(
                AUTHENTICATION_FAILED,
                "Authentication failed: the agentwatch query endpoint needs its token "
                "(the password, X-ClickHouse-Key or a Bearer token)",
            )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise EndpointError(36, "Request body too large", 413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise EndpointError(36, "Request body too large", 413)
        return self.rfile.read(length) if length else b""

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
        self._send(exc.status, exc.body(), headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
