"""``aw.replay``: an exported trace answers the agent's tool (and model) calls, and any way the
replayed run departs from the recording fails, saying which call."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import agentwatch as aw
from agentwatch import _semconv as semconv
from agentwatch._replay import active_replay
from agentwatch._testing import CapturedSpans
from tests.sdk.support import attrs

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def tool_step(
    seq: int,
    tool: str,
    arguments: Any = None,
    result: Any = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A tool_call line as storage/_action_log.py writes it (the fields replay reads)."""
    return {
        "trace_id": TRACE,
        "seq": seq,
        "step": "tool_call",
        "tool": tool,
        "tier": "read",
        "arguments": arguments,
        "result": result,
        "error": error,
    }


def model_step(seq: int, output: Any = None, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "trace_id": TRACE,
        "seq": seq,
        "step": "model_call",
        "model": "gpt-4o-2024-08-06",
        "input_tokens": 120,
        "output_tokens": 30,
        "output_messages": output,
        "error": error,
    }


def lines(*steps: dict[str, Any]) -> list[str]:
    """The steps as the JSON lines of an exported file, after an agent_run and before the
    outcome line, as the export writes them."""
    run = {"trace_id": TRACE, "seq": 0, "step": "agent_run", "agent": "support"}
    outcome = {"trace_id": TRACE, "seq": 99, "step": "outcome", "outcome": "completed"}
    return [json.dumps(step) for step in (run, *steps, outcome)]


# Any: under a replay a call returns what the log holds.
@aw.tool
def lookup_order(order_id: str) -> Any:
    raise AssertionError("a replayed tool must not run")


@aw.tool
def issue_refund(order_id: str, amount: float) -> str:
    raise AssertionError("a replayed tool must not run")


@aw.tool(name="crm.add_note")
def add_note(note: str) -> None:
    raise AssertionError("a replayed tool must not run")


@aw.tool
async def fetch_page(page: int) -> str:
    raise AssertionError("a replayed tool must not run")


@aw.llm(provider="openai")
def ask(prompt: str) -> Any:
    return {"live": prompt}


TWO_LOOKUPS = lines(
    tool_step(1, "lookup_order", {"order_id": "A-1"}, {"amount": 10.0}),
    tool_step(2, "lookup_order", {"order_id": "A-2"}, {"amount": 20.0}),
)

# -- answering tool calls --------------------------------------------------------------------


def test_a_tool_call_returns_the_recorded_result_without_running() -> None:
    with aw.replay(TWO_LOOKUPS[:2] + TWO_LOOKUPS[3:]):
        assert lookup_order("A-1") == {"amount": 10.0}


def test_repeated_identical_calls_get_the_recorded_results_in_order() -> None:
    log = lines(
        tool_step(1, "lookup_order", {"order_id": "A-1"}, {"status": "pending"}),
        tool_step(2, "lookup_order", {"order_id": "A-1"}, {"status": "shipped"}),
    )

    with aw.replay(log):
        assert [lookup_order("A-1"), lookup_order(order_id="A-1")] == [
            {"status": "pending"},
            {"status": "shipped"},
        ]


def test_calls_with_other_arguments_may_come_in_another_order_by_default() -> None:
    """As concurrent calls (a thread pool) do: each is matched by its arguments."""
    with aw.replay(TWO_LOOKUPS):
        assert lookup_order("A-2") == {"amount": 20.0}
        assert lookup_order("A-1") == {"amount": 10.0}


def test_an_ordered_replay_fails_a_call_out_of_recorded_order() -> None:
    with pytest.raises(aw.ReplayMismatch) as caught, aw.replay(TWO_LOOKUPS, ordered=True):
        lookup_order("A-2")

    assert str(caught.value) == (
        "replay mismatch: call 1 of tool 'lookup_order' has other arguments than recorded "
        'call 1 (seq 1):\n  expected: {"order_id": "A-1"}\n  got:      {"order_id": "A-2"}'
    )


def test_other_arguments_fail_naming_the_call_and_both_argument_sets() -> None:
    log = lines(tool_step(1, "issue_refund", {"order_id": "A-1", "amount": 10.0}, "ok"))

    with pytest.raises(aw.ReplayMismatch) as caught, aw.replay(log):
        issue_refund("A-1", 99.0)

    message = str(caught.value)
    assert "call 1 of tool 'issue_refund' has other arguments than recorded call 1" in message
    assert 'expected: {"order_id": "A-1", "amount": 10.0}' in message
    assert 'got:      {"order_id": "A-1", "amount": 99.0}' in message


def test_a_call_beyond_the_recorded_ones_fails() -> None:
    log = lines(tool_step(1, "lookup_order", {"order_id": "A-1"}, {"amount": 10.0}))

    with (  # noqa: PT012
        pytest.raises(aw.ReplayMismatch, match="call 2 of tool 'lookup_order' is one more"),
        aw.replay(log),
    ):
        lookup_order("A-1")
        lookup_order("A-1")


def test_a_tool_the_log_does_not_hold_fails_naming_the_tools_it_does() -> None:
    with pytest.raises(aw.ReplayMismatch) as caught, aw.replay(TWO_LOOKUPS):
        add_note("hello")

    assert str(caught.value) == (
        f"replay mismatch: tool 'crm.add_note' was called, but trace {TRACE} records no call "
        "of it (its tools: lookup_order)"
    )


def test_recorded_calls_never_made_fail_when_the_block_ends() -> None:
    with pytest.raises(aw.ReplayMismatch) as caught, aw.replay(TWO_LOOKUPS):
        lookup_order("A-1")

    assert str(caught.value) == (
        f"replay incomplete: 1 recorded call(s) of trace {TRACE} were never made: "
        "tool 'lookup_order' call 2 (seq 2)"
    )


def test_assert_complete_can_be_called_inside_the_block() -> None:
    with aw.replay(TWO_LOOKUPS) as replay:
        lookup_order("A-1")
        assert replay.unused() == ["tool 'lookup_order' call 2 (seq 2)"]
        with pytest.raises(aw.ReplayMismatch, match="never made"):
            replay.assert_complete()
        lookup_order("A-2")
        replay.assert_complete()


def test_a_mismatch_the_agent_swallows_fails_when_the_block_ends() -> None:
    """An agent's own ``except Exception`` cannot turn a diverged run into a passing test."""

    @aw.agent
    def forgiving_agent() -> str:
        try:
            add_note("not in the log")
        except Exception:
            return "carried on"
        return "no error"

    replay = aw.replay(lines(tool_step(1, "lookup_order", {"order_id": "A-1"}, None)))
    with pytest.raises(aw.ReplayMismatch, match="raised 1 error"), replay:  # noqa: PT012
        assert forgiving_agent() == "carried on"
        lookup_order("A-1")

    assert [type(f) for f in replay.failures] == [aw.ReplayMismatch]


def test_an_exception_leaving_the_block_is_not_replaced_by_the_completeness_check() -> None:
    with pytest.raises(KeyError), aw.replay(TWO_LOOKUPS):
        raise KeyError("the test's own failure")


def test_tools_run_for_real_again_after_the_block() -> None:
    @aw.tool
    def double(x: int) -> int:
        return 2 * x

    with aw.replay(lines(tool_step(1, "double", {"x": 1}, 40))):
        assert double(1) == 40
    assert double(1) == 2
    assert active_replay() is None


# -- recorded errors and missing content -----------------------------------------------------


def test_a_recorded_error_is_raised_again_also_as_its_builtin_type() -> None:
    """The agent's ``except TimeoutError`` handles the replayed error as it did in production."""
    log = lines(
        tool_step(
            3,
            "lookup_order",
            {"order_id": "A-4"},
            error={"type": "TimeoutError", "message": "slow"},
        )
    )

    with pytest.raises(TimeoutError) as caught, aw.replay(log):
        lookup_order("A-4")

    error = caught.value
    assert isinstance(error, aw.ReplayedToolError)
    assert isinstance(error, aw.AgentwatchError)
    assert (str(error), error.error_type, error.name, error.seq) == (
        "slow",
        "TimeoutError",
        "lookup_order",
        3,
    )


def test_a_recorded_error_of_a_non_builtin_type_is_a_replayed_tool_error() -> None:
    log = lines(
        tool_step(
            1, "lookup_order", {"order_id": "A-4"}, error={"type": "orders.Down", "message": ""}
        )
    )

    with pytest.raises(aw.ReplayedToolError) as caught, aw.replay(log):
        lookup_order("A-4")

    assert type(caught.value) is aw.ReplayedToolError
    assert str(caught.value) == "orders.Down"  # no message recorded: the type stands in


def test_a_log_recorded_without_content_says_results_were_not_captured() -> None:
    """Content capture off: no arguments, no result; never a silent None."""
    log = lines(tool_step(1, "lookup_order"))

    with pytest.raises(aw.ReplayError) as caught, aw.replay(log):
        lookup_order("A-1")

    assert "cannot replay call 1 of tool 'lookup_order' (seq 1)" in str(caught.value)
    assert "result were not captured" in str(caught.value)
    assert "capture_content=True" in str(caught.value)


def test_a_recorded_null_result_is_returned_as_none() -> None:
    """With content captured (the arguments are there) a null result is a real None."""
    log = lines(tool_step(1, "crm.add_note", {"note": "hi"}, None))

    with aw.replay(log):
        assert add_note("hi") is None


def test_a_result_cut_when_recorded_is_refused() -> None:
    log = lines(tool_step(1, "lookup_order", {"order_id": "A-1"}, "[1, 2, ...[truncated 90 chars]"))

    with pytest.raises(aw.ReplayError, match="were cut to max_content_chars"), aw.replay(log):
        lookup_order("A-1")


# -- arguments compare as @aw.tool records them ----------------------------------------------


@dataclass(frozen=True)
class Ticket:
    ticket_id: str


def test_arguments_compare_as_recorded_json_with_str_for_other_objects() -> None:
    @aw.tool
    def file_ticket(ticket: Ticket, tags: tuple[str, ...]) -> str:
        raise AssertionError("not run")

    recorded = {"ticket": "Ticket(ticket_id='T-1')", "tags": ["a", "b"]}
    with aw.replay(lines(tool_step(1, "file_ticket", recorded, "filed"))):
        assert file_ticket(Ticket("T-1"), ("a", "b")) == "filed"


def test_arguments_compare_redacted_and_mismatches_show_no_raw_secret() -> None:
    log = lines(tool_step(1, "crm.add_note", {"note": "mail [REDACTED:email]"}, None))

    with aw.replay(log):
        add_note("mail jane@example.com")  # redacted as recorded: it matches

    with pytest.raises(aw.ReplayMismatch) as caught, aw.replay(log):
        add_note("key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789")
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz" not in str(caught.value)
    assert "[REDACTED:" in str(caught.value)


def test_the_redactor_the_trace_was_recorded_with_can_be_given() -> None:
    redact = aw.make_redactor([r"\bC-\d+\b"])
    recorded = {"note": f"customer {redact('C-7')}"}

    with aw.replay(lines(tool_step(1, "crm.add_note", recorded, None)), redact=redact):
        add_note("customer C-7")


def test_arguments_cut_when_recorded_compare_up_to_the_cut() -> None:
    note = "x" * 50
    text = json.dumps({"note": note})
    recorded = f"{text[:20]}...[truncated {len(text) - 20} chars]"
    log = lines(
        tool_step(1, "crm.add_note", recorded, None), tool_step(2, "crm.add_note", recorded, None)
    )

    with pytest.raises(aw.ReplayMismatch, match=r"call 2 of tool 'crm\.add_note'"), aw.replay(log):  # noqa: PT012
        add_note(note)
        add_note("y" * 50)


# -- async, threads, nested agents -----------------------------------------------------------


def test_async_tools_and_gathered_calls_are_replayed() -> None:
    log = lines(*(tool_step(n, "fetch_page", {"page": n}, f"page {n}") for n in (1, 2, 3)))

    async def agent() -> list[str]:
        return list(await asyncio.gather(*(fetch_page(n) for n in (1, 2, 3))))

    with aw.replay(log):
        assert asyncio.run(agent()) == ["page 1", "page 2", "page 3"]


def test_calls_in_a_thread_pool_and_a_thread_are_replayed() -> None:
    found: list[Any] = []
    with aw.replay(TWO_LOOKUPS):
        with ThreadPoolExecutor(max_workers=1) as pool:
            found.append(pool.submit(lookup_order, "A-2").result())
        thread = threading.Thread(target=lambda: found.append(lookup_order("A-1")))
        thread.start()
        thread.join()

    assert found == [{"amount": 20.0}, {"amount": 10.0}]


def test_nested_agents_run_while_their_tools_are_replayed(agentwatch_spans: CapturedSpans) -> None:
    @aw.agent(name="billing")
    def billing(order_id: str) -> str:
        return issue_refund(order_id, lookup_order(order_id)["amount"])

    @aw.agent(name="support")
    def support() -> str:
        return billing("A-1")

    log = lines(
        tool_step(1, "lookup_order", {"order_id": "A-1"}, {"amount": 10.0}),
        tool_step(2, "issue_refund", {"order_id": "A-1", "amount": 10.0}, "refunded"),
    )
    with aw.replay(log):
        assert support() == "refunded"

    agents = {s.name: attrs(s) for s in agentwatch_spans.agents()}
    assert set(agents) == {"invoke_agent support", "invoke_agent billing"}
    assert all(semconv.REPLAY not in a for a in agents.values())
    assert all(attrs(s)[semconv.REPLAY] is True for s in agentwatch_spans.tools())


def test_generator_tools_cannot_be_replayed() -> None:
    @aw.tool
    def pages() -> Iterator[int]:
        yield 1

    with (
        pytest.raises(aw.ReplayError, match="'pages' is a generator"),
        aw.replay(lines(tool_step(1, "pages", {}, None))),
    ):
        list(pages())


# -- spans and the telemetry boundary --------------------------------------------------------


def test_replayed_spans_are_recorded_and_marked(agentwatch_spans: CapturedSpans) -> None:
    log = lines(
        tool_step(
            1, "lookup_order", {"order_id": "A-4"}, error={"type": "KeyError", "message": "x"}
        )
    )
    with pytest.raises(KeyError), aw.replay(log):
        lookup_order("A-4")

    span = agentwatch_spans.one("execute_tool lookup_order")
    assert attrs(span)[semconv.REPLAY] is True
    assert attrs(span)[semconv.ERROR_TYPE] == "agentwatch._replay.ReplayedKeyError"


def test_a_mismatch_is_raised_even_where_internal_errors_are_swallowed(
    monkeypatch: pytest.MonkeyPatch, agentwatch_spans: CapturedSpans
) -> None:
    """Users' suites swallow agentwatch's internal errors; a mismatch is not one of them."""
    monkeypatch.delenv("AGENTWATCH_RAISE_INTERNAL_ERRORS", raising=False)

    with pytest.raises(aw.ReplayMismatch), aw.replay(TWO_LOOKUPS):
        add_note("not recorded")

    assert attrs(agentwatch_spans.one("execute_tool crm.add_note"))[semconv.ERROR_TYPE] == (
        "agentwatch._errors.ReplayMismatch"
    )


def test_an_inner_replay_answers_until_it_ends_then_the_outer_one_again() -> None:
    outer = lines(tool_step(1, "lookup_order", {"order_id": "A-1"}, "outer"))
    inner = lines(tool_step(1, "lookup_order", {"order_id": "A-1"}, "inner"))

    with aw.replay(outer):
        with aw.replay(inner):
            assert lookup_order("A-1") == "inner"
        assert lookup_order("A-1") == "outer"


def test_a_replay_cannot_be_started_twice() -> None:
    with aw.replay(TWO_LOOKUPS) as replay:
        with pytest.raises(aw.ReplayError, match="already active"):
            replay.start()
        lookup_order("A-1")
        lookup_order("A-2")


# -- model calls -----------------------------------------------------------------------------


def test_model_calls_run_unless_models_is_set() -> None:
    with aw.replay(lines(model_step(1, "recorded answer"))) as replay:
        assert ask("hi") == {"live": "hi"}
        assert replay.unused() == []  # model calls are not expected without models=


def test_models_true_answers_with_the_recorded_output_text(agentwatch_spans: CapturedSpans) -> None:
    with aw.replay(lines(model_step(1, "first"), model_step(2, "second")), models=True):
        assert [ask("a"), ask("b")] == ["first", "second"]

    assert [attrs(s)[semconv.REPLAY] for s in agentwatch_spans.llm_calls()] == [True, True]


def test_a_models_callable_builds_the_response_from_the_recorded_step(
    agentwatch_spans: CapturedSpans,
) -> None:
    def openai_shaped(step: Any) -> dict[str, Any]:
        return {
            "model": step["model"],
            "choices": [{"message": {"content": step["output_messages"]}}],
            "usage": {"prompt_tokens": step["input_tokens"], "completion_tokens": 30},
        }

    with aw.replay(lines(model_step(1, "answer")), models=openai_shaped):
        assert ask("a")["choices"][0]["message"]["content"] == "answer"

    (chat,) = agentwatch_spans.llm_calls()
    assert attrs(chat)[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 120  # the response is recorded


def test_model_calls_fail_when_not_captured_beyond_the_recording_or_left_unmade() -> None:
    with (
        pytest.raises(aw.ReplayError, match="output messages were not captured"),
        aw.replay(lines(model_step(1)), models=True),
    ):
        ask("a")
    with (  # noqa: PT012
        pytest.raises(aw.ReplayMismatch, match="model call 2 is one more"),
        aw.replay(lines(model_step(1, "x")), models=True),
    ):
        ask("a")
        ask("b")
    with (
        pytest.raises(aw.ReplayMismatch, match=r"model call 1, gpt-4o-2024-08-06 \(seq 1\)"),
        aw.replay(lines(model_step(1, "x")), models=True),
    ):
        pass


def test_a_recorded_model_error_is_raised_again() -> None:
    log = lines(model_step(1, error={"type": "ConnectionError", "message": "reset"}))

    with pytest.raises(ConnectionError, match="reset"), aw.replay(log, models=True):
        ask("a")


def test_streaming_model_functions_yield_the_replayed_answer() -> None:
    @aw.llm
    def stream(prompt: str) -> Iterator[str]:
        yield "live"

    @aw.llm
    async def astream(prompt: str) -> AsyncIterator[str]:
        yield "live"

    async def consume() -> list[str]:
        return [item async for item in astream("b")]

    log = lines(model_step(1, "one"), model_step(2, "two"))
    with aw.replay(log, models=lambda step: [step["output_messages"], "!"]):
        assert list(stream("a")) == ["one", "!"]
        assert asyncio.run(consume()) == ["two", "!"]


# -- reading the log -------------------------------------------------------------------------


def test_a_file_path_and_parsed_steps_are_read_like_lines(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(TWO_LOOKUPS) + "\n\n")

    for source in (path, str(path), [json.loads(line) for line in TWO_LOOKUPS]):
        with aw.replay(source) as replay:
            assert replay.trace_id == TRACE
            lookup_order("A-1")
            lookup_order("A-2")


@pytest.mark.parametrize(
    ("log", "message"),
    [
        (["{not json"], "trace log line 1 is not JSON"),
        ([TWO_LOOKUPS[0], "[1, 2]"], "trace log line 2 is not a JSON object"),
        (['{"trace_id": "x", "step": "tool_call"}'], "line 1 has no 'step' and 'seq'"),
        (['{"seq": 1, "step": "tool_call"}'], "line 1 is a tool_call without a 'tool' name"),
        ([], "the trace log holds no steps"),
        ([""], "the trace log holds no steps"),
    ],
)
def test_a_malformed_log_fails_saying_which_line(log: list[str], message: str) -> None:
    with pytest.raises(aw.ReplayError, match=message):
        aw.replay(log)


def test_a_log_of_several_traces_is_refused() -> None:
    other = json.dumps({**json.loads(TWO_LOOKUPS[1]), "trace_id": "f" * 32})

    with pytest.raises(aw.ReplayError, match="holds 2 traces"):
        aw.replay([*TWO_LOOKUPS, other])


def test_an_unreadable_path_or_a_bare_string_of_lines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(aw.ReplayError, match="cannot read the trace log"):
        aw.replay(tmp_path / "missing.jsonl")
    with pytest.raises(aw.ReplayError, match="takes a path"):
        aw.replay(TWO_LOOKUPS[1].encode())  # type: ignore[arg-type]


def test_the_log_of_another_run_fails_on_the_first_call_it_does_not_hold() -> None:
    with (
        pytest.raises(aw.ReplayMismatch, match="tool 'issue_refund' was called"),
        aw.replay(TWO_LOOKUPS),
    ):
        issue_refund("A-1", 10.0)


# -- the pytest fixture ----------------------------------------------------------------------


def test_the_fixture_replays_for_the_rest_of_the_test(agentwatch_replay: Any) -> None:
    replay = agentwatch_replay(TWO_LOOKUPS)

    assert active_replay() is replay
    assert [lookup_order("A-1"), lookup_order("A-2")] == [{"amount": 10.0}, {"amount": 20.0}]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def run_pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_fixture_errors_at_teardown_on_recorded_calls_never_made(tmp_path: Path) -> None:
    (tmp_path / "trace.jsonl").write_text("\n".join(TWO_LOOKUPS))
    (tmp_path / "test_user.py").write_text(
        "import agentwatch as aw\n\n"
        "@aw.tool\n"
        "def lookup_order(order_id):\n"
        "    raise AssertionError('not replayed')\n\n"
        "def test_makes_one_of_two_calls(agentwatch_replay):\n"
        "    agentwatch_replay('trace.jsonl')\n"
        "    assert lookup_order('A-1') == {'amount': 10.0}\n"
    )

    result = run_pytest(tmp_path, "-W", "error")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert "tool 'lookup_order' call 2 (seq 2)" in result.stdout


# -- the example: examples/test_replay_incident.py -------------------------------------------


def test_the_example_incident_test_passes_as_it_is() -> None:
    result = run_pytest(ROOT, "examples/test_replay_incident.py")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.parametrize(
    ("change", "failure"),
    [
        pytest.param(
            (
                'issue_refund(ticket.order_id, order["amount"])',
                "issue_refund(ticket.order_id, 1.0)",
            ),
            "call 1 of tool 'issue_refund' has other arguments",
            id="other-arguments",
        ),
        pytest.param(
            ('issue_refund(ticket.order_id, order["amount"])', "close_account(ticket.customer_id)"),
            "tool 'close_account' was called, but trace",
            id="another-tool",
        ),
        pytest.param(
            ('["refund policy", "shipping delays"]', '["refund policy"]'),
            "never made: tool 'search_kb' call 2 (seq 4)",
            id="a-call-skipped",
        ),
    ],
)
def test_the_example_incident_test_fails_when_the_agent_changes(
    tmp_path: Path, change: tuple[str, str], failure: str
) -> None:
    for name in ("support_agent.py", "record_incident.py", "test_replay_incident.py"):
        shutil.copy2(EXAMPLES / name, tmp_path / name)
    shutil.copy2(EXAMPLES / "incident_trace.jsonl", tmp_path / "incident_trace.jsonl")
    agent = tmp_path / "support_agent.py"
    source = agent.read_text()
    assert change[0] in source
    agent.write_text(source.replace(change[0], change[1]))

    result = run_pytest(tmp_path, "test_replay_incident.py")

    assert result.returncode == 1, result.stdout + result.stderr
    assert failure in result.stdout


# Fields that differ from one recording to the next: ids, clocks, prices.
VOLATILE = {"trace_id", "span_id", "parent_span_id", "start_ns", "duration_ms", "cost_usd"}


def stable_fields(path: Path) -> list[dict[str, Any]]:
    steps = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in step.items() if k not in VOLATILE} for step in steps]


@pytest.mark.slow
def test_the_committed_incident_is_what_the_recorder_writes(tmp_path: Path) -> None:
    """examples/incident_trace.jsonl came through SDK -> collector -> store -> export: the
    recorder (in its own process: chDB opens one store per process) writes it again."""
    target = tmp_path / "incident.jsonl"

    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "record_incident.py"), str(target)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert stable_fields(target) == stable_fields(EXAMPLES / "incident_trace.jsonl")
