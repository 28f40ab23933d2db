"""The package as users get it: its public names, a light import, a complete wheel, a CLI."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import agentwatch
from agentwatch.app._cli import build_parser

ROOT = Path(__file__).resolve().parents[1]

# Public (non-underscore) functions and classes of the modules users' API comes from that are
# deliberately NOT exported. A new public function or class in these modules must either go into
# ``agentwatch.__all__`` or be listed here, so nothing users need is forgotten by accident.
INTERNAL = {
    "agentwatch._config": {"Settings"},
    "agentwatch._decorators": {
        "FrameworkBudget",
        "capture_text",
        "charge_budget",
        "error_type",
        "record_error",
        "set_usage_attributes",
    },
    "agentwatch._errors": set(),
    "agentwatch._health": {"health_checks_running", "registered_health_checks"},
    "agentwatch._instrument": set(),
    "agentwatch._limits": {"Budget", "estimate_cost_usd"},
    "agentwatch._records": set(),
    "agentwatch._redact": {
        "Rule",
        "bounded_redact",
        "exception_message",
        "exception_stacktrace",
        "exception_summary",
        "exception_type_name",
        "iban_valid",
        "luhn_valid",
        "redact_text",
        "truncate",
    },
    "agentwatch._replay": {"active_replay"},
    "agentwatch._testing": {"attributes"},
}
# Modules users reach as a namespace of the package (``aw.expect.contains(...)``).
NAMESPACES = {"agentwatch._expectations": "expect"}
# ...and their public helpers that are not part of the namespace's ``__all__``.
INTERNAL_OF_NAMESPACES = {"agentwatch._expectations": {"answer_text"}}
# Plumbing: nothing in these is for users to call.
PLUMBING = {
    "agentwatch.__main__",
    "agentwatch._pytest_plugin",
    "agentwatch._run",
    "agentwatch._safety",
    "agentwatch._semconv",
    "agentwatch._threads",
    "agentwatch._usage",
}


def test_every_sdk_module_is_classified() -> None:
    """A new SDK module must be sorted into INTERNAL, NAMESPACES or PLUMBING above."""
    modules = {
        f"agentwatch.{m.name}" for m in pkgutil.iter_modules(agentwatch.__path__) if not m.ispkg
    }

    assert modules == set(INTERNAL) | set(NAMESPACES) | PLUMBING


@pytest.mark.parametrize("module_name", sorted(NAMESPACES))
def test_namespace_modules_are_exported_with_a_complete_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported: list[str] = module.__all__

    assert getattr(agentwatch, NAMESPACES[module_name]) is module
    assert NAMESPACES[module_name] in agentwatch.__all__
    assert exported == sorted(set(exported))
    assert [name for name in exported if not hasattr(module, name)] == []
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module_name
    }
    assert public - set(exported) - INTERNAL_OF_NAMESPACES.get(module_name, set()) == set()


def test_all_is_sorted_and_unique() -> None:
    assert agentwatch.__all__ == sorted(set(agentwatch.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in agentwatch.__all__ if not hasattr(agentwatch, name)]

    assert missing == []


def test_every_public_attribute_of_the_package_is_in_all() -> None:
    public = {
        name
        for name, value in vars(agentwatch).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"  # from __future__ import annotations
    }

    assert public - set(agentwatch.__all__) == set()


@pytest.mark.parametrize("module_name", sorted(INTERNAL))
def test_public_functions_and_classes_are_exported_or_declared_internal(module_name: str) -> None:
    module = importlib.import_module(module_name)
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module_name
    }

    undecided = defined - set(agentwatch.__all__) - INTERNAL[module_name]
    assert undecided == set(), "export these from agentwatch or list them in INTERNAL"
    stale = INTERNAL[module_name] - defined
    assert stale == set(), "INTERNAL lists names the module no longer defines"


def test_version_matches_the_installed_distribution() -> None:
    assert agentwatch.__version__ == version("agentwatch")


HEAVY = ["chdb", "streamlit", "pyarrow", "grpc", "pandas", "genai_prices", "requests"]


def heavy_modules_after(statements: str) -> set[str]:
    """Which HEAVY modules a fresh interpreter has loaded after running ``statements``."""
    code = f"import sys\n{statements}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(filter(None, result.stdout.strip().split(",")))


def test_importing_agentwatch_stays_light() -> None:
    """Agents import the SDK: it must not drag in the collector's or dashboard's dependencies."""
    assert heavy_modules_after("import agentwatch") == set()


def test_the_http_exporter_is_loaded_only_by_configure() -> None:
    """The same check sees a heavy import when there is one: configure() loads the exporter."""
    loaded = heavy_modules_after("import agentwatch\nagentwatch.configure()\nagentwatch.shutdown()")

    assert "requests" in loaded


@pytest.mark.slow
def test_wheel_contains_every_subpackage(tmp_path: Path) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dirs: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    # Build from a copy, so the work tree gets no build/ or egg-info of ours.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", pyproject["project"]["readme"]):
        shutil.copy2(ROOT / name, source / name)
    for folder in package_dirs.values():
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )

    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        check=True,
        timeout=300,
    )

    (wheel,) = (tmp_path / "dist").glob("agentwatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "agentwatch/__init__.py",
        "agentwatch/py.typed",
        "agentwatch/collector/__init__.py",
        "agentwatch/storage/__init__.py",
        "agentwatch/alerts/__init__.py",
        "agentwatch/query/__init__.py",
        "agentwatch/dashboards/__init__.py",
        "agentwatch/app/__init__.py",
    ):
        assert required in names
    for package, folder in package_dirs.items():
        prefix = package.replace(".", "/")
        for module in (ROOT / folder).glob("*.py"):
            assert f"{prefix}/{module.name}" in names, f"{folder}/{module.name} not in the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)


def subcommands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_cli_has_subcommands() -> None:
    assert "demo" in subcommands()


@pytest.mark.parametrize("args", [[], *([name] for name in subcommands())], ids=str)
def test_cli_help_exits_zero(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentwatch", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: agentwatch")
