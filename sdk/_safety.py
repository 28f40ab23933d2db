"""Telemetry must never break the agent it watches.

Internal errors are logged and swallowed. Under pytest they are re-raised so that our own bugs
fail tests instead of hiding in a log; ``AGENTWATCH_RAISE_INTERNAL_ERRORS=0`` turns that off.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("agentwatch")


def _should_raise() -> bool:
    flag = os.environ.get("AGENTWATCH_RAISE_INTERNAL_ERRORS")
    if flag is not None:
        return flag not in ("", "0", "false", "no")
    return "PYTEST_CURRENT_TEST" in os.environ


def internal_error(what: str) -> None:
    """Report the exception being handled as an agentwatch bug; call only inside ``except``."""
    if _should_raise():
        raise
    logger.exception(  # noqa: LOG004 - only ever called from an except block
        "agentwatch internal error while %s; the agent continues unaffected", what
    )
