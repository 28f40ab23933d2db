"""``agentwatch up``: collector + dashboard (+ a demo fleet) on one machine, stopped by Ctrl-C."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from agentwatch._errors import ConfigurationError
from agentwatch.alerts._evaluator import AlertService
from agentwatch.app._alerts_cli import AlertOptions, start_alert_service
from agentwatch.app._collector import Collector, CollectorConfig
from agentwatch.app._signals import stop_on_signals
from agentwatch.dashboards._review import (
    ENV_DEMO_RULES,
    ENV_INGEST_TOKEN,
    ENV_OTLP_ENDPOINT,
    ENV_RULES_FILE,
)
from agentwatch.query._protocol import is_loopback

if TYPE_CHECKING:
    from agentwatch.app._demo import DemoFleet

logger = logging.getLogger("agentwatch.up")
# A slow ticket's simulated time at latency scale 1 (three steps; the average is ~3 s).
SLOW_TICKET_S: Final = 7.0
MAX_DEMO_WORKERS: Final = 64


@dataclass(frozen=True, slots=True)
class DemoSchedule:
    """How the demo runs: its pace, how long its calls take, and when it stages its spike (a
    minute in, for two minutes: ``demo_rules`` fire on it within a minute of its start), so
    every page has something to show within two minutes."""

    tickets_per_s: float = 6.0
    spike_after_s: float = 60.0
    spike_for_s: float = 120.0
    spike_task_type: str = "refund"
    cost_factor: float = 5.0
    error_factor: float = 10.0
    # Simulated latency of model and tool calls (1.0: seconds per ticket, as a real fleet; the
    # end-to-end tests run it small). See agentwatch.app._demo.MODEL_LATENCY_S.
    latency_scale: float = 1.0
    destructive_rate: float = 0.02  # tickets that ask to close the account (the audit's case)
    probe_every_s: float = 10.0
    # The order-status probe fails from then until the spike ends: early enough for the health
    # alert (evaluated once a minute) to fire before two minutes are up.
    probe_fails_after_s: float = 45.0
    # Stop after this many tickets (flushed, then idle until Ctrl-C); None runs until stopped.
    tickets: int | None = None

    def spiking(self, elapsed_s: float) -> bool:
        return self.spike_after_s <= elapsed_s < self.spike_after_s + self.spike_for_s

    def order_service_down(self, elapsed_s: float) -> bool:
        return self.probe_fails_after_s <= elapsed_s < self.spike_after_s + self.spike_for_s

    def workers(self) -> int:
        """Threads enough to keep the pace while tickets take their simulated time."""
        in_flight = self.tickets_per_s * SLOW_TICKET_S * self.latency_scale
        return max(1, min(MAX_DEMO_WORKERS, math.ceil(in_flight) + 1))


def dashboard_app_path() -> Path | None:
    """The Streamlit entry point, when the dashboards are installed alongside."""
    from importlib.util import find_spec

    spec = find_spec("agentwatch.dashboards")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "app.py"
            if candidate.exists():
                return candidate
    return None


def check_dashboard_host(host: str, password: str | None) -> None:
    """Beyond loopback the dashboard must ask for a password."""
    if not is_loopback(host) and not password:
        raise ConfigurationError(
            f"the dashboard would listen on {host} without a login: set --dashboard-password "
            "(or AGENTWATCH_DASHBOARD_PASSWORD), or keep it on 127.0.0.1"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewWiring:
    """Where the dashboard's Review page sends answers, and which review rules it applies."""

    otlp_endpoint: str
    ingest_token: str | None = None
    rules_file: Path | None = None
    demo: bool = False

    def env(self) -> dict[str, str]:
        env = {ENV_OTLP_ENDPOINT: self.otlp_endpoint}
        if self.ingest_token:
            env[ENV_INGEST_TOKEN] = self.ingest_token
        if self.rules_file is not None:
            env[ENV_RULES_FILE] = str(self.rules_file)
        elif self.demo:
            env[ENV_DEMO_RULES] = "1"
        return env


_REVIEW_ENV: Final = (ENV_OTLP_ENDPOINT, ENV_INGEST_TOKEN, ENV_RULES_FILE, ENV_DEMO_RULES)


def local_url(host: str, port: int) -> str:
    """How a process on this machine reaches a server listening on ``host``."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def start_dashboard(
    port: int,
    clickhouse_url: str,
    host: str,
    password: str | None = None,
    review: ReviewWiring | None = None,
) -> subprocess.Popen[bytes] | None:
    check_dashboard_host(host, password)
    app = dashboard_app_path()
    if app is None:
        logger.warning("the dashboard is not installed; running the collector only")
        return None
    env = dict(os.environ, AGENTWATCH_CLICKHOUSE_URL=clickhouse_url)
    env.pop("AGENTWATCH_DASHBOARD_PASSWORD", None)
    if password:
        env["AGENTWATCH_DASHBOARD_PASSWORD"] = password
    if review is not None:
        for name in _REVIEW_ENV:
            env.pop(name, None)
        env.update(review.env())
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # Viewers' menu only: no Deploy button, rerun or clear-cache (developer options).
        "--client.toolbarMode",
        "viewer",
    ]
    return subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and app


def connect_help(query_url: str, data_dir: Path) -> str:
    """How to read the embedded store from elsewhere, without printing the password itself."""
    secret = data_dir / "query-password"
    return (
        f"Read the store over ClickHouse HTTP at {query_url}, user default, password in {secret}"
        " (or AGENTWATCH_QUERY_PASSWORD):\n"
        f"  clickhouse-connect: clickhouse_connect.get_client(host=..., port=..., "
        f"username='default', password=open('{secret}').read().strip(), database='agentwatch')\n"
        "  Grafana: ClickHouse data source, protocol HTTP, the same server, port, user and "
        "password, no TLS"
    )


class _Pacer:
    """Hands out ticket start times at the schedule's pace to whichever worker is free."""

    def __init__(self, schedule: DemoSchedule, started: float) -> None:
        self.interval_s = 1.0 / schedule.tickets_per_s if schedule.tickets_per_s > 0 else 1.0
        self.limit = schedule.tickets
        self.started = started
        self.claimed = 0
        self._lock = threading.Lock()

    def claim(self) -> float | None:
        """The monotonic time the next ticket starts at; None once ``limit`` are handed out."""
        with self._lock:
            if self.limit is not None and self.claimed >= self.limit:
                return None
            start_at = self.started + self.claimed * self.interval_s
            self.claimed += 1
            return start_at


class DemoRunner:
    """Runs the demo fleet through the real SDK and OTLP path in background threads: a few
    workers handle tickets concurrently (each its own fleet and RNG, derived from ``seed``),
    and the health probes run on their scheduler, as a user's would."""

    def __init__(
        self,
        endpoint: str,
        schedule: DemoSchedule,
        seed: int = 7,
        ingest_token: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ingest_token = ingest_token
        self.schedule = schedule
        self.seed = seed
        self.handled = 0
        self._handled_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentwatch-demo", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _fleet(self, number: int) -> DemoFleet:
        from agentwatch.app._demo import DemoFleet

        return DemoFleet(
            self.seed * 1000 + number,
            latency_scale=self.schedule.latency_scale,
            destructive_rate=self.schedule.destructive_rate,
            stop=self._stop,
        )

    def _run(self) -> None:
        from agentwatch._config import configure, force_flush, shutdown
        from agentwatch._health import run_health_checks, start_health_checks, stop_health_checks
        from agentwatch.app._demo import demo_health_checks

        # Content capture on (redacted, as by default): reasoning, arguments and answers show.
        configure(
            service_name="demo-support-fleet",
            endpoint=self.endpoint,
            environment="demo",
            capture_content=True,
            ingest_token=self.ingest_token,
        )
        schedule = self.schedule
        started = time.monotonic()
        probes = demo_health_checks(
            self._fleet(0),
            order_service_down=lambda: schedule.order_service_down(time.monotonic() - started),
            every_s=schedule.probe_every_s,
        )
        pacer = _Pacer(schedule, started)
        workers = [
            threading.Thread(
                target=self._work,
                args=(self._fleet(number), pacer),
                name=f"agentwatch-demo-{number}",
                daemon=True,
            )
            for number in range(1, schedule.workers() + 1)
        ]
        try:
            if schedule.tickets is None:
                start_health_checks(probes)
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if schedule.tickets is not None and not self._stop.is_set():
                # Once each, after the tickets: the store holds both and then stops changing.
                run_health_checks(probes)
                flushed = force_flush()
                print(
                    f"demo: {self.handled} tickets sent{'' if flushed else ' (flush timed out)'}",
                    flush=True,
                )
                self._stop.wait()
        finally:
            stop_health_checks()
            shutdown()

    def _work(self, fleet: DemoFleet, pacer: _Pacer) -> None:
        schedule = self.schedule
        task = schedule.spike_task_type
        while not self._stop.is_set():
            start_at = pacer.claim()
            if start_at is None:
                return
            if self._stop.wait(max(0.0, start_at - time.monotonic())):  # paces the traffic
                return
            spiking = schedule.spiking(time.monotonic() - pacer.started)
            fleet.cost_boost[task] = schedule.cost_factor if spiking else 1.0
            fleet.error_boost[task] = schedule.error_factor if spiking else 1.0
            fleet.handle_ticket(fleet.pick_profile())
            with self._handled_lock:
                self.handled += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def run_up(
    config: CollectorConfig,
    *,
    dashboard_port: int = 8501,
    dashboard_host: str = "127.0.0.1",
    dashboard_password: str | None = None,
    demo: bool = False,
    schedule: DemoSchedule | None = None,
    alerts: AlertOptions | None = None,
) -> int:
    """Start everything, print the URLs, and run until SIGINT/SIGTERM.

    The alert evaluator runs in this process, on the store the collector owns (embedded chDB
    admits one process), and prints alerts here. With ``--demo`` and no rule file it uses
    ``demo_rules()``: 20-second windows and a 10-minute baseline, so the demo's spike (from
    minute 1 to 3) fires within a minute of its start, two minutes after ``up``."""
    alert_options = alerts or AlertOptions()
    rules = alert_options.rules(demo=demo) if alert_options.enabled else []
    check_dashboard_host(dashboard_host, dashboard_password)
    collector = Collector(config)
    dashboard: subprocess.Popen[bytes] | None = None
    runner: DemoRunner | None = None
    alerting: AlertService | None = None
    try:
        with stop_on_signals() as done:
            try:
                collector.start()
                urls = collector.urls()
                query_url = collector.query_client_url("agentwatch") or config.clickhouse_url or ""
                review = ReviewWiring(
                    otlp_endpoint=local_url(config.host, collector.http.port),
                    ingest_token=config.ingest_token,
                    rules_file=alert_options.rules_file,
                    demo=demo,
                )
                dashboard = start_dashboard(
                    dashboard_port, query_url, dashboard_host, dashboard_password, review
                )
                if dashboard is not None:
                    shown = f"[{dashboard_host}]" if ":" in dashboard_host else dashboard_host
                    urls["dashboard"] = f"http://{shown}:{dashboard_port}"
                if demo:
                    runner = DemoRunner(
                        review.otlp_endpoint,
                        schedule or DemoSchedule(),
                        ingest_token=config.ingest_token,
                    )
                    runner.start()
                if rules:
                    alerting = start_alert_service(
                        collector.store, rules, alert_options, dashboard_url=urls.get("dashboard")
                    )
                print("agentwatch is up:", flush=True)
                for name, url in urls.items():
                    print(f"  {name:16} {url}", flush=True)
                if collector.query is not None:
                    print(connect_help(collector.query.url, config.data_dir), flush=True)
                print("Press Ctrl-C to stop.", flush=True)
                while not done.is_set():
                    if dashboard is not None and dashboard.poll() is not None:
                        logger.error("the dashboard exited with code %s", dashboard.returncode)
                        return 1
                    done.wait(1.0)
                return 0
            finally:
                if runner is not None:
                    runner.stop()
                if alerting is not None:
                    alerting.stop()
                if dashboard is not None and dashboard.poll() is None:
                    dashboard.terminate()
                    try:
                        dashboard.wait(10)
                    except subprocess.TimeoutExpired:
                        dashboard.kill()
                collector.stop()
    finally:
        print("agentwatch stopped.", flush=True)
