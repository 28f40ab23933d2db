"""What the query endpoint admits, decided from the engine's own syntax tree (pure, no I/O).

The engine parses a client's statement (``storage/_reader.py``: ``formatQuery`` then ``EXPLAIN
AST graph = 1``) and this module reads the tree it printed. Nothing here looks at the client's
text: quoting, escapes, comments, ``$tag$`` strings, odd casing and look-alike letters are the
parser's business, and what is checked is what the engine will run.

Admitted: one read statement (SELECT / WITH / UNION / INTERSECT / EXCEPT, SHOW TABLES and
DATABASES, SHOW COLUMNS, SHOW CREATE, DESCRIBE, EXISTS, EXPLAIN of a read), whose every node is
of a kind on an allow-list, every function is on an allow-list built from the engine's own
catalog (pure functions by category; nothing that reads files, the network, dictionaries,
settings, the host or another process; no ``sleep``), and every table is in the store's database
or one of the few ``system`` tables that clickhouse-connect and Grafana read. ``INTO OUTFILE``
(a literal hung on the statement itself) is refused in every form. A name containing a line
break is refused: it is the one way a name could make the printed tree say something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from agentwatch._errors import AgentwatchError

# ClickHouse's codes: READONLY for statements that are not reads, ACCESS_DENIED for reads that
# reach what they may not.
READONLY: Final = 164
ACCESS_DENIED: Final = 497
REFUSED: Final = "agentwatch query endpoint is read-only"

READ_STATEMENTS: Final = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "Explain",
        "DescribeQuery",
        "ShowTables",  # SHOW TABLES / DATABASES / DICTIONARIES / SETTINGS LIKE ...
        "ShowColumns",
        "ShowCreateTableQuery",
        "ShowCreateDatabaseQuery",
        "ShowCreateViewQuery",
        "ExistsTableQuery",
        "ExistsDatabaseQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
    }
)
# Only with allow_write (tests and tools that write through HTTP; never a listening collector).
WRITE_STATEMENTS: Final = frozenset(
    {
        "InsertQuery",
        "CreateQuery",
        "DropQuery",
        "AlterQuery",
        "TruncateQuery",
        "OptimizeQuery",
        "Rename",
        "DeleteQuery",
        "UpdateQuery",
    }
)
# The node kinds a read may hold anywhere in its tree.
READ_NODES: Final = READ_STATEMENTS | frozenset(
    {
        "SelectQuery",
        "ExpressionList",
        "Function",
        "Identifier",
        "TableIdentifier",
        "Literal",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "QualifiedColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsApplyTransformer",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformerReplacement",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableJoin",
        "ArrayJoin",
        "Subquery",
        "WithElement",
        "OrderByElement",
        "InterpolateElement",
        "WindowDefinition",
        "WindowListElement",
        "SampleRatio",
        "Set",  # a SETTINGS clause: the reader session is readonly, the engine refuses changes
    }
)
EXPLAIN_KINDS: Final = frozenset(
    {
        "EXPLAIN",
        "EXPLAIN PLAN",
        "EXPLAIN AST",
        "EXPLAIN SYNTAX",
        "EXPLAIN QUERY TREE",
        "EXPLAIN PIPELINE",
        "EXPLAIN ESTIMATE",
    }
)
# Statements whose literal children are output options: INTO OUTFILE 'path' [COMPRESSION ...].
_OUTPUT_HOLDERS: Final = READ_STATEMENTS | {"InsertQuery"}  # INSERT ... FROM INFILE 'path'

# Function categories (system.functions) that compute on their arguments and nothing else.
SAFE_CATEGORIES: Final = frozenset(
    {
        "Aggregate Functions",
        "Arithmetic",
        "Arrays",
        "Bit",
        "Bitmap",
        "Comparison",
        "Conditional",
        "Dates and Times",
        "Distance",
        "Encoding",
        "Encryption",
        "Financial",
        "Geo",
        "Geo Polygon",
        "Hash",
        "IP Address",
        "JSON",
        "Logical",
        "Map",
        "Mathematical",
        "Null",
        "NumericIndexedVector",
        "QBit",
        "Random Number",
        "Rounding",
        "String",
        "String Replacement",
        "String Search",
        "String Splitting",
        "Time Series",
        "Time Window",
        "Tuple",
        "Type Conversion",
        "URL",  # parse URL strings; nothing is fetched
        "UUID",
    }
)
# From the categories left out ("Other", "Internal", ...): the ones that only compute.
SAFE_FUNCTIONS: Final = frozenset(
    {
        "lambda",  # not in system.functions: the x -> expr of higher-order functions
        "_CAST",  # what `x::T`, CAST and typed query parameters become
        "caseWithExpression",
        "bar",
        "blockNumber",
        "blockSize",
        "byteSize",
        "countDigits",
        "currentDatabase",
        "currentUser",
        "defaultValueOfArgumentType",
        "defaultValueOfTypeName",
        "displayName",  # Grafana's connection check
        "dumpColumnStructure",
        "errorCodeToName",
        "finalizeAggregation",
        "formatReadableDecimalSize",
        "formatReadableQuantity",
        "formatReadableSize",
        "formatReadableTimeDelta",
        "getSizeOfEnumType",
        "getSubcolumn",
        "identity",
        "ignore",
        "indexHint",
        "initializeAggregation",
        "isConstant",
        "isDecimalOverflow",
        "materialize",
        "neighbor",
        "parseReadableSize",
        "parseReadableSizeOrNull",
        "parseReadableSizeOrZero",
        "parseTimeDelta",
        "revision",  # Grafana's connection check
        "rowNumberInAllBlocks",
        "rowNumberInBlock",
        "runningAccumulate",
        "runningDifference",
        "runningDifferenceStartingWithFirstValue",
        "throwIf",
        "toColumnTypeName",
        "toTypeName",
        "transform",
        "uptime",
        "variantElement",
        "variantType",
        "version",
        "visibleWidth",
    }
)
# Table functions that generate rows in memory.
SAFE_TABLE_FUNCTIONS: Final = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series", "values"}
)
# The system tables that clickhouse-connect and Grafana's ClickHouse datasource read. Not
# processes, query_log, server_settings, users, ...: other clients' queries and the host's setup.
SYSTEM_TABLES: Final = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "settings",
        "databases",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "table_engines",
        "aggregate_function_combinators",
        "data_type_families",
        "formats",
        "time_zones",
    }
)
INFORMATION_SCHEMA_TABLES: Final = frozenset({"tables", "columns", "schemata", "views"})

_NODE: Final = re.compile(r' {4}n(\d+)\[label="(.*)"\];')
_EDGE: Final = re.compile(r" {4}n(\d+) -> n(\d+);")
_HEADER: Final = ("digraph {", '    rankdir="UD";')
_SUFFIX: Final = re.compile(r"(?: \((?:alias [^)]*|children \d+)\))+$")


class Refusal(AgentwatchError):
    """A statement the endpoint will not run; ``code`` is ClickHouse's (164 or 497)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{REFUSED}: {reason}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Node:
    kind: str
    detail: str  # the rest of the engine's label: a name, a literal, an EXPLAIN kind
    children: tuple[Node, ...]

    @property
    def name(self) -> str:
        """The first word of the detail: a function's, identifier's or table's name."""
        return self.detail.split(" ", 1)[0]

    def walk(self) -> Iterable[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def read_graph(graph: str) -> Node:
    """The tree in ``EXPLAIN AST graph = 1`` output, refusing a graph it cannot read exactly.

    Node ids are addresses the engine prints and a client cannot know, so lines a name smuggles
    in (a name may hold a line break) are not reachable from the root: any line that is not the
    header, a reachable node or an edge between reachable nodes means such a name, and is
    refused rather than guessed at.
    """
    lines = graph.rstrip("\n").split("\n")
    if tuple(lines[:2]) != _HEADER or lines[-1] != "}":
        raise Refusal(ACCESS_DENIED, "the engine's syntax tree could not be read")
    labels: dict[str, str] = {}
    edges: dict[str, list[str]] = {}
    # Every line, read once: ("node", id, label), ("edge", parent, child) or ("stray", "", "").
    seen: list[tuple[str, str, str]] = []
    root = ""
    for line in lines[2:-1]:
        if node := _NODE.fullmatch(line):
            node_id, label = node.groups()
            root = root or node_id
            labels.setdefault(node_id, label)
            seen.append(("node", node_id, label))
        elif edge := _EDGE.fullmatch(line):
            parent, child = edge.groups()
            edges.setdefault(parent, []).append(child)
            seen.append(("edge", parent, child))
        else:
            seen.append(("stray", "", ""))
    reachable = {root}
    pending = [root]
    while pending:
        for child in edges.get(pending.pop(), ()):
            if child not in reachable:
                reachable.add(child)
                pending.append(child)
    for kind, first, second in seen:
        genuine = kind != "stray" and first in reachable
        if not genuine or (kind == "node" and labels[first] != second):
            raise Refusal(ACCESS_DENIED, "names with line breaks are refused")
    if not root or any(n not in labels for n in reachable):
        raise Refusal(ACCESS_DENIED, "the engine's syntax tree could not be read")

    def build(node_id: str, depth: int) -> Node:
        if depth > 10_000:
            raise Refusal(ACCESS_DENIED, "the statement nests too deeply")
        label = _SUFFIX.sub("", labels[node_id])
        kind, _, detail = label.partition(" ")
        return Node(kind, detail, tuple(build(c, depth + 1) for c in edges.get(node_id, ())))

    return build(root, 0)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Names a read may use, built from the engine's catalog (``storage._reader.Catalog``)."""

    functions: frozenset[str]
    case_insensitive: dict[str, str]  # lower-cased name -> the function it resolves to
    aggregates: frozenset[str]
    combinators: tuple[str, ...]  # longest first
    databases: frozenset[str]  # lower-cased names of every database the engine has
    readable: frozenset[str]  # the store's databases: every table in them may be read

    @classmethod
    def build(
        cls,
        functions: Iterable[tuple[str, bool, str, str, bool]],
        combinators: Iterable[str],
        table_functions: Iterable[str],
        databases: Iterable[str],
        readable: frozenset[str],
    ) -> AllowList:
        """``functions``: (name, is_aggregate, categories, alias_to, case_insensitive) rows."""
        rows = list(functions)
        by_name = {row[0]: row for row in rows}
        clashing = set(table_functions) - SAFE_TABLE_FUNCTIONS

        def safe(name: str, seen: int = 0) -> bool:
            row = by_name.get(name)
            if row is None or name in clashing or seen > 8:
                return name in SAFE_FUNCTIONS
            _, is_aggregate, categories, alias_to, _ = row
            if alias_to:
                return safe(alias_to, seen + 1)
            named = {c.strip() for c in categories.split(",") if c.strip()}
            if name in SAFE_FUNCTIONS or is_aggregate:
                return True
            return bool(named) and named <= SAFE_CATEGORIES

        allowed = frozenset(row[0] for row in rows if safe(row[0])) | SAFE_FUNCTIONS
        insensitive = {row[0].lower(): row[0] for row in rows if row[4]}
        return cls(
            functions=allowed | SAFE_TABLE_FUNCTIONS,
            case_insensitive=insensitive,
            aggregates=frozenset(row[0] for row in rows if row[1] and row[0] in allowed),
            combinators=tuple(sorted(set(combinators), key=len, reverse=True)),
            databases=frozenset(d.lower() for d in databases),
            readable=readable,
        )

    def function_allowed(self, name: str) -> bool:
        if name in self.functions:
            return True
        resolved = self.case_insensitive.get(name.lower())
        if resolved is not None:
            return resolved in self.functions
        return self._aggregate_with_combinators(name)

    def _aggregate_with_combinators(self, name: str) -> bool:
        for _ in range(8):  # sumStateIf, quantilesMergeOrNull, ...
            for suffix in self.combinators:
                if name.endswith(suffix) and len(name) > len(suffix):
                    name = name[: -len(suffix)]
                    break
            else:
                return False
            base = self.case_insensitive.get(name.lower(), name)
            if base in self.aggregates:
                return True
        return False

    def table_allowed(self, database: str, table: str) -> bool:
        if database in self.readable:
            return True
        if database == "system":
            return table in SYSTEM_TABLES
        if database.lower() == "information_schema":
            return table.lower() in INFORMATION_SCHEMA_TABLES
        return False

    def check_name(self, dotted: str, *, is_table: bool) -> None:
        """``db.table``, or an identifier that may be ``db.table[.column]``, must name a table
        that may be read. A table's ``db.`` always counts (a database made after start too);
        an identifier's first part only when it names a database (else it is a column's:
        ``Events.Timestamp``)."""
        parts = dotted.split(".")
        if len(parts) < 2:
            return  # a table in the current database, which is one that may be read
        database = parts[0].lower() in self.databases | {"system", "information_schema"}
        if (is_table or database) and not self.table_allowed(parts[0], parts[1]):
            raise Refusal(ACCESS_DENIED, f"{parts[0]}.{parts[1]} is not readable here")


@dataclass(frozen=True, slots=True)
class Admission:
    writes: bool


def admit(tree: Node, allow: AllowList, *, allow_write: bool = False) -> Admission:
    """Admit ``tree`` (from ``read_graph``) or raise ``Refusal`` saying why."""
    if allow_write and tree.kind in WRITE_STATEMENTS:
        _no_output_literal(tree)
        return Admission(writes=True)
    if tree.kind not in READ_STATEMENTS:
        raise Refusal(
            READONLY,
            f"{tree.kind} statements are refused; only SELECT, WITH, SHOW, DESCRIBE, EXISTS "
            "and EXPLAIN of a read run here",
        )
    for node in tree.walk():
        if node.kind not in READ_NODES:
            raise Refusal(READONLY, f"{node.kind} is not part of a read")
        _no_output_literal(node)
        if node.kind == "Explain":
            if node.detail not in EXPLAIN_KINDS:
                raise Refusal(READONLY, f"{node.detail} is refused")
            if not node.children or node.children[0].kind not in READ_STATEMENTS:
                raise Refusal(READONLY, "EXPLAIN explains reads only")
        elif node.kind == "Function" and not allow.function_allowed(node.name):
            raise Refusal(
                ACCESS_DENIED, f"function {node.name}() is not allowed (it is unknown or it "
                "reaches outside the store: files, network, settings, host or processes)",
            )  # fmt: skip
        elif node.kind in ("Identifier", "TableIdentifier"):
            allow.check_name(node.name, is_table=node.kind == "TableIdentifier")
        elif node.kind.startswith(("ShowCreate", "Exists")):
            words = node.detail.split(" ")
            if len(words) >= 2 and not allow.table_allowed(words[0], words[1]):
                raise Refusal(ACCESS_DENIED, f"{words[0]}.{words[1]} is not readable here")
    return Admission(writes=False)


def _no_output_literal(node: Node) -> None:
    if node.kind in _OUTPUT_HOLDERS and any(c.kind == "Literal" for c in node.children):
        raise Refusal(ACCESS_DENIED, "INTO OUTFILE and FROM INFILE are refused")


_FORMAT_LINE: Final = re.compile(r"FORMAT ([A-Za-z][A-Za-z0-9]*)")


def output_format(canonical: str) -> str | None:
    """The FORMAT clause of the engine's rendering (its last line), if it has one."""
    last = canonical.rsplit("\n", 1)[-1]
    match = _FORMAT_LINE.fullmatch(last)
    return match.group(1) if match else None
