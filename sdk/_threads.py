"""Carry the OpenTelemetry context into threads and thread pools started inside a traced call.

contextvars do not cross into new threads, so without this a tool that fans out to a thread pool
would start new traces. Only the OTel context is carried, never the user's other context vars.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

P = ParamSpec("P")
R = TypeVar("R")

_installed = False
_lock = threading.Lock()
_CTX_ATTR = "_agentwatch_otel_context"


def _with_context(ctx: otel_context.Context, fn: Callable[P, R]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def install_thread_propagation() -> None:
    """Patch ``Thread`` and ``ThreadPoolExecutor`` once per process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        original_start = threading.Thread.start
        # _bootstrap_inner runs in the new thread for every Thread, subclasses included.
        original_bootstrap: Callable[[threading.Thread], None] = getattr(  # noqa: B009
            threading.Thread, "_bootstrap_inner"
        )
        original_submit = ThreadPoolExecutor.submit

        def start(self: threading.Thread) -> None:
            setattr(self, _CTX_ATTR, otel_context.get_current())
            original_start(self)

        def bootstrap_inner(self: threading.Thread) -> None:
            ctx: otel_context.Context | None = getattr(self, _CTX_ATTR, None)
            if ctx is None:
                original_bootstrap(self)
                return
            token = otel_context.attach(ctx)
            try:
                original_bootstrap(self)
            finally:
                otel_context.detach(token)

        def submit(
            self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
        ) -> Future[Any]:
            return original_submit(
                self, _with_context(otel_context.get_current(), fn), *args, **kwargs
            )

        threading.Thread.start = start  # type: ignore[method-assign]
        setattr(threading.Thread, "_bootstrap_inner", bootstrap_inner)  # noqa: B010
        setattr(ThreadPoolExecutor, "submit", submit)  # noqa: B010
        _installed = True
