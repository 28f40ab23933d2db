"""Confined, bounded chDB connections for SQL that other processes send (the query endpoint).

Every statement the read path runs for itself lives here: the engine's own parse of a client's
statement (``formatQuery`` with the text as a bound value, then ``EXPLAIN AST graph = 1`` of the
engine's rendering), the catalog the admission policy checks names against, the session's
settings and time zone, and the ``KILL QUERY`` that cancels a reader's query. Deciding what is
admitted is not done here (``query/_policy.py`` is pure); running it is.

Each reader connection has ``readonly = 1`` (the engine refuses writes, DDL, setting changes
and the table functions that reach outside: file, url, remote, Python, ...), per-query limits
on time, memory, rows read and result size, and a ``log_comment`` naming it, so that its query
can be found and killed from the store's own connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentwatch.storage._schema import check_identifier
from agentwatch.storage._store import StorageError, discard_leftovers, escape_param

if TYPE_CHECKING:
    from agentwatch.storage._store import EmbeddedStore

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """What one query on a reader connection may cost before the engine stops it."""

    max_execution_time_s: int = 30
    max_memory_usage_bytes: int = 512 * MIB
    max_rows_to_read: int = 2_000_000_000
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 * MIB
    max_threads: int = 2

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                from agentwatch._errors import ConfigurationError

                raise ConfigurationError(f"reader limit {name} must be a positive integer")

    def settings(self) -> dict[str, str]:
        """Session settings for the connection string (the engine enforces them per query)."""
        return {
            "readonly": "1",
            "max_execution_time": str(self.max_execution_time_s),
            "timeout_overflow_mode": "throw",
            "max_memory_usage": str(self.max_memory_usage_bytes),
            "max_rows_to_read": str(self.max_rows_to_read),
            "read_overflow_mode": "throw",
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "result_overflow_mode": "throw",
            "max_threads": str(self.max_threads),
        }


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """A client's statement as the engine read it."""

    canonical: str  # the engine's own rendering of the one statement it parsed
    graph: str  # EXPLAIN AST graph = 1 of it: the syntax tree, as a DOT graph


@dataclass(frozen=True, slots=True)
class Catalog:
    """What exists in the engine, for the admission policy's allow-lists."""

    # name, is_aggregate, categories, alias_to, case_insensitive
    functions: tuple[tuple[str, bool, str, str, bool], ...]
    combinators: tuple[str, ...]
    table_functions: tuple[str, ...]
    databases: tuple[str, ...]


_KILLED_BEFORE_START = "is killed in pending state"


class ReaderSession:
    """One confined chDB connection to the store, used by one request at a time."""

    def __init__(self, store: EmbeddedStore, name: str, limits: ReaderLimits) -> None:
        from chdb import session as chdb_session

        self.store = store
        self.name = check_identifier(name)
        settings = {**limits.settings(), "log_comment": self.name}
        options = "&".join(f"{key}={value}" for key, value in settings.items())
        self._session: Any = chdb_session.Session(f"{store.path}?{options}")  # type: ignore[no-untyped-call]
        self._database = ""
        self.lock = threading.Lock()
        self._cancels = 0  # cancels asked for so far (a retry must not undo one)

    def _query(self, sql: str, fmt: str, params: Mapping[str, str] | None = None) -> Any:
        """``params`` as the HTTP interface carries them: ClickHouse's escaped text form."""
        bound = dict(params) if params else None
        cancels_before = self._cancels
        try:
            return self._session.query(sql, fmt, params=bound)
        except Exception as exc:
            if _KILLED_BEFORE_START not in str(exc) or self._cancels != cancels_before:
                raise StorageError(str(exc)) from exc
        # A cancel meant for this connection's previous query (it ended as the kill arrived)
        # can land on the next one before it starts; that query did nothing: run it again.
        # One asked for while this query ran was meant for it: that one stands.
        discard_leftovers(self._session)
        try:
            return self._session.query(sql, fmt, params=bound)
        except Exception as exc:
            raise StorageError(str(exc)) from exc

    def _text(self, sql: str, params: Mapping[str, str] | None = None) -> str:
        return bytes(self._query(sql, "TSVRaw", params).bytes()).decode()

    def parse(self, sql: str, params: Mapping[str, str] | None) -> ParsedStatement:
        """The engine's parse of ``sql``: one statement or a syntax error (code 62).

        The text reaches the engine only as a bound value, so nothing in it can run here; the
        tree is taken of the engine's rendering, with the client's parameters bound, so that
        ``{name:Identifier}`` placeholders show the names they stand for.
        """
        canonical = self._text(
            "SELECT formatQuery({statement:String})", {"statement": escape_param(sql)}
        )
        canonical = canonical.removesuffix("\n")
        graph = self._text(f"EXPLAIN AST graph = 1 {canonical}", params)
        return ParsedStatement(canonical, graph)

    def use(self, database: str) -> None:
        """Make ``database`` (a validated name, or "" for the default) the current one."""
        target = check_identifier(database) if database else "default"
        if target != self._database:
            self._query(f"USE {target}", "TSV")  # an identifier: USE takes no bound parameter
            self._database = target

    def run(self, sql: str, fmt: str, params: Mapping[str, str] | None) -> Any:
        """Run an admitted statement; the chDB result (bytes, rows and bytes read, elapsed)."""
        return self._query(sql, fmt, params)

    def settings(self) -> dict[str, str]:
        table = self._query("SELECT name, value FROM system.settings", "ArrowTable")
        return dict(
            zip(table.column("name").to_pylist(), table.column("value").to_pylist(), strict=True)
        )

    def timezone(self) -> str:
        return self._text("SELECT timezone()").strip() or "UTC"

    def catalog(self) -> Catalog:
        functions = self._query(
            "SELECT name, is_aggregate, categories, alias_to, case_insensitive "
            "FROM system.functions",
            "ArrowTable",
        )
        return Catalog(
            functions=tuple(
                (str(n), bool(a), str(c), str(t), bool(i))
                for n, a, c, t, i in zip(
                    *(col.to_pylist() for col in functions.columns), strict=True
                )
            ),
            combinators=self._names("SELECT name FROM system.aggregate_function_combinators"),
            table_functions=self._names("SELECT name FROM system.table_functions"),
            databases=self._names("SELECT name FROM system.databases"),
        )

    def _names(self, sql: str) -> tuple[str, ...]:
        return tuple(str(n) for n in self._query(sql, "ArrowTable").column(0).to_pylist())

    def cancel(self, *, wait_s: float = 0.0) -> None:
        """Kill this connection's running query, if any (from the store's own connection).

        With ``wait_s``, return once the query has left ``system.processes`` (or that long has
        passed): a kill still on its way when the query finished by itself would otherwise
        land on this connection's next query. The engine's ``KILL ... SYNC`` does not wait for
        that here, so the wait is ours."""
        params = {"reader": self.name}
        self._cancels += 1
        self.store.command(
            "KILL QUERY WHERE Settings['log_comment'] = {reader:String} ASYNC", params
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            left = self.store.query(
                "SELECT count() FROM system.processes "
                "WHERE Settings['log_comment'] = {reader:String}",
                params,
            ).scalar()
            if not left:
                return
            time.sleep(0.005)  # the engine unwinds the query; check again shortly

    def discard_leftovers(self) -> bool:
        """Clear what a failed query left on this connection (see ``discard_leftovers``)."""
        return discard_leftovers(self._session)

    def close(self) -> None:
        with self.lock:
            self._session.close()
