"""One exception tree: everything agentwatch raises is an ``AgentwatchError``.

Users catch ``aw.AgentwatchError`` to handle anything from us, and ``ValueError`` for bad
configuration; a new ``class Foo(Exception)`` anywhere in the package fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import agentwatch
from agentwatch import AgentwatchError, ConfigurationError

# Scripts, not modules: importing them runs them (``streamlit run``, ``python -m agentwatch``).
SCRIPTS = {"agentwatch.__main__", "agentwatch.dashboards.app"}
SCRIPT_PACKAGES = ("agentwatch.dashboards.pages",)
# The layers the walk must reach, so an empty walk cannot pass.
LAYERS = ("collector", "storage", "alerts", "query", "dashboards", "app")


def module_names() -> list[str]:
    # The layers are separate folders mapped into the package (package-dir), so an editable
    # install does not list them under ``agentwatch.__path__``: walk each one's own path.
    packages = [agentwatch, *(importlib.import_module(f"agentwatch.{layer}") for layer in LAYERS)]
    names = {package.__name__ for package in packages}
    for package in packages:
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            names.add(info.name)
    return sorted(
        name for name in names if name not in SCRIPTS and not name.startswith(SCRIPT_PACKAGES)
    )


def modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in module_names()]


def defined_exceptions() -> list[type[BaseException]]:
    return [
        cls
        for module in modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]


def test_the_walk_reaches_every_layer() -> None:
    names = set(module_names())
    for layer in LAYERS:
        assert f"agentwatch.{layer}" in names
        assert any(name.startswith(f"agentwatch.{layer}._") for name in names), layer
    assert "agentwatch._errors" in names


def test_every_exception_defined_in_the_package_is_an_agentwatch_error() -> None:
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in defined_exceptions()
        if not issubclass(cls, AgentwatchError)
    ]
    assert outside == []


def test_configuration_errors_are_value_errors() -> None:
    exceptions = defined_exceptions()
    configuration = [
        cls
        for cls in exceptions
        if cls.__name__.endswith(("ConfigurationError", "RulesError"))
        or issubclass(cls, ConfigurationError)
    ]
    assert ConfigurationError in configuration
    assert [c.__qualname__ for c in configuration if not issubclass(c, ValueError)] == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("agentwatch.collector._decode", "InvalidRequest"),
        ("agentwatch.alerts._rules", "AlertRulesError"),
    ],
)
def test_errors_that_were_value_errors_stay_value_errors(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, AgentwatchError)
    assert issubclass(cls, ValueError)
