"""Shared fixtures. Our own suite opts in to re-raising agentwatch's internal errors, so that our
bugs fail tests instead of hiding in a log (agentwatch._safety); users' suites do not.

Set at import, before any test runs: subprocesses the tests start inherit it too.
"""

from __future__ import annotations

import os

os.environ.setdefault("AGENTWATCH_RAISE_INTERNAL_ERRORS", "1")
