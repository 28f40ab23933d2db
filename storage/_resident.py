"""Give the kernel back the embedded engine's code pages that are no longer in use.

chDB's library is hundreds of MB of code; opening a store runs the static set-up of all of it
(function, format and codec registries), leaving many of its pages resident that are not used
again, and each kind of query touches more. They are clean pages of a read-only file mapping,
so the kernel can drop them and read them back from the page cache when they are needed. What
that saves, idle and under load, is measured in benchmarks/BENCHMARKS.md ("Collector
throughput", memory).
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger("agentwatch.storage")

_MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages now (a hint; contents never change)


def reclaim_library_pages(name_fragment: str) -> int:
    """Advise the kernel to reclaim the resident pages of the read-only mappings of libraries
    whose path contains ``name_fragment``. Returns the bytes advised; 0 where unsupported."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        madvise.restype = ctypes.c_int
        with open("/proc/self/maps", encoding="utf-8") as maps:
            lines = maps.readlines()
    except (OSError, AttributeError) as exc:
        logger.debug("cannot reclaim library pages: %s", exc)
        return 0
    advised = 0
    for line in lines:
        fields = line.split()
        # Writable mappings hold the library's relocated data: never touch those.
        if len(fields) < 6 or name_fragment not in fields[5] or "w" in fields[1]:
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        if madvise(start, end - start, _MADV_PAGEOUT) == 0:
            advised += end - start
    return advised
