"""The collector's ClickHouse HTTP interface, driven by unmodified clickhouse-connect.

A real embedded store (chDB) in a temporary directory, a real ``QueryEndpoint`` on a free loopback
port, and the same ``clickhouse_connect.get_client`` call the dashboard makes. Raw HTTP (stdlib
``http.client``) is used only where the point is the wire itself: status codes, headers,
keep-alive, compressed bodies.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, ProgrammingError

from agentwatch.query._endpoint import READ_ONLY, QueryEndpoint
from agentwatch.storage._schema import SPANS_TABLE
from agentwatch.storage._store import EmbeddedStore, apply_migrations

DB = "agentwatch"
TABLE = f"{DB}.{SPANS_TABLE}"


def spans(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Span rows stamped now (the table's TTL drops old ones), attributes as the map column."""
    now = time.time_ns()
    return pa.table(
        {
            "Timestamp": pa.array([now + i for i in range(len(rows))], pa.timestamp("ns")),
            "TraceId": [r["trace"] for r in rows],
            "SpanId": [f"span-{i}" for i in range(len(rows))],
            "SpanName": [r["name"] for r in rows],
            "ServiceName": [r["service"] for r in rows],
            "SpanAttributes": pa.array(
                [list(r["attributes"].items()) for r in rows], pa.map_(pa.string(), pa.string())
            ),
            "Duration": pa.array([r.get("duration", 1000) for r in rows], pa.uint64()),
        }
    )


ROWS: list[Mapping[str, Any]] = [
    {
        "trace": "trace-a",
        "name": "chat gpt-4o",
        "service": "support-bot",
        "attributes": {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "120",
            "gen_ai.usage.output_tokens": "30",
        },
    },
    {
        "trace": "trace-a",
        "name": "execute_tool search",
        "service": "support-bot",
        "attributes": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
    },
    {
        "trace": "trace-b",
        "name": "invoke_agent refund",
        "service": "billing-bot",
        "attributes": {
            "gen_ai.operation.name": "invoke_agent",
            "agentwatch.task.type": "refund",
            "agentwatch.decision.confidence": "0.72",
        },
    },
]


@pytest.fixture(scope="class")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    """One embedded store per test class: chDB opens one data directory per process, so a test
    that needs its own store runs outside the class, after this one is closed."""
    opened = EmbeddedStore(tmp_path_factory.mktemp("query-endpoint") / "data")
    apply_migrations(opened)
    opened.insert_arrow(SPANS_TABLE, spans(ROWS))
    yield opened
    opened.close()


@pytest.fixture(scope="class")
def endpoint(store: EmbeddedStore) -> Iterator[QueryEndpoint]:
    with QueryEndpoint(store, port=0) as started:
        yield started


@pytest.fixture
def client(endpoint: QueryEndpoint) -> Iterator[Client]:
    connected = clickhouse_connect.get_client(
        host="127.0.0.1", port=endpoint.port, password=endpoint.password
    )
    yield connected
    connected.close()


def stored_rows(client: Client) -> int:
    count = client.command(f"SELECT count() FROM {TABLE}")
    assert isinstance(count, int)
    return count


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def call(
    endpoint: QueryEndpoint,
    method: str,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    path: str = "/",
    conn: http.client.HTTPConnection | None = None,
    *,
    authenticated: bool = True,
) -> Reply:
    """One raw HTTP request (on ``conn`` if given, else a fresh connection), with the endpoint's
    password as HTTP basic auth unless ``authenticated`` is False."""
    own = conn is None
    connection = conn or http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    sent = dict(headers or {})
    if authenticated:
        sent.setdefault("Authorization", basic_auth("default", endpoint.password))
    try:
        target = f"{path}?{urlencode(params)}" if params else path
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        if own:
            connection.close()


# What each refusal class answers: READONLY (164) for what is not a read, ACCESS_DENIED (497)
# for a read that reaches outside the store, and the engine's own syntax error (62) for two
# statements in one request (it will not parse them as one).
REFUSED = {
    "insert": (f"INSERT INTO {TABLE} (TraceId) VALUES ('x')", 164),
    "insert select": (f"INSERT INTO {TABLE} (TraceId) SELECT 'x'", 164),
    "create": ("CREATE TABLE agentwatch.evil (a UInt8) ENGINE = Memory", 164),
    "drop": (f"DROP TABLE {TABLE}", 164),
    "alter": (f"ALTER TABLE {TABLE} DELETE WHERE 1", 164),
    "truncate": (f"TRUNCATE TABLE {TABLE}", 164),
    "optimize": (f"OPTIMIZE TABLE {TABLE} FINAL", 164),
    "system": ("SYSTEM DROP MARK CACHE", 164),
    "kill": ("KILL QUERY WHERE 1", 164),
    "set": ("SET readonly = 0", 164),
    "grant": ("GRANT ALL ON *.* TO default", 164),
    "rename": (f"RENAME TABLE {TABLE} TO agentwatch.moved", 164),
    "detach": (f"DETACH TABLE {TABLE}", 164),
    "attach": ("ATTACH TABLE agentwatch.x", 164),
    "two statements": (f"SELECT 1; DROP TABLE {TABLE}", 62),
    "statement hidden after a comment": (f"SELECT 1 /* ; */; /* x */ DROP TABLE {TABLE}", 62),
    "file()": ("SELECT * FROM file('/etc/passwd', LineAsString)", 497),
    "quoted `file`()": ("SELECT * FROM `file`('/etc/passwd', LineAsString)", 497),
    "url()": ("SELECT * FROM url('http://127.0.0.1:9/', LineAsString)", 497),
    "s3()": ("SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv')", 497),
    "remote()": ("SELECT * FROM remote('127.0.0.1:9000', system.one)", 497),
    "Python()": ("SELECT * FROM Python(store)", 497),
    "into outfile": ("SELECT 1 INTO OUTFILE '/tmp/agentwatch-outfile.csv'", 497),
}


class TestReadOnlyEndpoint:
    """Everything that shares one store and one endpoint."""

    # -- reads -------------------------------------------------------------------------------------
    def test_ping_answers_ok(self, endpoint: QueryEndpoint) -> None:
        """GET /ping answers "Ok." as ClickHouse does (load balancers and clients probe it)."""
        reply = call(endpoint, "GET", path="/ping")
        assert (reply.status, reply.body) == (200, b"Ok.\n")

    def test_client_handshake_reports_the_engine(
        self, client: Client, store: EmbeddedStore
    ) -> None:
        """get_client's version/timezone/settings queries succeed and describe the chDB engine."""
        assert client.server_version == store.query("SELECT version()").scalar()
        assert client.ping()
        # The session is readonly=1: settings read as read-only, so the client sends none.
        for name in ("max_threads", "date_time_input_format", "enable_http_compression"):
            assert client.server_settings[name].readonly == 1

    def test_bound_parameters_select_the_right_rows(self, client: Client) -> None:
        """{name:Type} placeholders bind server-side and select exactly the matching typed rows."""
        result = client.query(
            f"SELECT TraceId, Operation, RequestModel, InputTokens, OutputTokens FROM {TABLE} "
            "WHERE ServiceName = {service:String} AND InputTokens >= {min_tokens:UInt64}",
            parameters={"service": "support-bot", "min_tokens": 100},
        )
        assert result.column_names == (
            "TraceId",
            "Operation",
            "RequestModel",
            "InputTokens",
            "OutputTokens",
        )
        assert result.result_rows == [("trace-a", "chat", "gpt-4o", 120, 30)]

    def test_native_results_keep_clickhouse_types(self, client: Client) -> None:
        """Map, LowCardinality, Nullable and DateTime64 columns come back as Python values."""
        row = client.query(
            f"SELECT SpanAttributes, TaskType, Confidence, Timestamp FROM {TABLE} "
            "WHERE TraceId = {trace:String}",
            parameters={"trace": "trace-b"},
        ).named_results()
        (only,) = list(row)
        assert only["SpanAttributes"]["agentwatch.task.type"] == "refund"
        assert only["TaskType"] == "refund"
        assert only["Confidence"] == pytest.approx(0.72)
        assert abs(only["Timestamp"].timestamp() - time.time()) < 3600

    def test_query_arrow_returns_an_arrow_table(self, client: Client) -> None:
        """query_arrow returns the rows as a pyarrow table with string (not binary) columns."""
        table = client.query_arrow(
            f"SELECT TraceId, count() AS spans FROM {TABLE} GROUP BY TraceId ORDER BY TraceId"
        )
        assert table.schema.field("TraceId").type == pa.string()
        assert table.to_pydict() == {"TraceId": ["trace-a", "trace-b"], "spans": [2, 1]}

    def test_query_df_returns_a_dataframe(self, client: Client) -> None:
        """query_df returns a pandas DataFrame of the rows."""
        frame = client.query_df(
            f"SELECT ToolName FROM {TABLE} WHERE Operation = {{op:String}}",
            parameters={"op": "execute_tool"},
        )
        assert frame["ToolName"].tolist() == ["search"]

    @pytest.mark.parametrize(
        ("fmt", "parse"),
        [
            ("JSONEachRow", lambda b: [json.loads(line)["TraceId"] for line in b.splitlines()]),
            ("TabSeparated", lambda b: b.decode().split()),
            ("TSVWithNames", lambda b: b.decode().split()[1:]),
            ("CSV", lambda b: [s.strip('"') for s in b.decode().split()]),
            ("JSON", lambda b: [r["TraceId"] for r in json.loads(b)["data"]]),
            ("JSONCompact", lambda b: [r[0] for r in json.loads(b)["data"]]),
            ("Arrow", lambda b: pa.ipc.open_file(b).read_all().column(0).to_pylist()),
        ],
    )
    def test_raw_query_formats(self, client: Client, fmt: str, parse: Any) -> None:
        """raw_query returns the result in the requested ClickHouse output format."""
        body = client.raw_query(f"SELECT DISTINCT TraceId FROM {TABLE} ORDER BY TraceId", fmt=fmt)
        assert [v.decode() if isinstance(v, bytes) else v for v in parse(body)] == [
            "trace-a",
            "trace-b",
        ]

    def test_format_clause_in_the_sql_sets_the_format(self, endpoint: QueryEndpoint) -> None:
        """A FORMAT clause in the query text wins and is echoed in X-ClickHouse-Format."""
        reply = call(endpoint, "POST", body=b"SELECT 1 AS x FORMAT JSONEachRow")
        assert reply.status == 200
        assert reply.headers["x-clickhouse-format"] == "JSONEachRow"
        assert json.loads(reply.body) == {"x": 1}

    def test_default_format_parameter_applies_without_a_format_clause(
        self, endpoint: QueryEndpoint
    ) -> None:
        """default_format picks the output format when the SQL has no FORMAT clause."""
        reply = call(endpoint, "GET", {"query": "SELECT 2 AS y", "default_format": "JSONEachRow"})
        assert json.loads(reply.body) == {"y": 2}

    def test_get_with_the_query_in_the_url(self, endpoint: QueryEndpoint) -> None:
        """GET /?query=... runs the query, answering TabSeparated with ClickHouse's headers."""
        reply = call(endpoint, "GET", {"query": "SELECT 1 + 1"})
        assert (reply.status, reply.body) == (200, b"2\n")
        assert reply.headers["x-clickhouse-format"] == "TabSeparated"
        assert reply.headers["x-clickhouse-timezone"]
        assert json.loads(reply.headers["x-clickhouse-summary"])["read_rows"] == "1"

    def test_database_parameter_sets_the_current_database(self, endpoint: QueryEndpoint) -> None:
        """get_client(database=...) lets queries name tables without the database."""
        scoped = clickhouse_connect.get_client(
            host="127.0.0.1", port=endpoint.port, password=endpoint.password, database=DB
        )
        try:
            assert scoped.command(f"SELECT count() FROM {SPANS_TABLE}") == len(ROWS)
        finally:
            scoped.close()

    def test_long_parameters_travel_form_encoded(self, client: Client) -> None:
        """Parameters too long for a URL go as multipart/form-data, and still bind."""
        wanted = ["trace-b", *(f"missing-{i:05d}" for i in range(1000))]
        result = client.query(
            f"SELECT count() FROM {TABLE} WHERE has({{ids:Array(String)}}, TraceId)",
            parameters={"ids": wanted},
        )
        assert result.result_rows == [(1,)]

    def test_gzip_request_body_is_decoded(self, endpoint: QueryEndpoint) -> None:
        """A gzip-compressed query body (Content-Encoding: gzip) runs like a plain one."""
        reply = call(
            endpoint,
            "POST",
            body=gzip.compress(f"SELECT count() FROM {TABLE}".encode()),
            headers={"Content-Encoding": "gzip"},
        )
        assert (reply.status, reply.body) == (200, f"{len(ROWS)}\n".encode())

    def test_keep_alive_serves_several_requests_on_one_connection(
        self, endpoint: QueryEndpoint
    ) -> None:
        """HTTP/1.1 keep-alive: one connection carries consecutive queries, errors included."""
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
        try:
            first = call(endpoint, "POST", body=b"SELECT 1", conn=conn)
            refused = call(endpoint, "POST", body=b"DROP TABLE x", conn=conn)
            second = call(endpoint, "POST", body=b"SELECT 2", conn=conn)
        finally:
            conn.close()
        assert (first.body, refused.status, second.body) == (b"1\n", 403, b"2\n")

    # -- refusals ----------------------------------------------------------------------------------

    @pytest.mark.parametrize(("sql", "code"), list(REFUSED.values()), ids=list(REFUSED))
    def test_writes_and_outside_access_are_refused(
        self, client: Client, sql: str, code: int
    ) -> None:
        """Each write, DDL or outside-reaching statement is refused with its ClickHouse code;
        nothing changes and the endpoint keeps serving."""
        with pytest.raises(DatabaseError, match=READ_ONLY if code != 62 else "Multi-statements"):
            client.command(sql)
        with pytest.raises(DatabaseError) as refused:
            client.command(sql)
        assert refused.value.code == code
        assert stored_rows(client) == len(ROWS)

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT 'DROP TABLE x; SELECT file(1)' AS s",
            "SELECT `DROP`.1 FROM (SELECT tuple(1) AS `DROP`)",
            "SELECT cos(0)",
            "SELECT $$a; DROP TABLE x$$",
            "SELECT 1 -- ; DROP TABLE x",
            "SELECT 1 /* nested /* ; */ DROP TABLE x */",
            "WITH 2 AS x SELECT x",
            "(SELECT 1)",
            f"SHOW TABLES FROM {DB}",
            f"DESCRIBE TABLE {TABLE}",
            f"EXISTS TABLE {TABLE}",
            "EXPLAIN SELECT 1",
            "SELECT 1;",
        ],
    )
    def test_reads_that_merely_look_dangerous_run(self, client: Client, sql: str) -> None:
        """Keywords inside strings, quoted names, heredocs and comments, math functions and
        every read statement kind are not refused."""
        client.raw_query(sql)

    def test_refusal_is_http_403_with_the_clickhouse_exception_code(
        self, endpoint: QueryEndpoint
    ) -> None:
        """A refused statement answers 403, X-ClickHouse-Exception-Code 164 and a clear message."""
        reply = call(endpoint, "POST", body=f"DROP TABLE {TABLE}".encode())
        assert reply.status == 403
        assert reply.headers["x-clickhouse-exception-code"] == "164"
        assert reply.body.startswith(f"Code: 164. DB::Exception: {READ_ONLY}: DropQuery".encode())

    def test_the_engine_refuses_a_settings_clause_that_lifts_readonly(self, client: Client) -> None:
        """A SETTINGS clause that lifts readonly is refused by the readonly session itself."""
        with pytest.raises(DatabaseError, match="readonly") as refused:
            client.command("SELECT 1 SETTINGS readonly = 0")
        assert refused.value.code == 164

    def test_read_only_session_refuses_writes(self, store: EmbeddedStore) -> None:
        """EmbeddedStore.open_reader's connection refuses INSERT and file() on its own."""
        reader = store.open_reader()
        try:
            for sql in (
                f"INSERT INTO {TABLE} (TraceId) VALUES ('x')",
                "SELECT * FROM file('/etc/hostname', LineAsString)",
            ):
                with pytest.raises(Exception, match="readonly mode"):
                    reader.query(sql)
            assert int(bytes(reader.query(f"SELECT count() FROM {TABLE}").bytes())) == len(ROWS)
        finally:
            reader.close()

    def test_setting_changes_are_refused(self, endpoint: QueryEndpoint) -> None:
        """A URL setting that differs from the session's is refused (readonly=1 semantics)."""
        reply = call(endpoint, "GET", {"query": "SELECT 1", "max_threads": "1"})
        assert reply.status == 403
        assert reply.headers["x-clickhouse-exception-code"] == "164"
        assert b"max_threads" in reply.body

    def test_client_refuses_settings_the_endpoint_reports_readonly(self, client: Client) -> None:
        """clickhouse-connect reads the read-only settings and refuses settings= itself, as it
        does for a readonly=1 user on a ClickHouse server."""
        with pytest.raises(ProgrammingError, match="readonly"):
            client.query("SELECT 1", settings={"max_threads": 1})

    def test_malformed_sql_is_a_clean_database_error(self, client: Client) -> None:
        """A syntax error is DatabaseError code 62 with ClickHouse's message; serving goes on."""
        with pytest.raises(DatabaseError, match="Syntax error") as failed:
            client.query("SELECT FROM WHERE")
        assert failed.value.code == 62
        assert stored_rows(client) == len(ROWS)

    def test_unknown_table_is_a_clean_database_error(self, client: Client) -> None:
        """Reading a table that does not exist raises DatabaseError with ClickHouse's code 60."""
        with pytest.raises(DatabaseError) as failed:
            client.query("SELECT * FROM agentwatch.no_such_table")
        assert failed.value.code == 60

    def test_insert_data_is_refused_without_allow_write(self, endpoint: QueryEndpoint) -> None:
        """An INSERT ... FORMAT Arrow with a body is refused as read-only; nothing is written."""
        reply = call(
            endpoint,
            "POST",
            {"query": f"INSERT INTO {TABLE} (TraceId) FORMAT Arrow"},
            body=b"not even arrow",
        )
        assert reply.status == 403
        assert reply.headers["x-clickhouse-exception-code"] == "164"
        assert call(endpoint, "GET", {"query": f"SELECT count() FROM {TABLE}"}).body == b"3\n"

    # -- password ----------------------------------------------------------------------------------
    def test_the_password_is_required_the_ways_clickhouse_accepts_it(
        self, endpoint: QueryEndpoint
    ) -> None:
        """Without the password, or with a wrong one, code 516 (HTTP 401); with it as HTTP basic
        auth (any user), X-ClickHouse-User/Key, the user/password URL parameters or a bearer token,
        the query runs. /ping stays open."""
        query = {"query": "SELECT 1"}
        secret = endpoint.password
        denied = [
            call(endpoint, "GET", query, authenticated=False),
            call(endpoint, "GET", query, headers={"Authorization": basic_auth("default", "wrong")}),
            call(endpoint, "GET", {**query, "password": secret + "x"}, authenticated=False),
            call(endpoint, "POST", body=b"SELECT 1", headers={"X-ClickHouse-Key": "nope"},
                 authenticated=False),
        ]  # fmt: skip
        assert [(r.status, r.headers["x-clickhouse-exception-code"]) for r in denied] == [
            (401, "516")
        ] * 4
        allowed = [
            call(endpoint, "GET", query, headers={"Authorization": basic_auth("default", secret)}),
            call(endpoint, "GET", query, headers={"Authorization": basic_auth("grafana", secret)}),
            call(endpoint, "GET", query, authenticated=False,
                 headers={"X-ClickHouse-User": "default", "X-ClickHouse-Key": secret}),
            call(endpoint, "GET", {**query, "user": "default", "password": secret},
                 authenticated=False),
            call(endpoint, "GET", query, authenticated=False,
                 headers={"Authorization": f"Bearer {secret}"}),
        ]  # fmt: skip
        assert [r.body for r in allowed] == [b"1\n"] * 5
        assert call(endpoint, "GET", path="/ping", authenticated=False).status == 200

    def test_clickhouse_connect_needs_the_password(self, endpoint: QueryEndpoint) -> None:
        with pytest.raises(DatabaseError) as denied:
            clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)
        assert denied.value.code == 516


# -- lifecycle ------------------------------------------------------------------------------------
def test_stop_releases_the_store(tmp_path: Path) -> None:
    """After stop(), the endpoint's chDB connections are closed: the store can close and the
    directory reopens in this process (chDB holds one directory per process)."""
    path = tmp_path / "data"
    first = EmbeddedStore(path)
    apply_migrations(first)
    endpoint = QueryEndpoint(first, port=0)
    endpoint.start()
    port = endpoint.port
    assert call(endpoint, "GET", {"query": "SELECT 1"}).body == b"1\n"
    endpoint.stop()
    first.close()
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).connect()
    again = EmbeddedStore(path)
    try:
        assert again.query(f"SELECT count() FROM {TABLE}").scalar() == 0
    finally:
        again.close()


def test_concurrent_clients_read_while_the_store_is_written(tmp_path: Path) -> None:
    """Four clients query at once while the collector's store takes inserts: every query
    succeeds and each client sees the row count only grow, to the final total."""
    store = EmbeddedStore(tmp_path / "data")
    apply_migrations(store)
    batches = 10
    seen: dict[int, list[int]] = {}
    failures: list[BaseException] = []

    def read(worker: int, port: int, password: str) -> None:
        counts = seen.setdefault(worker, [])
        try:
            reader = clickhouse_connect.get_client(host="127.0.0.1", port=port, password=password)
            try:
                for _ in range(25):
                    counts.append(stored_rows(reader))
            finally:
                reader.close()
        except BaseException as exc:
            failures.append(exc)

    try:
        with QueryEndpoint(store, port=0) as endpoint:
            workers = [
                threading.Thread(target=read, args=(i, endpoint.port, endpoint.password))
                for i in range(4)
            ]
            for worker in workers:
                worker.start()
            for _ in range(batches):
                store.insert_arrow(SPANS_TABLE, spans(ROWS))
            for worker in workers:
                worker.join(timeout=120)
            assert not any(worker.is_alive() for worker in workers)
            assert failures == []
            for counts in seen.values():
                assert counts == sorted(counts)
                assert all(n % len(ROWS) == 0 for n in counts)  # whole batches only
            assert call(endpoint, "GET", {"query": f"SELECT count() FROM {TABLE}"}).body == (
                f"{batches * len(ROWS)}\n".encode()
            )
    finally:
        store.close()
