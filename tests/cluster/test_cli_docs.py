"""docs/cli.md is the generated reference of every command; it must match the CLI."""

from __future__ import annotations

from pathlib import Path

from cluster.cli_docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: regenerate with `python -m cluster.cli_docs > docs/cli.md`")


def test_every_command_has_an_example_or_a_usage_line() -> None:
    text = render()
    sections = text.split("### ")[1:]
    assert len(sections) > 30
    assert all("```" in section for section in sections)
