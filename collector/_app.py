"""The collector process: store, migrations, writer, receivers, query endpoint; clean shutdown."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from agentwatch.collector._decode import DecodeLimits
from agentwatch.collector._grpc import GrpcReceiver
from agentwatch.collector._http import HttpReceiver
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
    ingest_token: str | None = None
    prices_file: Path | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    writer: WriterSettings = field(default_factory=WriterSettings)
    max_body_bytes: int = 16 * 1024 * 1024
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    native_decoder: bool = True
    max_concurrent_requests: int = 16


class Collector:
    """Everything the ``agentwatch collector`` command runs, startable in-process (tests)."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        tune_malloc()
        overrides = load_overrides(config.prices_file) if config.prices_file else []
        self.store: Store = open_store(config.clickhouse_url, config.data_dir / "data")
        apply_migrations(self.store, config.retention_days)
        if isinstance(self.store, EmbeddedStore):
            reclaimed = self.store.reclaim_code_pages()
            logger.debug("advised the kernel to reclaim %d MB of chDB's code", reclaimed >> 20)
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
            ),
        )
        self.http = HttpReceiver(self.ingestor, config.host, config.http_port)
        self.grpc: GrpcReceiver | None = None
        if config.grpc_port is not None:
            self.grpc = GrpcReceiver(self.ingestor, config.host, config.grpc_port)
        self.query: Any = None
        if config.query_port is not None and isinstance(self.store, EmbeddedStore):
            from agentwatch.collector._query_endpoint import QueryEndpoint

            self.query = QueryEndpoint(self.store, host=config.query_host, port=config.query_port)
        self._stopped = threading.Event()

    def start(self) -> None:
        self.writer.start()
        self.http.start()
        if self.grpc is not None:
            self.grpc.start()
        if self.query is not None:
            self.query.start()

    def urls(self) -> dict[str, str]:
        host = self.config.host
        urls = {"otlp_http": f"http://{host}:{self.http.port}"}
        if self.grpc is not None:
            urls["otlp_grpc"] = f"http://{host}:{self.grpc.port}"
        if self.query is not None:
            urls["clickhouse_http"] = f"http://{self.config.query_host}:{self.query.port}"
        return urls

    def stop(self) -> None:
        """Stop receiving, write everything already accepted, close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.http.stop()
        if self.grpc is not None:
            self.grpc.stop()
        self.writer.stop()
        if self.query is not None:
            self.query.stop()
        self.store.close()

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM, then shut down gracefully."""
        done = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            done.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            for name, url in self.urls().items():
                logger.info("%s listening on %s", name, url)
            print(" ".join(f"{k}={v}" for k, v in self.urls().items()), flush=True)
            done.wait()
        finally:
            logger.info("shutting down: draining queued spans")
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
