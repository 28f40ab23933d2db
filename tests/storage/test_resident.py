"""The embedded engine's start-up-only code pages can be handed back without harm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.storage._resident import reclaim_library_pages

_CHILD = """
import json, sys
from agentwatch.storage._store import EmbeddedStore, apply_migrations

def rss_file_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])

store = EmbeddedStore(sys.argv[1])
apply_migrations(store)
before = rss_file_kb()
advised = store.reclaim_startup_pages()
after = rss_file_kb()
store.command(
    "INSERT INTO agentwatch.otel_traces (Timestamp, TraceId, SpanId) VALUES (now64(9), 't', 's')"
)
count = store.query("SELECT count() FROM agentwatch.otel_traces").scalar()
store.close()
print(json.dumps({"before": before, "after": after, "advised": advised, "count": count}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux's")
def test_reclaiming_chdb_code_pages_shrinks_the_resident_set_and_the_engine_still_works(
    tmp_path: Path,
) -> None:
    """After reclaiming, the process holds far fewer of chDB's file pages, and the engine still
    inserts and queries (the pages it needs fault back in)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["advised"] > 100 * 1024 * 1024
    assert result["after"] < result["before"] - 50 * 1024
    assert result["count"] == 1


def test_a_library_that_is_not_loaded_is_left_alone() -> None:
    """Nothing is advised when no mapping matches."""
    assert reclaim_library_pages("/no-such-library-here/") == 0
