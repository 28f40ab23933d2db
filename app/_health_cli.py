"""``agentwatch health run``: import probes by ``module:probe``, run each once, report."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from agentwatch._config import configure, force_flush, shutdown
from agentwatch._errors import ConfigurationError
from agentwatch._health import Probe, registered_health_checks, run_health_checks


def load_probes(target: str) -> list[Probe[Any, Any]]:
    """The probes named by ``module:attr`` (one probe, or a list of them) or by ``module`` (every
    probe that module registers). The current directory is importable, as with ``python -m``."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ConfigurationError(f"{target!r}: expected module:probe")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure (SyntaxError, a raising module) is a bad target
        raise ConfigurationError(
            f"{target!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not attr:
        found = [p for p in registered_health_checks() if p.fn.__module__ == module.__name__]
        if not found:
            raise ConfigurationError(f"{target!r}: the module registers no health checks")
        return found
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(f"{target!r}: {module_name} has no {attr!r}") from None
    if isinstance(value, Probe):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, Probe) for v in value):
        return list(value)
    raise ConfigurationError(
        f"{target!r} is a {type(value).__name__}, not a function decorated with @health_check"
    )


def run_from_command_line(
    targets: Sequence[str],
    *,
    endpoint: str | None,
    service_name: str,
    out: IO[str],
    err: IO[str],
) -> int:
    """``agentwatch health run``: 0 when every probe passed, 1 when any failed, 2 on bad input.

    With ``endpoint`` the health check spans are exported there (OTLP/HTTP) before exiting.
    """
    try:
        probes: list[Probe[Any, Any]] = []
        for target in targets:
            probes.extend(p for p in load_probes(target) if p not in probes)
    except ConfigurationError as exc:
        print(f"agentwatch health run: error: {exc}", file=err)
        return 2
    if endpoint is not None:
        try:
            configure(service_name=service_name, endpoint=endpoint)
        except ConfigurationError as exc:
            print(f"agentwatch health run: error: {exc}", file=err)
            return 2
    try:
        results = run_health_checks(probes)
    finally:
        if endpoint is not None:
            if not force_flush():
                print(f"agentwatch health run: could not export spans to {endpoint}", file=err)
            shutdown()
    for result in results:
        print(result, file=out)
    failed = sum(not r.passed for r in results)
    plural = "" if len(results) == 1 else "s"
    print(f"{len(results)} health check{plural}, {failed} failed", file=out)
    return 1 if failed else 0
