"""The house rules that a linter does not check: SQL statements live only in storage/.

The layer contract itself (imports only run downhill) is ``lint-imports`` in ``.ci/layers``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.storage._store import EmbeddedStore

ROOT = Path(__file__).resolve().parents[1]
# Every folder of the package but storage/.
NOT_STORAGE = ("sdk", "collector", "alerts", "query", "dashboards", "app")
# A string that opens like a statement (the engine decides whether it is one).
_OPENS_LIKE_SQL = re.compile(
    r"\s*(SELECT|INSERT|CREATE|ALTER|DROP|EXPLAIN|KILL|SYSTEM|OPTIMIZE|TRUNCATE|WITH|SHOW|"
    r"DESCRIBE|DELETE|UPDATE|RENAME|GRANT|REVOKE|SET|USE|ATTACH|DETACH|EXCHANGE)\s+\S+\s+\S",
    re.IGNORECASE,
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _text_of(node: ast.AST) -> str | None:
    """A string or bytes literal's text; an f-string's with each placeholder as ``x`` (a name
    parses wherever a value or an identifier may stand)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        value = node.value
        return value.decode(errors="replace") if isinstance(value, bytes) else value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "x" for part in node.values
        )
    return None


def sql_like_literals(paths: list[Path]) -> Iterator[tuple[str, int, str]]:
    """(file, line, text) of every literal outside docstrings that opens like a statement."""
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        parts_of_fstrings = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if id(node) in docstrings or id(node) in parts_of_fstrings:
                continue
            text = _text_of(node)
            if text is not None and _OPENS_LIKE_SQL.match(text):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                yield str(where), getattr(node, "lineno", 0), text


def statements(
    store: EmbeddedStore, found: Iterator[tuple[str, int, str]]
) -> list[tuple[str, int, str]]:
    """Those the engine parses as the statement they open with."""
    hits = []
    for where, line, text in found:
        canonical = store.query("SELECT formatQueryOrNull({text:String})", {"text": text}).scalar()
        opening = text.split(None, 1)[0].upper()
        if canonical is not None and str(canonical).split(None, 1)[0].upper() == opening:
            hits.append((where, line, text[:60]))
    return hits


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path_factory.mktemp("engine"))
    yield store
    store.close()


def test_no_sql_statement_outside_storage(engine: EmbeddedStore) -> None:
    paths = [path for folder in NOT_STORAGE for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(paths) > 50

    assert statements(engine, sql_like_literals(paths)) == []


def test_the_check_finds_statements_in_every_shape_it_looks_at(
    engine: EmbeddedStore, tmp_path: Path
) -> None:
    """What the check above would flag, so that its empty answer means something."""
    module = tmp_path / "leaky.py"
    module.write_text(
        '"""SELECT x FROM docstrings_are_prose"""\n'
        'PLAIN = "SELECT count() FROM spans WHERE agent = {agent:String}"\n'
        'LOWER = "select name from system.tables"\n'
        'RAW = b"INSERT INTO spans FORMAT Arrow"\n'
        "def build(table: str) -> str:\n"
        '    return f"ALTER TABLE {table} DELETE WHERE 1"\n'
        'LABEL = "EXPLAIN PLAN"\n'
        'PROSE = "Show the dashboard to someone"\n'
    )

    hits = statements(engine, sql_like_literals([module]))

    assert sorted(line for _, line, _ in hits) == [2, 3, 4, 6]
