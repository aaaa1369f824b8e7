"""Drift checks: every setting is documented in the README under its MONITOR_* name."""

from __future__ import annotations

from pathlib import Path

from monitor.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        f"MONITOR_{name.upper()}"
        for name in Settings.model_fields
        if f"`MONITOR_{name.upper()}`" not in README
    ]
    assert not missing, f"document these in README.md: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    block = README.split("```", 2)[1]
    assert "monitor run" in block and "scripts/test" in block
    assert (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text().strip().endswith(
        "exec scripts/test"
    )
