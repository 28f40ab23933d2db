"""``@agent``, ``@tool`` and ``@llm``: one span per call, for sync, async and generator functions.

The hot path is written for the common case: when agentwatch is not configured (and no agent
run with limits is active, whose budget the call would charge, nor a replay, which answers the
call) a decorated call is two cheap reads and a direct call. Telemetry work happens in
``_Call`` methods that swallow their own failures, so only the user's exceptions (and a
deliberate ``AgentLimitExceeded``) ever reach user code.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import Token
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentwatch import _semconv as semconv
from agentwatch._config import INSTRUMENTATION_NAME, STATE, Settings
from agentwatch._errors import AgentLimitExceeded, ConfigurationError, ReplayError
from agentwatch._limits import Budget, Limits, estimate_cost_usd
from agentwatch._redact import (
    bounded_redact,
    default_redactor,
    exception_message,
    exception_stacktrace,
    exception_type_name,
)
from agentwatch._replay import REPLAY_KEY, active_replay
from agentwatch._run import RUN_KEY, Run, current_run, with_run
from agentwatch._safety import internal_error
from agentwatch._usage import Usage, extract_stream_event, extract_usage, response_text, stream_text

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
SpanRole = Literal["agent", "tool", "llm"]
# How an active replay answers a call, from its (args, kwargs): see ``_replay_answer``.
Answer = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def error_type(exc: BaseException) -> str:
    """``error.type`` as the conventions ask: the exception's fully qualified class name."""
    return exception_type_name(exc)


def capture_text(settings: Settings, value: Any) -> str:
    """Serialize, redact and truncate content that the user opted in to record.

    Only the first ``max_content_chars`` (plus a margin) are redacted: the cost is bounded
    whatever the size of ``value``'s text.
    """
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return bounded_redact(settings.redact, text, settings.max_content_chars)


# Exception messages and stack traces are cut shorter than content: they repeat on every error.
MAX_ERROR_MESSAGE_CHARS = 1000


def record_error(span: Span, exc: BaseException, settings: Settings | None) -> None:
    """Mark ``span`` failed with ``exc``, under the content policy (never the raw message).

    ``error.type`` is always set. With content capture off, the status description is the
    exception's type and the ``exception`` event carries the type and a stack trace whose
    frames are kept but whose exception lines are the type only (messages quote arguments and
    answers): no message leaves the process. With content capture on, the message is redacted
    (``redact=``) and cut to 1000 characters, in the status, the event and the stack trace.
    agentwatch's own ``AgentLimitExceeded`` message (a limit and numbers) is kept in both modes.
    """
    redact = settings.redact if settings is not None else default_redactor
    capture = settings.capture_content if settings is not None else False
    max_chars = MAX_ERROR_MESSAGE_CHARS
    if settings is not None:
        max_chars = min(max_chars, settings.max_content_chars)
    name = exception_type_name(exc)
    span.set_attribute(semconv.ERROR_TYPE, name)
    try:
        message = exception_message(
            exc, redact=redact, capture_content=capture, max_chars=max_chars
        )
        stacktrace = exception_stacktrace(
            exc, redact=redact, capture_content=capture, max_chars=max_chars
        )
    except Exception:  # a failing redactor: ship nothing it was meant to clean
        message, stacktrace = None, f"{name}\n"
    span.set_status(Status(StatusCode.ERROR, message or name))
    attributes: dict[str, str] = {
        "exception.type": name,
        "exception.stacktrace": stacktrace,
        "exception.escaped": "True",
    }
    if message:
        attributes["exception.message"] = message
    if isinstance(exc, Exception):  # not for KeyboardInterrupt, cancellation, ...
        span.add_event("exception", attributes)


class _Spec:
    """What a decorated function's spans share, computed once at decoration time."""

    __slots__ = (
        "agent_name",
        "attributes",
        "limits",
        "model",
        "name",
        "operation",
        "provider",
        "role",
        "signature",
        "task_type",
    )

    def __init__(
        self,
        role: SpanRole,
        name: str,
        fn: Callable[..., Any],
        attributes: dict[str, Any],
        *,
        task_type: str | None = None,
        limits: Limits | None = None,
        model: str | None = None,
        provider: str | None = None,
        operation: str = semconv.OPERATION_CHAT,
    ) -> None:
        self.role = role
        self.name = name
        self.attributes = attributes
        self.task_type = task_type
        self.agent_name = name
        self.limits = limits
        self.model = model
        self.provider = provider
        self.operation = operation
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None

    def span_name(self, model: str | None) -> str:
        if self.role == "agent":
            return f"{semconv.OPERATION_INVOKE_AGENT} {self.name}"
        if self.role == "tool":
            return f"{semconv.OPERATION_EXECUTE_TOOL} {self.name}"
        return f"{self.operation} {model}" if model else self.operation

    def bound_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self.signature is None:
            return {"args": list(args), **kwargs}
        bound = self.signature.bind_partial(*args, **kwargs)
        return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}


def _foreign_attributes(span: Any) -> Mapping[str, Any] | None:
    """The attributes of a span another instrumentation made (a framework's); None for ours,
    or for a span that is not the SDK's kind (a non-recording one has no scope)."""
    scope = getattr(span, "instrumentation_scope", None)
    if scope is None or getattr(scope, "name", None) == INSTRUMENTATION_NAME:
        return None
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    return attributes


def _framework_tool_span(parent: otel_context.Context, spec: _Spec) -> Span | None:
    """The current span when it is another instrumentation's span of this same tool call (a
    framework that traces its tools, e.g. PydanticAI, calling our ``@aw.tool``), else None."""
    if spec.role != "tool":
        return None
    span = trace.get_current_span(parent)
    if not span.is_recording():
        return None
    # Not ours: a tool that calls itself nests, as any other call does.
    attributes = _foreign_attributes(span)
    if attributes is None:
        return None
    is_tool = (
        attributes.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OPERATION_EXECUTE_TOOL
        or str(attributes.get("openinference.span.kind", "")).upper() == "TOOL"
    )
    named = spec.name in (attributes.get(semconv.GEN_AI_TOOL_NAME), attributes.get("tool.name"))
    return span if is_tool and named else None


class _Call:
    """One decorated call in flight: its span, its context token, its agent run."""

    __slots__ = (
        "adopted",
        "ctx",
        "model_in_name",
        "run",
        "settings",
        "span",
        "spec",
        "stream_text",
        "token",
        "usage",
    )

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.span: Span | None = None
        self.run: Run | None = None
        self.ctx: otel_context.Context | None = None
        self.token: Token[otel_context.Context] | None = None
        self.settings: Settings | None = None
        self.usage: Usage | None = None
        self.stream_text: list[str] | None = None
        self.model_in_name = False
        # A framework's own span for this very tool call, which we annotate instead of nesting
        # a second one (one call, one span); the framework ends it, not us.
        self.adopted = False

    # -- start ---------------------------------------------------------------------------------
    @classmethod
    def begin(cls, spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
        """Start the span and make it current. Raises only ``AgentLimitExceeded``."""
        if spec.role == "tool":
            run = current_run()
            if run is not None and run.budget is not None:
                run.budget.add_tool_call()
                run.check_limits()
        call = cls(spec)
        try:
            call._start(args, kwargs)
            return call
        except Exception:
            try:
                if call.span is not None:  # started but not set up: end it rather than leak it
                    call.span.end()
            finally:
                internal_error(f"starting the span for {spec.name!r}")
            return None

    def _start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        spec = self.spec
        settings = STATE.settings
        self.settings = settings
        parent = otel_context.get_current()
        ctx = parent
        framework_span = _framework_tool_span(parent, spec) if settings is not None else None
        if framework_span is not None:
            framework_span.set_attributes(spec.attributes)
            outer = current_run(parent)
            if outer is not None and outer.task_type:
                framework_span.set_attribute(semconv.TASK_TYPE, outer.task_type)
            self.span = framework_span
            self.adopted = True
        elif settings is not None and settings.tracer is not None:
            model = spec.model
            if spec.role == "llm" and model is None:
                requested = kwargs.get("model")
                model = requested if isinstance(requested, str) else None
            span = settings.tracer.start_span(
                spec.span_name(model),
                context=parent,
                kind=SpanKind.CLIENT if spec.role == "llm" else SpanKind.INTERNAL,
                attributes=spec.attributes,
                # We record failures ourselves, redacted (``record_error``); OTel's own
                # recording would ship the raw message should the span ever be used with ``with``.
                record_exception=False,
                set_status_on_exception=False,
            )
            self.span = span
            self.model_in_name = model is not None
            if spec.role == "llm" and model is not None and spec.model is None:
                span.set_attribute(semconv.GEN_AI_REQUEST_MODEL, model)
            # Every span of a run carries its task type, so per-task-type cost and tool
            # statistics are plain GROUP BYs, not joins back to the agent span.
            outer = current_run(parent)
            if (
                outer is not None
                and outer.task_type
                and not (spec.role == "agent" and spec.task_type is not None)
            ):
                span.set_attribute(semconv.TASK_TYPE, outer.task_type)
            if settings.capture_content:
                self._capture_input(settings, span, args, kwargs)
            ctx = trace.set_span_in_context(span, parent)
        if spec.role == "agent":
            outer = current_run(parent)
            task_type = spec.task_type or (outer.task_type if outer is not None else None)
            # Inside an agent that has a budget, a nested one charges it too (its own limits,
            # if any, on top); otherwise a run without limits has no budget at all.
            outer_budget = outer.budget if outer is not None else None
            budget = (
                Budget(spec.limits or Limits(), parent=outer_budget)
                if spec.limits is not None or outer_budget is not None
                else None
            )
            self.run = Run(spec.agent_name, task_type, self.span, budget)
            ctx = with_run(self.run, ctx)
        self.ctx = ctx

    def _capture_input(
        self, settings: Settings, span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if self.spec.role == "llm":
            messages = kwargs.get("messages", kwargs.get("input", args[0] if args else None))
            if messages is not None:
                span.set_attribute(semconv.GEN_AI_INPUT_MESSAGES, capture_text(settings, messages))
        elif self.spec.role == "tool":
            arguments = self.spec.bound_arguments(args, kwargs)
            span.set_attribute(
                semconv.GEN_AI_TOOL_CALL_ARGUMENTS, capture_text(settings, arguments)
            )

    def mark_replayed(self) -> None:
        """Say on the span that a replay answered this call, not the function."""
        try:
            if self.span is not None:
                self.span.set_attribute(semconv.REPLAY, True)
        except Exception:
            internal_error("marking a replayed span")

    def enter(self) -> None:
        try:
            if self.ctx is not None:
                self.token = otel_context.attach(self.ctx)
        except Exception:
            internal_error("attaching the span context")

    def exit(self) -> None:
        token, self.token = self.token, None
        if token is None:
            return
        try:
            otel_context.detach(token)
        except Exception:
            internal_error("detaching the span context")

    # -- results -------------------------------------------------------------------------------
    def record_usage(self, usage: Usage) -> None:
        """Put one response's (or stream's) usage on the span and charge the agent's budget."""
        span = self.span
        if span is not None:
            if usage.model:
                span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, usage.model)
                if not self.model_in_name:
                    span.update_name(self.spec.span_name(usage.model))
                    self.model_in_name = True
            if usage.response_id:
                span.set_attribute(semconv.GEN_AI_RESPONSE_ID, usage.response_id)
            if usage.finish_reasons:
                span.set_attribute(semconv.GEN_AI_RESPONSE_FINISH_REASONS, usage.finish_reasons)
            set_usage_attributes(span, usage)
        charge_budget(current_run(self.ctx), usage, self.spec.provider)

    def succeed(self, result: Any) -> None:
        """Record a normal return and end the span (not for streams: see ``wrap_stream``)."""
        try:
            self._record_result(result)
        except Exception:
            internal_error(f"recording the result of {self.spec.name!r}")
        self.finish(None)

    def _record_result(self, result: Any) -> None:
        role = self.spec.role
        if role == "llm":
            usage = extract_usage(result)
            if usage is not None:
                self.usage = usage
                self.record_usage(usage)
            settings = self.settings
            if settings is not None and settings.capture_content and self.span is not None:
                text = response_text(result)
                if text is not None:
                    self.span.set_attribute(
                        semconv.GEN_AI_OUTPUT_MESSAGES, capture_text(settings, text)
                    )
        elif role == "tool":
            settings = self.settings
            if settings is not None and settings.capture_content and self.span is not None:
                self.span.set_attribute(
                    semconv.GEN_AI_TOOL_CALL_RESULT, capture_text(settings, result)
                )

    def finish(self, exc: BaseException | None) -> None:
        """End the span: status, error type, the run's outcome. Never raises."""
        try:
            run = self.run
            if run is not None and run.outcome is None:
                exceeded = run.budget.first_exceeded() if run.budget is not None else None
                if exc is None and exceeded is not None:
                    # Over a limit that could not stop the run: a framework whose
                    # instrumentation swallows the refusal of its next model call.
                    run.record_limit(exceeded)
                elif exc is None:
                    run.set_outcome("completed")
                elif isinstance(exc, AgentLimitExceeded):
                    run.record_limit(exc)
                elif isinstance(exc, Exception):
                    run.set_outcome("failed", error_type(exc))
            span = self.span
            if span is None:
                return
            if run is not None and run.budget is not None:
                span.set_attribute(semconv.TASK_ITERATIONS, run.budget.iterations)
            if self.adopted:
                return  # the framework records the outcome of its own span, and ends it
            if exc is not None and not isinstance(exc, GeneratorExit):
                record_error(span, exc, self.settings)
            if self.stream_text is not None and self.settings is not None:
                span.set_attribute(
                    semconv.GEN_AI_OUTPUT_MESSAGES,
                    capture_text(self.settings, "".join(self.stream_text)),
                )
            span.end()
        except Exception:
            internal_error(f"ending the span for {self.spec.name!r}")

    def check_limits(self) -> None:
        """After an LLM call charged its usage, stop the run if it is now over a limit.

        Raises ``AgentLimitExceeded`` into the agent, as ``record_usage`` does: a budget guard
        that waits for the agent's next tool call never stops a loop of model calls.
        """
        if self.spec.role == "llm":
            run = current_run(self.ctx)
            if run is not None:
                run.check_limits()

    # -- streams -------------------------------------------------------------------------------
    def start_stream(self) -> None:
        """Before the first streamed event: collect its text too, when content is captured."""
        settings = self.settings
        if settings is not None and settings.capture_content:
            self.stream_text = []

    def observe_event(self, event: Any) -> None:
        try:
            usage = extract_stream_event(event)
            if usage is not None:
                if self.usage is None:
                    self.usage = Usage()
                self.usage.merge(usage)
            if self.stream_text is not None:
                text = stream_text(event)
                if text:
                    self.stream_text.append(text)
        except Exception:
            internal_error("reading a streamed event")

    def end_stream(self, exc: BaseException | None) -> None:
        if self.usage is not None:
            try:
                self.record_usage(self.usage)
            except Exception:
                internal_error("recording streamed usage")
        self.finish(exc)


def set_usage_attributes(span: Span, usage: Usage) -> None:
    values = (
        (semconv.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
        (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
        (semconv.GEN_AI_USAGE_CACHE_READ_TOKENS, usage.cache_read_tokens),
        (semconv.GEN_AI_USAGE_CACHE_WRITE_TOKENS, usage.cache_write_tokens),
        (semconv.GEN_AI_USAGE_REASONING_TOKENS, usage.reasoning_tokens),
    )
    span.set_attributes({key: value for key, value in values if value is not None})


def charge_budget(run: Run | None, usage: Usage, provider: str | None) -> None:
    """Add a call's tokens (and cost, when a cost limit needs it) to the run's budget."""
    if run is None or run.budget is None:
        return
    budget = run.budget
    budget.add_tokens(usage.total_tokens)
    if usage.model and budget.limits_cost():
        cost = estimate_cost_usd(
            usage.model,
            provider,
            usage.input_tokens or 0,
            usage.output_tokens or 0,
            usage.cache_read_tokens or 0,
            usage.cache_write_tokens or 0,
        )
        if cost is not None:
            budget.add_cost(cost)


# Model calls that other instrumentations record (a framework run inside ``@aw.agent``), in
# the conventions they record them with: their tokens, model and provider.
_FOREIGN_MODEL_OPERATIONS: Final = frozenset({"chat", "text_completion", "generate_content"})
_FOREIGN_USAGE_KEYS: Final = {
    "input_tokens": ("gen_ai.usage.input_tokens", "llm.token_count.prompt"),
    "output_tokens": ("gen_ai.usage.output_tokens", "llm.token_count.completion"),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ),
}
_FOREIGN_MODEL_KEYS: Final = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
_FOREIGN_PROVIDER_KEYS: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider")


def _foreign_model_call(span: Any) -> Mapping[str, Any] | None:
    """A span's attributes when another instrumentation's span records a model call."""
    attributes = _foreign_attributes(span)
    if attributes is None:
        return None
    operation = attributes.get(semconv.GEN_AI_OPERATION_NAME)
    if operation in _FOREIGN_MODEL_OPERATIONS:
        return attributes
    if str(attributes.get("openinference.span.kind", "")).upper() == "LLM":
        return attributes
    return None


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attributes[key] for key in keys if attributes.get(key) is not None), None)


class FrameworkBudget(SpanProcessor):
    """Holds framework runs to the limits of the ``@aw.agent`` around them: each model call
    that another instrumentation records inside an agent run is charged to the run's budget
    when it ends, and the framework's next model call is refused (``AgentLimitExceeded``, on
    purpose, as for our own calls) once the run is over a limit."""

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        if _foreign_model_call(span) is None:
            return
        run = current_run(parent_context)
        if run is not None and run.budget is not None:
            run.check_limits()

    def on_end(self, span: Any) -> None:
        try:
            attributes = _foreign_model_call(span)
            if attributes is None:
                return
            run = current_run()
            if run is None or run.budget is None:
                return
            counts = {
                name: value
                for name, keys in _FOREIGN_USAGE_KEYS.items()
                if isinstance(value := _first(attributes, keys), int) and value >= 0
            }
            model = _first(attributes, _FOREIGN_MODEL_KEYS)
            provider = _first(attributes, _FOREIGN_PROVIDER_KEYS)
            usage = Usage(
                input_tokens=counts.get("input_tokens"),
                output_tokens=counts.get("output_tokens"),
                cache_read_tokens=counts.get("cache_read_tokens"),
                cache_write_tokens=counts.get("cache_write_tokens"),
                model=str(model) if model else None,
            )
            charge_budget(run, usage, str(provider) if provider else None)
        except Exception:
            internal_error("charging a framework's model call to the agent's budget")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _is_stream(result: Any) -> bool:
    if isinstance(result, str | bytes | dict | list | tuple):
        return False
    return hasattr(result, "__next__") or hasattr(result, "__anext__")


class _TracedStream:
    """Wraps a provider stream; the span ends when the stream is consumed, closed or fails."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._call = call
        self._done = False

    def _end(self, exc: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self._call.end_stream(exc)

    def __iter__(self) -> _TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            event = next(self._stream)
        except StopIteration:
            self._end(None)
            self._call.check_limits()
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._call.observe_event(event)
        return event

    def __aiter__(self) -> _TracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._stream.__anext__()
        except StopAsyncIteration:
            self._end(None)
            self._call.check_limits()
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._call.observe_event(event)
        return event

    def __enter__(self) -> _TracedStream:
        enter = getattr(self._stream, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        exit_ = getattr(self._stream, "__exit__", None)
        try:
            if exit_ is not None:
                exit_(*exc_info)
        finally:
            self._end(None)

    async def __aenter__(self) -> _TracedStream:
        enter = getattr(self._stream, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        exit_ = getattr(self._stream, "__aexit__", None)
        try:
            if exit_ is not None:
                await exit_(*exc_info)
        finally:
            self._end(None)

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._end(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self._end(None)


def _finish_result(call: _Call, result: Any) -> Any:
    """Record a returned value, or wrap it when an LLM call returned a stream."""
    if call.spec.role == "llm" and _is_stream(result):
        call.start_stream()
        return _TracedStream(result, call)
    call.succeed(result)
    call.check_limits()
    return result


def _idle() -> bool:
    """No agent run and no replay in the current context: one context read, two dict gets
    (the run's key read directly, as ``current_run`` would, without its two calls)."""
    ctx = otel_context.get_current()
    return ctx.get(RUN_KEY) is None and ctx.get(REPLAY_KEY) is None


def _replay_answer(spec: _Spec, *, streams: bool = False) -> Answer | None:
    """How the active replay answers this call; None to run the function itself.

    Its ``ReplayMismatch`` is raised as the call's own exception would be, outside the
    telemetry code whose failures are swallowed: a diverging replay fails the test.
    """
    if spec.role == "agent":
        return None
    replay = active_replay()
    if replay is None:
        return None
    if spec.role == "tool":
        if streams:
            return lambda args, kwargs: _refuse_generator_tool(spec.name)

        return lambda args, kwargs: replay.tool_call(spec.name, spec.bound_arguments(args, kwargs))
    if replay.answers_models():
        return lambda args, kwargs: replay.model_call()
    return None


def _refuse_generator_tool(name: str) -> None:
    raise ReplayError(
        f"tool {name!r} is a generator: what it yields is not recorded, so it cannot be replayed"
    )


def _answered_items(answer: Answer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """A generator function's replayed answer, item by item (a single value: one item)."""
    value = answer(args, kwargs)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        yield value
    else:
        yield from value


async def _answered_async_items(
    answer: Answer, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncIterator[Any]:
    """An async generator function's replayed answer, item by item."""
    value = answer(args, kwargs)
    if hasattr(value, "__aiter__"):
        async for item in value:
            yield item
    else:
        for item in _answered_items(lambda _args, _kwargs: value, args, kwargs):
            yield item


def _wrap_sync(fn: Callable[P, R], spec: _Spec) -> Callable[P, R]:
    always_trace = spec.limits is not None

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if STATE.tracer is None and not always_trace and _idle():
            return fn(*args, **kwargs)
        answer = _replay_answer(spec)
        call = _Call.begin(spec, args, kwargs)
        if call is None:
            return fn(*args, **kwargs) if answer is None else cast("R", answer(args, kwargs))
        if answer is not None:
            call.mark_replayed()
        call.enter()
        try:
            result = fn(*args, **kwargs) if answer is None else answer(args, kwargs)
        except BaseException as exc:
            call.exit()
            call.finish(exc)
            raise
        call.exit()
        return cast("R", _finish_result(call, result))

    return wrapper


def _wrap_async(fn: Callable[P, Awaitable[R]], spec: _Spec) -> Callable[P, Awaitable[R]]:
    always_trace = spec.limits is not None

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if STATE.tracer is None and not always_trace and _idle():
            return await fn(*args, **kwargs)
        answer = _replay_answer(spec)
        call = _Call.begin(spec, args, kwargs)
        if call is None:
            if answer is not None:
                return cast("R", answer(args, kwargs))
            return await fn(*args, **kwargs)
        if answer is not None:
            call.mark_replayed()
        call.enter()
        try:
            result = await fn(*args, **kwargs) if answer is None else answer(args, kwargs)
        except BaseException as exc:
            call.exit()
            call.finish(exc)
            raise
        call.exit()
        return cast("R", _finish_result(call, result))

    return wrapper


def _wrap_generator(fn: Callable[P, Iterator[Any]], spec: _Spec) -> Callable[P, Iterator[Any]]:
    always_trace = spec.limits is not None

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
        if STATE.tracer is None and not always_trace and _idle():
            return (yield from fn(*args, **kwargs))
        answer = _replay_answer(spec, streams=True)
        call = _Call.begin(spec, args, kwargs)
        if call is None:
            if answer is not None:
                return (yield from _answered_items(answer, args, kwargs))
            return (yield from fn(*args, **kwargs))
        if answer is not None:
            call.mark_replayed()
        # The context is attached around each step, never across a yield: the consumer may
        # resume us from another context, and a token must be detached where it was attached.
        call.enter()
        try:
            gen = fn(*args, **kwargs) if answer is None else _answered_items(answer, args, kwargs)
        except BaseException as exc:
            call.exit()
            call.finish(exc)
            raise
        call.exit()
        # An @llm generator streams the model's chunks: read usage and text from what it yields.
        is_llm = spec.role == "llm"
        if is_llm:
            call.start_stream()
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            call.enter()
            try:
                if to_throw is not None:
                    exc_in, to_throw = to_throw, None
                    item = cast("Generator[Any, Any, Any]", gen).throw(exc_in)
                elif to_send is None:
                    item = next(gen)
                else:
                    item = cast("Generator[Any, Any, Any]", gen).send(to_send)
            except StopIteration as stop:
                call.exit()
                call.end_stream(None)
                call.check_limits()
                return stop.value
            except BaseException as exc:
                call.exit()
                call.end_stream(exc)
                raise
            call.exit()
            if is_llm:
                call.observe_event(item)
            try:
                to_send = yield item
            except GeneratorExit:
                close = getattr(gen, "close", None)
                try:
                    if close is not None:
                        call.enter()
                        try:
                            close()
                        finally:
                            call.exit()
                finally:
                    call.end_stream(None)
                raise
            except BaseException as exc:
                to_throw = exc

    return wrapper


def _wrap_async_generator(
    fn: Callable[P, AsyncIterator[Any]], spec: _Spec
) -> Callable[P, AsyncIterator[Any]]:
    always_trace = spec.limits is not None

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Any]:
        if STATE.tracer is None and not always_trace and _idle():
            async for item in fn(*args, **kwargs):
                yield item
            return
        answer = _replay_answer(spec, streams=True)
        call = _Call.begin(spec, args, kwargs)
        agen = (
            fn(*args, **kwargs) if answer is None else _answered_async_items(answer, args, kwargs)
        )
        if call is None:
            async for item in agen:
                yield item
            return
        if answer is not None:
            call.mark_replayed()
        is_llm = spec.role == "llm"
        if is_llm:
            call.start_stream()
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            call.enter()
            try:
                if to_throw is not None:
                    exc_in, to_throw = to_throw, None
                    item = await agen.athrow(exc_in)  # type: ignore[attr-defined]
                else:
                    item = await agen.asend(to_send)  # type: ignore[attr-defined]
            except StopAsyncIteration:
                call.exit()
                call.end_stream(None)
                call.check_limits()
                return
            except BaseException as exc:
                call.exit()
                call.end_stream(exc)
                raise
            call.exit()
            if is_llm:
                call.observe_event(item)
            try:
                to_send = yield item
            except GeneratorExit:
                try:
                    call.enter()
                    try:
                        await agen.aclose()  # type: ignore[attr-defined]
                    finally:
                        call.exit()
                finally:
                    call.end_stream(None)
                raise
            except BaseException as exc:
                to_throw = exc

    return wrapper


def _wrap(fn: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, spec)
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, spec)
    if inspect.iscoroutinefunction(fn):
        return _wrap_async(fn, spec)
    return _wrap_sync(fn, spec)


def _validate_choice(value: str | None, allowed: tuple[str, ...], what: str) -> None:
    if value is not None and value not in allowed:
        raise ConfigurationError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


_TOOL_NAME_ATTR = "_agentwatch_tool_name"


def _tool_name(tool: Callable[..., Any] | str) -> str:
    if isinstance(tool, str):
        return tool
    name = getattr(tool, _TOOL_NAME_ATTR, None) or getattr(tool, "__name__", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"tools must be @tool functions or names, not {tool!r}")
    return name


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    task_type: str | None = None,
    description: str | None = None,
    agent_id: str | None = None,
    limits: Limits | None = None,
    tools: Sequence[Callable[..., Any] | str] | None = None,
) -> Callable[[F], F]: ...
def agent(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    task_type: str | None = None,
    description: str | None = None,
    agent_id: str | None = None,
    limits: Limits | None = None,
    tools: Sequence[Callable[..., Any] | str] | None = None,
) -> F | Callable[[F], F]:
    """Trace an agent's entry point as an ``invoke_agent {name}`` span.

    Each call is one agent run: its outcome defaults to ``completed`` (or ``failed`` when it
    raises) unless ``set_outcome`` says otherwise, and ``limits`` are enforced against what the
    run's tools and LLM calls use. ``tools`` declares the tools the agent can call (``@tool``
    functions or names), so the dashboard can show declared tools that are never called.
    """
    declared = tuple(_tool_name(t) for t in tools) if tools is not None else ()

    def decorate(func: F) -> F:
        agent_name = name or func.__name__
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT,
            semconv.GEN_AI_AGENT_NAME: agent_name,
        }
        if task_type:
            attributes[semconv.TASK_TYPE] = task_type
        if description:
            attributes[semconv.GEN_AI_AGENT_DESCRIPTION] = description
        if agent_id:
            attributes[semconv.GEN_AI_AGENT_ID] = agent_id
        if declared:
            attributes[semconv.AGENT_TOOLS] = declared
        spec = _Spec("agent", agent_name, func, attributes, task_type=task_type, limits=limits)
        return cast("F", _wrap(func, spec))

    return decorate(fn) if fn is not None else decorate


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    tier: str | None = None,
    description: str | None = None,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    tier: str | None = None,
    description: str | None = None,
) -> F | Callable[[F], F]:
    """Trace a tool as an ``execute_tool {name}`` span with its risk ``tier``.

    ``tier`` is one of read, write_safe, write_risky, destructive. Each call counts against the
    enclosing agent run's ``max_tool_calls``.
    """
    _validate_choice(tier, semconv.TOOL_TIERS, "tier")

    def decorate(func: F) -> F:
        tool_name = name or func.__name__
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: tool_name,
            semconv.GEN_AI_TOOL_TYPE: "function",
        }
        if tier:
            attributes[semconv.TOOL_TIER] = tier
        doc = description or (inspect.getdoc(func) or "").split("\n", 1)[0]
        if doc:
            attributes[semconv.GEN_AI_TOOL_DESCRIPTION] = doc
        wrapped = _wrap(func, _Spec("tool", tool_name, func, attributes))
        setattr(wrapped, _TOOL_NAME_ATTR, tool_name)
        return cast("F", wrapped)

    return decorate(fn) if fn is not None else decorate


@overload
def llm(fn: F, /) -> F: ...
@overload
def llm(
    fn: None = None,
    /,
    *,
    provider: str | None = None,
    model: str | None = None,
    operation: str = semconv.OPERATION_CHAT,
) -> Callable[[F], F]: ...
def llm(
    fn: F | None = None,
    /,
    *,
    provider: str | None = None,
    model: str | None = None,
    operation: str = semconv.OPERATION_CHAT,
) -> F | Callable[[F], F]:
    """Trace a model call as a ``chat {model}`` span; usage is read from what it returns.

    The model comes from ``model=``, else the call's ``model`` keyword argument, else the
    response. OpenAI (chat completions and responses) and Anthropic messages responses are
    understood, as objects or dicts, and so are their streams: a returned stream is wrapped and
    the span ends when it is consumed.
    """

    def decorate(func: F) -> F:
        attributes: dict[str, Any] = {semconv.GEN_AI_OPERATION_NAME: operation}
        if provider:
            attributes[semconv.GEN_AI_PROVIDER_NAME] = provider
        if model:
            attributes[semconv.GEN_AI_REQUEST_MODEL] = model
        spec = _Spec(
            "llm",
            func.__name__,
            func,
            attributes,
            model=model,
            provider=provider,
            operation=operation,
        )
        return cast("F", _wrap(func, spec))

    return decorate(fn) if fn is not None else decorate
