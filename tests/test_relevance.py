"""Watchlists that learn from examples, through the real paths: the examples file and its
`file:line` errors, training and cross-validation, and a poll where the query gate passes two
articles and the watchlist's model alerts on one.

The `hashing` embedder stands in for the USE model here (fast, deterministic, the same code
path); tests/test_default_watchlists.py runs the shipped watchlists on the real model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.relevance.classifier import TrainingError
from monitor.relevance.crossval import cross_validate
from monitor.relevance.embed import HashingEmbedder, article_text, text_key
from monitor.relevance.models import MemoryCache, file_examples, prepare, train_models
from monitor.store import db
from monitor.store.tables import AlertRow, TextVectorRow
from monitor.watchlists import load_watchlists
from tests.support.cli import run_monitor
from tests.support.feedserver import FeedServer, rss

FIRED = [
    "North Korea fires ballistic missile into the sea",
    "North Korea fires two short-range missiles, Seoul says",
    "North Korea test-fires new cruise missile",
    "North Korea fires missile over Japan",
    "North Korea fires ICBM in latest test",
    "North Korea fires missiles toward East Sea",
    "North Korea fires hypersonic missile, state media says",
    "North Korea fires submarine-launched missile",
]
SHOWN = [
    "North Korea shows off missiles at military parade",
    "North Korea displays missile arsenal at exhibition",
    "Kim visits missile factory, shows off production lines",
    "North Korea parade shows missiles and drones",
    "Missile museum opens in North Korea, shows exhibits",
    "North Korea shows missiles on state television anniversary",
    "Analysts study missile parade shows in North Korea",
    "North Korea shows missile launchers at parade rehearsal",
]

WATCHLIST = """\
name: Missile launches
query: '"North Korea" AND missile*'
signals:
  fired: 'fires OR fired OR test-fires'
examples: launches.examples.jsonl
min_confidence: 0.5
alert:
  mode: immediate
"""


def _examples_file(folder: Path) -> None:
    rows = [
        {"id": f"e{i}", "title": title, "summary": "", "relevant": relevant}
        for i, (title, relevant) in enumerate(
            [(t, True) for t in FIRED] + [(t, False) for t in SHOWN]
        )
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "launches.examples.jsonl").write_text(text)


def _folder(tmp: Path, watchlist: str = WATCHLIST) -> Path:
    folder = tmp / "watchlists"
    folder.mkdir(exist_ok=True)
    (folder / "launches.yaml").write_text(watchlist)
    _examples_file(folder)
    return folder


# ------------------------------------------------------------------------ examples files


def test_a_bad_examples_line_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "launches.examples.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"id": "x", "title": "t", "relevant": "yes"}'
    lines[4] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    watchlists, errors = load_watchlists(folder)
    assert "launches" not in watchlists
    messages = sorted(str(e) for e in errors)
    assert messages == [
        f'{path}:3: "relevant" must be true or false',
        f"{path}:5: invalid JSON (Expecting property name enclosed in double quotes); "
        "write one object per line",
    ]


def test_a_missing_examples_file_names_the_key_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "launches.examples.jsonl").unlink()
    _, errors = load_watchlists(folder)
    assert [str(e) for e in errors] == [
        f"{folder / 'launches.yaml'}:5: examples: launches.examples.jsonl is gone; create it "
        "beside the watchlist or remove the examples: key"
    ]


def test_examples_must_stay_in_the_folder_and_signals_must_compile(tmp_path: Path) -> None:
    folder = _folder(tmp_path, WATCHLIST.replace("launches.examples.jsonl", "../x.jsonl"))
    _, errors = load_watchlists(folder)
    assert "name a .jsonl file in the watchlist folder" in str(errors[0])
    folder = _folder(tmp_path, WATCHLIST.replace("'fires OR fired OR test-fires'", "'@nope'"))
    _, errors = load_watchlists(folder)
    assert [str(e) for e in errors] == [
        f"{folder / 'launches.yaml'}:4: signals.fired: unknown alias @nope: define it in "
        "aliases.yaml (known: none defined)"
    ]


# ------------------------------------------------------------------------------- models


def test_training_is_deterministic_and_the_reason_names_the_nearest_examples(
    tmp_path: Path,
) -> None:
    watchlists, errors = load_watchlists(_folder(tmp_path))
    assert errors == []
    wl = watchlists["launches"]
    first = train_models([wl], HashingEmbedder(), MemoryCache())
    second = train_models([wl], HashingEmbedder(), MemoryCache())
    article = file_examples(wl)[0].article
    vector = HashingEmbedder().embed([article_text(article)])[0]
    from monitor.query.matcher import compile_matcher

    matches = compile_matcher([wl]).match(article)
    a = first.judge(article, vector, matches)[0].judgement
    b = second.judge(article, vector, matches)[0].judgement
    assert a is not None and a == b
    assert a.relevant and a.signals == ("fired",)
    assert a.like[0] == FIRED[0]  # the example itself is the nearest relevant one
    assert a.unlike and a.unlike[0] in SHOWN
    assert a.reason.startswith("model 0.")
    assert "like: North Korea fires ballistic missile into the sea" in a.reason


def test_cross_validation_never_scores_an_example_with_a_model_that_learned_it(
    tmp_path: Path,
) -> None:
    """Every example is judged by the fold whose model did not see it; one the gate stops
    ("fires ICBM", no "missile") counts as a miss, and gate recall says so."""
    watchlists, _ = load_watchlists(_folder(tmp_path))
    wl = watchlists["launches"]
    prepared = prepare(wl, file_examples(wl), HashingEmbedder(), MemoryCache())
    report = cross_validate(wl, prepared, folds=4)
    assert (report.examples, report.relevant, report.gate_passed) == (16, 8, 14)
    assert report.gate_recall == 7 / 8
    assert sum(p.tp + p.fn for p in report.fold_points) == 8
    icbm = [e.article.title for e in prepared.examples].index(FIRED[4])
    assert report.confidences[icbm] == 0.0  # gated out: never judged
    assert report.at_threshold.fn >= 1 and report.at_threshold.precision >= 0.85
    assert report.curve[0].threshold == 0.1


def test_too_few_examples_of_a_class_is_a_clear_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "launches.examples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["relevant"] or r["id"] == "e8"))
    watchlists, _ = load_watchlists(folder)
    models = train_models([watchlists["launches"]], HashingEmbedder(), MemoryCache())
    assert models.models == {}
    assert "7 relevant and 1 not-relevant examples pass the query" in models.problems["launches"]
    with pytest.raises(TrainingError):
        cross_validate(
            watchlists["launches"],
            prepare(
                watchlists["launches"],
                file_examples(watchlists["launches"]),
                HashingEmbedder(),
                MemoryCache(),
            ),
        )


# ------------------------------------------------------------------------- the poll path


def _env(tmp: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(
        MONITOR_DATABASE_URL=url,
        MONITOR_WATCHLISTS_DIR=str(tmp / "watchlists"),
        MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
        MONITOR_EMBEDDER="hashing",
        MONITOR_LOG_LEVEL="INFO",
    )
    return env


def _monitor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_monitor(env, *args)


NEW_ITEMS = [
    ("g2", "North Korea fires a ballistic missile toward Japan"),
    ("g3", "North Korea shows off new missiles at a parade"),
]


@pytest.mark.slow
@pytest.mark.parametrize("with_examples", [True, False])
def test_the_gate_passes_two_articles_and_the_model_alerts_on_one(
    tmp_path: Path, with_examples: bool
) -> None:
    watchlist = (
        WATCHLIST if with_examples else WATCHLIST.replace("examples: launches.examples.jsonl\n", "")
    )
    folder = _folder(tmp_path, watchlist)
    with FeedServer() as server:
        server.add("/feed.xml", rss([("g1", "Weather in Pyongyang")]))
        (folder / "sources.yaml").write_text(
            f"sources:\n  - id: s1\n    name: Wire\n    url: {server.url('/feed.xml')}\n"
        )
        url = f"sqlite:///{tmp_path / 'm.db'}"
        env = _env(tmp_path, url)
        assert _monitor(env, "db", "upgrade").returncode == 0
        first = _monitor(env, "poll", "--once")  # catch-up: stores, alerts nobody
        assert first.returncode == 0, first.stderr
        server.update("/feed.xml", rss([("g1", "Weather in Pyongyang"), *NEW_ITEMS]))
        second = _monitor(env, "poll", "--once", "--all")
        assert second.returncode == 0, second.stderr
    engine = db.make_engine(url)
    with Session(engine) as session:
        alerts = session.execute(select(AlertRow.payload_json)).scalars().all()
        vectors = session.execute(select(TextVectorRow.model, TextVectorRow.key)).all()
    engine.dispose()
    titles = sorted(json.loads(p)["title"] for p in alerts)
    if not with_examples:  # exactly as before examples existed: the query alone decides
        assert titles == sorted(t for _, t in NEW_ITEMS)
        assert vectors == []
        return
    assert titles == [NEW_ITEMS[0][1]], second.stdout[-3000:]
    reason = json.loads(alerts[0])["reason"]
    assert reason.startswith("model ") and "signals: fired" in reason and "like: " in reason
    logs = second.stdout + second.stderr
    assert "match_rejected_by_model" in logs and NEW_ITEMS[1][1] in logs
    # each judged article embedded once and kept (the examples' vectors too)
    keys = {key for _, key in vectors}
    for _, title in NEW_ITEMS:
        article_key = text_key("hashing-512", f"{title}\n{title} text")
        assert article_key in keys
    assert {m for m, _ in vectors} == {"hashing-512"}


@pytest.mark.slow
def test_watchlists_test_shows_the_score_and_the_models_reason(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    articles = tmp_path / "a.jsonl"
    articles.write_text(
        "".join(
            json.dumps({"id": gid, "title": title, "summary": ""}) + "\n"
            for gid, title in NEW_ITEMS
        )
    )
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")
    out = _monitor(env, "watchlists", "test", "--articles", str(articles), "--dir", str(folder))
    assert out.returncode == 0, out.stderr
    assert "1 of 2 articles matched (launches); 1 more passed a gate, judged not relevant" in (
        out.stdout
    )
    assert "(no alert: the model says not relevant)" in out.stdout
    assert "model 0." in out.stdout and "like: " in out.stdout
    js = _monitor(
        env,
        "watchlists",
        "test",
        "--articles",
        str(articles),
        "--dir",
        str(folder),
        "--format",
        "jsonl",
    )
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert [r["matches"][0]["alert"] for r in rows] == [True, False]
    assert 0 <= rows[1]["matches"][0]["model"]["confidence"] < 0.5
    ev = _monitor(env, "watchlists", "eval", "--dir", str(folder), "--folds", "4")
    assert ev.returncode == 0, ev.stderr
    assert "4-fold cross-validation" in ev.stdout and "launches" in ev.stdout
    assert "← min_confidence" in ev.stdout
    tr = _monitor(env, "watchlists", "train", "--dir", str(folder))
    assert tr.returncode == 0, tr.stderr
    assert "launches: trained in" in tr.stdout and "on the 14 of 16 examples" in tr.stdout


def test_hashing_embedder_is_stable_across_processes() -> None:
    code = (
        "from monitor.relevance.embed import HashingEmbedder;"
        "print(HashingEmbedder().embed(['North Korea fires'])[0][:8].round(5).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = HashingEmbedder().embed(["North Korea fires"])[0][:8].round(5).tolist()
    assert json.loads(out.stdout) == here
    assert abs(float(np.linalg.norm(HashingEmbedder().embed(["x y"])[0])) - 1.0) < 1e-6


def test_reload_retrains_when_the_examples_change_and_reports_a_model_that_cannot_train(
    tmp_path: Path,
) -> None:
    from monitor.watchlists import WatchlistRegistry

    folder = _folder(tmp_path)
    embedder, cache = HashingEmbedder(), MemoryCache()
    registry = WatchlistRegistry(
        folder, trainer=lambda wls: train_models(list(wls), embedder, cache)
    )
    assert registry.reload() == []
    before = registry.relevance.models["launches"]
    assert before.stats.trained_on == 14
    assert registry.reload() == [] and registry.relevance.models["launches"] is before  # same files
    path = folder / "launches.examples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["relevant"] or r["id"] == "e8"))
    assert registry.reload() == []
    assert "launches" not in registry.relevance.models
    assert registry.health().problems == (
        "launches: model not trained, the query alone decides: 7 relevant and 1 not-relevant "
        "examples pass the query; a model needs at least 5 of each (add examples, or broaden "
        "the query)",
    )
