"""One real collector, fed by the demo fleet through the real SDK, for every dashboard test
(``tests.storage.fleet``), and the entry script that runs the dashboard app under AppTest.

chDB opens one data directory per process, so the fleet is package-scoped: it is closed before
tests of other packages open their own stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.dashboards import _views
from tests.storage.fleet import Fleet, seeded_fleet

APP = Path(_views.__file__).resolve().parent / "app.py"
PAGE_DIR = APP.parent / "pages"


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with seeded_fleet(tmp_path_factory.mktemp("dashboards")) as seeded:
        yield seeded


@pytest.fixture(scope="package")
def entry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-line entry script that runs the real ``app.py`` (unchanged, with its own
    ``__file__``) from a directory without a ``pages/`` folder.

    AppTest resets Streamlit's "legacy pages/ directory" flag before every run, so with the
    entry script next to ``pages/`` every run would start in the legacy multipage mode (which
    a real server is in only until the first ``st.navigation``). ``_views.page`` recovers from
    that by rerunning through ``app.py`` (tested below), but the other tests should see the
    server's steady state.
    """
    script = tmp_path_factory.mktemp("entry") / "dashboard.py"
    script.write_text(f"import runpy\n\nrunpy.run_path({str(APP)!r}, run_name='__main__')\n")
    return script
