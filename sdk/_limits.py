"""Budgets for one agent run: iterations, tokens, cost, tool calls, wall time."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from agentwatch._errors import AgentLimitExceeded, ConfigurationError


@dataclass(frozen=True, slots=True)
class Limits:
    """The most one agent run may use; ``None`` leaves that dimension unlimited."""

    max_iterations: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_tool_calls: int | None = None
    max_wall_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_iterations",
            "max_tokens",
            "max_cost_usd",
            "max_tool_calls",
            "max_wall_time_s",
        ):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigurationError(
                    f"Limits.{name} must be a finite number >= 0, not {value!r}"
                )


@lru_cache(maxsize=256)
def _price(model: str, provider: str | None, usage_key: tuple[int, int, int, int]) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError as exc:
        raise ConfigurationError(
            "Limits(max_cost_usd=...) prices tokens locally: pip install 'agentwatch[cost]'"
        ) from exc
    input_tokens, output_tokens, cache_read, cache_write = usage_key
    try:
        result = calc_price(
            Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            model_ref=model,
            provider_id=provider,
        )
    except LookupError:
        return None
    return float(result.total_price)


def estimate_cost_usd(
    model: str,
    provider: str | None,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """Cost of one call from the bundled price table; None when the model has no known price."""
    return _price(
        model, provider, (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    )


@dataclass(slots=True)
class Budget:
    """What one run has used so far against its ``Limits``.

    A nested agent's budget has the outer run's as ``parent``: tokens, cost and tool calls
    count against every enclosing budget (an outer agent's limits cover all work done inside
    it), while iterations are each agent's own loop.
    """

    limits: Limits
    parent: Budget | None = None
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0

    def chain(self) -> Iterator[Budget]:
        budget: Budget | None = self
        while budget is not None:
            yield budget
            budget = budget.parent

    def add_tool_call(self) -> None:
        for budget in self.chain():
            budget.tool_calls += 1

    def add_tokens(self, tokens: int) -> None:
        for budget in self.chain():
            budget.tokens += tokens

    def add_cost(self, usd: float) -> None:
        for budget in self.chain():
            budget.cost_usd += usd

    def limits_cost(self) -> bool:
        """Whether any enclosing budget has a cost limit (only then is usage priced)."""
        return any(budget.limits.max_cost_usd is not None for budget in self.chain())

    def first_exceeded(self) -> AgentLimitExceeded | None:
        for budget in self.chain():
            exceeded = budget._own_first_exceeded()
            if exceeded is not None:
                return exceeded
        return None

    def _own_first_exceeded(self) -> AgentLimitExceeded | None:
        limits = self.limits
        checks: tuple[tuple[str, float, float | None], ...] = (
            ("iterations", self.iterations, limits.max_iterations),
            ("tokens", self.tokens, limits.max_tokens),
            ("cost", self.cost_usd, limits.max_cost_usd),
            ("tool_calls", self.tool_calls, limits.max_tool_calls),
        )
        for name, value, maximum in checks:
            if maximum is not None and value > maximum:
                return AgentLimitExceeded(name, value, maximum)
        if limits.max_wall_time_s is not None:
            elapsed = time.monotonic() - self.started
            if elapsed > limits.max_wall_time_s:
                return AgentLimitExceeded("wall_time", elapsed, limits.max_wall_time_s)
        return None
