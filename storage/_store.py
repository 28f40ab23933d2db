"""Two backends behind one small interface, running the same SQL.

``EmbeddedStore`` runs chDB in this process (it locks its directory, so only one process may
open it); ``ServerStore`` talks to a ClickHouse server with clickhouse-connect. Both take
Arrow tables for inserts and ``{name:Type}`` bound parameters for every value in a query.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import pyarrow as pa

from agentwatch._errors import AgentwatchError, ConfigurationError
from agentwatch.storage._schema import (
    MIGRATIONS_TABLE,
    SPANS_TABLE,
    TRACE_FACTS_TABLE,
    check_identifier,
    check_retention_days,
    migrations,
    migrations_table_ddl,
)

DEFAULT_DATABASE = "agentwatch"
DEFAULT_RETENTION_DAYS = 30
Params = Mapping[str, Any]


class StorageError(AgentwatchError):
    """The store refused or failed a statement."""


@dataclass(frozen=True, slots=True)
class Rows:
    """A query result: column names and row tuples."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Store(Protocol):
    """What the collector and the dashboards need from ClickHouse."""

    database: str

    def command(self, sql: str, params: Params | None = None) -> None: ...
    def insert_arrow(self, table: str, data: pa.Table) -> None: ...
    def query(self, sql: str, params: Params | None = None) -> Rows: ...
    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table: ...
    def close(self) -> None: ...


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for error messages and logs."""
    try:
        parsed = urlparse(url)
        password = parsed.password
    except ValueError:
        return "<unparseable URL>"
    if not password:
        return url
    netloc = parsed.netloc.replace(f":{password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def discard_leftovers(session: Any) -> bool:
    """After a failed query, run throwaway queries until the chDB connection answers exactly.

    chDB keeps what a query wrote before it failed (a result limit, ``throwIf``, a kill) and
    puts it in front of the connection's next result: without this, one caller's rows would
    reach the next query on the connection. One throwaway query takes them; the next answers
    clean. False when the connection would not come clean (the caller should log it)."""
    for _ in range(3):
        try:
            if bytes(session.query("SELECT 1", "TSV").bytes()) == b"1\n":
                return True
        except Exception:  # noqa: BLE001, S112 - a pending kill takes the throwaway query
            continue
    return False


def escape_param(value: Any) -> Any:
    """chDB reads bound string values in ClickHouse's escaped text form (as the HTTP interface
    does), so a raw newline, tab or backslash would be misread: escape them."""
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, list | tuple):
        # An array is read as its literal: quoted, escaped elements.
        return "[" + ", ".join(_array_element(item) for item in value) + "]"
    return value


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _array_element(item: Any) -> str:
    if isinstance(item, str):
        return "'" + _escaped(item).replace("'", "\\'") + "'"
    if isinstance(item, bool) or not isinstance(item, int | float):
        raise TypeError(f"an array parameter holds strings or numbers, not {type(item).__name__}")
    return repr(item)


def _rows_from_arrow(table: pa.Table) -> Rows:
    columns = table.column_names
    data = [col.to_pylist() for col in table.columns]
    return Rows(columns, list(zip(*data, strict=True)) if data else [])


def apply_migrations(store: Store, retention_days: int = DEFAULT_RETENTION_DAYS) -> list[int]:
    """Create the database and apply every migration not yet applied; returns those applied."""
    db = check_identifier(store.database)
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(migrations_table_ddl(db))
    done = {
        int(row[0])
        for row in store.query(f"SELECT version FROM {db}.{MIGRATIONS_TABLE}").rows  # noqa: S608 - identifier validated
    }
    applied: list[int] = []
    for migration in migrations(db, retention_days):
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(statement)
        store.command(
            f"INSERT INTO {db}.{MIGRATIONS_TABLE} (version, description) "  # noqa: S608 - identifier validated
            "VALUES ({version:UInt32}, {description:String})",
            {"version": migration.version, "description": migration.description},
        )
        applied.append(migration.version)
    sync_retention(store, retention_days)
    return applied


# Tables with a retention TTL, and the time expression it counts from.
_TTL_TABLES = {SPANS_TABLE: "toDateTime(Timestamp)", TRACE_FACTS_TABLE: "Hour"}


def sync_retention(store: Store, retention_days: int) -> bool:
    """Make the span table's TTL (and the trace facts' TTL, so both keep the same days)
    ``retention_days`` if it differs; True when one was changed.

    Existing parts are not rewritten (``materialize_ttl_after_modify = 0``): expired day
    partitions are dropped whole as merges reach them, which ``ttl_only_drop_parts`` makes cheap.
    """
    check_retention_days(retention_days)
    db = check_identifier(store.database)
    changed = False
    for table, moment in _TTL_TABLES.items():
        created = store.query(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
            "AND name = {table:String}",
            {"db": db, "table": table},
        ).scalar()
        match = re.search(rf"TTL {re.escape(moment)} \+ toIntervalDay\((\d+)\)", created or "")
        if match is None or int(match.group(1)) == retention_days:
            continue
        store.command(
            f"ALTER TABLE {db}.{table} MODIFY TTL {moment} + "
            f"toIntervalDay({int(retention_days)}) SETTINGS materialize_ttl_after_modify = 0"
        )
        changed = True
    return changed


class EmbeddedStore:
    """ClickHouse in this process (chDB); data under ``path``. Thread-safe: writes share one
    connection under a lock, reads another (read-only) under their own."""

    def __init__(
        self, path: str | Path = ".agentwatch/data", database: str = DEFAULT_DATABASE
    ) -> None:
        from chdb import session as chdb_session

        self.database = check_identifier(database)
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._read_session: Any = None
        # Code pages that were hot once (start-up, a first query) go back to the page cache;
        # those still in use fault back in at once. Every 5 s keeps the unused code out under
        # load at no cost in throughput (measured in benchmarks/BENCHMARKS.md).
        self.reclaim_pages_every_s = 5.0
        self._last_reclaim = time.monotonic()
        try:
            self._session = chdb_session.Session(str(self.path))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise StorageError(
                f"cannot open the embedded store at {self.path}: {exc} "
                "(only one process may open it; is another collector running?)"
            ) from exc

    def _run(self, sql: str, fmt: str, params: Params | None, *, read: bool = False) -> Any:
        bound = {k: escape_param(v) for k, v in params.items()} if params else None
        # Reads run on their own read-only connection, so a long query (an alert pass, a
        # dashboard page) never holds up the writer's inserts, which share the main one.
        with self._read_lock if read else self._lock:
            session = self._reader() if read else self._session
            try:
                return session.query(sql, fmt, params=bound)
            except Exception as exc:
                discard_leftovers(session)
                raise StorageError(str(exc)) from exc

    def _reader(self) -> Any:
        if self._read_session is None:
            self._read_session = self.open_reader()
        return self._read_session

    def command(self, sql: str, params: Params | None = None) -> None:
        self._run(sql, "CSV", params)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        check_identifier(table)
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        # chDB's Python() table function reads the Arrow table straight from this frame.
        arrow_batch = data
        with self._lock:
            try:
                self._session.query(  # type: ignore[no-untyped-call]
                    f"INSERT INTO {self.database}.{table} ({columns}) "  # noqa: S608 - identifiers validated
                    "SELECT * FROM Python(arrow_batch)"
                )
            except Exception as exc:
                discard_leftovers(self._session)
                raise StorageError(str(exc)) from exc
        del arrow_batch

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        result = self._run(sql, "ArrowTable", params, read=True)
        if isinstance(result, pa.Table):
            return result
        raise StorageError(f"unexpected result type from chDB: {type(result).__name__}")

    def query(self, sql: str, params: Params | None = None) -> Rows:
        return _rows_from_arrow(self.query_arrow(sql, params))

    def query_raw(self, sql: str, fmt: str, params: Params | None = None) -> bytes:
        """The query's result serialized in a ClickHouse output format (for the HTTP endpoint)."""
        result = self._run(sql, fmt, params, read=True)
        data = result.bytes()
        return bytes(data)

    def open_reader(self) -> Any:
        """Another chDB connection to this store whose session has ``readonly=1``.

        chDB serves any number of connections to the directory this process has open, each with
        its own session settings; on this one the engine refuses writes, DDL, setting changes
        and the table functions that reach outside (file, url, remote, Python, ...). The
        collector's query endpoint runs other processes' SQL on it. Close it before ``close()``:
        the engine stays open while any connection is.
        """
        from chdb import session as chdb_session

        return chdb_session.Session(f"{self.path}?readonly=1")  # type: ignore[no-untyped-call]

    def reclaim_code_pages(self) -> int:
        """Let the kernel drop the engine's code pages not in use (``_resident``): at start-up
        most of what opening the store touched, later what a query touched once."""
        from agentwatch.storage._resident import reclaim_library_pages

        return reclaim_library_pages("/chdb/")

    def release_memory(self) -> None:
        """Hand memory the engine has freed back to the OS (its allocator keeps it otherwise),
        and, every ``reclaim_pages_every_s``, the code pages it has not touched lately."""
        self.command("SYSTEM JEMALLOC PURGE")
        now = time.monotonic()
        if now - self._last_reclaim >= self.reclaim_pages_every_s:
            self._last_reclaim = now
            self.reclaim_code_pages()

    def close(self) -> None:
        with self._read_lock:
            if self._read_session is not None:
                self._read_session.close()  # the engine stays open while any connection is
                self._read_session = None
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


class ServerStore:
    """A ClickHouse server (or cluster) over HTTP with clickhouse-connect.

    ``url`` is ``http(s)://user:password@host:8123/database``.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0) -> None:
        import clickhouse_connect

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(
                "--clickhouse-url must look like http://user:pass@host:8123/db, "
                f"not {redact_url(url)!r}"
            )
        try:
            self.database = check_identifier(parsed.path.strip("/") or DEFAULT_DATABASE)
            port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
        except ValueError as exc:
            raise ConfigurationError(f"--clickhouse-url: {exc}") from exc
        try:
            self._client = clickhouse_connect.get_client(
                host=parsed.hostname,
                port=port,
                username=unquote(parsed.username or "default"),
                password=unquote(parsed.password or ""),
                secure=parsed.scheme == "https",
                connect_timeout=connect_timeout_s,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise StorageError(
                f"cannot connect to ClickHouse at {parsed.hostname}:{port}: {exc}"
            ) from exc

    def command(self, sql: str, params: Params | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StorageError(str(exc)) from exc

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        check_identifier(table)
        try:
            self._client.insert_arrow(table, data, database=self.database)
        except Exception as exc:
            raise StorageError(str(exc)) from exc

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        try:
            result = self._client.query_arrow(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StorageError(str(exc)) from exc
        if not isinstance(result, pa.Table):
            raise StorageError(f"unexpected result type: {type(result).__name__}")
        return result

    def query(self, sql: str, params: Params | None = None) -> Rows:
        try:
            result = self._client.query(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StorageError(str(exc)) from exc
        return Rows(list(result.column_names), [tuple(r) for r in result.result_rows])

    def close(self) -> None:
        self._client.close()


def open_store(
    clickhouse_url: str | None, data_dir: str | Path, database: str = DEFAULT_DATABASE
) -> Store:
    """The server store when a URL is given, else the embedded store under ``data_dir``."""
    if clickhouse_url:
        return ServerStore(clickhouse_url)
    return EmbeddedStore(Path(data_dir), database)
