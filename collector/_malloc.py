"""glibc malloc settings for the collector process, applied before its threads start.

Request bodies and decoded column buffers are a few hundred KB each. glibc serves such blocks
with mmap and gives them back on free, but after the first free it raises its mmap threshold
(up to 32 MB), so later ones come from per-thread arenas that keep freed memory: with 16
request threads that grew the collector's resident set under load. A fixed threshold (which
also turns the raising off) and two arenas keep it flat at the same throughput; measured with
``python -m benchmarks.bench_collector`` (figures in benchmarks/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger("agentwatch.collector")

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    applied = bool(mallopt(_M_ARENA_MAX, ARENA_MAX)) and applied
    if not applied:
        logger.debug("malloc settings not applied (not glibc?)")
    return applied
