"""``instrument()``: turn on the maintained OpenTelemetry instrumentations of what is installed.

Each framework or client is instrumented by its maintained instrumentation (PydanticAI's own,
OpenInference, OpenTelemetry's GenAI ones), never by patches of ours. Their spans go through a
provider that always forwards to the one ``configure()`` set up, so a later ``configure()``
needs no re-instrumenting and after ``shutdown()`` their spans are dropped like ours.

The third-party modules are imported here, lazily, inside the calls: ``import agentwatch``
stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from opentelemetry import trace
from opentelemetry.util.types import Attributes

from agentwatch._config import STATE
from agentwatch._errors import ConfigurationError
from agentwatch._safety import internal_error

logger = logging.getLogger("agentwatch")

Status = Literal["enabled", "already enabled", "not installed", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class InstrumentationResult:
    """What ``instrument()`` did for one framework or client: ``name`` as ``instrument()``
    takes it, ``status``, and ``detail`` (the instrumentation used, or why none was)."""

    name: str
    status: Status
    detail: str


# -- a provider that always means "agentwatch's current one" --------------------------------------
class _CurrentTracer(trace.Tracer):
    """Starts spans on the tracer of whatever provider ``configure()`` set up last (none: no-op).
    Instrumentors get their tracer once, at instrument time; this keeps it current."""

    def __init__(
        self, name: str, version: str | None, schema_url: str | None, attributes: Attributes
    ) -> None:
        self._args = (name, version, schema_url, attributes)
        self._cached: tuple[object, trace.Tracer] | None = None

    def _current(self) -> trace.Tracer:
        settings = STATE.settings
        provider = settings.provider if settings is not None else None
        if provider is None:
            return _NO_OP_TRACER
        cached = self._cached
        if cached is not None and cached[0] is provider:
            return cached[1]
        tracer = provider.get_tracer(*self._args)
        self._cached = (provider, tracer)
        return tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().start_as_current_span(*args, **kwargs)


class _CurrentProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _CurrentTracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )


_NO_OP_TRACER: Final = trace.NoOpTracer()
_PROVIDER: Final = _CurrentProvider()


# -- the catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Instrumentation:
    """One maintained instrumentation: the module that must import, how to switch it on (given
    that module and whether content may be captured) and off."""

    module: str
    label: str
    enable: Callable[[Any, bool], None]
    disable: Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    framework_module: str  # present means "the user has this framework"
    extra: str
    choices: tuple[_Instrumentation, ...]  # the first importable one is used, never two
    is_client: bool = False  # records model calls a framework instrumentation records too


def _trace_config(capture_content: bool) -> Any:
    """OpenInference's content switches: all hidden unless agentwatch captures content (then
    OpenInference's own defaults and OPENINFERENCE_* variables apply)."""
    config_class = importlib.import_module("openinference.instrumentation").TraceConfig
    if capture_content:
        return config_class()
    # The invocation parameters hold the instructions text (Responses API).
    return config_class(hide_inputs=True, hide_outputs=True, hide_llm_invocation_parameters=True)


def _instrumentor(module: Any, class_name: str) -> Any:
    return getattr(module, class_name)()


def _enable_openinference(class_name: str) -> Callable[[Any, bool], None]:
    def enable(module: Any, capture_content: bool) -> None:
        _instrumentor(module, class_name).instrument(
            tracer_provider=_PROVIDER, config=_trace_config(capture_content)
        )

    return enable


def _disable_instrumentor(class_name: str) -> Callable[[Any], None]:
    def disable(module: Any) -> None:
        _instrumentor(module, class_name).uninstrument()

    return disable


_PYDANTIC_DEFAULT_BEFORE: list[Any] = []


def _enable_pydantic_ai(module: Any, capture_content: bool) -> None:
    agent_class = importlib.import_module("pydantic_ai").Agent
    _PYDANTIC_DEFAULT_BEFORE[:] = [agent_class._instrument_default]
    settings = module.InstrumentationSettings(
        tracer_provider=_PROVIDER,
        include_content=capture_content,
        include_binary_content=capture_content,
        # They hold the instructions text as well as the tool schemas.
        include_model_request_parameters=capture_content,
    )
    agent_class.instrument_all(settings)


def _disable_pydantic_ai(module: Any) -> None:
    previous = _PYDANTIC_DEFAULT_BEFORE[0] if _PYDANTIC_DEFAULT_BEFORE else False
    importlib.import_module("pydantic_ai").Agent.instrument_all(previous)


# Variables we set for instrumentations configured only by environment, and what they held.
_ENVIRONMENT_BEFORE: dict[str, str | None] = {}


def _set_environment(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        _ENVIRONMENT_BEFORE.setdefault(key, os.environ.get(key))
        os.environ[key] = value


def _env_content_switch(variable: str, on: str, off: str) -> Callable[[bool], None]:
    """Content off: forced off, agentwatch's privacy setting wins. On: the user's value if set."""

    def apply(capture_content: bool) -> None:
        if not capture_content:
            _set_environment({variable: off})
        elif variable not in os.environ:
            _set_environment({variable: on})

    return apply


_OTEL_GENAI_CONTENT: Final = _env_content_switch(
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", on="SPAN_ONLY", off="NO_CONTENT"
)
_TRACELOOP_CONTENT: Final = _env_content_switch("TRACELOOP_TRACE_CONTENT", on="true", off="false")


def _enable_client(content: Callable[[bool], None]) -> Callable[[Any, bool], None]:
    def enable(module: Any, capture_content: bool) -> None:
        content(capture_content)
        _instrumentor(module, "OpenAIInstrumentor").instrument(tracer_provider=_PROVIDER)

    return enable


TARGETS: Final[tuple[_Target, ...]] = (
    _Target(
        "pydantic-ai",
        "pydantic_ai",
        "pydantic-ai",
        (
            _Instrumentation(
                "pydantic_ai.models.instrumented",
                "PydanticAI's own instrumentation (Agent.instrument_all)",
                _enable_pydantic_ai,
                _disable_pydantic_ai,
            ),
        ),
    ),
    _Target(
        "openai-agents",
        "agents",
        "openai-agents",
        (
            _Instrumentation(
                "openinference.instrumentation.openai_agents",
                "OpenInference OpenAIAgentsInstrumentor",
                _enable_openinference("OpenAIAgentsInstrumentor"),
                _disable_instrumentor("OpenAIAgentsInstrumentor"),
            ),
        ),
    ),
    _Target(
        "langgraph",
        "langchain_core",
        "langgraph",
        (
            _Instrumentation(
                "openinference.instrumentation.langchain",
                "OpenInference LangChainInstrumentor",
                _enable_openinference("LangChainInstrumentor"),
                _disable_instrumentor("LangChainInstrumentor"),
            ),
        ),
    ),
    _Target(
        "openai",
        "openai",
        "openai",
        (
            _Instrumentation(
                "opentelemetry.instrumentation.openai_v2",
                "OpenTelemetry GenAI openai-v2 OpenAIInstrumentor",
                _enable_client(_OTEL_GENAI_CONTENT),
                _disable_instrumentor("OpenAIInstrumentor"),
            ),
            _Instrumentation(
                "opentelemetry.instrumentation.openai",
                "OpenLLMetry OpenAIInstrumentor",
                _enable_client(_TRACELOOP_CONTENT),
                _disable_instrumentor("OpenAIInstrumentor"),
            ),
        ),
        is_client=True,
    ),
)
NAMES: Final = tuple(target.name for target in TARGETS)


@dataclass(slots=True)
class _Enabled:
    instrumentation: _Instrumentation
    module: Any
    capture_content: bool


# What instrument() switched on, by target name: what makes a second call a no-op.
_ENABLED: dict[str, _Enabled] = {}


# -- the entry points ---------------------------------------------------------------------------
def instrument(*names: str) -> tuple[InstrumentationResult, ...]:
    """Turn on the maintained instrumentation of each agent framework and LLM client installed,
    exporting through agentwatch (call ``configure()`` first: ConfigurationError otherwise).

    ``names`` limit it to some of ``"pydantic-ai"``, ``"openai-agents"``, ``"langgraph"``
    (LangGraph and LangChain) and ``"openai"`` (the openai client: OpenTelemetry's openai-v2,
    else OpenLLMetry, never both); one of them that is not installed is a ConfigurationError
    naming the extra to install (``pip install 'agentwatch[langgraph]'``). Without names every
    installed one is turned on, except the openai client's when a framework's is on: the
    framework already records each model call, the client would record it a second time.

    Prompt and response text follows ``configure(capture_content=...)``: off, each
    instrumentation is told not to record it. Calling again changes nothing, except that a
    changed ``capture_content`` is applied. Returns one result per target, also logged at INFO.
    A third-party instrumentor that fails is logged and reported as ``failed``, never raised.
    """
    settings = STATE.settings
    if settings is None or settings.provider is None:
        raise ConfigurationError("call agentwatch.configure() before agentwatch.instrument()")
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ConfigurationError(
            f"unknown instrumentation {', '.join(unknown)}; known: {', '.join(NAMES)}"
        )
    chosen = [target for target in TARGETS if not names or target.name in names]
    if names:
        for target in chosen:
            missing = _missing(target)
            if missing:
                raise ConfigurationError(
                    f"{target.name} instrumentation is not installed ({missing}): "
                    f"pip install 'agentwatch[{target.extra}]'"
                )
    results: list[InstrumentationResult] = []
    for target in sorted(chosen, key=lambda t: t.is_client):  # frameworks first
        result = _instrument_one(target, settings.capture_content, explicit=bool(names))
        logger.info("agentwatch.instrument: %s %s (%s)", result.name, result.status, result.detail)
        results.append(result)
    order = {name: index for index, name in enumerate(NAMES)}
    return tuple(sorted(results, key=lambda r: order[r.name]))


def uninstrument() -> None:
    """Turn off what ``instrument()`` turned on, and restore the environment it changed."""
    for name, enabled in list(_ENABLED.items()):
        try:
            enabled.instrumentation.disable(enabled.module)
        except Exception:  # noqa: BLE001 - third-party code; the agent must not see its failure
            internal_error(f"turning off {enabled.instrumentation.label}")
        del _ENABLED[name]
    for key, value in _ENVIRONMENT_BEFORE.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _ENVIRONMENT_BEFORE.clear()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent; or a module blocked in sys.modules
        return False


def _missing(target: _Target) -> str:
    """What is missing for ``target``, or '' when it can be instrumented."""
    if not _importable(target.framework_module):
        return f"no module {target.framework_module}"
    if not any(_importable(choice.module) for choice in target.choices):
        return f"no module {' or '.join(choice.module for choice in target.choices)}"
    return ""


def _import_instrumentation(target: _Target) -> tuple[_Instrumentation, Any] | None:
    """The first instrumentation of ``target`` that imports; None when none is installed. An
    installed one that fails to import (a broken dependency) raises."""
    for choice in target.choices:
        try:
            return choice, importlib.import_module(choice.module)
        except ModuleNotFoundError as exc:
            absent = exc.name or ""
            if not (choice.module == absent or choice.module.startswith(absent + ".")):
                raise
    return None


def _instrument_one(
    target: _Target, capture_content: bool, explicit: bool
) -> InstrumentationResult:
    def result(status: Status, detail: str) -> InstrumentationResult:
        return InstrumentationResult(target.name, status, detail)

    enabled = _ENABLED.get(target.name)
    if enabled is not None and enabled.capture_content == capture_content:
        return result("already enabled", enabled.instrumentation.label)
    missing = _missing(target)
    if missing:
        return result("not installed", f"{missing}; pip install 'agentwatch[{target.extra}]'")
    if target.is_client and not explicit and enabled is None:
        frameworks = sorted(name for name, on in _ENABLED.items() if not _is_client(name))
        if frameworks:
            return result(
                "skipped",
                f"{', '.join(frameworks)} already record its model calls; "
                f"instrument({target.name!r}) adds a second span per call",
            )
    try:
        if enabled is not None:  # capture_content changed: switch it off to switch it on anew
            enabled.instrumentation.disable(enabled.module)
            del _ENABLED[target.name]
        found = _import_instrumentation(target)
        if found is None:
            return result("not installed", f"pip install 'agentwatch[{target.extra}]'")
        instrumentation, module = found
        if _instrumented_elsewhere(module):
            return result("skipped", f"{instrumentation.label} was already on, set up elsewhere")
        instrumentation.enable(module, capture_content)
    except Exception:  # noqa: BLE001 - third-party code; the agent must not see its failure
        internal_error(f"instrumenting {target.name}")
        return result("failed", "its instrumentation raised; see the agentwatch log")
    _ENABLED[target.name] = _Enabled(instrumentation, module, capture_content)
    return result("enabled", instrumentation.label)


def _is_client(name: str) -> bool:
    return any(target.is_client for target in TARGETS if target.name == name)


def _instrumented_elsewhere(module: Any) -> bool:
    """Whether the application instrumented it itself (OpenTelemetry instrumentors are
    process-wide singletons: instrumenting again would be a silent no-op)."""
    for class_name in ("OpenAIAgentsInstrumentor", "LangChainInstrumentor", "OpenAIInstrumentor"):
        instrumentor_class = getattr(module, class_name, None)
        if instrumentor_class is not None:
            return bool(instrumentor_class().is_instrumented_by_opentelemetry)
    return False
