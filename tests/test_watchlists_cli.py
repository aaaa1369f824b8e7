"""`monitor watchlists check|test|eval|schema` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from monitor.cli import main
from monitor.model import Article, SourceConfig
from monitor.settings import get_settings
from monitor.store import db
from monitor.store.articles import insert_article
from monitor.store.sources import sync_sources

DATA = Path(__file__).resolve().parent / "data" / "watchlists"
GOOD = DATA / "good"
ARTICLES = DATA / "cli" / "articles.jsonl"
LABELS = DATA / "cli" / "labels.jsonl"


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watchlists", "check", "--dir", str(GOOD)]) == 0
    assert capsys.readouterr().out == "ok: 2 watchlists, 2 aliases, 2 sources\n"


def test_check_reports_every_problem_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOOD, tmp_path, dirs_exist_ok=True)
    shutil.copy(DATA / "broken" / "bad-query.yaml", tmp_path / "bad-query.yaml")
    (tmp_path / "sources.yaml").write_text("sources:\n  - id: kcna\n    name: KCNA\n    url: x\n")
    assert main(["watchlists", "check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{tmp_path / 'bad-query.yaml'}:6: query: column 15: expected a word" in err[0]
    assert any(line.startswith(f"{tmp_path / 'sources.yaml'}:4: ") for line in err), err
    assert err[-1] == "2 problem(s) found"


def test_check_flags_unknown_source_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(GOOD, tmp_path, dirs_exist_ok=True)
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - id: kcna\n    name: KCNA\n    url: https://kcna.example/feed\n"
    )
    assert main(["watchlists", "check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missiles.yaml'}:6: sources: unknown source id(s) yonhap" in err


def test_check_missing_sources_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text("query: missile\n")
    assert main(["watchlists", "check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "sources file not found" in err
    assert "m.yaml:1: note: start the file with '# yaml-language-server" in err


def test_test_jsonl_one_object_per_article(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["watchlists", "test", "--dir", str(GOOD), "--articles", str(ARTICLES), "--format", "jsonl"]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        {
            "id": "a1",
            "matches": [
                {"watchlist": "missiles", "score": 4.0, "terms": ["North Korea", "missile*"]}
            ],
        },
        {
            "id": "a2",
            "matches": [{"watchlist": "letters", "score": 4.0, "terms": ["Kim Jong Un", "letter"]}],
        },
        {"id": "a3", "matches": []},
        {
            "id": "a4",
            "matches": [{"watchlist": "missiles", "score": 4.0, "terms": ["북한", "미사일"]}],
        },
    ]


def test_test_text_shows_score_and_highlighted_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["watchlists", "test", "missiles", "--dir", str(GOOD), "--articles", str(ARTICLES)])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "a1  North Korea fires ballistic missile",
        "  [missiles] score 4  terms: North Korea, missile*",
        "    **North Korea** fires ballistic **missile**",
        "a4  북한, 동해상으로 탄도미사일 발사",
        "  [missiles] score 4  terms: 북한, 미사일",
        "    **북한이** **미사일을** 발사했다.",
        "2 of 4 articles matched (missiles)",
    ]


def test_test_draft_file_not_in_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("query: '@kim NEAR/3 (letter OR greeting)'\n")
    args = ["watchlists", "test", str(draft), "--dir", str(GOOD), "--articles", str(ARTICLES)]
    assert main([*args, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows if r["matches"]] == ["a2"]
    assert rows[1]["matches"][0]["watchlist"] == "draft"


def test_test_unknown_id_and_broken_draft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["watchlists", "test", "nope", "--dir", str(GOOD), "--articles", str(ARTICLES)]) == 1
    )
    assert "nope: no watchlist with this id (known: letters, missiles)" in capsys.readouterr().err
    draft = tmp_path / "d.yaml"
    draft.write_text("query: (missile\n")
    assert (
        main(["watchlists", "test", str(draft), "--dir", str(GOOD), "--articles", str(ARTICLES)])
        == 1
    )
    assert f"{draft}:1: query: column 1: missing ')'" in capsys.readouterr().err


def test_test_bad_jsonl_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "title": "ok"}\nnot json\n')
    # An unreadable input file is a usage error: exit 2, the file and line on stderr.
    assert main(["watchlists", "test", "--dir", str(GOOD), "--articles", str(bad)]) == 2
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err


def test_test_on_stored_articles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        sync_sources(
            session, [SourceConfig(id="kcna", name="KCNA", url="https://kcna.example/")], now
        )
        for key, title, seen in [
            ("k1", "North Korea fires missile", now - timedelta(days=1)),
            ("k2", "North Korea fires another missile", now - timedelta(days=40)),
            ("k3", "Weather", now),
        ]:
            article = Article("kcna", key, "", title, "", None, key)
            insert_article(session, article, now=seen, catchup=False)
        session.commit()
    engine.dispose()
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert (
            main(["watchlists", "test", "missiles", "--dir", str(GOOD), "--format", "jsonl"]) == 0
        )
    finally:
        get_settings.cache_clear()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2  # the 40-day-old article is outside --since 30d
    matched = [r for r in rows if r["matches"]]
    assert len(matched) == 1 and matched[0]["matches"][0]["watchlist"] == "missiles"


def test_eval_table_and_explanations(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "watchlists",
            "eval",
            "--dir",
            str(GOOD),
            "--articles",
            str(ARTICLES),
            "--labels",
            str(LABELS),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["watchlist", "tp", "fp", "fn", "precision", "recall", "f1"]
    assert out[1].split() == ["letters", "1", "0", "1", "1.000", "0.500", "0.667"]
    assert out[2].split() == ["missiles", "2", "0", "1", "1.000", "0.667", "0.800"]
    assert "  a3  Weather in Seoul" in out
    assert "    source 'bbc' is not in sources: kcna, yonhap" in out
    assert "    no @kim; found: letter" not in out  # a4 has no letter either
    assert "    no @kim" in out


def test_eval_unknown_watchlist(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["watchlists", "eval", "--dir", str(GOOD), "--articles", str(ARTICLES)]
    assert main([*args, "--labels", str(LABELS), "--watchlist", "zzz"]) == 2
    assert "unknown watchlist(s): zzz" in capsys.readouterr().err


def test_schema_command_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watchlists", "schema"]) == 0
    committed = Path(__file__).resolve().parents[1] / "watchlists" / "watchlist.schema.json"
    assert capsys.readouterr().out == committed.read_text(encoding="utf-8")
