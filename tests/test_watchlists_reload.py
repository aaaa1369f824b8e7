"""The watchlist hot reload survives what a real deployment does to the folder: dangling
symlinks left by a Kubernetes ConfigMap swap, non-regular files, a reload that fails outright,
and a file watcher that dies. The last good set stays in effect and the failure is visible."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor.model import Article
from monitor.watchlists import WatchlistRegistry, config_hash, load_watchlists
from monitor.watchlists import registry as registry_module


def article(title: str) -> Article:
    return Article("kcna", title, "", title, "", None, title)


def _matches(registry: WatchlistRegistry, title: str) -> list[str]:
    return [m.watchlist_id for m in registry.matcher.match(article(title))]


def _configmap(root: Path, version: str, files: dict[str, str]) -> None:
    """Lay out a folder as the kubelet does: `name -> ..data/name`, `..data -> ..<version>`."""
    target = root / f"..{version}"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text, encoding="utf-8")
    tmp = root / "..data_tmp"
    tmp.symlink_to(target.name)
    tmp.replace(root / "..data")  # the atomic swap
    for name in files:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


async def _until(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


def test_non_regular_yaml_entries_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("query: missile\n", encoding="utf-8")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "..data" / "gone.yaml")  # dangling
    (tmp_path / "folder.yaml").mkdir()
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block the reload for ever
    (tmp_path / "linked.yaml").symlink_to(tmp_path / "m.yaml")  # a good symlink still loads
    registry = WatchlistRegistry(tmp_path)
    with structlog.testing.capture_logs() as logs:
        errors = registry.reload()  # raised FileNotFoundError (config_hash) before
    assert errors == []
    assert sorted(registry.watchlists) == ["linked", "m"]
    skipped = {
        Path(e["file"]).name: e["reason"] for e in logs if e["event"] == "watchlist_file_skipped"
    }
    assert skipped == {
        "gone.yaml": "a dangling symlink",
        "folder.yaml": "a directory",
        "pipe.yaml": "not a regular file",
    }
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "watchlist_file_skipped")
    assert len(config_hash(tmp_path)) == 12
    found, problems = load_watchlists(tmp_path)
    assert sorted(found) == ["linked", "m"] and problems == []


def test_a_dangling_aliases_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("query: missile\n", encoding="utf-8")
    (tmp_path / "aliases.yaml").symlink_to(tmp_path / "nowhere.yaml")
    registry = WatchlistRegistry(tmp_path)
    errors = registry.reload()
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'aliases.yaml'}: cannot read the file: it is a dangling symlink"
    ]
    assert sorted(registry.watchlists) == ["m"]


def test_a_reload_that_fails_outright_keeps_the_last_good_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "m.yaml").write_text("query: missile\n", encoding="utf-8")
    registry = WatchlistRegistry(tmp_path)
    assert registry.reload() == []

    def broken(directory: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr(registry_module, "load_watchlists", broken)
    errors = registry.reload()  # never raises
    assert len(errors) == 1 and "reload failed (PermissionError" in str(errors[0])
    assert _matches(registry, "missile") == ["m"]  # the last good set is still in effect
    health = registry.health()
    assert health.loaded and health.reload_failures == 1 and health.reloads_error == 1
    assert health.last_reload_failure is not None
    assert "Permission denied" in health.last_reload_failure
    assert any("reload failed" in p for p in health.problems)

    monkeypatch.undo()
    assert registry.reload() == []
    health = registry.health()
    assert health.last_reload_failure is None and health.problems == ()
    assert health.reload_failures == 1  # a counter: metrics read it


async def test_the_watcher_survives_a_configmap_swap_with_a_dangling_symlink(
    tmp_path: Path,
) -> None:
    _configmap(tmp_path, "v1", {"m.yaml": "query: missile\n"})
    registry = WatchlistRegistry(tmp_path, safety_reload_seconds=60)
    assert registry.reload() == []
    stop = asyncio.Event()
    task = asyncio.create_task(registry.watch(stop, force_polling=True))
    try:
        await asyncio.sleep(0.3)  # the watcher starts in a thread
        # Mid-swap: a new name points into a ..data that does not hold it (yet).
        (tmp_path / "new.yaml").symlink_to(Path("..data") / "new.yaml")
        (tmp_path / "touch.yaml").write_text("query: touched\n", encoding="utf-8")
        assert await _until(lambda: "touch" in registry.watchlists)
        await asyncio.sleep(0.3)
        assert not task.done(), task  # the watcher died here before
        assert registry.watching
        # The swap completes: the watcher is still there to see it.
        _configmap(tmp_path, "v2", {"m.yaml": "query: rocket\n", "new.yaml": "query: launch\n"})
        assert await _until(lambda: _matches(registry, "rocket launch") == ["m", "new"])
        assert _matches(registry, "missile") == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_watcher_that_dies_is_logged_counted_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    (tmp_path / "m.yaml").write_text("query: missile\n", encoding="utf-8")
    real_awatch = watchfiles.awatch
    starts = 0

    def flaky_awatch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise OSError(24, "Too many open files (inotify)")
        return real_awatch(*args, **kwargs)

    monkeypatch.setattr(watchfiles, "awatch", flaky_awatch)
    registry = WatchlistRegistry(tmp_path, safety_reload_seconds=60, watch_restart_seconds=0.5)
    registry.reload()
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(registry.watch(stop, force_polling=True))
        try:
            assert await _until(lambda: registry.watch_failures == 1)
            health = registry.health()
            assert health.restarting and not health.watching
            assert any("Too many open files" in p for p in health.problems)
            assert _matches(registry, "missile") == ["m"]  # last good set kept
            assert await _until(lambda: registry.watching)
            assert registry.health().problems == ()
            attempt = 0  # the restarted watcher picks up changes again
            while "m" in registry.watchlists and registry.watchlists["m"].query != "rocket":
                attempt += 1
                (tmp_path / "m.yaml").write_text("query: rocket\n", encoding="utf-8")
                if not await _until(lambda: registry.watchlists["m"].query == "rocket", 1.0):
                    assert attempt < 10
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
    failed = [e for e in logs if e["event"] == "watchlist_watcher_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error"
    assert starts == 2 and registry.watch_failures == 1 and not registry.watching
