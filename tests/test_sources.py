"""sources.yaml: the shipped file loads; broken files give file:line errors that say what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.sources import SourcesError, load_sources
from monitor.timeparse import duration_seconds as parse_duration

REPO = Path(__file__).resolve().parents[1]


def test_shipped_sources_load() -> None:
    sources = load_sources(REPO / "watchlists" / "sources.yaml")
    ids = {s.id for s in sources}
    assert {"nk-news", "38-north", "kcna-watch", "yonhap-nk", "un-news-asia-pacific"} <= ids
    html = [s for s in sources if s.kind == "html"]
    assert html and all(s.selectors is not None for s in html)
    assert all(s.url.startswith("https://") for s in sources)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("45", 45), (" 1h ", 3600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


CASES = [
    (
        "sources:\n  - id: a\n    name: A\n    url: https://a.example/feed\n    every: 5s\n",
        5,
        "below the minimum of 10s",
    ),
    (
        "sources:\n  - id: a\n    name: A\n    url: ftp://a.example/feed\n",
        4,
        "not an http(s) URL",
    ),
    (
        "sources:\n  - id: a\n    name: A\n    url: https://a.example/\n    colour: red\n",
        5,
        "Extra inputs are not permitted",
    ),
    (
        "sources:\n  - id: a\n    name: A\n    url: https://a.example/\n"
        "  - id: a\n    name: B\n    url: https://b.example/\n",
        5,
        "duplicate source id 'a' (first on line 2)",
    ),
    (
        "sources:\n  - id: a\n    name: A\n    url: https://a.example/\n    kind: html\n",
        2,
        "has no selectors",
    ),
    ("sources:\n  - id: a\n    name: [unclosed\n", 4, "YAML syntax error"),
    ("sources:\n  - id: Bad Id\n    name: A\n    url: https://a.example/\n", 2, "not a slug"),
    ("sources:\n  - id: a\n    url: https://a.example/\n", 2, "name: Field required"),
]


@pytest.mark.parametrize(("text", "line", "message"), CASES)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(SourcesError) as info:
        load_sources(path)
    assert any(e.startswith(f"{path}:{line}:") and message in e for e in info.value.errors), (
        info.value.errors
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="file not found"):
        load_sources(tmp_path / "nope.yaml")


@pytest.mark.slow
def test_cli_sources_check(tmp_path: Path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text("sources:\n  - id: a\n    name: A\n    url: nope\n")
    env = {"MONITOR_SOURCES_FILE": str(bad), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "sources", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 1
    assert f"{bad}:4: sources.0.url" in out.stderr
    env["MONITOR_SOURCES_FILE"] = str(REPO / "watchlists" / "sources.yaml")
    ok = subprocess.run(
        [sys.executable, "-m", "monitor", "sources", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "sources OK" in ok.stdout


def test_shipped_html_source_reads_its_listing_fixture() -> None:
    from monitor.parse import parse_html_page

    (source,) = [s for s in load_sources(REPO / "watchlists" / "sources.yaml") if s.kind == "html"]
    assert source.selectors is not None
    body = (REPO / "tests" / "data" / "html" / "nknews_foreign_relations.html").read_bytes()
    page = parse_html_page(
        body, {"content-type": "text/html; charset=utf-8"}, source.url, source.selectors
    )
    assert len(page.entries) == 10
    first = page.entries[0]
    assert first.title.startswith("US-China coordination on North Korea")
    assert first.link and first.link.startswith("https://www.nknews.org/")
    assert first.published is not None and first.published.year == 2021
