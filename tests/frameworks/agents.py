# The dev extra installs the frameworks; OpenLLMetry is the user's own: where one is not
# installed (or ships no types) its imports are Any, not errors.
# mypy: disable-error-code="import-not-found, import-untyped"
"""One two-step tool-using agent per framework, each instrumented the way its users would.

Every ``run_*`` function builds the same agent (instructions, one ``get_weather(city)`` tool, a
question about Paris) on one framework, runs it against an OpenAI-compatible server at
``llm_url`` (``fake_openai.FakeOpenAI``), and exports its spans over OTLP/HTTP to the collector
at ``collector_url``, through a ``TracerProvider`` of its own (service name ``service``), never
the global one. The framework's own or maintained instrumentation is used:

- PydanticAI: its ``Instrumentation`` capability, ``InstrumentationSettings(tracer_provider=)``.
- OpenAI Agents SDK: OpenInference's ``OpenAIAgentsInstrumentor``.
- LangGraph ``create_react_agent``: OpenInference's ``LangChainInstrumentor``.
- A plain ``openai`` client loop: OpenTelemetry's ``opentelemetry-instrumentation-openai-v2``
  or OpenLLMetry's ``opentelemetry-instrumentation-openai``.

Instrumentors patch process-wide, so each run instruments with its provider and uninstruments
when done. Each function imports its framework itself: a missing one fails only its own run.
The spans each run finished come back in ``Run.spans`` (as the SDK made them, before export).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

MODEL: Final = "gpt-4o-mini"
AGENT_NAME: Final = "weather_agent"
TOOL_NAME: Final = "get_weather"
QUESTION: Final = "What is the weather in Paris?"
INSTRUCTIONS: Final = "You answer questions about the weather. Use the get_weather tool."
API_KEY: Final = "sk-test-not-a-real-key"  # the fake server accepts anything


@dataclass(frozen=True, slots=True)
class Run:
    """What one agent run left behind."""

    framework: str
    service: str
    output: str
    tool_calls: int  # how many times the tool function actually ran
    spans: tuple[ReadableSpan, ...]


def weather(city: str) -> str:
    """The tool's body, shared by every framework."""
    return f"Sunny, 21 degrees in {city}."


class _ToolCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, city: str) -> str:
        self.calls += 1
        return weather(city)


@contextlib.contextmanager
def telemetry(collector_url: str, service: str) -> Iterator[tuple[TracerProvider, list[Any]]]:
    """A fresh ``TracerProvider`` exporting over OTLP/HTTP to ``collector_url`` (batched, as
    in production) and to memory; shut down (so flushed) on exit. Yields the provider and a
    list that holds the finished spans once the block has ended."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otlp = OTLPSpanExporter(endpoint=collector_url.rstrip("/") + "/v1/traces", timeout=10)
    provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=50))
    finished: list[Any] = []
    try:
        yield provider, finished
    finally:
        provider.shutdown()
        finished.extend(memory.get_finished_spans())


# -- PydanticAI ---------------------------------------------------------------------------------
def _pydantic_instrumentation(provider: TracerProvider) -> Any:
    """PydanticAI 2.x's ``Instrumentation`` capability on our provider (1.x took
    ``Agent(instrument=InstrumentationSettings(...))``; 2.x has ``capabilities=[...]``, the
    ``agent.instrument`` setter and ``Agent.instrument_all(...)``)."""
    from pydantic_ai.capabilities import Instrumentation
    from pydantic_ai.models.instrumented import InstrumentationSettings

    return Instrumentation(settings=InstrumentationSettings(tracer_provider=provider))


def _weather_agent(client: Any, provider: TracerProvider, tool: Callable[[str], str]) -> Any:
    """The PydanticAI agent of every PydanticAI run: our model, instructions and weather tool,
    instrumented on ``provider``."""
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
    agent = Agent(
        model,
        name=AGENT_NAME,
        instructions=INSTRUCTIONS,
        capabilities=[_pydantic_instrumentation(provider)],
    )

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return tool(city)

    return agent


def run_pydantic_ai(collector_url: str, llm_url: str, service: str = "fw-pydantic-ai") -> Run:
    """PydanticAI's own OpenTelemetry instrumentation (its ``Instrumentation`` capability) over
    ``OpenAIChatModel``."""
    from openai import AsyncOpenAI

    counter = _ToolCounter()
    with telemetry(collector_url, service) as (provider, spans):

        async def main() -> str:
            async with AsyncOpenAI(base_url=llm_url, api_key=API_KEY) as client:
                agent = _weather_agent(client, provider, counter)
                result = await agent.run(QUESTION)
                return str(result.output)

        output = asyncio.run(main())
    return Run("pydantic-ai", service, output, counter.calls, tuple(spans))


def run_pydantic_ai_wrapped(
    collector_url: str,
    llm_url: str,
    service: str = "fw-pydantic-ai-wrapped",
    task_type: str = "forecast",
) -> Run:
    """The mixing case: ``@aw.agent(name, task_type)`` around a PydanticAI run, the tool also
    decorated with ``@aw.tool``; agentwatch and PydanticAI export to the same collector
    (agentwatch through ``aw.configure``, PydanticAI through its own provider). Async
    (``await agent.run``) rather than ``run_sync``: ``run_sync`` leaves its event loop and a
    pooled connection unclosed, which the test suite's warnings-as-errors would trip over; the
    spans are the same."""
    from openai import AsyncOpenAI

    import agentwatch as aw

    counter = _ToolCounter()
    ours = InMemorySpanExporter()
    aw.configure(
        service_name=service,
        exporter=OTLPSpanExporter(endpoint=collector_url.rstrip("/") + "/v1/traces", timeout=10),
        span_processors=[SimpleSpanProcessor(ours)],
    )
    try:
        with telemetry(collector_url, service) as (provider, spans):

            @aw.tool(name=TOOL_NAME, tier="read")
            def traced_weather(city: str) -> str:
                return counter(city)

            async def main() -> str:
                async with AsyncOpenAI(base_url=llm_url, api_key=API_KEY) as client:
                    agent = _weather_agent(client, provider, traced_weather)

                    @aw.agent(name=AGENT_NAME, task_type=task_type, tools=[TOOL_NAME])
                    async def handle(question: str) -> str:
                        return str((await agent.run(question)).output)

                    return await handle(QUESTION)

            output = asyncio.run(main())
    finally:
        aw.shutdown()
    everything = (*spans, *ours.get_finished_spans())
    return Run("pydantic-ai+aw.agent", service, output, counter.calls, everything)


# -- OpenAI Agents SDK --------------------------------------------------------------------------
def run_openai_agents(
    collector_url: str,
    llm_url: str,
    service: str = "fw-openai-agents",
    api: str = "responses",
) -> Run:
    """The OpenAI Agents SDK with OpenInference's ``OpenAIAgentsInstrumentor`` (its exclusive
    mode, the default, replaces the SDK's exporter to OpenAI's tracing backend). ``api`` is
    ``responses`` (the SDK's default) or ``chat_completions``."""
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
    )
    from openai import AsyncOpenAI
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    counter = _ToolCounter()

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return counter(city)

    with telemetry(collector_url, service) as (provider, spans):
        instrumentor = OpenAIAgentsInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:

            async def main() -> str:
                async with AsyncOpenAI(base_url=llm_url, api_key=API_KEY) as client:
                    model: Any
                    if api == "chat_completions":
                        model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
                    else:
                        model = OpenAIResponsesModel(model=MODEL, openai_client=client)
                    agent = Agent(
                        name=AGENT_NAME,
                        instructions=INSTRUCTIONS,
                        tools=[get_weather],
                        model=model,
                    )
                    result = await Runner.run(agent, QUESTION)
                    return str(result.final_output)

            output = asyncio.run(main())
        finally:
            instrumentor.uninstrument()
    return Run(f"openai-agents[{api}]", service, output, counter.calls, tuple(spans))


# -- LangGraph ----------------------------------------------------------------------------------
def run_langgraph(
    collector_url: str,
    llm_url: str,
    service: str = "fw-langgraph",
    graph_name: str | None = None,
) -> Run:
    """LangGraph's prebuilt ReAct agent over ``ChatOpenAI``, with OpenInference's
    ``LangChainInstrumentor``. ``graph_name`` is ``create_react_agent(name=...)`` (default:
    LangGraph's own, "LangGraph"); OpenInference makes any run whose name contains "agent" an
    AGENT span, so the name decides the root span's kind."""
    import warnings

    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from pydantic import SecretStr

    with warnings.catch_warnings():
        # LangGraph 1.x points to langchain.agents.create_agent (package not installed here).
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent

    counter = _ToolCounter()

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return counter(city)

    with telemetry(collector_url, service) as (provider, spans):
        instrumentor = LangChainInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            llm = ChatOpenAI(model=MODEL, base_url=llm_url, api_key=SecretStr(API_KEY))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                graph = create_react_agent(llm, [get_weather], prompt=INSTRUCTIONS, name=graph_name)
            state = graph.invoke({"messages": [("user", QUESTION)]})
            output = str(state["messages"][-1].content)
        finally:
            instrumentor.uninstrument()
    name = f"langgraph[{graph_name}]" if graph_name else "langgraph"
    return Run(name, service, output, counter.calls, tuple(spans))


# -- plain OpenAI client ------------------------------------------------------------------------
TOOLS: Final = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _plain_loop(llm_url: str, tool: Callable[[str], str]) -> str:
    """A hand-written two-step loop over ``client.chat.completions.create``."""
    from openai import OpenAI

    messages: list[Any] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": QUESTION},
    ]
    with OpenAI(base_url=llm_url, api_key=API_KEY) as client:
        for _ in range(5):
            reply = client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            message = reply.choices[0].message
            if not message.tool_calls:
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": tool(arguments["city"])}
                )
    raise AssertionError("the model never gave a final answer")


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_openai_v2(
    collector_url: str,
    llm_url: str,
    service: str = "fw-openai-v2",
    latest_experimental: bool = False,
) -> Run:
    """A plain ``openai`` client loop with ``opentelemetry-instrumentation-openai-v2``;
    ``latest_experimental`` opts into the newest GenAI conventions
    (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``)."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    counter = _ToolCounter()
    opt_in = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
    with (
        _environment(**(opt_in if latest_experimental else {})),
        telemetry(collector_url, service) as (provider, spans),
    ):
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call, unused-ignore]
        instrumentor.instrument(tracer_provider=provider)
        try:
            output = _plain_loop(llm_url, counter)
        finally:
            instrumentor.uninstrument()
    name = "openai-v2[latest]" if latest_experimental else "openai-v2"
    return Run(name, service, output, counter.calls, tuple(spans))


def run_openllmetry(collector_url: str, llm_url: str, service: str = "fw-openllmetry") -> Run:
    """A plain ``openai`` client loop with OpenLLMetry's ``opentelemetry-instrumentation-openai``
    (Traceloop)."""
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    counter = _ToolCounter()
    with telemetry(collector_url, service) as (provider, spans):
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call, unused-ignore]
        instrumentor.instrument(tracer_provider=provider)
        try:
            output = _plain_loop(llm_url, counter)
        finally:
            instrumentor.uninstrument()
    return Run("openllmetry", service, output, counter.calls, tuple(spans))


RUNNERS: Final[dict[str, Callable[[str, str], Run]]] = {
    "pydantic-ai": run_pydantic_ai,
    "pydantic-ai+aw.agent": run_pydantic_ai_wrapped,
    "openai-agents[responses]": run_openai_agents,
    "openai-agents[chat_completions]": lambda c, u: run_openai_agents(
        c, u, "fw-openai-agents-chat", api="chat_completions"
    ),
    "langgraph": run_langgraph,
    f"langgraph[{AGENT_NAME}]": lambda c, u: run_langgraph(
        c, u, "fw-langgraph-named", graph_name=AGENT_NAME
    ),
    "openai-v2": run_openai_v2,
    "openai-v2[latest]": lambda c, u: run_openai_v2(
        c, u, "fw-openai-v2-latest", latest_experimental=True
    ),
    "openllmetry": run_openllmetry,
}


# -- the same agents, uninstrumented: for agentwatch.instrument() to instrument -----------------
async def _plain_pydantic_ai(llm_url: str, tool: Callable[[str], str]) -> str:
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async with AsyncOpenAI(base_url=llm_url, api_key=API_KEY) as client:
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
        agent = Agent(model, name=AGENT_NAME, instructions=INSTRUCTIONS)

        @agent.tool_plain
        def get_weather(city: str) -> str:
            """Get the current weather in a city."""
            return tool(city)

        return str((await agent.run(QUESTION)).output)


async def _plain_openai_agents(llm_url: str, tool: Callable[[str], str]) -> str:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool
    from openai import AsyncOpenAI

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return tool(city)

    async with AsyncOpenAI(base_url=llm_url, api_key=API_KEY) as client:
        agent = Agent(
            name=AGENT_NAME,
            instructions=INSTRUCTIONS,
            tools=[get_weather],
            model=OpenAIResponsesModel(model=MODEL, openai_client=client),
        )
        return str((await Runner.run(agent, QUESTION)).final_output)


def _plain_langgraph(llm_url: str, tool: Callable[[str], str]) -> str:
    import warnings

    from langchain_core.tools import tool as langchain_tool
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    with warnings.catch_warnings():
        # LangGraph 1.x points to langchain.agents.create_agent (package not installed here).
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent

    @langchain_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return tool(city)

    llm = ChatOpenAI(model=MODEL, base_url=llm_url, api_key=SecretStr(API_KEY))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = create_react_agent(llm, [get_weather], prompt=INSTRUCTIONS, name=AGENT_NAME)
    state = graph.invoke({"messages": [("user", QUESTION)]})
    return str(state["messages"][-1].content)


PLAIN: Final[dict[str, Callable[[str, Callable[[str], str]], str]]] = {
    "pydantic-ai": lambda url, tool: asyncio.run(_plain_pydantic_ai(url, tool)),
    "openai-agents": lambda url, tool: asyncio.run(_plain_openai_agents(url, tool)),
    "langgraph": _plain_langgraph,
    "openai": _plain_loop,
}


def run_plain(framework: str, llm_url: str) -> tuple[str, int]:
    """Run ``framework``'s agent with no instrumentation set up here (``PLAIN``): the output
    and how many times the tool ran. Whatever records it is what the caller turned on."""
    counter = _ToolCounter()
    return PLAIN[framework](llm_url, counter), counter.calls
