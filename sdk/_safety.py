"""Telemetry must never break the agent it watches.

Internal errors are logged and swallowed, in production and in our users' test suites alike.
``AGENTWATCH_RAISE_INTERNAL_ERRORS=1`` re-raises them instead, so that our bugs fail tests rather
than hide in a log: agentwatch's own test suite sets it (tests/conftest.py).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("agentwatch")


def _should_raise() -> bool:
    flag = os.environ.get("AGENTWATCH_RAISE_INTERNAL_ERRORS", "")
    return flag.strip().lower() not in ("", "0", "false", "no")


def internal_error(what: str) -> None:
    """Report the exception being handled as an agentwatch bug; call only inside ``except``."""
    if _should_raise():
        raise
    logger.exception(  # noqa: LOG004 - only ever called from an except block
        "agentwatch internal error while %s; the agent continues unaffected", what
    )
