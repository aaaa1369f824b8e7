"""The pure near-duplicate stage: fingerprints, band keys, the guards, and the dev-pair figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import dedup
from monitor.cli import main
from monitor.corpus import CorpusItem, read_articles, read_pairs
from monitor.evaluation import group, score_pairs
from tests.support.paths import CORPUS

REPO = Path(__file__).resolve().parents[1]
ARTICLES = CORPUS / "articles.jsonl"
PAIRS = CORPUS / "near-duplicates-dev.jsonl"
WINDOW = timedelta(hours=72)


@pytest.fixture(scope="module")
def corpus() -> dict[str, CorpusItem]:
    return {a.id: a for a in read_articles(ARTICLES)}


def _fp(a: CorpusItem) -> dedup.Fingerprint:
    return dedup.fingerprint(a.title, a.text, a.published)


def _by_title(corpus: dict[str, CorpusItem], start: str) -> list[CorpusItem]:
    return [a for a in corpus.values() if " ".join(a.title.split()).startswith(start)]


def test_dev_pairs_reach_the_pinned_figures(corpus: dict[str, CorpusItem]) -> None:
    """Targets are P >= 0.95 and R >= 0.85; the reached 19/21 with no false pair is pinned."""
    stories = group(corpus.values(), 72.0)
    result = score_pairs(stories, read_pairs(PAIRS, set(corpus)))
    assert result.precision >= 0.95 and result.recall >= 0.85
    assert result.false_positive == 0, result.wrong
    assert result.true_positive >= 19, result.missed
    # The two misses are the English/Polish pairs (cross-language copies are out of reach).
    for a, b in result.missed:
        assert {corpus[a].source, corpus[b].source} & {"Wydarzenia Interia"}


def test_eval_command_prints_precision_and_recall(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["stories", "eval", "--articles", str(ARTICLES), "--pairs", str(PAIRS)]
    assert main([*args, "--embedder", "none"]) == 0  # MinHash alone
    out = capsys.readouterr().out
    assert "precision: 1.000" in out and "recall: 0.905" in out


@pytest.mark.slow
def test_eval_with_use_vectors_reaches_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's numbers: with the USE vectors beside MinHash, P >= 0.95 and R >= 0.90 on the
    dev pairs (measured 1.000 / 1.000); the English/Polish pairs are found."""
    args = ["stories", "eval", "--articles", str(ARTICLES), "--pairs", str(PAIRS)]
    assert main([*args, "--embedder", "use", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] >= 0.95 and result["recall"] >= 0.90, result
    assert ["r37e4059994", "r381e68e1bd"] not in result["missed"]
    assert ["r64c725a2cc", "r2f9f9b4712"] not in result["missed"]


def test_test_command_prints_one_story_key_per_article(
    capsys: pytest.CaptureFixture[str], corpus: dict[str, CorpusItem]
) -> None:
    assert main(["stories", "test", "--articles", str(ARTICLES), "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in lines] == list(corpus)
    story = {r["id"]: r["story"] for r in lines}
    # AP copy in ABC News and the Washington Post; two NYT launches months apart.
    assert story["k0237367355"] == story["k578b745d2c"]
    nyt = _by_title(corpus, "North Korea Launches Missile as Japan Issues")[0]
    nyt2 = _by_title(corpus, "North Korea Launches Two Ballistic Missiles: What to Know")[0]
    assert story[nyt.id] != story[nyt2.id]
    assert all(k.startswith("st_") and len(k) == 19 for k in story.values())


def test_bad_jsonl_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"id": "x", "title": "t", "summary": ""}\n{"id": "y", "title": \n')
    assert main(["stories", "test", "--articles", str(bad)]) == 2
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    bad.write_text('{"id": "x", "title": "t", "published": "yesterday"}\n')
    assert main(["stories", "test", "--articles", str(bad)]) == 2
    assert f"{bad}:1: 'published' 'yesterday' is not ISO 8601" in capsys.readouterr().err


def test_edited_headline_is_the_same_story(corpus: dict[str, CorpusItem]) -> None:
    notifies = _by_title(corpus, "North Korea notifies neighboring Japan")[0]
    tells = _by_title(corpus, "North Korea tells neighboring Japan")[0]
    verdict = dedup.same_story(_fp(notifies), _fp(tells), WINDOW)
    assert verdict.same, verdict


def test_same_template_on_other_occasion_is_kept_apart(corpus: dict[str, CorpusItem]) -> None:
    """KCNA greetings from two heads of state on one day read alike; their dates differ."""
    singapore = _by_title(
        corpus, "Respected Comrade Kim Jong Un Receives Greetings from President of"
    )
    kuwait = _by_title(corpus, "Respected Comrade Kim Jong Un Receives Greetings from Kuwaiti")
    verdict = dedup.same_story(_fp(singapore[0]), _fp(kuwait[0]), WINDOW)
    assert not verdict.same and verdict.reason == "different dates"


def test_launches_on_different_days_stay_apart_even_without_the_window(
    corpus: dict[str, CorpusItem],
) -> None:
    """Epoch Times reuses one photo caption; the dates in it tell the two launches apart."""
    march = _by_title(corpus, "North Korea Fires 2 More Missiles Amid")[0]
    july = _by_title(corpus, "North Korea Fires 2 Missiles After US Submarine")[0]
    verdict = dedup.same_story(_fp(march), _fp(july), timedelta(days=3650))
    assert not verdict.same and verdict.reason == "different dates"
    verdict = dedup.same_story(_fp(march), _fp(july), WINDOW)
    assert not verdict.same and verdict.reason == "outside window"


def test_numbers_and_names_guards() -> None:
    now = datetime(2023, 3, 1, tzinfo=UTC)
    two = dedup.fingerprint("North Korea fires 2 ballistic missiles into the sea", "", now)
    three = dedup.fingerprint("North Korea fires 3 ballistic missiles into the sea", "", now)
    assert dedup.same_story(two, two, WINDOW).same
    assert dedup.same_story(two, three, WINDOW).reason == "different numbers"
    body = "Kim Jong Un received a message of greeting from the president of {} on the occasion."
    a = dedup.fingerprint("Kim Jong Un receives greetings from Cuba", body.format("Cuba"), now)
    b = dedup.fingerprint("Kim Jong Un receives greetings from Laos", body.format("Laos"), now)
    assert dedup.same_story(a, b, WINDOW).reason == "different names"


def test_syndication_credit_and_abbreviations_are_ignored() -> None:
    assert (
        dedup.strip_credit("Kim inspects satellite photos -KCNA") == "Kim inspects satellite photos"
    )
    assert dedup.strip_credit("Talks resume - Reuters") == "Talks resume"
    assert dedup.strip_credit("South Korea-US drills") == "South Korea-US drills"
    assert dedup.words("N. Korea, U.S. envoys at U.N.") == [
        "north",
        "korea",
        "us",
        "envoys",
        "at",
        "un",
    ]
    assert dedup.words("Północnej Łódź") == ["polnocnej", "lodz"]


def test_band_keys_are_stable_across_processes() -> None:
    """Keys are stored in the database: they must not depend on PYTHONHASHSEED."""
    fp = dedup.fingerprint("North Korea launches spy satellite", "Pyongyang said on Tuesday", None)
    code = (
        "from monitor import dedup;"
        "print(list(dedup.band_keys(dedup.fingerprint("
        "'North Korea launches spy satellite', 'Pyongyang said on Tuesday', None))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == list(dedup.band_keys(fp))
    assert len(dedup.band_keys(fp)) == dedup.TITLE_BANDS + dedup.TEXT_BANDS


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=600))
def test_any_text_fingerprints_to_signed_64_bit_keys(title: str, text: str) -> None:
    fp = dedup.fingerprint(title, text, None)
    for key in dedup.band_keys(fp):
        assert -(2**63) <= key < 2**63
    assert dedup.same_story(fp, fp, WINDOW).same == bool(fp.shingles or fp.title)


def test_a_bare_template_headline_does_not_bridge_different_events(
    corpus: dict[str, CorpusItem],
) -> None:
    """KCNA, 7-10 Sept 2024: greetings from four heads of state share one headline template;
    the headline-only "King of Sweden" item reads like all of them. It may join one story but
    must not merge them; the two Singapore items (one headline-only) stay together."""
    ids = {
        "nicaragua": "k8f3e67b6ad",
        "guinea": "kfee51a666e",
        "sweden": "k0db1c1db20",
        "palestine": "k833dde1909",
        "singapore": "kd9a18bb81d",
        "singapore_headline": "kebe0681f6e",
    }
    assert not corpus[ids["sweden"]].text and not corpus[ids["singapore_headline"]].text
    stories = group([corpus[i] for i in ids.values()], 72.0)
    story = {name: stories[i] for name, i in ids.items()}
    bodies = ["nicaragua", "guinea", "palestine", "singapore"]
    assert len({story[name] for name in bodies}) == 4
    assert story["singapore"] == story["singapore_headline"]


# --- the vector signal ----------------------------------------------------------------------------

VECTORS = CORPUS.parent / "vectors" / "near-duplicates-dev.use.npz"


@pytest.fixture(scope="module")
def dev_embeddings(corpus: dict[str, CorpusItem]) -> dict[str, dedup.Embedding]:
    """USE multilingual v3 vectors of the dev-pair articles, made once by `monitor.storyvec`
    (stored, so the fast tier needs no model), with each article's language."""
    from monitor.storyvec import language_of

    stored = np.load(VECTORS)
    return {
        str(i): dedup.Embedding(v.astype(np.float32), language_of(corpus[str(i)].article))
        for i, v in zip(stored["ids"], stored["vectors"], strict=True)
    }


def test_vector_band_keys_are_stable_and_local() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal(512).astype(np.float32)
    v /= np.linalg.norm(v)
    near = v + 0.25 * rng.standard_normal(512).astype(np.float32) / np.sqrt(512)
    near /= np.linalg.norm(near)
    far = rng.standard_normal(512).astype(np.float32)
    keys = dedup.vector_band_keys(v)
    assert keys == dedup.vector_band_keys(v.copy()) and len(keys) == dedup.VECTOR_BANDS
    assert all(-(2**63) <= k < 2**63 for k in keys)
    shared_near = len(set(keys) & set(dedup.vector_band_keys(near)))
    shared_far = len(set(keys) & set(dedup.vector_band_keys(far)))
    assert shared_near >= 12 > shared_far
    assert dedup.vector_band_keys(np.zeros(512, np.float32)) == ()
    # The same in another process (fixed hyperplanes and salts, no randomized hash()).
    code = (
        "import numpy as np; from monitor import dedup; r = np.random.default_rng(1);"
        "v = r.standard_normal(512).astype(np.float32); v /= np.linalg.norm(v);"
        "print(list(dedup.vector_band_keys(v)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    ).stdout
    assert json.loads(out) == list(keys)


def test_dev_pairs_with_stored_vectors(
    corpus: dict[str, CorpusItem], dev_embeddings: dict[str, dedup.Embedding]
) -> None:
    """Each labelled pair alone, through the in-memory index with its USE vectors: every pair
    comes out as labelled, the two English/Polish ones through the vector rule."""
    pairs = read_pairs(PAIRS, set(corpus))
    for a, b, same in pairs:
        items = [corpus[a], corpus[b]]
        grouped = group(items, 72, embeddings=dev_embeddings)
        assert (grouped[a] == grouped[b]) is same, (a, b)
    english, polish = _fp(corpus["r37e4059994"]), _fp(corpus["r381e68e1bd"])
    verdict = dedup.pair_verdict(
        english, polish, WINDOW, dev_embeddings["r37e4059994"], dev_embeddings["r381e68e1bd"]
    )
    assert verdict == dedup.Verdict(True, pytest.approx(0.472, abs=0.01), "vector: translation")


def test_vector_rule_time_language_and_vetoes(
    corpus: dict[str, CorpusItem], dev_embeddings: dict[str, dedup.Embedding]
) -> None:
    """Close vectors are not enough: too far apart in time, or conflicting dates or numbers,
    keep two articles apart; across languages the names guard is off, the others stay."""
    v = dev_embeddings["r37e4059994"].vector
    t0 = datetime(2023, 8, 15, 12, tzinfo=UTC)

    def fp(title: str, text: str, hours: float) -> dedup.Fingerprint:
        return dedup.fingerprint(title, text, t0 + timedelta(hours=hours))

    en, pl = dedup.Embedding(v, "en"), dedup.Embedding(v, "pl")
    a = fp("Kim and Putin exchange letters", "The two leaders wrote on Tuesday.", 0)
    b = fp("Leaders write to each other", "Pyongyang and Moscow swapped messages.", 2)
    assert dedup.vector_verdict(a, b, en, en).reason == "vector: close"
    far = fp("Leaders write to each other", "Pyongyang and Moscow swapped messages.", 40)
    assert dedup.vector_verdict(a, far, en, en).reason == "vector: too far apart in time"
    dated_a = fp("Kim and Putin exchange letters", "Letters dated August 15 were shown.", 0)
    dated_b = fp("Leaders write to each other", "Letters dated September 9 were shown.", 2)
    assert dedup.vector_verdict(dated_a, dated_b, en, en).reason == "different dates"
    two = fp("North Korea fires 2 missiles", "The launch was seen from Japan.", 0)
    three = fp("North Korea fires 3 missiles", "Japan saw the launch.", 1)
    assert dedup.vector_verdict(two, three, en, en).reason == "different numbers"
    # Across languages: closer in time needed, names may differ.
    polish = fp("Putin napisał do Kim Dzong Una", "Przywódcy wymienili listy w Moskwie.", 3)
    assert dedup.vector_verdict(a, polish, en, pl).reason == "vector: translation"
    late = fp("Putin napisał do Kim Dzong Una", "Przywódcy wymienili listy w Moskwie.", 20)
    assert dedup.vector_verdict(a, late, en, pl).reason == "vector: too far apart in time"
    # Below the threshold nothing joins.
    rng = np.random.default_rng(3)
    other = rng.standard_normal(v.shape[0]).astype(np.float32)
    other /= np.linalg.norm(other)
    assert dedup.vector_verdict(a, b, en, dedup.Embedding(other, "en")).reason == (
        "vector: not close"
    )


def test_only_the_closest_translation_joins() -> None:
    """Two stories in English could each be the original of a Polish report: it joins the one
    it is closest to, not both, and merges nothing."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(512).astype(np.float32)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x)).astype(np.float32)

    t0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
    index = dedup.MemoryStoryIndex(WINDOW)
    first = unit(base)
    second = unit(base + 1.5 * rng.standard_normal(512).astype(np.float32))  # cosine ~0.55
    index.assign(
        "e1",
        dedup.fingerprint("Seoul says drones crossed", "Army fired warning shots.", t0),
        dedup.Embedding(first, "en"),
    )
    index.assign(
        "e2",
        dedup.fingerprint("Drills begin near border", "Tanks moved on Monday.", t0),
        dedup.Embedding(second, "en"),
    )
    polish = unit(base + 0.2 * rng.standard_normal(512).astype(np.float32))
    got = index.assign(
        "p1",
        dedup.fingerprint("Drony nad granicą", "Armia oddała strzały ostrzegawcze.", t0),
        dedup.Embedding(polish, "pl"),
    )
    assert float(polish @ second) >= dedup.CROSS_COS  # a translation of either, by cosine
    assert not got.is_new
    assert index.story_of(2) == index.story_of(0) != index.story_of(1)


def test_explain_command_on_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["stories", "explain", "k1cd394750b", "k833dde1909", "--articles", str(ARTICLES)]
    assert main([*args, "--embedder", "none", "--format", "json"]) == 0
    ex = json.loads(capsys.readouterr().out)
    assert ex["same_story"] is False and ex["reason"] == "outside window"
    assert ex["text"]["reason"] == "outside window" and ex["vector"] is None
    assert ex["dates"] == [["08-15", "08-16"], ["09-09", "09-10"]]
    assert main([*args, "--embedder", "none"]) == 0
    out = capsys.readouterr().out
    assert "decision: NOT ONE STORY (outside window)" in out and "600.0 h apart" in out
    assert main(["stories", "explain", "nope", "k833dde1909", "--articles", str(ARTICLES)]) == 2
    assert "no article 'nope'" in capsys.readouterr().err


def test_a_translation_does_not_open_a_story_that_has_my_language() -> None:
    """A story with an English and a Polish member: a new English article that only resembles
    the Polish one loosely (a translation's cosine) stays out; it would have to match the
    English member by the same-language rule."""
    rng = np.random.default_rng(8)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x)).astype(np.float32)

    t0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
    base = rng.standard_normal(512).astype(np.float32)
    polish_v = unit(base)
    english_v = unit(base + 1.0 * rng.standard_normal(512).astype(np.float32))  # ~0.7
    index = dedup.MemoryStoryIndex(WINDOW)
    index.assign(
        "pl",
        dedup.fingerprint("Korea apeluje do ONZ", "Napięcie rośnie.", t0),
        dedup.Embedding(polish_v, "pl"),
    )
    joined = index.assign(
        "en1",
        dedup.fingerprint("North Korea appeals to the UN", "Tension rises.", t0),
        dedup.Embedding(english_v, "en"),
    )
    assert not joined.is_new  # a translation into a story without English yet
    loose = unit(base + 1.2 * rng.standard_normal(512).astype(np.float32))
    assert float(loose @ polish_v) >= dedup.CROSS_COS and float(loose @ english_v) < 0.7
    other = index.assign(
        "en2",
        dedup.fingerprint("Envoy speaks at the Council", "Blames Washington.", t0),
        dedup.Embedding(loose, "en"),
    )
    assert other.is_new


# sha256 of the JSON list of `band_keys` of every article of tests/data/corpus/articles.jsonl,
# taken when keys were made one article at a time: stored indexes hold these keys.
CORPUS_KEYS = "497f74494dddeb3180c901c6732a89d7643b50793d81bc15988f4eb431b872b0"


def test_band_keys_in_any_batch_are_the_stored_ones() -> None:
    """The poll makes a feed's band keys in one batch; stored keys must not depend on it."""
    import hashlib

    items = read_articles(CORPUS / "articles.jsonl")
    fps = [dedup.fingerprint(i.article.title, i.article.text, None) for i in items]
    for size in (1, 7, 30, len(fps)):  # batch boundaries, the last article ending the array
        keys = [
            list(k)
            for i in range(0, len(fps), size)
            for k in dedup.band_keys_many(fps[i : i + size])
        ]
        assert hashlib.sha256(json.dumps(keys).encode()).hexdigest() == CORPUS_KEYS, size
    edge = [  # no keys, one title token, title keys only, text keys only
        dedup.fingerprint("", "", None),
        dedup.fingerprint("Launch", "", None),
        dedup.fingerprint("Missile launch", "", None),
        dedup.fingerprint("Launch", "Pyongyang fired two missiles on Tuesday", None),
    ]
    sizes = [len(k) for k in dedup.band_keys_many(edge)]
    assert sizes == [0, 0, dedup.TITLE_BANDS, dedup.TEXT_BANDS]
    assert dedup.band_keys_many([]) == []
