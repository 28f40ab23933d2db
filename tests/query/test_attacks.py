"""Attacks on the collector's ClickHouse HTTP interface, over real HTTP on loopback.

A real embedded store (chDB), real ``QueryEndpoint`` instances on free loopback ports, and the
wire itself (``http.client``, raw sockets): escapes of every kind that try to read or write
files, run other statements, lift the session's limits or read other clients' queries; missing
and wrong credentials, foreign Host and Origin headers; work that must stay bounded (runaway
queries, memory, result size, compression bombs, a full queue); and queries that must die when
their client hangs up, when the endpoint stops and when the collector process gets SIGTERM.
Each refusal is checked in ClickHouse's own shape (``X-ClickHouse-Exception-Code`` and a
``Code: N. DB::Exception:`` body) and by its effect: no file written, no canary read.

The last class is the other side: the queries Grafana's ClickHouse datasource sends for its
connection check, schema discovery and time series run and return rows.

chDB opens one data directory per process: everything here shares one class-scoped store, and
the SIGTERM test runs the collector in a subprocess with a data directory of its own.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import pytest

from agentwatch.query._endpoint import EndpointLimits, QueryEndpoint
from agentwatch.storage._reader import ReaderLimits
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore, apply_migrations
from tests.polling import wait_until
from tests.up_process import free_ports

DB = "agentwatch"
TABLE = f"{DB}.{SPANS_TABLE}"
CANARY = "agentwatch-canary-6f1d0c"  # written to a file the attacks try to read
PASSWORD = "attack-corpus-password-3a9"
SPAN_COUNT = 4

# Reads 200,000 rows, then computes ten billion pairs: only a time limit (or a kill) stops it.
RUNAWAY = (
    "SELECT count() FROM numbers(100000) AS a, numbers(100000) AS b WHERE a.number * b.number = 7"
)


# -- the wire -------------------------------------------------------------------------------------
def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        return self.headers.get("x-clickhouse-exception-code", "")


def call(
    port: int,
    method: str = "POST",
    body: bytes | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    password: str | None = PASSWORD,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection, with ``password`` as HTTP basic auth (none if None)."""
    sent = dict(headers or {})
    if password is not None:
        sent.setdefault("Authorization", basic_auth("default", password))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, f"/?{urlencode(params)}" if params else "/", body=body, headers=sent)
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def post(port: int, sql: str, params: Mapping[str, str] | None = None) -> Reply:
    return call(port, "POST", sql.encode(), params)


def get(port: int, sql: str, params: Mapping[str, str] | None = None) -> Reply:
    return call(port, "GET", params={"query": sql, **(params or {})})


def assert_refused(reply: Reply, code: int) -> None:
    """A 4xx answer in ClickHouse's error shape, with ``code``."""
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    assert reply.code == str(code), reply.body[:300]
    assert reply.body.startswith(f"Code: {code}. DB::Exception: ".encode()), reply.body[:300]


def assert_serving(port: int) -> None:
    """The endpoint still answers a query (its readers were not left broken or busy)."""
    reply = post(port, "SELECT 1")
    assert (reply.status, reply.body) == (200, b"1\n")


def send_query(port: int, sql: str, password: str = PASSWORD) -> socket.socket:
    """Send a whole POST on a raw socket and return it without reading the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = sql.encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: {basic_auth('default', password)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def read_to_end(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (TimeoutError if it keeps the socket open)."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def runaways(store: EmbeddedStore) -> int:
    """How many RUNAWAY queries run on the endpoints' reader connections, from the store's own
    connection (the readers tag their queries with ``log_comment``; the endpoint's parse steps,
    ``formatQuery`` and ``EXPLAIN AST``, are not counted)."""
    return int(
        store.query(
            "SELECT count() FROM system.processes "
            "WHERE startsWith(Settings['log_comment'], 'agentwatch_reader_') "
            "AND position(query, 'numbers(100000) AS a') > 0 "
            "AND position(query, 'formatQuery') = 0 AND NOT startsWith(query, 'EXPLAIN')"
        ).scalar()
    )


# -- fixtures -------------------------------------------------------------------------------------
def spans(count: int) -> pa.Table:
    """Span rows stamped now (the table's TTL drops old ones)."""
    now = time.time_ns()
    return pa.table(
        {
            "Timestamp": pa.array([now - i * 1000 for i in range(count)], pa.timestamp("ns")),
            "TraceId": [f"trace-{i % 2}" for i in range(count)],
            "SpanId": [f"span-{i}" for i in range(count)],
            "SpanName": ["chat gpt-4o"] * count,
            "ServiceName": ["support-bot"] * count,
            "SpanAttributes": pa.array(
                [[("gen_ai.operation.name", "chat")]] * count, pa.map_(pa.string(), pa.string())
            ),
            "Duration": pa.array([1000] * count, pa.uint64()),
        }
    )


@pytest.fixture(scope="class")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    """One store per class (chDB opens one data directory per process)."""
    opened = EmbeddedStore(tmp_path_factory.mktemp("query-attacks") / "data")
    apply_migrations(opened)
    opened.insert_arrow(SPANS_TABLE, spans(SPAN_COUNT))
    yield opened
    opened.close()


def patient(readers: int = 2, **endpoint: Any) -> EndpointLimits:
    """Limits under which RUNAWAY would run for a minute: only a kill ends it quickly."""
    return EndpointLimits(readers=readers, reader=ReaderLimits(max_execution_time_s=60), **endpoint)


@pytest.fixture(scope="class")
def endpoint(store: EmbeddedStore) -> Iterator[QueryEndpoint]:
    with QueryEndpoint(store, port=0, password=PASSWORD, limits=patient()) as started:
        yield started


@pytest.fixture(scope="class")
def limited(store: EmbeddedStore) -> Iterator[QueryEndpoint]:
    """An endpoint with tight per-query limits: 1 s, 64 MiB, 100,000 result rows."""
    limits = EndpointLimits(
        reader=ReaderLimits(
            max_execution_time_s=1,
            max_memory_usage_bytes=64 * 1024 * 1024,
            max_result_rows=100_000,  # the endpoint's own catalog reads need ~2,000
        )
    )
    with QueryEndpoint(store, port=0, password=PASSWORD, limits=limits) as started:
        yield started


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A secret file holding the canary, and a path INTO OUTFILE must never create."""
    secret = tmp_path / "secret.txt"
    secret.write_text(CANARY + "\n")
    return {"@SECRET@": secret, "@OUT@": tmp_path / "written.tsv"}


# -- the corpus -----------------------------------------------------------------------------------
# (sql, code): @SECRET@ is the canary file, @OUT@ a path that must stay absent. READONLY (164)
# for what is not a read or changes a setting, ACCESS_DENIED (497) for a read that reaches
# outside the store, SYNTAX_ERROR (62) for what the engine will not parse as one statement.
ESCAPES: dict[str, tuple[str, int]] = {
    # file() however it is spelled: the engine decodes the name, the policy sees "file"
    "scalar file": ("SELECT file('@SECRET@')", 497),
    "table function file": ("SELECT * FROM file('@SECRET@', LineAsString)", 497),
    "backquoted hex escape": (r"SELECT `fil\x65`('@SECRET@')", 497),
    "backquoted leading hex escape": (r"SELECT `\x66ile`('@SECRET@')", 497),
    "double-quoted name": ("SELECT \"file\"('@SECRET@')", 497),
    "double-quoted hex escape": (r"""SELECT "fil\x65"('@SECRET@')""", 497),
    "hex-escaped table function": (r"SELECT * FROM `fil\x65`('@SECRET@', LineAsString)", 497),
    "odd casing": ("SELECT FiLe('@SECRET@')", 497),
    "odd casing, tabs and newlines": ("sElEcT\tfIlE(\n'@SECRET@'\n)\n", 497),
    "comment inside the name": ("SELECT fi/**/le('@SECRET@')", 62),
    "cyrillic i in file": ("SELECT f\u0456le('@SECRET@')", 62),
    "cyrillic e in file, backquoted": ("SELECT `fil\u0435`('@SECRET@')", 497),
    "file in a subquery": ("SELECT * FROM (SELECT file('@SECRET@') AS s)", 497),
    "file in a CTE": ("WITH (SELECT file('@SECRET@')) AS s SELECT s", 497),
    "file as a lambda body": ("SELECT arrayMap(x -> file(x), ['@SECRET@'])", 497),
    "file under EXPLAIN": ("EXPLAIN SELECT file('@SECRET@')", 497),
    "DESCRIBE of file": ("DESCRIBE TABLE file('@SECRET@', LineAsString)", 497),
    "proc self environ": ("SELECT * FROM file('/proc/self/environ', RawBLOB)", 497),
    "scalar proc self environ": ("SELECT file('/proc/self/environ')", 497),
    # INTO OUTFILE in every form
    "into outfile": ("SELECT 1 INTO OUTFILE '@OUT@'", 497),
    "into outfile compression": ("SELECT 1 INTO OUTFILE '@OUT@' COMPRESSION 'gzip'", 497),
    "into outfile append": ("SELECT 1 INTO OUTFILE '@OUT@' APPEND", 497),
    "into outfile truncate": ("SELECT 1 INTO OUTFILE '@OUT@' TRUNCATE", 497),
    "into outfile and stdout": ("SELECT 1 INTO OUTFILE '@OUT@' AND STDOUT", 497),
    "into outfile then format": ("SELECT 1 INTO OUTFILE '@OUT@' FORMAT CSV", 497),
    "format then into outfile": ("SELECT 1 FORMAT CSV INTO OUTFILE '@OUT@'", 62),
    "into outfile after a heredoc": ("SELECT $x$ab$x$ INTO OUTFILE '@OUT@'", 497),
    "heredoc tag inside an alias": ("SELECT 1 AS a$x$ INTO OUTFILE '@OUT@' --$x$", 497),
    "heredoc holding a quote": ("SELECT $$it's$$ INTO OUTFILE '@OUT@'", 497),
    "doubled quote in a string": ("SELECT 'it''s' INTO OUTFILE '@OUT@'", 497),
    "escaped backslash ends the string": ("SELECT 'a\\\\' INTO OUTFILE '@OUT@'", 497),
    "quote in a quoted alias": ("SELECT 1 AS `x'` INTO OUTFILE '@OUT@'", 497),
    "keyword text in a string": ("SELECT 'INTO OUTFILE' INTO OUTFILE '@OUT@'", 497),
    "block comment between keywords": ("SELECT 1 INTO/**/OUTFILE '@OUT@'", 497),
    "line comment between keywords": ("SELECT 1 INTO -- x\nOUTFILE '@OUT@'", 497),
    "hash comment before keywords": ("SELECT 1 # x\nINTO OUTFILE '@OUT@'", 497),
    "odd casing outfile": ("select 1 iNtO\toUtFiLe '@OUT@'", 497),
    "into outfile of a union": ("SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '@OUT@'", 497),
    "into outfile of a CTE": ("WITH 1 AS x SELECT x INTO OUTFILE '@OUT@'", 497),
    "into outfile of SHOW": ("SHOW TABLES INTO OUTFILE '@OUT@'", 497),
    "into outfile of EXPLAIN": ("EXPLAIN SELECT 1 INTO OUTFILE '@OUT@'", 497),
    "from infile": (f"INSERT INTO {TABLE} FROM INFILE '@SECRET@' FORMAT CSV", 164),
    # more than one statement
    "two statements": (f"SELECT 1; DROP TABLE {TABLE}", 62),
    "statement after a comment": (f"SELECT 1 /* ; */; DROP TABLE {TABLE}", 62),
    "statement after a string": (f"SELECT ';'; DROP TABLE {TABLE}", 62),
    "outfile after a second select": ("SELECT 1; SELECT 2 INTO OUTFILE '@OUT@'", 62),
    # statements that are not reads
    "set": ("SET readonly = 0", 164),
    "use system": ("USE system", 164),
    "drop": (f"DROP TABLE {TABLE}", 164),
    "kill": ("KILL QUERY WHERE 1", 164),
    "show processlist": ("SHOW PROCESSLIST", 164),
    "system command": ("SYSTEM FLUSH LOGS", 164),
    # SETTINGS clauses that lift the session's limits: the readonly session refuses them
    "settings readonly 0": ("SELECT 1 SETTINGS readonly = 0", 164),
    "settings readonly 2": ("SELECT 1 SETTINGS readonly = 2", 164),
    "settings max_execution_time 0": ("SELECT 1 SETTINGS max_execution_time = 0", 164),
    "settings max_memory_usage 0": ("SELECT 1 SETTINGS max_memory_usage = 0", 164),
    "settings allow_ddl 0": ("SELECT 1 SETTINGS allow_ddl = 0", 164),
    # table functions reaching outside
    "url": ("SELECT * FROM url('http://127.0.0.1:9/', LineAsString)", 497),
    "s3": ("SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv')", 497),
    "remote": ("SELECT * FROM remote('127.0.0.1:9000', system.one)", 497),
    "remoteSecure": ("SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)", 497),
    "cluster": ("SELECT * FROM cluster('default', system.one)", 497),
    "executable": ("SELECT * FROM executable('cat @SECRET@', TSV, 'a String')", 497),
    "input": ("SELECT * FROM input('a String')", 497),
    "mysql": ("SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')", 497),
    "postgresql": ("SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')", 497),
    "hdfs": ("SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', TSV, 'a String')", 497),
    "sqlite": ("SELECT * FROM sqlite('@SECRET@', 't')", 497),
    "jdbc": ("SELECT * FROM jdbc('x', 'y')", 497),
    "azureBlobStorage": ("SELECT * FROM azureBlobStorage('http://127.0.0.1:9', 'c', 'b')", 497),
    "fileCluster": ("SELECT * FROM fileCluster('default', '@SECRET@')", 497),
    "merge over system": ("SELECT * FROM merge('system', '.*')", 497),
    "Python": ("SELECT * FROM Python(store)", 497),
    "view": ("SELECT * FROM view(SELECT 1)", 497),
    # scalar functions reaching the host, settings or processes
    "getSetting": ("SELECT getSetting('max_execution_time')", 497),
    "getServerSetting": ("SELECT getServerSetting('path')", 497),
    "hostName": ("SELECT hostName()", 497),
    "filesystemAvailable": ("SELECT filesystemAvailable()", 497),
    "queryID": ("SELECT queryID()", 497),
    "currentQueryID": ("SELECT currentQueryID()", 497),
    "sleep": ("SELECT sleep(3)", 497),
    # system tables outside the allow-list
    "system.processes": ("SELECT query FROM system.processes", 497),
    "system.processes in IN": ("SELECT 1 WHERE 'x' IN (SELECT query FROM system.processes)", 497),
    "system.query_log": ("SELECT query FROM system.query_log", 497),
    "system.query_log via join": (
        "SELECT 1 FROM system.one AS o JOIN system.query_log AS l ON 1",
        497,
    ),
    "system.text_log": ("SELECT * FROM system.text_log", 497),
    "system.server_settings": ("SELECT * FROM system.server_settings", 497),
    "system.environment": ("SELECT * FROM system.environment", 497),
    "system.users": ("SELECT * FROM system.users", 497),
    "system.disks": ("SELECT * FROM system.disks", 497),
    "system.build_options": ("SELECT * FROM system.build_options", 497),
    "SHOW CREATE of processes": ("SHOW CREATE TABLE system.processes", 497),
    "information_schema outside the list": (
        "SELECT * FROM information_schema.key_column_usage",
        497,
    ),
}


class TestAttacks:
    """Everything that shares one store (and its endpoints)."""

    # -- escapes ---------------------------------------------------------------------------------
    @pytest.mark.parametrize("method", ["POST", "GET"])
    @pytest.mark.parametrize(("sql", "code"), list(ESCAPES.values()), ids=list(ESCAPES))
    def test_escape_is_refused_and_has_no_effect(
        self,
        endpoint: QueryEndpoint,
        store: EmbeddedStore,
        files: dict[str, Path],
        sql: str,
        code: int,
        method: str,
    ) -> None:
        """Each escape, sent as a POST body and as GET /?query=, is refused with its ClickHouse
        code in ClickHouse's error shape; no file is written, the canary file is not read, the
        store's path is not told, and the store's rows are all still there."""
        for placeholder, path in files.items():
            sql = sql.replace(placeholder, str(path))
        reply = post(endpoint.port, sql) if method == "POST" else get(endpoint.port, sql)
        assert_refused(reply, code)
        assert not files["@OUT@"].exists()
        assert CANARY.encode() not in reply.body
        assert str(store.path).encode() not in reply.body
        assert post(endpoint.port, f"SELECT count() FROM {TABLE}").body == b"%d\n" % SPAN_COUNT

    def test_into_outfile_split_between_url_and_body_is_refused(
        self, endpoint: QueryEndpoint, files: dict[str, Path]
    ) -> None:
        """The URL's query and the body are one statement (joined by a line break), judged
        whole: INTO in the URL and OUTFILE in the body is still INTO OUTFILE."""
        out = files["@OUT@"]
        reply = call(endpoint.port, "POST", f"OUTFILE '{out}'".encode(), {"query": "SELECT 1 INTO"})
        assert_refused(reply, 497)
        assert not out.exists()

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT 'x INTO OUTFILE ''@OUT@''' AS s",
            "SELECT $$ INTO OUTFILE '@OUT@' $$ AS s",
            "SELECT 1 AS `INTO OUTFILE '@OUT@'`",
            "SELECT 1 -- INTO OUTFILE '@OUT@'",
            "SELECT 1 /* INTO OUTFILE '@OUT@' */",
            "SELECT 'file(''@SECRET@'')' AS s",
        ],
    )
    def test_decoys_run_and_write_nothing(
        self, endpoint: QueryEndpoint, files: dict[str, Path], sql: str
    ) -> None:
        """The same words inside strings, names and comments are data: the query runs (200),
        and no file is written or read."""
        for placeholder, path in files.items():
            sql = sql.replace(placeholder, str(path))
        reply = post(endpoint.port, sql)
        assert reply.status == 200, reply.body
        assert not files["@OUT@"].exists()
        assert CANARY.encode() not in reply.body

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"readonly": "0"}, 164),
            ({"readonly": "2"}, 164),
            ({"max_execution_time": "0"}, 164),
            ({"max_memory_usage": "0"}, 164),
            ({"max_result_rows": "0"}, 164),
            ({"max_rows_to_read": "0"}, 164),
            ({"allow_ddl": "0"}, 164),
            ({"log_comment": "someone_else"}, 164),
            ({"no_such_setting": "1"}, 115),
            ({"database": "system"}, 497),
            ({"param_t": "system.processes"}, 497),
        ],
        ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v),
    )
    def test_settings_in_the_url_cannot_change_the_session(
        self, endpoint: QueryEndpoint, params: dict[str, str], code: int
    ) -> None:
        """A URL setting that differs from the session's is refused (ClickHouse's readonly=1
        answer), an unknown one is 115, and the database may not be switched to ``system``
        (directly, or by an Identifier parameter naming a system table)."""
        sql = "SELECT count() FROM {t:Identifier}" if "param_t" in params else "SELECT 1"
        assert_refused(get(endpoint.port, sql, params), code)
        assert_refused(post(endpoint.port, sql, params), code)

    def test_settings_equal_to_the_sessions_are_accepted_and_change_nothing(
        self, endpoint: QueryEndpoint
    ) -> None:
        """A URL setting equal to the session's value (what a client that echoes the server's
        settings sends) is accepted; the session stays readonly with its limits."""
        settings = "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'allow_ddl')"
        reply = get(endpoint.port, settings, {"readonly": "1", "allow_ddl": "1"})
        assert reply.status == 200, reply.body
        assert sorted(reply.body.decode().splitlines()) == ["allow_ddl\t1", "readonly\t1"]
        assert_refused(post(endpoint.port, "SET readonly = 0", {"readonly": "1"}), 164)

    # -- credentials -----------------------------------------------------------------------------
    def test_missing_or_wrong_credentials_are_refused(self, endpoint: QueryEndpoint) -> None:
        """No password, a wrong one, an empty one, or the right one with a character more or
        less, in each place a password can go: 401 with code 516 and WWW-Authenticate."""
        port = endpoint.port
        query = {"query": "SELECT 1"}
        denied = [
            call(port, "GET", params=query, password=None),
            call(port, "GET", params=query, password="wrong-password"),
            call(port, "GET", params=query, password=""),
            call(port, "GET", params=query, password=PASSWORD[:-1]),
            call(port, "GET", params=query, password=PASSWORD + "x"),
            call(port, "GET", params={**query, "user": "default"}, password=None),
            call(port, "GET", params={**query, "password": "wrong"}, password=None),
            call(port, "GET", params=query, password=None, headers={"X-ClickHouse-Key": "no"}),
            call(port, "GET", params=query, password=None,
                 headers={"X-ClickHouse-User": "default"}),
            call(port, "GET", params=query, password=None,
                 headers={"Authorization": "Basic !!!not-base64"}),
            call(port, "GET", params=query, password=None,
                 headers={"Authorization": "Bearer wrong"}),
        ]  # fmt: skip
        for reply in denied:
            assert reply.status == 401
            assert_refused(reply, 516)
            assert reply.headers["www-authenticate"].startswith("Basic")
            assert PASSWORD.encode() not in reply.body

    def test_the_right_credential_is_accepted_each_way(self, endpoint: QueryEndpoint) -> None:
        """Basic auth with ``default`` or any user name, X-ClickHouse-User + X-ClickHouse-Key,
        and the user/password URL parameters: each runs the query."""
        port = endpoint.port
        query = {"query": "SELECT 1"}
        allowed = [
            call(port, "GET", params=query, headers={"Authorization": basic_auth(user, PASSWORD)})
            for user in ("default", "grafana", "")
        ] + [
            call(port, "GET", params=query, password=None,
                 headers={"X-ClickHouse-User": "default", "X-ClickHouse-Key": PASSWORD}),
            call(port, "GET", params={**query, "user": "default", "password": PASSWORD},
                 password=None),
            call(port, "POST", b"SELECT 1", params={"user": "any", "password": PASSWORD},
                 password=None),
        ]  # fmt: skip
        assert [(r.status, r.body) for r in allowed] == [(200, b"1\n")] * len(allowed)

    @pytest.mark.parametrize(
        ("headers", "status", "code"),
        [
            ({"Authorization": basic_auth("default", "wrong")}, 401, 516),
            ({}, 401, 516),
            ({"Authorization": basic_auth("default", PASSWORD), "Host": "evil.example"}, 403, 497),
            ({"Authorization": basic_auth("default", PASSWORD)}, 413, 36),
        ],
        ids=["wrong password", "no password", "foreign host", "too large for the limit"],
    )
    def test_the_caller_is_judged_before_the_body_is_read(
        self, endpoint: QueryEndpoint, headers: dict[str, str], status: int, code: int
    ) -> None:
        """Headers announcing a 100 MB body, and no body: the refusal arrives at once (the
        server does not wait for bytes that never come) and the connection is closed."""
        lines = {"Host": f"127.0.0.1:{endpoint.port}", **headers, "Content-Length": "100000000"}
        head = "POST / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n"
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
            sock.sendall(head.encode())
            answer = read_to_end(sock, timeout=5)
        assert time.monotonic() - started < 3
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
        assert f"X-ClickHouse-Exception-Code: {code}\r\n".encode() in rest
        assert f"\r\n\r\nCode: {code}. DB::Exception: ".encode() in rest

    # -- who may call ----------------------------------------------------------------------------
    def test_foreign_host_and_origin_are_refused_even_with_the_password(
        self, endpoint: QueryEndpoint
    ) -> None:
        """DNS rebinding (a foreign Host) and other web pages (a foreign Origin, another port,
        a sandboxed ``null`` origin, Sec-Fetch-Site cross-site) are refused with 403/497 even
        with the right password; the endpoint's own origin is accepted."""
        port = endpoint.port
        foreign = [
            {"Host": f"evil.example:{port}"},
            {"Host": "evil.example"},
            {"Host": f"127.0.0.1.evil.example:{port}"},
            {"Origin": "http://evil.example"},
            {"Origin": f"http://evil.example:{port}"},
            {"Origin": f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
        ]
        for headers in foreign:
            reply = call(port, "POST", b"SELECT 1", headers=headers)
            assert reply.status == 403, headers
            assert_refused(reply, 497)
        own = [
            {"Origin": f"http://127.0.0.1:{port}"},
            {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
            {"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{port}"},
        ]
        for headers in own:
            assert call(port, "POST", b"SELECT 1", headers=headers).body == b"1\n", headers

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
    def test_listening_beyond_loopback_must_be_asked_for(
        self, store: EmbeddedStore, host: str
    ) -> None:
        """Without allow_remote a non-loopback bind is a configuration error (a ValueError),
        raised before anything listens; with it the endpoint can be made."""
        with pytest.raises(ValueError, match="allow_remote"):
            QueryEndpoint(store, host=host, port=0)
        QueryEndpoint(store, host=host, port=0, allow_remote=True)  # made, never started

    # -- bounded work ----------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("sql", "params", "code"),
        [
            (RUNAWAY, {}, 159),
            (RUNAWAY, {"max_execution_time": "1"}, 159),  # the session's own value: accepted
            (f"SELECT * FROM ({RUNAWAY} SETTINGS max_execution_time = 0)", {}, 159),
            ("SELECT groupArray(number) FROM numbers(1e8)", {}, 241),
            ("SELECT number FROM numbers(1000000)", {}, 396),
            ("SELECT count() FROM numbers_mt(1e12)", {}, 158),
        ],
        ids=["runaway", "runaway, same url setting", "runaway, subquery settings", "memory",
             "result rows", "rows to read"],
    )  # fmt: skip
    def test_limits_stop_expensive_queries_and_readers_stay_usable(
        self, limited: QueryEndpoint, sql: str, params: dict[str, str], code: int
    ) -> None:
        """Time (1 s), memory (64 MiB), result rows (100,000) and rows read are stopped by the
        engine with ClickHouse's code, promptly; the next query on the endpoint answers."""
        started = time.monotonic()
        reply = post(limited.port, sql, params)
        assert time.monotonic() - started < 10
        assert reply.code == str(code), reply.body[:300]
        assert reply.body.startswith(f"Code: {code}. DB::Exception: ".encode())
        assert reply.status >= 400
        assert_serving(limited.port)

    @pytest.mark.parametrize(
        ("sql", "fmt", "code"),
        [
            ("SELECT concat('leaked-', toString(number)) FROM numbers(1000000)", "TSV", 396),
            ("SELECT concat('leaked-', toString(number)) FROM numbers(1000000)", "Arrow", 396),
            (
                "SELECT concat('leaked-', toString(number)), throwIf(number = 50000) "
                "FROM numbers(100000)",
                "JSONEachRow",
                395,
            ),
        ],
        ids=["result rows, TSV", "result rows, Arrow", "throwIf, JSONEachRow"],
    )
    def test_a_failed_querys_partial_result_never_reaches_the_next_request(
        self, store: EmbeddedStore, sql: str, fmt: str, code: int
    ) -> None:
        """chDB keeps what a query wrote before it failed (a result limit, throwIf) and puts it
        in front of the connection's next result. On one reader, client A's failed query is
        followed by client B's: B gets exactly its own answer, and none of A's rows (neither
        in a result nor in an error message)."""
        limits = EndpointLimits(readers=1, reader=ReaderLimits(max_result_rows=100_000))
        with QueryEndpoint(store, port=0, password=PASSWORD, limits=limits) as single:
            for _ in range(3):
                failed = post(single.port, f"{sql} FORMAT {fmt}")
                assert failed.code == str(code), failed.body[:300]
                after = post(single.port, "SELECT 'mine' AS b FORMAT JSONEachRow")
                assert b"leaked-" not in after.body, after.body[:300]
                assert (after.status, after.body) == (200, b'{"b":"mine"}\n')

    @pytest.mark.parametrize("encoding", ["gzip", "deflate"])
    def test_a_compression_bomb_is_refused_at_the_limit(
        self, limited: QueryEndpoint, encoding: str
    ) -> None:
        """100 MB of zeros in under 100 KB: decoding stops at the 16 MiB limit with 413, in
        bounded time; the endpoint keeps serving."""
        zeros = b"\0" * 100_000_000
        bomb = gzip.compress(zeros, 6) if encoding == "gzip" else zlib.compress(zeros, 6)
        assert len(bomb) < 200_000
        started = time.monotonic()
        reply = call(limited.port, "POST", bomb, headers={"Content-Encoding": encoding})
        assert time.monotonic() - started < 5
        assert reply.status == 413
        assert_refused(reply, 36)
        assert_serving(limited.port)

    def test_a_full_queue_answers_503_with_retry_after(self, store: EmbeddedStore) -> None:
        """One reader, no waiting room: while a slow query holds the reader, the next request
        is answered 503 (code 202) with Retry-After at once; once the slow query's client hangs
        up, the endpoint serves again."""
        limits = patient(readers=1, max_waiting=0, wait_for_reader_s=0.5)
        with QueryEndpoint(store, port=0, password=PASSWORD, limits=limits) as single:
            occupier = send_query(single.port, RUNAWAY)
            try:
                wait_until(lambda: runaways(store) == 1, 30, "the slow query to run")
                started = time.monotonic()
                reply = post(single.port, "SELECT 1")
                assert time.monotonic() - started < 2
                assert reply.status == 503
                assert reply.headers["retry-after"].isdigit()
                assert reply.code == "202"
                assert reply.body.startswith(b"Code: 202. DB::Exception: ")
            finally:
                occupier.close()
            wait_until(lambda: runaways(store) == 0, 10, "the slow query to be killed")
            wait_until(lambda: post(single.port, "SELECT 1").status == 200, 10, "a free reader")

    # -- killing queries -------------------------------------------------------------------------
    def test_a_query_dies_when_its_client_hangs_up(
        self, endpoint: QueryEndpoint, store: EmbeddedStore
    ) -> None:
        """A runaway query with a 60 s limit, whose client closes the socket, is killed within
        seconds (it leaves system.processes), and its reader serves the next query."""
        client = send_query(endpoint.port, RUNAWAY)
        try:
            wait_until(lambda: runaways(store) == 1, 30, "the runaway query to run")
        finally:
            client.close()
        hung_up = time.monotonic()
        wait_until(lambda: runaways(store) == 0, 10, "the runaway query to be killed")
        assert time.monotonic() - hung_up < 10
        assert_serving(endpoint.port)

    def test_past_descriptor_1023_queries_run_to_the_end_and_hang_ups_still_kill(
        self, endpoint: QueryEndpoint, store: EmbeddedStore
    ) -> None:
        """In a process with more than 1024 descriptors open (a busy collector), the hang-up
        watch neither mistakes a waiting client for one that left (``select()`` refuses such
        descriptors) nor misses one that did."""
        filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        try:
            # A billion pairs: long enough for several of the watch's polls.
            slow = (
                "SELECT count() FROM numbers(100000) AS a, numbers(10000) AS b "
                "WHERE a.number * b.number = 7"
            )
            started = time.monotonic()
            reply = post(endpoint.port, slow)
            assert (reply.status, reply.body) == (200, b"2\n")
            assert time.monotonic() - started > 0.4
            client = send_query(endpoint.port, RUNAWAY)
            assert client.fileno() > 1023
            try:
                wait_until(lambda: runaways(store) == 1, 30, "the runaway query to run")
            finally:
                client.close()
            wait_until(lambda: runaways(store) == 0, 10, "the runaway query to be killed")
        finally:
            for descriptor in filler:
                os.close(descriptor)
        assert_serving(endpoint.port)

    def test_stop_returns_promptly_with_a_query_in_flight(self, store: EmbeddedStore) -> None:
        """stop() while a runaway query (60 s limit) runs: it kills the query, ends the
        client's connection and returns within seconds; nothing listens afterwards."""
        stopping = QueryEndpoint(store, port=0, password=PASSWORD, limits=patient())
        stopping.start()
        port = stopping.port
        client = send_query(port, RUNAWAY)
        try:
            wait_until(lambda: runaways(store) == 1, 30, "the runaway query to run")
            started = time.monotonic()
            stopping.stop()
            assert time.monotonic() - started < 5
            read_to_end(client, timeout=5)  # an answer or a close, never a hang
        finally:
            client.close()
            stopping.stop()
        wait_until(lambda: runaways(store) == 0, 5, "the runaway query to be gone")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    # -- nothing of one client reaches another ---------------------------------------------------
    def test_no_client_sees_another_clients_query_or_the_secrets(
        self, endpoint: QueryEndpoint, store: EmbeddedStore
    ) -> None:
        """While client A's query runs, client B can read neither it (system.processes,
        query_log, SHOW PROCESSLIST, query ids: refused) nor, in any table it may read in full
        (system.settings, tables, databases, columns, functions, information_schema), A's
        query text or the endpoint's password."""
        marker = "tenant_a_private_4c2e"
        client_a = send_query(endpoint.port, RUNAWAY.replace("count()", f"count() AS {marker}"))
        try:
            wait_until(lambda: runaways(store) == 1, 30, "client A's query to run")
            refused = {
                "SELECT query FROM system.processes": 497,
                "SELECT * FROM system.processes": 497,
                "SELECT query FROM system.query_log": 497,
                "SELECT * FROM system.query_thread_log": 497,
                "SELECT * FROM system.text_log": 497,
                "SELECT * FROM system.opentelemetry_span_log": 497,
                "SELECT currentQueryID(), initialQueryID()": 497,
                "SHOW PROCESSLIST": 164,
                "SELECT * FROM system.environment": 497,
                "SELECT getSetting('log_comment')": 497,
            }
            for sql, code in refused.items():
                reply = post(endpoint.port, sql)
                assert_refused(reply, code)
                assert marker.encode() not in reply.body
            readable = [
                "SELECT * FROM system.settings",
                "SHOW SETTINGS LIKE '%'",
                "SELECT * FROM system.tables",
                "SELECT * FROM system.databases",
                "SELECT * FROM system.columns",
                "SELECT * FROM system.functions",
                "SELECT * FROM information_schema.tables",
                "SELECT * FROM information_schema.columns",
            ]
            for sql in readable:
                reply = post(endpoint.port, sql)
                assert reply.status == 200, (sql, reply.body[:300])
                assert marker.encode() not in reply.body, sql
                assert PASSWORD.encode() not in reply.body, sql
        finally:
            client_a.close()
        wait_until(lambda: runaways(store) == 0, 10, "client A's query to be killed")

    @pytest.mark.xfail(
        strict=True,
        reason="known gap: system.databases (data_path, metadata_path) and system.tables "
        "(data_paths) show the store's directory on the host; admitted because Grafana and "
        "clickhouse-connect read these tables, and the policy judges tables, not columns",
    )
    def test_readable_catalog_tables_do_not_reveal_the_data_directory(
        self, endpoint: QueryEndpoint, store: EmbeddedStore
    ) -> None:
        """The store's path on the host (which names the user's home and the directory that
        holds the query password file) appears in no admitted catalog table."""
        for sql in ("SELECT * FROM system.databases", "SELECT * FROM system.tables"):
            reply = post(endpoint.port, sql)
            assert reply.status == 200
            assert str(store.path).encode() not in reply.body, sql


# -- SIGTERM --------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinged(port: int) -> bool:
    try:
        return call(port, "GET", password=None, timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_the_collector_with_a_runaway_query_in_flight(tmp_path: Path) -> None:
    """``python -m agentwatch collector`` with its default limits (30 s per query): SIGTERM
    while a runaway query burns CPU ends the process cleanly (exit 0) within seconds, and the
    query's client is not left hanging."""
    (query_port,) = free_ports(1)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AGENTWATCH_CLICKHOUSE_URL", "AGENTWATCH_INGEST_TOKEN",
                     "AGENTWATCH_QUERY_PASSWORD")
    }  # fmt: skip
    log = (tmp_path / "collector.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "agentwatch", "collector", "--data-dir", str(tmp_path / "aw"),
         "--http-port", "0", "--no-grpc", "--query-port", str(query_port),
         "--query-password", PASSWORD],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: process.poll() is not None or pinged(query_port), 60, "/ping")
        assert process.poll() is None, (tmp_path / "collector.log").read_text()
        idle = cpu_seconds(process.pid)
        client = send_query(query_port, RUNAWAY)
        try:
            wait_until(
                lambda: cpu_seconds(process.pid) - idle > 1.0, 20, "the runaway query to burn CPU"
            )
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, (tmp_path / "collector.log").read_text()
            assert time.monotonic() - started < 10
            read_to_end(client, timeout=5)  # an answer or a close, never a hang
        finally:
            client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


# -- Grafana --------------------------------------------------------------------------------------
def rows(reply: Reply) -> list[list[Any]]:
    assert reply.status == 200, reply.body[:500]
    data: list[list[Any]] = json.loads(reply.body)["data"]
    return data


def has_row(*wanted: Any) -> Callable[[list[list[Any]]], bool]:
    return lambda found: list(wanted) in found


def total(expected: int) -> Callable[[list[list[Any]]], bool]:
    return lambda found: sum(int(r[-1]) for r in found) == expected


NOW = int(time.time())
GRAFANA: dict[str, tuple[str, dict[str, str], Callable[[list[list[Any]]], bool]]] = {
    "connection check": ("SELECT version()", {}, lambda found: len(found) == 1),
    "server info": (
        "SELECT displayName(), version(), revision(), timezone()",
        {},
        lambda found: len(found) == 1,
    ),
    "databases": ("SELECT name FROM system.databases", {}, has_row(DB)),
    "show databases": ("SHOW DATABASES", {}, has_row(DB)),
    "tables": (
        f"SELECT name FROM system.tables WHERE database = '{DB}'",
        {},
        has_row(SPANS_TABLE),
    ),
    "show tables": (f'SHOW TABLES FROM "{DB}"', {}, has_row(SPANS_TABLE)),
    "describe": (
        f"DESCRIBE TABLE {TABLE}",
        {},
        lambda found: ["Timestamp", "DateTime64(9)"] in [r[:2] for r in found],
    ),
    "desc quoted": (
        f'DESC TABLE "{DB}"."{SPANS_TABLE}"',
        {},
        lambda found: "ServiceName" in [r[0] for r in found],
    ),
    "columns with parameters": (
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"param_db": DB, "param_t": SPANS_TABLE},
        has_row("Timestamp", "DateTime64(9)"),
    ),
    "functions": (
        "SELECT name FROM system.functions WHERE name = 'toStartOfInterval'",
        {},
        has_row("toStartOfInterval"),
    ),
    "time series": (
        "SELECT toStartOfInterval(Timestamp, INTERVAL 60 second) AS time, count() "
        f"FROM {TABLE} WHERE Timestamp >= now() - INTERVAL 1 HOUR GROUP BY time ORDER BY time",
        {},
        total(SPAN_COUNT),
    ),
    "time series, $__timeFilter and $__timeInterval expanded": (
        "SELECT toStartOfInterval(toDateTime(Timestamp), INTERVAL 60 second) AS time, count() "
        f"FROM {TABLE} WHERE Timestamp >= toDateTime({NOW - 3600}) "
        f"AND Timestamp <= toDateTime({NOW + 3600}) GROUP BY time ORDER BY time",
        {},
        total(SPAN_COUNT),
    ),
    "table, $__fromTime/$__toTime in milliseconds": (
        f'SELECT "ServiceName", count() FROM "{DB}"."{SPANS_TABLE}" '
        f"WHERE ( Timestamp >= fromUnixTimestamp64Milli({(NOW - 3600) * 1000}) "
        f"AND Timestamp <= fromUnixTimestamp64Milli({(NOW + 3600) * 1000}) ) "
        'GROUP BY "ServiceName" LIMIT 1000',
        {},
        has_row("support-bot", SPAN_COUNT),
    ),
    "trace view": (
        'SELECT "TraceId" AS traceID, "SpanId" AS spanID, "ParentSpanId" AS parentSpanID, '
        '"ServiceName" AS serviceName, "SpanName" AS operationName, '
        'multiply(toUnixTimestamp64Nano("Timestamp"), 0.000001) AS startTime, '
        'multiply("Duration", 0.000001) AS duration, '
        "arrayMap(key -> map('key', key, 'value', \"SpanAttributes\"[key]), "
        'mapKeys("SpanAttributes")) AS tags '
        f'FROM "{DB}"."{SPANS_TABLE}" WHERE traceID = {{trace:String}} LIMIT 1000',
        {"param_trace": "trace-0"},
        lambda found: len(found) == SPAN_COUNT // 2,
    ),
}


class TestGrafana:
    """The queries Grafana's ClickHouse datasource sends, over HTTP as clickhouse-go does."""

    @pytest.mark.parametrize(("sql", "params", "check"), list(GRAFANA.values()), ids=list(GRAFANA))
    def test_grafana_query_runs_with_results(
        self,
        endpoint: QueryEndpoint,
        sql: str,
        params: dict[str, str],
        check: Callable[[list[list[Any]]], bool],
    ) -> None:
        """Each query (gzip-compressed body, settings the client echoes, its format as a URL
        parameter) answers 200 with the rows the store holds."""
        reply = call(
            endpoint.port,
            "POST",
            gzip.compress(sql.encode()),
            {"default_format": "JSONCompact", "enable_http_compression": "1", **params},
            {"Content-Encoding": "gzip", "Authorization": basic_auth("grafana", PASSWORD)},
        )
        found = rows(reply)
        assert check(found), found[:20]

    def test_row_limit_and_ad_hoc_filters_are_refused(self, endpoint: QueryEndpoint) -> None:
        """Two Grafana features a readonly session cannot serve: the datasource's row limit
        (a ``limit`` URL setting) and ad hoc filters (``SETTINGS additional_table_filters``)."""
        assert_refused(post(endpoint.port, f"SELECT * FROM {TABLE}", {"limit": "1000"}), 164)
        ad_hoc = (
            f"SELECT count() FROM {TABLE} SETTINGS additional_table_filters = "
            f"{{'{TABLE}': 'ServiceName = \\'support-bot\\''}}"
        )
        assert_refused(post(endpoint.port, ad_hoc), 164)
