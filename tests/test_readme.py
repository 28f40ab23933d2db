"""The README stays true: its set-up commands and its table of mapped attributes."""

from __future__ import annotations

from pathlib import Path

from agentwatch.storage._conventions import COLUMNS, OPENINFERENCE_KINDS, TRACELOOP_KINDS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_main_job_and_the_test_command() -> None:
    """The first code block holds exactly the two set-up commands CI and new users rely on."""
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in first_block.strip().splitlines()]
    assert commands == [
        "pip install -e '.[all]' && agentwatch up --demo",
        "pip install -e '.[dev]' && pytest",
    ]


def test_mapping_table_lists_every_typed_column_and_source_key() -> None:
    """Every column and attribute key the schema derives from is documented in the README."""
    table = README.split("### What is mapped", 1)[1].split("## Storage", 1)[0]
    for column in COLUMNS:
        assert f"`{column.name}`" in table, column.name
        for key in column.keys:
            assert f"`{key}`" in table, key
    for kind, operation in {**OPENINFERENCE_KINDS, **TRACELOOP_KINDS}.items():
        assert f"{kind}→{operation}" in table
