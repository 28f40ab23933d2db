"""The admission policy, on the engine's own syntax trees and on trees a client tries to forge.

Trees come from a real chDB reader session (``ReaderSession.parse``), as the endpoint gets them;
the reading of the printed graph is also tested on hand-written graphs, for the one thing a
client controls in it: names, which may hold line breaks and quotes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.query._policy import (
    ACCESS_DENIED,
    READONLY,
    AllowList,
    Node,
    Refusal,
    admit,
    output_format,
    read_graph,
)
from agentwatch.storage._reader import ReaderLimits, ReaderSession
from agentwatch.storage._store import EmbeddedStore, StorageError, apply_migrations


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReaderSession]:
    store = EmbeddedStore(Path(tmp_path_factory.mktemp("policy")) / "data")
    apply_migrations(store)
    session = ReaderSession(store, "policy_test_reader", ReaderLimits())
    yield session
    session.close()
    store.close()


@pytest.fixture(scope="module")
def allow(reader: ReaderSession) -> AllowList:
    catalog = reader.catalog()
    return AllowList.build(
        catalog.functions,
        catalog.combinators,
        catalog.table_functions,
        catalog.databases,
        frozenset({"agentwatch"}),
    )


def tree(reader: ReaderSession, sql: str, params: dict[str, str] | None = None) -> Node:
    return read_graph(reader.parse(sql, params).graph)


ADMITTED = [
    "SELECT 1",
    "SELECT count() FROM agentwatch.otel_traces WHERE ServiceName = {service:String}",
    "WITH t AS (SELECT TraceId FROM agentwatch.otel_traces) SELECT count() FROM t",
    "SELECT countIf(Duration > 5), sumState(Duration), quantilesTDigestMerge(0.5)(s) "
    "FROM (SELECT quantilesTDigestState(0.5)(Duration) AS s, Duration FROM agentwatch.otel_traces "
    "GROUP BY Duration)",
    "SELECT arrayMap(x -> x + 1, [1, 2]), row_number() OVER (ORDER BY 1)",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT 1 EXCEPT SELECT 2",
    "SELECT CAST(1 AS String), 1::UInt8, toStartOfInterval(now(), INTERVAL 1 minute)",
    "SELECT `Events.Timestamp` FROM agentwatch.otel_traces LIMIT 1",
    "SELECT * FROM numbers(10)",
    "SELECT name FROM system.tables WHERE database = 'agentwatch'",
    "SELECT name FROM information_schema.tables",
    "SHOW DATABASES",
    "SHOW TABLES FROM agentwatch",
    "DESCRIBE TABLE agentwatch.otel_traces",
    "EXISTS TABLE agentwatch.otel_traces",
    "EXPLAIN SELECT 1",
    "EXPLAIN AST SELECT count() FROM agentwatch.otel_traces",
    "SELECT displayName(), version(), revision(), timezone()",
    "SELECT 'file(1); DROP TABLE x' AS s",
    "SELECT 1 FORMAT JSON",
]


@pytest.mark.parametrize("sql", ADMITTED)
def test_reads_are_admitted(reader: ReaderSession, allow: AllowList, sql: str) -> None:
    """Reads the dashboard, clickhouse-connect and Grafana send are admitted as reads."""
    assert admit(tree(reader, sql, {"service": "support-bot"}), allow).writes is False


def test_a_settings_clause_is_the_engines_to_refuse(reader: ReaderSession) -> None:
    """The reader session is readonly: the engine refuses a SETTINGS clause while parsing."""
    with pytest.raises(StorageError, match="Code: 164"):
        reader.parse("SELECT 1 SETTINGS max_threads = 1", None)


REFUSED = {
    "drop": ("DROP TABLE agentwatch.otel_traces", READONLY),
    "insert": ("INSERT INTO agentwatch.otel_traces (TraceId) VALUES ('x')", READONLY),
    "set": ("SET max_threads = 1", READONLY),
    "use": ("USE system", READONLY),
    "system": ("SYSTEM FLUSH LOGS", READONLY),
    "kill": ("KILL QUERY WHERE 1", READONLY),
    "show processlist": ("SHOW PROCESSLIST", READONLY),
    "show grants": ("SHOW GRANTS", READONLY),
    "explain an insert": (
        "EXPLAIN INSERT INTO agentwatch.otel_traces SELECT * FROM numbers(1)",
        READONLY,
    ),
    "scalar file": ("SELECT file('/etc/hostname')", ACCESS_DENIED),
    "escaped file": ("SELECT `fil\\x65`('/etc/hostname')", ACCESS_DENIED),
    "upper-case FILE": ("SELECT FILE('/etc/hostname')", ACCESS_DENIED),
    "table function": ("SELECT * FROM url('http://127.0.0.1:9/x', CSV)", ACCESS_DENIED),
    "table function in a subquery": (
        "SELECT * FROM (SELECT * FROM file('/etc/passwd', LineAsString))",
        ACCESS_DENIED,
    ),
    "setting read": ("SELECT getSetting('max_memory_usage')", ACCESS_DENIED),
    "host": ("SELECT hostName()", ACCESS_DENIED),
    "sleep": ("SELECT sleep(1)", ACCESS_DENIED),
    "dictionary": ("SELECT dictGet('d', 'x', 1)", ACCESS_DENIED),
    "model call": ("SELECT aiGenerate('hello')", ACCESS_DENIED),
    "processes": ("SELECT query FROM system.processes", ACCESS_DENIED),
    "processes in IN": ("SELECT 1 WHERE 'x' IN system.processes", ACCESS_DENIED),
    "query log via join": (
        "SELECT 1 FROM system.one AS o JOIN system.query_log AS l ON 1",
        ACCESS_DENIED,
    ),
    "server settings": ("SELECT * FROM system.server_settings", ACCESS_DENIED),
    "show create of processes": ("SHOW CREATE TABLE system.processes", ACCESS_DENIED),
    "into outfile": ("SELECT 1 INTO OUTFILE '/tmp/never'", ACCESS_DENIED),
    "into outfile, heredoc trick": (
        "SELECT 'x' AS a$x$ INTO OUTFILE '/tmp/never' --$x$",
        ACCESS_DENIED,
    ),
    "into outfile with format": (
        "SELECT 1 INTO OUTFILE '/tmp/never' COMPRESSION 'gzip' FORMAT CSV",
        ACCESS_DENIED,
    ),
    "explain into outfile": ("EXPLAIN SELECT 1 INTO OUTFILE '/tmp/never'", ACCESS_DENIED),
    "show tables into outfile": ("SHOW TABLES INTO OUTFILE '/tmp/never'", ACCESS_DENIED),
    "name with a line break": (
        "SELECT `x\nFunction plus` INTO OUTFILE '/tmp/never'",
        ACCESS_DENIED,
    ),
}


@pytest.mark.parametrize(("sql", "code"), list(REFUSED.values()), ids=list(REFUSED))
def test_refusals_carry_their_code(
    reader: ReaderSession, allow: AllowList, sql: str, code: int
) -> None:
    """Each refusal class is refused from the engine's tree, with ClickHouse's code for it."""
    with pytest.raises(Refusal) as refused:
        admit(tree(reader, sql), allow)
    assert refused.value.code == code


def test_identifier_parameters_are_judged_by_what_they_name(
    reader: ReaderSession, allow: AllowList
) -> None:
    """``{t:Identifier}`` is bound before the tree is printed, so the table it names is checked."""
    sql = "SELECT count() FROM {t:Identifier}"
    assert not admit(tree(reader, sql, {"t": "agentwatch.otel_traces"}), allow).writes
    with pytest.raises(Refusal, match=r"system\.processes"):
        admit(tree(reader, sql, {"t": "system.processes"}), allow)


def test_two_statements_do_not_parse(reader: ReaderSession) -> None:
    """The engine parses one statement: a second one is its syntax error, not ours to split."""
    with pytest.raises(StorageError, match="Multi-statements are not allowed"):
        reader.parse("SELECT 1; DROP TABLE agentwatch.otel_traces", None)


def test_writes_are_admitted_only_when_allowed(reader: ReaderSession, allow: AllowList) -> None:
    drop = tree(reader, "DROP TABLE IF EXISTS agentwatch.nothing")
    assert admit(drop, allow, allow_write=True).writes is True
    with pytest.raises(Refusal):
        admit(drop, allow)


def test_from_infile_is_refused_even_when_writes_are_allowed(
    reader: ReaderSession, allow: AllowList
) -> None:
    insert = tree(reader, "INSERT INTO agentwatch.otel_traces FROM INFILE '/etc/passwd' FORMAT CSV")
    with pytest.raises(Refusal, match="INFILE"):
        admit(insert, allow, allow_write=True)


def test_the_allow_list_leaves_out_what_reaches_outside(allow: AllowList) -> None:
    """Built from the engine's catalog: pure functions in, outside-reaching ones out, whatever
    their case, and aggregate combinators resolve to their base function."""
    for name in ("plus", "toStartOfInterval", "countIf", "sumStateIf", "COUNT", "lambda"):
        assert allow.function_allowed(name), name
    refused = ("file", "FILE", "url", "getSetting", "hostName", "sleep", "dictGet", "joinGet",
               "s3", "remote", "executable", "aiGenerate", "fileIf", "noSuchFunction")  # fmt: skip
    for name in refused:
        assert not allow.function_allowed(name), name


# -- reading the printed graph --------------------------------------------------------------------
HEADER = 'digraph {\n    rankdir="UD";\n'


def graph(*lines: str) -> str:
    return HEADER + "".join(f"    {line}\n" for line in lines) + "}\n"


def test_a_graph_reads_into_its_tree() -> None:
    root = read_graph(
        graph(
            'n1[label="SelectWithUnionQuery (children 1)"];',
            'n2[label="Function plus (alias p) (children 1)"];',
            'n3[label="Literal UInt64_1"];',
            "n2 -> n3;",
            "n1 -> n2;",
        )
    )
    assert (root.kind, root.children[0].kind, root.children[0].name) == (
        "SelectWithUnionQuery",
        "Function",
        "plus",
    )
    assert root.children[0].children[0].detail == "UInt64_1"


def test_lines_a_name_smuggles_in_are_refused() -> None:
    """A name holding a line break can print lines that look like nodes and edges; they are not
    reachable from the root (their ids are made up), and the graph is refused."""
    forged = graph(
        'n1[label="SelectWithUnionQuery (children 2)"];',
        'n2[label="Identifier x"];',
        'n99[label="Function plus"];',  # printed by the name, not the engine
        'n99 -> n3;"];',
        "n3[label=\"Literal '/tmp/out'\"];",
        "n1 -> n2;",
        "n1 -> n3;",
    )
    with pytest.raises(Refusal, match="line breaks"):
        read_graph(forged)


def test_a_label_broken_across_lines_is_refused() -> None:
    broken = HEADER + '    n1[label="Identifier a\nb"];\n}\n'
    with pytest.raises(Refusal):
        read_graph(broken)


def test_anything_but_a_graph_is_refused() -> None:
    for text in ("", "SelectWithUnionQuery (children 1)\n", 'digraph {\n    rankdir="UD";\n}\n'):
        with pytest.raises(Refusal):
            read_graph(text)


def test_the_output_format_is_the_renderings_last_line() -> None:
    assert output_format("SELECT 1\nFORMAT JSONEachRow") == "JSONEachRow"
    assert output_format("SELECT 'FORMAT JSON'") is None
    assert output_format("SELECT 1") is None
