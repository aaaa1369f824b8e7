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


def test_every_runtime_import_is_a_declared_dependency() -> None:
    """The image installs only `dependencies`: an import that rides on a dev or transitive
    package works in a checkout and fails in the container."""
    import ast
    import re
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in project["dependencies"]
    }
    dists = packages_distributions()
    missing = set()
    for path in (root / "monitor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name in sys.stdlib_module_names or name in ("monitor", "__future__"):
                    continue
                owners = {d.lower().replace("_", "-") for d in dists.get(name, [name])}
                if not owners & declared:
                    missing.add(f"{name} ({path.relative_to(root)})")
    assert not missing, f"add to [project].dependencies: {sorted(missing)}"
