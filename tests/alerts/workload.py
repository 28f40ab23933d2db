"""Spans for alert tests and the alert benchmark, built as the collector stores them.

``Spans`` collects tasks (an ``invoke_agent`` span, a priced ``chat`` span and an
``execute_tool`` span per trace) and health probes (a ``health_check`` root span with an agent
run inside), then hands them over as one Arrow table for ``EmbeddedStore.insert_arrow``. Only
the exporter columns and ``CostUsd``/``Priced`` are written: the typed columns (Operation,
TaskType, Outcome, HealthPassed, ...) are derived by the table's DEFAULT expressions from the
attribute maps, as for any writer.

``steady_workload`` fills windows with seeded noise: tasks per window and task type ~ Poisson,
cost per task lognormal, failures and escalations Bernoulli; a ``Spike`` multiplies one task
type's cost or sets its error rate over a time range.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

NS = 1_000_000_000
_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ns", tz="UTC")


def ns(moment: datetime) -> int:
    return round(moment.timestamp() * 1e6) * 1000


def at(moment_ns: int) -> datetime:
    return datetime.fromtimestamp(moment_ns / NS, UTC)


@dataclass
class Spans:
    """Rows for ``otel_traces``, column by column."""

    timestamp: list[int] = field(default_factory=list)
    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    service: list[str] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    priced: list[int] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    """Every trace id made, in order."""

    def _span(
        self,
        start_ns: int,
        trace: str,
        parent: str,
        name: str,
        service: str,
        attributes: dict[str, str],
        *,
        duration_ns: int,
        status: str = "Unset",
        cost: float = 0.0,
    ) -> str:
        span = uuid.uuid4().hex[:16]
        self.timestamp.append(start_ns)
        self.trace_id.append(trace)
        self.span_id.append(span)
        self.parent.append(parent)
        self.name.append(name)
        self.service.append(service)
        self.attributes.append(attributes)
        self.duration.append(duration_ns)
        self.status.append(status)
        self.cost.append(cost)
        self.priced.append(1 if cost > 0 else 0)
        return span

    def task(
        self,
        start_ns: int,
        *,
        task_type: str = "refund",
        agent: str = "support",
        service: str = "support-bot",
        outcome: str = "completed",
        cost: float = 0.01,
        input_tokens: int = 800,
        output_tokens: int = 200,
        model: str = "gpt-4o",
        duration_ms: float = 900.0,
        trace: str | None = None,
        parent: str = "",
    ) -> str:
        """One agent run (its own trace unless ``trace`` is given): agent, chat, tool spans."""
        trace = trace or uuid.uuid4().hex
        if parent == "":
            self.traces.append(trace)
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "agentwatch.task.type": task_type,
            "agentwatch.task.outcome": outcome,
        }
        status = "Unset"
        if outcome == "failed":
            attributes["error.type"] = "TimeoutError"
            status = "Error"
        duration_ns = round(duration_ms * 1e6)
        root = self._span(
            start_ns,
            trace,
            parent,
            f"invoke_agent {agent}",
            service,
            attributes,
            duration_ns=duration_ns,
            status=status,
        )
        self._span(
            start_ns + 1_000_000,
            trace,
            root,
            f"chat {model}",
            service,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": str(input_tokens),
                "gen_ai.usage.output_tokens": str(output_tokens),
            },
            duration_ns=duration_ns // 2,
            cost=cost,
        )
        self._span(
            start_ns + 2_000_000,
            trace,
            root,
            "execute_tool lookup_order",
            service,
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
            duration_ns=duration_ns // 4,
        )
        return trace

    def call(self, start_ns: int, *, cost: float, model: str = "gpt-4o") -> str:
        """A priced model call outside any agent run: its own trace, one chat span."""
        trace = uuid.uuid4().hex
        self.traces.append(trace)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": "100",
            "gen_ai.usage.output_tokens": "10",
        }
        self._span(
            start_ns,
            trace,
            "",
            f"chat {model}",
            "support-bot",
            attributes,
            duration_ns=NS,
            cost=cost,
        )
        return trace

    def probe(
        self,
        start_ns: int,
        *,
        check: str = "refund-policy",
        passed: bool = True,
        expectation: str = "",
        reason: str = "",
        service: str = "support-bot",
        task_type: str = "refund",
        cost: float = 0.01,
    ) -> str:
        """A health check run: its root span, and the agent run it asked inside its trace."""
        trace = uuid.uuid4().hex
        self.traces.append(trace)
        attributes = {
            "agentwatch.health.check": check,
            "agentwatch.health.passed": "true" if passed else "false",
        }
        if expectation:
            attributes["agentwatch.health.failed_expectation"] = expectation
        if reason:
            attributes["agentwatch.health.reason"] = reason
        root = self._span(
            start_ns, trace, "", f"health_check {check}", service, attributes, duration_ns=NS
        )
        self.task(
            start_ns + 1000,
            trace=trace,
            parent=root,
            service=service,
            task_type=task_type,
            cost=cost,
        )
        return trace

    def __len__(self) -> int:
        return len(self.timestamp)

    def table(self) -> pa.Table:
        string = pa.string()
        return pa.table(
            {
                "Timestamp": pa.array(self.timestamp, _TS),
                "TraceId": pa.array(self.trace_id, string),
                "SpanId": pa.array(self.span_id, string),
                "ParentSpanId": pa.array(self.parent, string),
                "SpanName": pa.array(self.name, string),
                "SpanKind": pa.array(["Internal"] * len(self), string),
                "ServiceName": pa.array(self.service, string),
                "ResourceAttributes": pa.array(
                    [[("deployment.environment.name", "prod")]] * len(self), _MAP
                ),
                "SpanAttributes": pa.array([list(a.items()) for a in self.attributes], _MAP),
                "Duration": pa.array(self.duration, pa.uint64()),
                "StatusCode": pa.array(self.status, string),
                "CostUsd": pa.array(self.cost, pa.float64()),
                "Priced": pa.array(self.priced, pa.uint8()),
            }
        )


@dataclass(frozen=True)
class Profile:
    """How one task type behaves per window."""

    task_type: str
    tasks_per_window: float = 40.0
    cost_per_task: float = 0.02
    cost_cv: float = 0.6
    error_rate: float = 0.02
    escalation_rate: float = 0.05
    agent: str = "support"
    model: str = "gpt-4o"


@dataclass(frozen=True)
class Spike:
    """From ``start_ns`` to ``end_ns``, ``task_type`` costs ``cost_factor`` x per task and
    fails at ``error_rate`` (None: unchanged)."""

    task_type: str
    start_ns: int
    end_ns: int
    cost_factor: float = 1.0
    error_rate: float | None = None

    def covers(self, task_type: str, moment_ns: int) -> bool:
        return task_type == self.task_type and self.start_ns <= moment_ns < self.end_ns


PROFILES: tuple[Profile, ...] = (
    Profile("refund", tasks_per_window=40, cost_per_task=0.02),
    Profile("billing", tasks_per_window=40, cost_per_task=0.01, model="gpt-4o-mini"),
    Profile("order_status", tasks_per_window=60, cost_per_task=0.005, agent="tracker"),
)


def _poisson(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _lognormal(rng: random.Random, mean: float, cv: float) -> float:
    sigma2 = math.log(1 + cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def steady_workload(
    spans: Spans,
    *,
    start_ns: int,
    windows: int,
    window_s: int,
    seed: int,
    profiles: Sequence[Profile] = PROFILES,
    spikes: Iterable[Spike] = (),
) -> Spans:
    """Tasks for ``windows`` windows from ``start_ns``, each at a random moment inside its
    window, with seeded noise; ``spikes`` change one task type over a time range."""
    rng = random.Random(seed)
    spikes = list(spikes)
    window_ns = window_s * NS
    for w in range(windows):
        for profile in profiles:
            for _ in range(_poisson(rng, profile.tasks_per_window)):
                moment = start_ns + w * window_ns + rng.randrange(window_ns)
                spike = next((s for s in spikes if s.covers(profile.task_type, moment)), None)
                factor = spike.cost_factor if spike is not None else 1.0
                error_rate = profile.error_rate
                if spike is not None and spike.error_rate is not None:
                    error_rate = spike.error_rate
                draw = rng.random()
                if draw < error_rate:
                    outcome = "failed"
                elif draw < error_rate + profile.escalation_rate:
                    outcome = "escalated"
                else:
                    outcome = "completed"
                spans.task(
                    moment,
                    task_type=profile.task_type,
                    agent=profile.agent,
                    outcome=outcome,
                    cost=_lognormal(rng, profile.cost_per_task * factor, profile.cost_cv),
                    model=profile.model,
                    duration_ms=_lognormal(rng, 900.0, 0.4),
                )
    return spans
