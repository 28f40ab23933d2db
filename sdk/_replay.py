"""Replay an exported trace as a test: ``@aw.tool`` calls (and, on request, ``@aw.llm`` calls)
are answered from the action log ``agentwatch export trace`` wrote, instead of running.

The active replay lives in the OpenTelemetry context, as the agent run does (``_run``), so it
follows the call into asyncio tasks and, through the SDK's thread propagation, into threads
and thread pools; when none is active the decorators pay one context read for it.

Matching, per tool: a call is answered by the first unused recorded call of that tool whose
recorded arguments equal the call's (compared as ``@aw.tool`` records them: JSON, redacted), so
repeated identical calls come back in recorded order while calls the agent makes concurrently
(a thread pool, ``asyncio.gather``) may arrive in any order. ``ordered=True`` requires the
recorded order exactly. Model calls are answered strictly in recorded order.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as otel_context

from agentwatch._errors import ReplayedToolError, ReplayError, ReplayMismatch
from agentwatch._redact import Redactor, bounded_redact, default_redactor
from agentwatch._threads import install_thread_propagation

REPLAY_KEY: Final = otel_context.create_key("agentwatch-replay")
ModelAnswer = Callable[[Mapping[str, Any]], Any]

# What ``bounded_redact`` appends to content cut at ``max_content_chars``.
_CUT = re.compile(r"\.\.\.\[truncated \d+ chars\]\Z")
# Messages quote arguments: short enough to read, never more than the log itself holds.
_SHOWN_CHARS = 300
# Builtin errors re-raised as themselves would end generators or loops, not fail a call.
_NOT_REPLAYED_AS_BUILTIN: Final = frozenset({"StopIteration", "StopAsyncIteration"})


def active_replay(ctx: otel_context.Context | None = None) -> Replay | None:
    """The innermost replay active in ``ctx`` (default: the current context)."""
    value = otel_context.get_value(REPLAY_KEY, ctx)
    return value if isinstance(value, Replay) else None


@dataclass(slots=True)
class _Recorded:
    """One recorded tool or model call, and whether the replay has answered it yet."""

    seq: int
    name: str  # the tool's name, or the model's
    number: int  # 1 for the first recorded call of this tool (of any model, for model calls)
    step: Mapping[str, Any]
    used: bool = False


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."


def _read_lines(source: str | os.PathLike[str] | Iterable[str | Mapping[str, Any]]) -> list[Any]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ReplayError(f"cannot read the trace log {str(path)!r}: {exc}") from exc
    if isinstance(source, bytes | Mapping):
        raise ReplayError("replay() takes a path, or the log's lines (strings or dicts)")
    return list(source)


def _parse(lines: list[Any]) -> list[dict[str, Any]]:
    """The log's steps in ``seq`` order; a ``ReplayError`` naming the line that is wrong."""
    steps: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, str):
            if not line.strip():
                continue
            try:
                step = json.loads(line)
            except ValueError as exc:
                raise ReplayError(f"trace log line {number} is not JSON: {exc}") from exc
        else:
            step = line
        if not isinstance(step, Mapping):
            raise ReplayError(f"trace log line {number} is not a JSON object")
        if not isinstance(step.get("step"), str) or not isinstance(step.get("seq"), int):
            raise ReplayError(
                f"trace log line {number} has no 'step' and 'seq': is this a file that "
                "`agentwatch export trace` wrote?"
            )
        if step["step"] == "tool_call" and not isinstance(step.get("tool"), str):
            raise ReplayError(f"trace log line {number} is a tool_call without a 'tool' name")
        steps.append(dict(step))
    if not steps:
        raise ReplayError("the trace log holds no steps")
    traces = sorted({str(step.get("trace_id")) for step in steps})
    if len(traces) > 1:
        raise ReplayError(
            f"the trace log holds {len(traces)} traces ({', '.join(traces)}): replay one "
            "trace's lines, as `agentwatch export trace TRACE_ID` writes them"
        )
    return sorted(steps, key=lambda step: int(step["seq"]))


def _replayed_error_class(error_type: str) -> type[ReplayedToolError]:
    """``ReplayedToolError``, also a subclass of the recorded type when that is a builtin."""
    builtin = getattr(builtins, error_type, None)
    if (
        error_type in _NOT_REPLAYED_AS_BUILTIN
        or not isinstance(builtin, type)
        or not issubclass(builtin, Exception)
    ):
        return ReplayedToolError
    cached = _ERROR_CLASSES.get(error_type)
    if cached is None:
        try:
            cached = type(f"Replayed{error_type}", (ReplayedToolError, builtin), {})
        except TypeError:  # a builtin whose layout cannot be combined with ours
            cached = ReplayedToolError
        _ERROR_CLASSES[error_type] = cached
    return cached


_ERROR_CLASSES: dict[str, type[ReplayedToolError]] = {}


def _recorded_error(recorded: _Recorded, what: str) -> ReplayedToolError:
    error = recorded.step["error"]
    error_type = str(error.get("type") or "Exception")
    message = str(error.get("message") or error_type)
    cls = _replayed_error_class(error_type)
    try:
        return cls(message, error_type=error_type, name=recorded.name, seq=recorded.seq)
    except TypeError:  # e.g. UnicodeDecodeError, whose constructor needs five arguments
        return ReplayedToolError(
            message, error_type=error_type, name=recorded.name, seq=recorded.seq
        )


class Replay:
    """A trace's recorded calls, answering the agent's calls while the replay is active.

    ``with aw.replay("incident.jsonl") as replay: run_agent()``: while active, each
    ``@aw.tool`` call returns the recorded result (or raises the recorded error as a
    ``ReplayedToolError``) instead of running; a call the log does not hold raises
    ``ReplayMismatch``. Leaving the block without an exception runs ``assert_complete()``.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Iterable[str | Mapping[str, Any]],
        *,
        models: bool | ModelAnswer = False,
        ordered: bool = False,
        redact: Redactor | None = None,
    ) -> None:
        steps = _parse(_read_lines(source))
        self.trace_id: str | None = steps[0].get("trace_id")
        self._models = models
        self._ordered = ordered
        self._redact = redact
        self._lock = threading.Lock()
        self._tools: dict[str, list[_Recorded]] = {}
        self._model_calls: list[_Recorded] = []
        self._calls_made: dict[str, int] = {}
        self._model_calls_made = 0
        self._failures: list[ReplayError] = []
        self._token: Token[otel_context.Context] | None = None
        for step in steps:
            if step["step"] == "tool_call":
                calls = self._tools.setdefault(step["tool"], [])
                calls.append(_Recorded(step["seq"], step["tool"], len(calls) + 1, step))
            elif step["step"] == "model_call":
                number = len(self._model_calls) + 1
                name = str(step.get("model") or "unknown model")
                self._model_calls.append(_Recorded(step["seq"], name, number, step))

    # -- activation ---------------------------------------------------------------------------
    def start(self) -> Replay:
        """Make this replay answer calls in the current context (``with`` does it for you)."""
        if self._token is not None:
            raise ReplayError("this replay is already active")
        # Thread pools inside the agent see the replay as they see the span (configure() does
        # the same, unless told propagate_to_threads=False).
        install_thread_propagation()
        self._token = otel_context.attach(
            otel_context.set_value(REPLAY_KEY, self, otel_context.get_current())
        )
        return self

    def stop(self) -> None:
        """Stop answering calls (checks nothing: see ``assert_complete``)."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)

    def __enter__(self) -> Replay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None:
            self.assert_complete()

    # -- checks -------------------------------------------------------------------------------
    @property
    def failures(self) -> list[ReplayError]:
        """Every mismatch the replay raised into the agent, in order (caught there or not)."""
        with self._lock:
            return list(self._failures)

    def unused(self) -> list[str]:
        """The recorded calls not replayed yet, as ``tool 'name' call N (seq S)``."""
        with self._lock:
            pending = [r for calls in self._tools.values() for r in calls if not r.used]
            labels = [(r.seq, f"tool {r.name!r} call {r.number} (seq {r.seq})") for r in pending]
            if self._models:
                labels += [
                    (r.seq, f"model call {r.number}, {r.name} (seq {r.seq})")
                    for r in self._model_calls
                    if not r.used
                ]
        return [label for _, label in sorted(labels)]

    def assert_complete(self) -> None:
        """Fail (``ReplayMismatch``) when the run diverged or left recorded calls unmade.

        A mismatch the agent caught and swallowed is raised again here, so an agent's
        ``except Exception`` cannot turn a diverged run into a passing test.
        """
        failures = self.failures
        if failures:
            first = failures[0]
            raise ReplayMismatch(
                f"the replay raised {len(failures)} error(s) into the run (raised again here in "
                f"case the agent caught them); the first: {first}"
            ) from first
        unused = self.unused()
        if unused:
            raise ReplayMismatch(
                f"replay incomplete: {len(unused)} recorded call(s) of trace {self.trace_id} "
                f"were never made: {'; '.join(unused)}"
            )

    # -- answering calls (the decorators call these) -----------------------------------------
    def answers_models(self) -> bool:
        return self._models is not False

    def _fail(self, error: ReplayError) -> ReplayError:
        """Keep ``error`` for ``assert_complete`` (call with the lock held), and return it."""
        self._failures.append(error)
        return error

    def _record_failure(self, error: ReplayError) -> ReplayError:
        with self._lock:
            return self._fail(error)

    def _as_recorded(self, value: Any, recorded: Any) -> Any:
        """``value`` as ``@aw.tool`` records it (JSON, redacted; cut where ``recorded`` was)."""
        text = json.dumps(value, default=str, ensure_ascii=False)
        redact = self._redact
        if redact is None:
            from agentwatch._config import STATE

            settings = STATE.settings
            redact = settings.redact if settings is not None else default_redactor
        if isinstance(recorded, str) and (cut := _CUT.search(recorded)) is not None:
            return bounded_redact(redact, text, cut.start())
        text = redact(text)  # uncut when recorded: it was redacted whole
        try:
            return json.loads(text)
        except ValueError:
            return text

    def tool_call(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """The recorded answer to this call of tool ``name``; raises the recorded error, or
        ``ReplayMismatch`` when the log holds no such call."""
        with self._lock:
            number = self._calls_made.get(name, 0) + 1
            self._calls_made[name] = number
            calls = self._tools.get(name)
            if calls is None:
                known = ", ".join(sorted(self._tools)) or "none"
                raise self._fail(
                    ReplayMismatch(
                        f"replay mismatch: tool {name!r} was called, but trace {self.trace_id} "
                        f"records no call of it (its tools: {known})"
                    )
                )
            pending = [r for r in calls if not r.used]
            if not pending:
                raise self._fail(
                    ReplayMismatch(
                        f"replay mismatch: call {number} of tool {name!r} is one more than trace "
                        f"{self.trace_id} records ({len(calls)})"
                    )
                )
            chosen: _Recorded | None = None
            got: Any = None
            for candidate in pending[:1] if self._ordered else pending:
                expected = candidate.step.get("arguments")
                if expected is None:  # not captured: only the order can be checked
                    chosen = candidate
                    break
                got = self._as_recorded(dict(arguments), expected)
                if got == expected:
                    chosen = candidate
                    break
            if chosen is None:
                first = pending[0]
                shown_got = self._as_recorded(dict(arguments), first.step.get("arguments"))
                raise self._fail(
                    ReplayMismatch(
                        f"replay mismatch: call {number} of tool {name!r} has other arguments "
                        f"than recorded call {first.number} (seq {first.seq})"
                        f"{'' if self._ordered else ' or any later unused call of it'}:\n"
                        f"  expected: {_shown(first.step.get('arguments'))}\n"
                        f"  got:      {_shown(shown_got)}"
                    )
                )
            chosen.used = True
        return self._answer(chosen, f"call {number} of tool {name!r}", "result")

    def model_call(self) -> Any:
        """The recorded answer to the next model call (``models=`` says in what shape)."""
        with self._lock:
            self._model_calls_made += 1
            number = self._model_calls_made
            pending = [r for r in self._model_calls if not r.used]
            if not pending:
                raise self._fail(
                    ReplayMismatch(
                        f"replay mismatch: model call {number} is one more than trace "
                        f"{self.trace_id} records ({len(self._model_calls)})"
                    )
                )
            chosen = pending[0]
            chosen.used = True
        what = f"model call {number}"
        if callable(self._models):  # the caller builds the response from the step
            if chosen.step.get("error"):
                raise _recorded_error(chosen, what)
            return self._models(chosen.step)
        return self._answer(chosen, what, "output_messages")

    def _answer(self, recorded: _Recorded, what: str, field: str) -> Any:
        step = recorded.step
        if step.get("error"):
            raise _recorded_error(recorded, what)
        value = step.get(field)
        captured = value is not None or (
            recorded.step["step"] == "tool_call" and step.get("arguments") is not None
        )
        if not captured:
            raise self._record_failure(
                ReplayError(
                    f"cannot replay {what} (seq {recorded.seq}): its {field.replace('_', ' ')} "
                    "were not captured when the trace was recorded; record it with "
                    "aw.configure(capture_content=True) and a collector that keeps content"
                )
            )
        if isinstance(value, str) and _CUT.search(value):
            raise self._record_failure(
                ReplayError(
                    f"cannot replay {what} (seq {recorded.seq}): its recorded "
                    f"{field.replace('_', ' ')} were cut to max_content_chars; record it with a "
                    "larger aw.configure(max_content_chars=...)"
                )
            )
        return value


def replay(
    source: str | os.PathLike[str] | Iterable[str | Mapping[str, Any]],
    *,
    models: bool | ModelAnswer = False,
    ordered: bool = False,
    redact: Redactor | None = None,
) -> Replay:
    """A replay of one exported trace, to use as ``with aw.replay(path) as replay: ...``.

    ``source`` is the file ``agentwatch export trace`` wrote (a path), or its lines (strings,
    or the dicts the action log is made of). While active, every ``@aw.tool`` call is answered
    from the log. ``models=True`` answers ``@aw.llm`` calls too, with the recorded
    ``output_messages`` (the model's text, not a provider response object); a callable
    ``models(step)`` receives the recorded ``model_call`` step and returns what the call
    returns. ``redact`` is the redactor the trace was recorded with (default: the configured
    one, else ``aw.default_redactor``), so arguments compare as they were recorded.
    """
    return Replay(source, models=models, ordered=ordered, redact=redact)
