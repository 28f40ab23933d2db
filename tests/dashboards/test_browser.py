"""A real browser on a real ``agentwatch up --demo``: every page renders in headless Chromium
and shows the numbers that are in the store.

``agentwatch up`` runs as a subprocess on free ports with a fixed number of demo tickets, so
the store stops changing once the demo says it is done; the expected values are then read
from the store through the collector's query endpoint (clickhouse-connect, as the dashboard
reads it) with the same query functions and the dashboard's own formatting. One value is also
known independently: the number of tasks is the number of tickets the demo sent.

Screenshots of every page go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from agentwatch.alerts._rules import demo_review_rules
from agentwatch.dashboards import _format as fmt
from agentwatch.storage import _cost_queries as cost_queries
from agentwatch.storage import _decision_queries as decision_queries
from agentwatch.storage import _overview_queries as overview_queries
from agentwatch.storage._audit_queries import risky_actions
from agentwatch.storage._review_queries import review_queue
from agentwatch.storage._scope import Filters
from agentwatch.storage._store import ServerStore
from tests.up_process import Up, agentwatch_up, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TICKETS = 60
TIMEOUT_MS = 30_000

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(
        f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver); "
        ".ci/run installs it in CI",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402


@dataclass(frozen=True)
class Expected:
    """What the store holds once the demo is done, read through the query endpoint."""

    tiles: dict[str, str]  # Overview tile label -> value, formatted as the dashboard does
    overview: overview_queries.Overview
    cost: cost_queries.CostSummary
    decisions: decision_queries.ThresholdSummary
    costliest_trace: str  # the most expensive task's trace id


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data_dir = tmp_path_factory.mktemp("browser-up")
    args = ("--demo", "--demo-rate", "50", "--demo-tickets", str(TICKETS))
    with agentwatch_up(data_dir, *args) as running:
        running.wait_until_ready()
        # Flushed after the last ticket; the collector acknowledges only committed spans.
        running.wait_for_line(f"demo: {TICKETS} tickets sent", timeout=60)
        yield running
        assert running.interrupt() == 0, running.output


@pytest.fixture(scope="module")
def expected(up: Up) -> Expected:
    store = ServerStore(up.query_url)
    try:
        # Everything the demo sent is in the last hour, the dashboard's default range, and the
        # hour before it is empty (a fresh store): no trends.
        filters = Filters.last(timedelta(hours=1))
        overview, previous = (
            overview_queries.overview(store, filters),
            overview_queries.overview(store, filters.previous()),
        )
        assert previous.tasks == 0
        tiles = fmt.overview_tiles(overview, previous, fmt.Targets())
        return Expected(
            tiles={tile.label: tile.value for tile in tiles},
            overview=overview,
            cost=cost_queries.cost_summary(store, filters),
            decisions=decision_queries.threshold_summary(
                decision_queries.threshold_explorer(store, filters), 0.0
            ),
            costliest_trace=cost_queries.most_expensive_traces(store, filters, 1).dicts()[0][
                "trace_id"
            ],
        )
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Browser, up: Up) -> Iterator[Page]:
    # Tall enough that each page fits its screenshot (Streamlit scrolls inside its own frame).
    tab = browser.new_page(viewport={"width": 1400, "height": 2600})
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(up.dashboard_url)
    yield tab
    tab.close()


def open_page(page: Page, title: str) -> None:
    """Click the page's link in the sidebar navigation and wait for its title."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    expect(page.locator("h1")).to_have_text(title)


def tile(page: Page, label: str) -> Locator:
    """The value of the metric tile labelled ``label``."""
    label_is = re.compile(f"^{re.escape(label)}$")
    tiles = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label_is)
    )
    return tiles.locator('[data-testid="stMetricValue"]')


def expect_tiles(page: Page, values: dict[str, str]) -> None:
    """Exactly these tiles, showing these values (waiting while the page renders)."""
    expect(page.locator('[data-testid="stMetric"]')).to_have_count(len(values))
    for label, value in values.items():
        expect(tile(page, label)).to_have_text(value)


def charts(page: Page) -> Locator:
    return page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"))


# --- the pages ------------------------------------------------------------------------------------
def test_overview_shows_the_stores_kpis_and_its_charts(page: Page, expected: Expected) -> None:
    open_page(page, "Overview")
    assert expected.tiles["Tasks"] == str(TICKETS)  # one task per ticket the demo sent
    expect_tiles(page, expected.tiles)
    expect(charts(page)).to_have_count(4)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1)  # tool usage
    # Streamlit's Material icons on every page link (emoji need a font servers often lack),
    # and no developer menu: `up` runs the toolbar in viewer mode.
    nav = page.locator('[data-testid="stSidebarNav"]')
    expect(nav.locator('[data-testid="stIconMaterial"]')).to_have_count(7)
    expect(page.get_by_test_id("stAppDeployButton")).to_have_count(0)
    screenshot(page, "overview")


def test_cost_page_shows_the_stores_spend(page: Page, expected: Expected) -> None:
    open_page(page, "Cost")
    cost = expected.cost
    assert cost.tasks == TICKETS
    expect_tiles(
        page,
        {
            "Total spend": fmt.usd(cost.cost_usd),
            "Cost per task": fmt.usd(cost.cost_per_task),
            "Cost per successful task": fmt.usd(cost.cost_per_successful_task),
            "Spend in the top 5% of tasks": fmt.pct(cost.top_share),
            "Unpriced model calls": fmt.count(cost.unpriced_calls),
        },
    )
    expect(charts(page)).to_have_count(2)  # by model, by task type
    screenshot(page, "cost")


def test_decisions_page_shows_the_stores_decisions(page: Page, expected: Expected) -> None:
    open_page(page, "Decisions & confidence")
    decisions = expected.decisions
    assert decisions.decisions > 0
    expect(tile(page, "Decisions")).to_have_text(fmt.count(decisions.decisions))
    expect(tile(page, "With feedback")).to_have_text(fmt.count(decisions.auto_with_feedback))
    expect(tile(page, "Correct per feedback")).to_have_text(fmt.pct(decisions.auto_accuracy))
    expect(charts(page)).to_have_count(3)  # calibration, threshold curve, confidence by type
    expect(page.get_by_text("Auto-approve decisions at confidence ≥")).to_be_visible()
    expect(page.get_by_role("slider")).to_have_value("0.85")
    screenshot(page, "decisions")


def test_traces_page_lists_every_task_and_draws_the_newest(page: Page, expected: Expected) -> None:
    open_page(page, "Traces")
    caption = f"{expected.overview.tasks} tasks, newest first (at most 200)."
    expect(page.get_by_text(caption, exact=True)).to_be_visible()
    expect(charts(page)).to_have_count(1)  # the chosen trace's waterfall
    expect(page.locator("h3", has_text=re.compile(r"^Trace [0-9a-f]{32}$"))).to_have_count(1)
    screenshot(page, "traces")


def test_a_trace_link_opens_that_trace(browser: Browser, up: Up, expected: Expected) -> None:
    """Alerts link ``/traces?trace_id=...``; a fresh tab on that link shows that trace."""
    tab = browser.new_page(viewport={"width": 1400, "height": 2600})
    try:
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(f"{up.dashboard_url}/traces?trace_id={expected.costliest_trace}")
        heading = f"Trace {expected.costliest_trace}"
        expect(tab.locator("h3", has_text=re.compile(f"^{heading}$"))).to_have_count(1)
        expect(charts(tab)).to_have_count(1)
        screenshot(tab, "trace-link")
    finally:
        tab.close()


def test_health_page_shows_the_demos_health_checks(page: Page) -> None:
    """The demo runs its two probes once after its tickets; both pass (no spike so soon)."""
    open_page(page, "Health & alerts")
    for heading in ("Alerts", "Health checks", "Passive health"):
        expect(page.locator("h2", has_text=re.compile(f"^{heading}$"))).to_have_count(1)
    expect(tile(page, "Health checks")).to_have_text("2")
    expect(tile(page, "Failing now")).to_have_text("0")
    screenshot(page, "health")


# --- the human loop -------------------------------------------------------------------------------
def choose(page: Page, label: str, option: str) -> None:
    """Pick the option containing ``option`` in the selectbox labelled ``label``."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).click()
    page.get_by_role("option").filter(has_text=option).first.click()


def feedback_traces(store: ServerStore) -> set[str]:
    rows = store.query(
        "SELECT DISTINCT TraceId FROM {db:Identifier}.otel_traces WHERE Operation = 'feedback'",
        {"db": store.database},
    )
    return {row[0] for row in rows.rows}


def calibration_totals(store: ServerStore) -> tuple[int, int]:
    rows = decision_queries.calibration(store, Filters.last(timedelta(hours=1))).dicts()
    return sum(int(r["with_feedback"]) for r in rows), sum(int(r["correct"]) for r in rows)


def test_the_audit_page_lists_the_demos_risky_calls(page: Page, up: Up) -> None:
    store = ServerStore(up.query_url)
    try:
        calls = risky_actions(store, Filters.last(timedelta(hours=1))).dicts()
    finally:
        store.close()
    assert calls, "the demo's refunds call a write_risky tool"

    open_page(page, "Audit of actions")

    expect(page.get_by_text(f"{len(calls)} calls, newest first (at most 1,000).")).to_be_visible()
    screenshot(page, "audit")
    ours = page.locator('[data-testid="stDownloadButton"]').get_by_role("button")
    with page.expect_download() as download:
        ours.filter(has_text="Download as CSV").click()
    with Path(download.value.path()).open(newline="", encoding="utf-8") as file:
        header, *rows = list(csv.reader(file))
    assert len(rows) == len(calls)
    assert [row[header.index("tool")] for row in rows] == [c["tool"] for c in calls]


def test_correct_on_the_review_page_reaches_calibration_within_seconds(page: Page, up: Up) -> None:
    store = ServerStore(up.query_url)
    try:
        filters = Filters.last(timedelta(hours=1))
        queue = review_queue(store, filters, demo_review_rules()).dicts()
        fed = feedback_traces(store)
        # A decision whose trace has no feedback yet: calibration gains exactly one answer.
        item = next(
            r
            for r in queue
            if r["kind"] == "decision" and not r["reviews"] and r["trace_id"] not in fed
        )
        before = calibration_totals(store)

        open_page(page, "Review")
        pending = sum(1 for r in queue if not r["reviews"])
        expect(tile(page, "Pending")).to_have_text(str(pending))
        expect(tile(page, "Review rules")).to_have_text("1")
        choose(page, "Kind", "decision")
        choose(page, "Item", f"{item['trace_id'][:8]}/{item['span_id'][:4]}")
        expect(page.get_by_text(f"span {item['span_id']}")).to_be_visible()
        name = page.get_by_role("textbox", name="Your name")
        name.fill("Ada Reviewer")
        name.press("Enter")
        screenshot(page, "review")
        page.get_by_role("button", name="Correct", exact=True).click()

        expect(page.get_by_text("Recorded “Correct” by Ada Reviewer")).to_be_visible()
        wait_until(
            lambda: calibration_totals(store) == (before[0] + 1, before[1] + 1),
            timeout=10,
            what="the answer in calibration",
        )
        expect(tile(page, "Pending")).to_have_text(str(pending - 1))
    finally:
        store.close()


def test_the_trace_pages_download_is_what_export_trace_writes(page: Page, up: Up) -> None:
    open_page(page, "Traces")
    heading = page.locator("h3", has_text=re.compile(r"^Trace [0-9a-f]{32}$"))
    trace_id = heading.inner_text().removeprefix("Trace ")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the action log (JSON lines)").click()
    downloaded = Path(download.value.path()).read_text(encoding="utf-8")

    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentwatch",
            "export",
            "trace",
            trace_id,
            "--clickhouse-url",
            up.query_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert downloaded == exported
    assert [json.loads(line)["step"] for line in exported.splitlines()][-1] == "outcome"
