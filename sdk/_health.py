"""Semantic health checks: probes that ask the agent a known question and check the answer.

::

    @aw.health_check(name="refund-policy", expect=aw.expect.contains("30 days"), every_s=60)
    def refund_probe():
        return support_agent("How long do I have to return an item?")

    aw.start_health_checks()      # every probe, every every_s seconds, in a daemon thread

Each run is a root span ``health_check {name}`` carrying ``agentwatch.health.*``: the check,
whether it passed, which expectation failed and why, the latency, and (only with content capture
on, redacted) an excerpt of the answer. A probe that raises has failed; it never stops the
scheduler. ``agentwatch health run module:probe`` runs probes once from the command line.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from agentwatch import _semconv as semconv
from agentwatch._config import STATE, Settings
from agentwatch._errors import ConfigurationError
from agentwatch._expectations import Expectation, Verdict
from agentwatch._redact import bounded_redact, default_redactor, exception_summary
from agentwatch._safety import internal_error

logger = logging.getLogger("agentwatch")

P = ParamSpec("P")
R = TypeVar("R")

HEALTH_FAILED_EXPECTATION: Final = semconv.HEALTH_FAILED_EXPECTATION
HEALTH_REASON: Final = semconv.HEALTH_REASON
HEALTH_LATENCY_MS: Final = semconv.HEALTH_LATENCY_MS
HEALTH_ANSWER: Final = semconv.HEALTH_ANSWER
SPAN_NAME_PREFIX: Final = "health_check"
ANSWER_EXCERPT_CHARS: Final = 1000
_REASON_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One run of one probe. ``answer`` stays in the process; spans only get a redacted excerpt."""

    check: str
    passed: bool
    latency_s: float
    started_at: float
    failed_expectation: str | None = None
    reason: str | None = None
    answer: Any = None
    error: Exception | None = None

    def __str__(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.check} ({self.latency_s * 1000:.0f} ms)"
        if self.passed:
            return head
        what = f"{self.failed_expectation}: " if self.failed_expectation else ""
        return f"{head}: {what}{self.reason}"


def _error_type(exc: BaseException) -> str:
    from agentwatch._decorators import error_type

    return error_type(exc)


def _await_in_fresh_loop(awaitable: Awaitable[R]) -> R:
    import asyncio  # only async probes need it: keeps the SDK's import light

    async def wait() -> R:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    # Called from inside a running event loop (an async application running its probes once):
    # that loop cannot be re-entered, so the probe gets its own loop in a helper thread.
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentwatch-health") as pool:
        return pool.submit(ctx.run, asyncio.run, wait()).result()


class Probe(Generic[P, R]):
    """A registered health check. Calling it calls the function; ``run()`` checks it."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        expect: Expectation | None,
        every_s: float,
    ) -> None:
        self.fn = fn
        self.name = name
        self.expect = expect
        self.every_s = every_s
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Probe {self.name!r} every {self.every_s:g}s expect={self.expect}>"

    def _ask(self) -> Any:
        answer: Any = self.fn()  # type: ignore[call-arg]
        if inspect.isawaitable(answer):
            answer = _await_in_fresh_loop(answer)
        return answer

    def run(self) -> HealthResult:
        """Ask, check the answer, record the span. Never raises for the probe's own failures."""
        settings = STATE.settings
        started_at = time.time()
        span = _start_span(settings, self.name)
        token = None
        if span is not None:
            try:
                token = otel_context.attach(trace.set_span_in_context(span, otel_context.Context()))
            except Exception:  # noqa: BLE001 - internal_error logs it
                internal_error("attaching the health check's span")
        answer: Any = None
        error: Exception | None = None
        t0 = time.perf_counter()
        try:
            answer = self._ask()
        except Exception as exc:  # noqa: BLE001 - a probe that raises has failed, nothing more
            error = exc
        finally:
            latency_s = time.perf_counter() - t0
            if token is not None:
                try:
                    otel_context.detach(token)
                except Exception:  # noqa: BLE001 - internal_error logs it
                    internal_error("detaching the health check's span")
        if error is not None:
            result = HealthResult(
                check=self.name,
                passed=False,
                latency_s=latency_s,
                started_at=started_at,
                reason=f"the probe raised {_error_type(error)}: {error}",
                error=error,
            )
        else:
            verdict = (
                self.expect.evaluate(answer, latency_s=latency_s) if self.expect else Verdict()
            )
            result = HealthResult(
                check=self.name,
                passed=verdict.passed,
                latency_s=latency_s,
                started_at=started_at,
                failed_expectation=verdict.failed_expectation,
                reason=verdict.reason,
                answer=answer,
            )
        if span is not None:
            _end_span(span, settings, result)
        return result


def _start_span(settings: Settings | None, name: str) -> Span | None:
    if settings is None or settings.tracer is None:
        return None
    try:
        # Always a root: a health check is its own trace, even when started inside an agent call
        # (whose context the SDK carries into new threads).
        return settings.tracer.start_span(
            f"{SPAN_NAME_PREFIX} {name}",
            context=otel_context.Context(),
            kind=SpanKind.INTERNAL,
            attributes={semconv.HEALTH_CHECK: name},
            record_exception=False,
            set_status_on_exception=False,
        )
    except Exception:  # noqa: BLE001 - internal_error logs it
        internal_error(f"starting the span for health check {name!r}")
        return None


def _end_span(span: Span, settings: Settings | None, result: HealthResult) -> None:
    try:
        redact = settings.redact if settings is not None else default_redactor
        capture = settings is not None and settings.capture_content
        span.set_attribute(semconv.HEALTH_PASSED, result.passed)
        span.set_attribute(HEALTH_LATENCY_MS, round(result.latency_s * 1000, 3))
        if result.failed_expectation is not None:
            span.set_attribute(HEALTH_FAILED_EXPECTATION, result.failed_expectation)
        reason = result.reason
        if result.error is not None:
            # The in-process reason quotes the exception; the span's follows the content policy.
            summary = exception_summary(
                result.error, redact=redact, capture_content=capture, max_chars=_REASON_CHARS
            )
            reason = f"the probe raised {summary}"
        if reason is not None:
            span.set_attribute(HEALTH_REASON, bounded_redact(redact, reason, _REASON_CHARS))
        if result.error is not None:
            from agentwatch._decorators import record_error

            record_error(span, result.error, settings)
        if settings is not None and capture and result.answer is not None:
            from agentwatch._expectations import answer_text

            limit = min(settings.max_content_chars, ANSWER_EXCERPT_CHARS)
            excerpt = bounded_redact(settings.redact, answer_text(result.answer), limit)
            span.set_attribute(HEALTH_ANSWER, excerpt)
    except Exception:  # noqa: BLE001 - internal_error logs it
        internal_error(f"recording health check {result.check!r}")
    finally:
        span.end()


# --- registry ---------------------------------------------------------------------------------
_REGISTRY: dict[str, Probe[Any, Any]] = {}
_REGISTRY_LOCK = threading.Lock()


def registered_health_checks() -> list[Probe[Any, Any]]:
    """Every probe ``@health_check`` registered, in registration order."""
    with _REGISTRY_LOCK:
        return list(_REGISTRY.values())


def _check_callable_without_arguments(fn: Callable[..., Any], name: str) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind()
    except TypeError as exc:
        raise ConfigurationError(
            f"health check {name!r} must be callable without arguments: {exc}"
        ) from None


@overload
def health_check(fn: Callable[P, R], /) -> Probe[P, R]: ...
@overload
def health_check(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    expect: Expectation | None = None,
    every_s: float = 60.0,
) -> Callable[[Callable[P, R]], Probe[P, R]]: ...
def health_check(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    expect: Expectation | None = None,
    every_s: float = 60.0,
) -> Probe[P, R] | Callable[[Callable[P, R]], Probe[P, R]]:
    """Register a probe: a function (sync or async, no arguments) that asks the agent a question
    with a known answer and returns the answer, checked against ``expect``.

    Without ``expect`` a probe passes when it returns without raising. ``every_s`` is how often
    ``start_health_checks`` runs it. Registering a name again replaces the earlier probe.
    """
    if not (every_s > 0 and math.isfinite(every_s)):
        raise ConfigurationError(f"every_s must be a number > 0, not {every_s!r}")
    if expect is not None and not isinstance(expect, Expectation):
        raise ConfigurationError(
            f"expect must be an expectation such as aw.expect.contains('...'), not {expect!r}"
        )

    def decorate(func: Callable[P, R]) -> Probe[P, R]:
        probe_name = name or str(getattr(func, "__name__", "probe"))
        _check_callable_without_arguments(func, probe_name)
        probe = Probe(func, name=probe_name, expect=expect, every_s=float(every_s))
        with _REGISTRY_LOCK:
            _REGISTRY[probe_name] = probe
        scheduler = _SCHEDULER
        if scheduler is not None:
            scheduler.wake.set()  # a running scheduler picks the new probe up now
        return probe

    return decorate(fn) if fn is not None else decorate


def run_health_checks(probes: Iterable[Probe[Any, Any]] | None = None) -> list[HealthResult]:
    """Run each probe once (default: every registered one), in order, and return the results."""
    chosen = registered_health_checks() if probes is None else list(probes)
    return [probe.run() for probe in chosen]


# --- scheduler --------------------------------------------------------------------------------
ResultCallback = Callable[[HealthResult], object]


class _Scheduler:
    """Runs due probes one after another; sleeps on an Event until the next one is due."""

    def __init__(
        self, probes: Sequence[Probe[Any, Any]] | None, on_result: ResultCallback | None
    ) -> None:
        self.probes = probes
        self.on_result = on_result
        self.stop = threading.Event()
        self.wake = threading.Event()  # set by stop and by new registrations
        self.thread = threading.Thread(
            target=self._loop, name="agentwatch-health-checks", daemon=True
        )

    def _current(self) -> Sequence[Probe[Any, Any]]:
        # With no explicit list, probes registered after start are picked up too.
        return self.probes if self.probes is not None else registered_health_checks()

    def _loop(self) -> None:
        due: dict[int, float] = {}
        while not self.stop.is_set():
            probes = self._current()
            now = time.monotonic()
            for probe in probes:
                if self.stop.is_set():
                    return
                next_at = due.setdefault(id(probe), now)
                if next_at > now:
                    continue
                self._run_one(probe)
                # Never catch up in a burst after a slow probe: the next run is a period away.
                due[id(probe)] = max(next_at + probe.every_s, time.monotonic())
            live = {id(p) for p in probes}
            pending = [at for key, at in due.items() if key in live]
            wait = max(min(pending) - time.monotonic(), 0.0) if pending else None
            self.wake.wait(wait)
            self.wake.clear()

    def _run_one(self, probe: Probe[Any, Any]) -> None:
        try:
            result = probe.run()
        except Exception:  # noqa: BLE001 - internal_error logs it
            internal_error(f"running health check {probe.name!r}")
            return
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                logger.exception("the on_result callback for health check %r raised", probe.name)


_SCHEDULER: _Scheduler | None = None
_SCHEDULER_LOCK = threading.Lock()


def start_health_checks(
    probes: Iterable[Probe[Any, Any]] | None = None,
    *,
    on_result: ResultCallback | None = None,
) -> None:
    """Run probes every ``every_s`` seconds in a daemon thread, starting now.

    Default: every registered probe, including ones registered later. ``on_result`` is called
    with each ``HealthResult`` (from the scheduler thread). Calling again restarts the scheduler.
    Probes run one at a time, so a slow probe delays the others.
    """
    global _SCHEDULER
    with _SCHEDULER_LOCK:
        _stop_locked(timeout_s=10.0)
        scheduler = _Scheduler(None if probes is None else list(probes), on_result)
        _SCHEDULER = scheduler
        scheduler.thread.start()


def _stop_locked(timeout_s: float) -> bool:
    global _SCHEDULER
    scheduler, _SCHEDULER = _SCHEDULER, None
    if scheduler is None:
        return True
    scheduler.stop.set()
    scheduler.wake.set()
    if scheduler.thread is threading.current_thread():
        return False
    scheduler.thread.join(timeout_s)
    return not scheduler.thread.is_alive()


def stop_health_checks(timeout_s: float = 10.0) -> bool:
    """Stop the scheduler; True when its thread ended within ``timeout_s`` (a probe may be
    mid-run: it finishes, and no further probe starts)."""
    with _SCHEDULER_LOCK:
        return _stop_locked(timeout_s)


def health_checks_running() -> bool:
    """Whether the background scheduler is running."""
    scheduler = _SCHEDULER
    return scheduler is not None and scheduler.thread.is_alive()
