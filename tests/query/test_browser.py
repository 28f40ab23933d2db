"""A web page in a real browser cannot use the query endpoint, even knowing its password.

Headless Chromium opens a page served from another origin on loopback (another port: any local
web app, or a page a DNS rebinding points at 127.0.0.1) whose script sends queries to the
endpoint the ways a page can: a simple no-cors POST, a form-style GET, a CORS request. The
endpoint must answer each with a refusal; the test reads the status the browser received.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from agentwatch.query._endpoint import QueryEndpoint
from agentwatch.storage._store import EmbeddedStore, apply_migrations
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow


class _EvilPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>elsewhere</title><p>hello</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryEndpoint]:
    store = EmbeddedStore(Path(tmp_path_factory.mktemp("browser-attack")) / "data")
    apply_migrations(store)
    with QueryEndpoint(store, port=0) as started:
        yield started
    store.close()


@pytest.fixture(scope="module")
def evil_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(evil_origin: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page()
        tab.goto(evil_origin)
        yield tab
        browser.close()


def statuses_of(page: Page, endpoint: QueryEndpoint, script: str) -> list[int]:
    """Run ``script`` in the page; the HTTP statuses of the endpoint's answers it received."""
    seen: list[int] = []
    page.on("response", lambda r: seen.append(r.status) if r.url.startswith(endpoint.url) else None)
    page.evaluate(script)
    page.wait_for_timeout(0)  # let the response events of the awaited fetches be delivered
    return seen


def test_a_foreign_page_cannot_query_even_with_the_password(
    page: Page, endpoint: QueryEndpoint
) -> None:
    target = f"{endpoint.url}/?password={endpoint.password}"
    script = f"""async () => {{
        const sql = "SELECT 1";
        await fetch("{target}", {{method: "POST", mode: "no-cors", body: sql}});
        await fetch("{target}&query=SELECT%201", {{mode: "no-cors"}});
        try {{ await fetch("{target}", {{method: "POST", body: sql}}); }} catch (e) {{}}
    }}"""
    statuses = statuses_of(page, endpoint, script)
    assert statuses  # the browser did reach the endpoint
    assert all(status == 403 for status in statuses), statuses
