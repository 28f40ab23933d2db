"""The trace follows the work into threads, thread pools and asyncio tasks started inside a
decorated call."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import agentwatch as aw
from agentwatch._testing import CapturedSpans
from tests.sdk.conftest import ContextErrors
from tests.sdk.support import parent_id, span_id, trace_id


@aw.tool(tier="read")
def fetch(item: int) -> int:
    return item * 10


def assert_children_of_agent(captured: CapturedSpans, agent_name: str, count: int) -> None:
    agent_span = captured.one(f"invoke_agent {agent_name}")
    tools = captured.named("execute_tool fetch")
    assert len(tools) == count
    assert {parent_id(t) for t in tools} == {span_id(agent_span)}
    assert {trace_id(t) for t in tools} == {trace_id(agent_span)}


def test_thread_started_inside_an_agent_parents_its_tool_spans(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.agent
    def fan_out() -> list[int]:
        results: list[int] = []
        threads = [threading.Thread(target=lambda i=i: results.append(fetch(i))) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(results)

    assert fan_out() == [0, 10, 20]
    assert_children_of_agent(agentwatch_spans, "fan_out", 3)
    assert context_errors() == []


def test_thread_subclass_overriding_run_is_covered(agentwatch_spans: CapturedSpans) -> None:
    class Worker(threading.Thread):
        def run(self) -> None:
            fetch(1)

    @aw.agent
    def fan_out() -> None:
        worker = Worker()
        worker.start()
        worker.join()

    fan_out()

    assert_children_of_agent(agentwatch_spans, "fan_out", 1)


def test_thread_pool_submit_and_map_parent_their_tool_spans(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.agent
    def fan_out() -> list[int]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            submitted = [pool.submit(fetch, i) for i in range(2)]
            mapped = list(pool.map(fetch, range(2, 4)))
        return [f.result() for f in submitted] + mapped

    assert fan_out() == [0, 10, 20, 30]
    assert_children_of_agent(agentwatch_spans, "fan_out", 4)
    assert context_errors() == []


def test_pool_created_before_the_agent_still_parents_correctly(
    agentwatch_spans: CapturedSpans,
) -> None:
    """Pool threads are reused across runs: each task must carry its submitter's context."""

    with ThreadPoolExecutor(max_workers=1) as pool:

        @aw.agent(name="run")
        def run(i: int) -> int:
            return pool.submit(fetch, i).result()

        run(1)
        run(2)

    runs = agentwatch_spans.named("invoke_agent run")
    tools = agentwatch_spans.named("execute_tool fetch")
    assert len(runs) == len(tools) == 2
    assert len({trace_id(r) for r in runs}) == 2
    for tool_span in tools:
        (owner,) = [r for r in runs if trace_id(r) == trace_id(tool_span)]
        assert parent_id(tool_span) == span_id(owner)


def test_run_in_executor_parents_its_tool_span(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent
    async def fan_out() -> int:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as pool:
            return await loop.run_in_executor(pool, fetch, 4)

    assert asyncio.run(fan_out()) == 40
    assert_children_of_agent(agentwatch_spans, "fan_out", 1)


def test_asyncio_gather_of_decorated_coroutines_shares_the_agent_parent(
    agentwatch_spans: CapturedSpans, context_errors: ContextErrors
) -> None:
    @aw.tool(name="fetch")
    async def fetch_async(item: int) -> int:
        await asyncio.sleep(0)
        return item

    @aw.agent
    async def fan_out() -> list[int]:
        return list(await asyncio.gather(*(fetch_async(i) for i in range(5))))

    assert asyncio.run(fan_out()) == [0, 1, 2, 3, 4]
    assert_children_of_agent(agentwatch_spans, "fan_out", 5)
    assert context_errors() == []


def test_concurrent_agents_in_tasks_keep_separate_traces(agentwatch_spans: CapturedSpans) -> None:
    @aw.tool(name="fetch")
    async def fetch_async(item: int) -> int:
        await asyncio.sleep(0)
        return item

    @aw.agent(name="worker")
    async def worker(item: int) -> int:
        await fetch_async(item)
        await asyncio.sleep(0)
        return await fetch_async(item)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(worker(i) for i in range(4))))

    assert asyncio.run(main()) == [0, 1, 2, 3]
    agents = agentwatch_spans.named("invoke_agent worker")
    assert len({trace_id(a) for a in agents}) == 4
    for agent_span in agents:
        children = agentwatch_spans.children(agent_span)
        assert [c.name for c in children] == ["execute_tool fetch"] * 2


def test_thread_started_outside_any_span_starts_its_own_trace(
    agentwatch_spans: CapturedSpans,
) -> None:
    thread = threading.Thread(target=fetch, args=(1,))
    thread.start()
    thread.join()

    assert agentwatch_spans.one("execute_tool fetch").parent is None


def test_only_the_otel_context_is_carried_into_threads(agentwatch_spans: CapturedSpans) -> None:
    user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user_var", default="unset")
    seen: list[str] = []

    @aw.agent
    def fan_out() -> None:
        user_var.set("set in the agent")
        thread = threading.Thread(target=lambda: seen.append(user_var.get()))
        thread.start()
        thread.join()

    fan_out()

    assert seen == ["unset"]
