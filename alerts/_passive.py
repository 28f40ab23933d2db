"""Passive health over the store: the three queries of ``storage/_health_queries``, judged.

``check_passive_health`` reads the latest windows and hands the rows to the pure judging of
``_passive_detect``; the dashboard's Health page calls it, and the alert evaluator could (see
``PassiveFinding.breaching`` and ``group_key``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from agentwatch.alerts._passive_detect import (
    PassiveFinding,
    PassiveSettings,
    confidence_findings,
    longer_answer_findings,
    silent_agent_findings,
)
from agentwatch.storage import _health_queries as health_queries
from agentwatch.storage._store import Store

EVERYTHING: Final = health_queries.Scope()
DEFAULT_SETTINGS: Final = PassiveSettings()


def end_ns(now: datetime, settings: PassiveSettings) -> int:
    """Where the latest window ends for an evaluation at ``now``."""
    return round((now.timestamp() - settings.settle_s) * 1e6) * 1000


def check_passive_health(
    store: Store,
    now: datetime,
    settings: PassiveSettings = DEFAULT_SETTINGS,
    scope: health_queries.Scope = EVERYTHING,
) -> list[PassiveFinding]:
    """Every passive finding at ``now``: silent agents, then longer answers, then confidence
    drops, each sorted by subject. Three queries over ``baseline_windows + 1`` windows."""
    window: dict[str, Any] = {
        "end_ns": end_ns(now, settings),
        "window_s": settings.window_s,
        "windows": settings.baseline_windows + 1,
        "scope": scope,
    }
    return [
        *silent_agent_findings(health_queries.agent_runs(store, **window).dicts(), settings),
        *longer_answer_findings(
            health_queries.chat_output_tokens(store, **window).dicts(), settings
        ),
        *confidence_findings(health_queries.decision_confidence(store, **window).dicts(), settings),
    ]
