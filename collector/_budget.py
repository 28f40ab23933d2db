"""The memory that requests in progress may hold, shared by every receiver.

A request reserves what it will take (its body, what parsing it costs, the bound on its decoded
rows) before the work starts, and gives it back once its rows are committed or refused. So the
collector's memory is bounded by what is decoded, not by how many requests arrive or how well
they compress. A request bigger than the per-request limit is refused (413); one that does not
fit beside the others in time is answered 503 with Retry-After.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from agentwatch._errors import AgentwatchError, ConfigurationError

MIB = 1024 * 1024


class MemoryBusy(AgentwatchError):
    """Requests in progress hold the whole budget; try again after ``retry_after_s``."""

    retry_after_s = 1


class MemoryBudget:
    """A counting budget of bytes; ``hold`` waits (up to ``wait_s``) for room."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ConfigurationError(f"the memory budget must be positive, not {limit_bytes}")
        self.limit_bytes = limit_bytes
        self._held = 0
        self._cond = threading.Condition()

    @property
    def held_bytes(self) -> int:
        return self._held

    @contextmanager
    def hold(self, size: int, wait_s: float) -> Iterator[None]:
        # The per-request limit (checked before) is at most the budget, so a request always
        # fits once the others are done; clamping keeps a misconfiguration from deadlocking.
        size = min(size, self.limit_bytes)
        with self._cond:
            if not self._cond.wait_for(lambda: self._held + size <= self.limit_bytes, wait_s):
                raise MemoryBusy(
                    f"collector is busy: requests in progress hold {self._held >> 20} MiB of "
                    f"its {self.limit_bytes >> 20} MiB decode budget"
                )
            self._held += size
        try:
            yield
        finally:
            with self._cond:
                self._held -= size
                self._cond.notify_all()
