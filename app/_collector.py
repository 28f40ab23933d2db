"""The collector process: store, migrations, writer, receivers, query endpoint; clean shutdown."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch._errors import ConfigurationError
from agentwatch.app._signals import stop_on_signals
from agentwatch.collector._budget import MIB
from agentwatch.collector._decode import DecodeLimits
from agentwatch.collector._grpc import GrpcReceiver
from agentwatch.collector._http import HttpLimits, HttpReceiver
from agentwatch.collector._ingest import Ingestor, IngestSettings
from agentwatch.collector._malloc import tune_malloc
from agentwatch.collector._pricing import PriceTable, load_overrides
from agentwatch.collector._stats import Stats
from agentwatch.collector._writer import BatchWriter, WriterSettings
from agentwatch.storage._store import (
    DEFAULT_RETENTION_DAYS,
    EmbeddedStore,
    Store,
    apply_migrations,
    open_store,
)

logger = logging.getLogger("agentwatch.collector")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    data_dir: Path = Path(".agentwatch")
    clickhouse_url: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 4318
    grpc_port: int | None = 4317
    query_port: int | None = 8123
    query_host: str = "127.0.0.1"
    query_password: str | None = None  # None: generated once, kept in data_dir/query-password
    query_allow_remote: bool = False
    ingest_token: str | None = None
    prices_file: Path | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    writer: WriterSettings = field(default_factory=WriterSettings)
    max_body_bytes: int = 16 * 1024 * 1024
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    native_decoder: bool = True
    max_concurrent_requests: int = 16
    max_request_decoded_bytes: int = 64 * MIB
    max_decoded_bytes_in_flight: int = 256 * MIB
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    content: str = "redact"  # keep | redact | drop: see collector/_content.py


PASSWORD_FILE = "query-password"  # noqa: S105 - a file name, not a password


def stored_password(data_dir: Path) -> str:
    """The query endpoint's password: made on first start, then read back (file mode 0600)."""
    path = data_dir / PASSWORD_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text(encoding="utf-8").strip()
        if len(password) < 8:
            raise ConfigurationError(
                f"{path} holds no usable password (8 characters or more); "
                "delete it to get a new one"
            ) from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return password
    password = secrets.token_urlsafe(24)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    return password


class Collector:
    """Everything the ``agentwatch collector`` command runs, startable in-process (tests)."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        tune_malloc()
        overrides = load_overrides(config.prices_file) if config.prices_file else []
        self.store: Store = open_store(config.clickhouse_url, config.data_dir / "data")
        apply_migrations(self.store, config.retention_days)
        self.stats = Stats()
        self.writer = BatchWriter(self.store, self.stats, config.writer)
        self.ingestor = Ingestor(
            self.writer,
            PriceTable(overrides),
            self.stats,
            IngestSettings(
                max_body_bytes=config.max_body_bytes,
                max_decompressed_bytes=config.max_body_bytes * 4,
                ingest_token=config.ingest_token,
                limits=config.limits,
                native_decoder=config.native_decoder,
                max_concurrent_requests=config.max_concurrent_requests,
                max_request_decoded_bytes=config.max_request_decoded_bytes,
                max_decoded_bytes_in_flight=config.max_decoded_bytes_in_flight,
                retention_days=config.retention_days,
                content=config.content,
            ),
        )
        self.http = HttpReceiver(
            self.ingestor, config.host, config.http_port, limits=config.http_limits
        )
        self.grpc: GrpcReceiver | None = None
        if config.grpc_port is not None:
            self.grpc = GrpcReceiver(self.ingestor, config.host, config.grpc_port)
        self.query: Any = None
        if config.query_port is not None and isinstance(self.store, EmbeddedStore):
            from agentwatch.query._endpoint import QueryEndpoint

            self.query = QueryEndpoint(
                self.store,
                host=config.query_host,
                port=config.query_port,
                password=config.query_password or stored_password(config.data_dir),
                allow_remote=config.query_allow_remote,
            )
        self._stopped = threading.Event()

    def start(self) -> None:
        self.writer.start()
        if self.query is not None:  # first, so that a healthy /healthz means all is up
            self.query.start()
        self.http.start()
        if self.grpc is not None:
            self.grpc.start()
        if isinstance(self.store, EmbeddedStore):
            # After the query endpoint's reader sessions have opened and read the catalog.
            reclaimed = self.store.reclaim_code_pages()
            logger.debug("advised the kernel to reclaim %d MB of chDB's code", reclaimed >> 20)

    def urls(self) -> dict[str, str]:
        host = self.config.host
        urls = {"otlp_http": f"http://{host}:{self.http.port}"}
        if self.grpc is not None:
            urls["otlp_grpc"] = f"http://{host}:{self.grpc.port}"
        if self.query is not None:
            urls["clickhouse_http"] = f"http://{self.config.query_host}:{self.query.port}"
        return urls

    def query_client_url(self, database: str = "") -> str | None:
        """The query endpoint's URL with its credential, for the dashboard; None in server mode."""
        return self.query.client_url(database) if self.query is not None else None

    def stop(self) -> None:
        """Stop receiving, write everything already accepted, close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.query is not None:
            self.query.stop()  # first: it kills running reads, which would hold up the rest
        self.http.stop()
        if self.grpc is not None:
            self.grpc.stop()
        self.writer.stop()
        self.store.close()

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM, then shut down gracefully."""
        with stop_on_signals() as done:
            try:
                self.start()
                for name, url in self.urls().items():
                    logger.info("%s listening on %s", name, url)
                print(" ".join(f"{k}={v}" for k, v in self.urls().items()), flush=True)
                done.wait()
            finally:
                logger.info("shutting down: draining queued spans")
                self.stop()
