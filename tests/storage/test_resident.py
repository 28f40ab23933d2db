"""Code pages of a library can be handed back to the kernel without harm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.collector import _otlp_native
from agentwatch.storage._resident import reclaim_library_pages

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux's"
)

# Resident KB of a library's file pages in its read-only mappings, before and after reclaiming
# them. A page mapped by another process too is not reclaimed, so the library is a private copy.
_PRIVATE_COPY = """
import ctypes, json, sys
from agentwatch.storage._resident import reclaim_library_pages

def resident_kb(name):
    total, mapping = 0, None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            ours = len(fields) >= 6 and name in fields[5] and "w" not in fields[1]
            mapping = fields if ours else None
        elif mapping is not None and fields[0] == "Rss:":
            total += int(fields[1])
        elif mapping is not None and fields[0] == "Anonymous:":
            total -= int(fields[1])  # relocated data: not the file's pages
    return total

ctypes.CDLL(sys.argv[1])
before = resident_kb(sys.argv[1])
advised = reclaim_library_pages(sys.argv[1])
print(json.dumps({"before": before, "after": resident_kb(sys.argv[1]), "advised": advised}))
"""

_ENGINE = """
import json, sys
from agentwatch.storage._store import EmbeddedStore, apply_migrations

store = EmbeddedStore(sys.argv[1])
apply_migrations(store)
advised = store.reclaim_code_pages()
store.command(
    "INSERT INTO agentwatch.otel_traces (Timestamp, TraceId, SpanId) VALUES (now64(9), 't', 's')"
)
count = store.query("SELECT count() FROM agentwatch.otel_traces").scalar()
store.close()
print(json.dumps({"advised": advised, "count": count}))
"""


def run_child(code: str, *args: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_librarys_read_only_pages_leave_the_resident_set(tmp_path: Path) -> None:
    """After reclaiming, none of a (privately mapped) library's read-only pages stay resident."""
    copy = tmp_path / "private_copy.so"
    shutil.copy(_otlp_native.__file__, copy)
    with copy.open("rb+") as written:
        os.fsync(written.fileno())  # clean pages: dirty ones cannot be dropped before writeback
    result = run_child(_PRIVATE_COPY, str(copy))
    assert result["before"] > 0
    assert result["advised"] > 0
    assert result["after"] == 0


def test_the_engine_still_works_after_its_code_pages_are_reclaimed(tmp_path: Path) -> None:
    """chDB's read-only mappings (hundreds of MB) are advised, and the engine then still
    inserts and queries: the pages it needs fault back in."""
    result = run_child(_ENGINE, str(tmp_path / "data"))
    assert result["advised"] > 100 * 1024 * 1024
    assert result["count"] == 1


def test_a_library_that_is_not_loaded_is_left_alone() -> None:
    """Nothing is advised when no mapping matches."""
    assert reclaim_library_pages("/no-such-library-here/") == 0
