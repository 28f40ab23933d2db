"""The collector's malloc settings apply on glibc and never fail elsewhere."""

from __future__ import annotations

import platform
import sys

import pytest

from agentwatch.collector._malloc import tune_malloc


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt settings are glibc's",
)
def test_glibc_accepts_the_mmap_threshold_and_arena_settings() -> None:
    """On glibc both mallopt calls succeed (a rejected one would report False)."""
    assert tune_malloc() is True
