"""Watchlist files: loading, `file:line` errors, the JSON Schema, digests and hot reload."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.model import Article
from monitor.watchlists import (
    SCHEMA_COMMENT,
    AlertSpec,
    WatchlistError,
    WatchlistRegistry,
    load_aliases,
    load_watchlist_file,
    load_watchlists,
    next_digest_at,
    parse_digest,
    schema_json,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "watchlists"
SHIPPED = REPO / "watchlists"


def article(title: str, text: str = "", source: str = "kcna") -> Article:
    return Article(source, title, "", title, text, None, title)


# --------------------------------------------------------------------------- loading


def test_good_folder_loads_and_skips_reserved_files() -> None:
    found, errors = load_watchlists(DATA / "good")
    assert errors == []
    assert sorted(found) == ["letters", "missiles"]  # sources.yaml and aliases.yaml are not lists
    missiles = found["missiles"]
    assert missiles.name == "Missiles"
    assert missiles.exclude == "drill"
    assert missiles.min_score == 1.0
    assert missiles.sources == ("kcna", "yonhap")
    assert missiles.alert == AlertSpec(("#nk-desk", "C0123ABCD"), ("desk@example.org",))
    assert missiles.path == DATA / "good" / "missiles.yaml"
    letters = found["letters"]
    assert letters.name == "letters"  # defaults to the file name
    assert letters.alert.mode == "digest" and letters.alert.digest == "daily 08:00 Asia/Seoul"
    assert "message of greeting" in letters.query


def _broken_files() -> list[Path]:
    return sorted((DATA / "broken").glob("*.yaml"))


@pytest.mark.parametrize("path", _broken_files(), ids=lambda p: p.name)
def test_broken_file_reports_line_and_fix(path: Path, tmp_path: Path) -> None:
    expect = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    line, message = expect.split(": ", 1)
    shutil.copy(path, tmp_path / path.name)
    found, errors = load_watchlists(tmp_path)
    assert found == {}
    rendered = [str(e) for e in errors]
    wanted = f"{tmp_path / path.name}:{line}: {message}"
    assert any(r.startswith(wanted) for r in rendered), rendered


def test_a_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    shutil.copy(DATA / "good" / "missiles.yaml", tmp_path / "missiles.yaml")
    shutil.copy(DATA / "good" / "aliases.yaml", tmp_path / "aliases.yaml")
    shutil.copy(DATA / "broken" / "bad-key.yaml", tmp_path / "bad-key.yaml")
    found, errors = load_watchlists(tmp_path)
    assert list(found) == ["missiles"]
    assert {Path(e.file).name for e in errors} == {"bad-key.yaml"}


def test_yaml_12_keeps_no_and_times_as_text(tmp_path: Path) -> None:
    (tmp_path / "norway.yaml").write_text("query: 'no'\nname: no\ndescription: 12:30\n")
    found, errors = load_watchlists(tmp_path)
    assert errors == []
    assert found["norway"].name == "no"
    assert found["norway"].description == "12:30"


def test_unquoted_number_is_rejected_not_coerced(tmp_path: Path) -> None:
    (tmp_path / "n.yaml").write_text("query: missile\nname: 10\n")
    _, errors = load_watchlists(tmp_path)
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'n.yaml'}:2: name: Input should be a valid string "
        '(write text (quote it: "…"))'
    ]


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("query: a\nquery: b\n")
    _, errors = load_watchlists(tmp_path)
    assert len(errors) == 1 and "YAML syntax" in errors[0].message


def test_aliases_file_errors_have_lines(tmp_path: Path) -> None:
    (tmp_path / "aliases.yaml").write_text(
        "kim: [Kim Jong Un]\nbad name: [x]\nempty: []\nnums:\n  - ok\n  - 12\nstar: ['a*b']\n"
    )
    aliases, errors = load_aliases(tmp_path / "aliases.yaml")
    assert aliases == {"kim": ("Kim Jong Un",), "nums": ("ok",)}
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [
        (2, "alias name 'bad name'"),
        (3, "alias 'empty'"),
        (6, "alias 'nums'"),
        (7, "alias 'star'"),
    ]


def test_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    found, errors = load_watchlists(tmp_path / "nope")
    assert found == {}
    assert "watchlist folder not found" in str(errors[0])


def test_error_str_format() -> None:
    assert str(WatchlistError("w/a.yaml", 3, "bad")) == "w/a.yaml:3: bad"
    assert str(WatchlistError("w/a.yaml", None, "bad")) == "w/a.yaml: bad"


def test_draft_file_outside_the_folder_loads(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("query: '@kim NEAR/5 letter'\n")
    aliases, _ = load_aliases(DATA / "good" / "aliases.yaml")
    watchlist, errors = load_watchlist_file(draft, aliases)
    assert errors == [] and watchlist is not None and watchlist.id == "draft"


# --------------------------------------------------------------- schema and shipped files


def test_schema_file_is_current() -> None:
    committed = (SHIPPED / "watchlist.schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), (
        "regenerate: monitor watchlists schema > watchlists/watchlist.schema.json"
    )
    schema = json.loads(committed)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "definitions" in schema and "$defs" not in schema
    assert schema["required"] == ["query"]
    assert schema["additionalProperties"] is False


def test_every_shipped_watchlist_loads_and_points_at_the_schema() -> None:
    found, errors = load_watchlists(SHIPPED)
    assert errors == []
    assert {"un-mission", "leader-correspondence", "missile-tests"} <= set(found)
    for watchlist in found.values():
        first = watchlist.path.read_text(encoding="utf-8").splitlines()[0]
        assert first == SCHEMA_COMMENT
        assert watchlist.description


# ----------------------------------------------------------------------------- digests


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        ("hourly", "2026-03-01T10:15:00+00:00", "2026-03-01T11:00:00+00:00"),
        ("hourly", "2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+00:00"),
        ("daily 08:00", "2026-03-01T07:59:00+00:00", "2026-03-01T08:00:00+00:00"),
        ("daily 08:00", "2026-03-01T08:00:00+00:00", "2026-03-02T08:00:00+00:00"),
        ("daily 08:00 Asia/Seoul", "2026-03-01T00:00:00+00:00", "2026-03-01T23:00:00+00:00"),
        ("daily 08:00 Asia/Seoul", "2026-02-28T22:59:00+00:00", "2026-02-28T23:00:00+00:00"),
        # Europe/Warsaw springs forward on 2026-03-29: 02:30 does not exist that day
        ("daily 02:30 Europe/Warsaw", "2026-03-29T00:00:00+00:00", "2026-03-29T01:30:00+00:00"),
        ("daily 09:00 Europe/Warsaw", "2026-03-28T12:00:00+00:00", "2026-03-29T07:00:00+00:00"),
        ("weekly monday 09:30 UTC", "2026-03-04T00:00:00+00:00", "2026-03-09T09:30:00+00:00"),
        ("weekly mon 09:30", "2026-03-09T09:29:00+00:00", "2026-03-09T09:30:00+00:00"),
    ],
)
def test_next_digest_at(spec: str, after: str, expected: str) -> None:
    got = next_digest_at(spec, datetime.fromisoformat(after))
    assert got == datetime.fromisoformat(expected)
    assert got.tzinfo is not None


def test_next_digest_naive_means_utc() -> None:
    got = next_digest_at("daily 08:00", datetime(2026, 3, 1, 7, 0))
    assert got == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty digest"),
        ("sometimes", "unknown digest schedule"),
        ("daily", "bad digest schedule"),
        ("daily 8", "bad digest schedule"),
        ("daily 24:00", "not a time of day"),
        ("daily 08:00 Mars/Olympus", "unknown time zone"),
        ("weekly 08:00", "needs a day"),
        ("hourly 5", "takes nothing"),
    ],
)
def test_bad_digest_specs(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_digest(spec)


# ---------------------------------------------------------------------------- registry


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # as editors do: write elsewhere, rename over


def test_registry_keeps_last_good_version_and_drops_deleted(tmp_path: Path) -> None:
    _write(tmp_path / "m.yaml", "query: missile\n")
    _write(tmp_path / "r.yaml", "query: rocket\n")
    registry = WatchlistRegistry(tmp_path)
    assert not registry.loaded and registry.last_success is None
    assert registry.reload() == []
    assert registry.loaded and registry.reloads_ok == 1 and registry.last_success is not None
    assert [m.watchlist_id for m in registry.matcher.match(article("missile"))] == ["m"]

    _write(tmp_path / "m.yaml", "query: missile AND\n")  # broken: keep the old version
    errors = registry.reload()
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'm.yaml'}:1: query: column 12: expected a word, phrase or '(' after AND, "
        "found the end"
    ]
    assert registry.reloads_error == 1
    assert registry.watchlists["m"].query == "missile"
    assert registry.matcher.match(article("missile"))

    _write(tmp_path / "m.yaml", "query: launch\n")  # fixed: the new version takes over
    assert registry.reload() == []
    assert registry.watchlists["m"].query == "launch"
    assert not registry.matcher.match(article("missile"))

    (tmp_path / "r.yaml").unlink()
    assert registry.reload() == []
    assert sorted(registry.watchlists) == ["m"]
    assert registry.reloads_ok == 3


def test_registry_broken_aliases_keep_dependent_watchlists(tmp_path: Path) -> None:
    _write(tmp_path / "aliases.yaml", "kim: [Kim Jong Un]\n")
    _write(tmp_path / "k.yaml", "query: '@kim'\n")
    registry = WatchlistRegistry(tmp_path)
    assert registry.reload() == []
    _write(tmp_path / "aliases.yaml", "kim: [Kim Jong Un\n")
    errors = registry.reload()
    assert {Path(e.file).name for e in errors} == {"aliases.yaml", "k.yaml"}
    assert registry.matcher.match(article("Kim Jong-un"))  # compiled with the old aliases


def test_registry_first_load_with_errors_is_not_loaded(tmp_path: Path) -> None:
    _write(tmp_path / "m.yaml", "query: (\n")
    registry = WatchlistRegistry(tmp_path)
    assert registry.reload()
    assert not registry.loaded and registry.reloads_error == 1 and registry.watchlists == {}


@pytest.mark.slow
async def test_watch_reloads_on_change(tmp_path: Path) -> None:
    _write(tmp_path / "m.yaml", "query: missile\n")
    registry = WatchlistRegistry(tmp_path, safety_reload_seconds=60)
    registry.reload()
    stop = asyncio.Event()
    task = asyncio.create_task(registry.watch(stop, force_polling=True))
    deadline = time.monotonic() + 15
    # The watcher starts in a thread; rewrite until it has seen a change (no fixed sleeps).
    attempt = 0
    while registry.watchlists["m"].query != f"rocket{attempt}" and time.monotonic() < deadline:
        attempt += 1
        _write(tmp_path / "m.yaml", f"query: rocket{attempt}\n")
        for _ in range(20):
            await asyncio.sleep(0.05)
            if registry.watchlists["m"].query == f"rocket{attempt}":
                break
    assert registry.watchlists["m"].query == f"rocket{attempt}"
    _write(tmp_path / "n.yaml", "query: (\n")  # broken new file: error counted, others stay
    while registry.reloads_error == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert registry.reloads_error >= 1 and "m" in registry.watchlists
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_safety_net_reload_without_events(tmp_path: Path) -> None:
    _write(tmp_path / "m.yaml", "query: missile\n")
    registry = WatchlistRegistry(tmp_path, safety_reload_seconds=0.2)
    registry.reload()
    stop = asyncio.Event()
    # sources.yaml changes are not ours: they must not trigger a reload by themselves
    task = asyncio.create_task(registry.watch(stop, force_polling=True))
    await asyncio.sleep(0.5)
    assert registry.reloads_ok >= 2
    stop.set()
    await asyncio.wait_for(task, 5)


def test_python_tags_are_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "x.yaml").write_text(
        f'query: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8"
    )
    found, errors = load_watchlists(tmp_path)
    assert found == {} and errors
    assert not marker.exists()
