"""Matching semantics: each operator, folding variants, Korean, regex, scoring and explanations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import Article, Match
from monitor.query.matcher import compile_matcher
from monitor.query.syntax import QueryError
from monitor.textnorm import words
from monitor.watchlists import AlertSpec, Watchlist

ALIASES = {
    "kim": ("Kim Jong Un", "Kim Jong-un", "Kim Dzong Un*", "김정은"),
    "dprk": ("North Korea", "DPRK", "Pyongyang", "북한"),
    "letter": ("letter", "letters", "message of greeting"),
}


def wl(
    query: str,
    *,
    wid: str = "w",
    exclude: str | None = None,
    min_score: float = 0.0,
    sources: tuple[str, ...] = (),
) -> Watchlist:
    return Watchlist(
        id=wid,
        name=wid.title(),
        description="",
        query=query,
        exclude=exclude,
        min_score=min_score,
        sources=sources,
        alert=AlertSpec(),
        path=Path(f"{wid}.yaml"),
        aliases=ALIASES,
    )


def art(title: str, text: str = "", source: str = "src", url: str = "") -> Article:
    return Article(
        source_id=source,
        entry_key=title,
        url=url,
        title=title,
        text=text,
        published=None,
        content_hash=title,
    )


def run(query: str, title: str, text: str = "", **kw: object) -> list[Match]:
    source = str(kw.pop("source", "src"))
    url = str(kw.pop("url", ""))
    matcher = compile_matcher([wl(query, **kw)])  # type: ignore[arg-type]
    return matcher.match(art(title, text, source, url))


MATCHES: list[tuple[str, str, str, bool]] = [
    # words and phrases, with folding variants
    ("missile", "North Korea fires missile", "", True),
    ("missile", "North Korea fires missiles", "", False),
    ("missile*", "North Korea fires missiles", "", True),
    ('"Kim Jong Un"', "Kim Jong-un speaks", "", True),
    ('"Kim Jong Un"', "KIM JONG UN'S letter", "", True),
    ('"Kim Jong-un"', "Kim Jong Un’s sister", "", True),
    ("Kim Jong-un", "Kim Jong Un arrives", "", True),
    ('"Kim Jong Un"', "Kim Yo Jong and Un", "", False),
    ('"jong un"', "Kim Jong Un", "", True),
    ("guterres", "António Gutérres said", "", True),
    ('"Korea Północna"', "KOREA POLNOCNA wystrzeliła", "", True),
    ("wystrzelila", "Korea Północna wystrzeliła rakietę", "", True),
    # booleans
    ("a AND b", "a b", "", True),
    ("a AND b", "a c", "", False),
    ("a b", "b a", "", True),
    ("a OR b", "c b", "", True),
    ("a OR b", "c d", "", False),
    ("a NOT b", "a c", "", True),
    ("a NOT b", "a b", "", False),
    ("a -b", "a b", "", False),
    ("NOT b", "a c", "", True),
    ("(a OR b) AND NOT (c OR d)", "b e", "", True),
    ("(a OR b) AND NOT (c OR d)", "b d", "", False),
    # fields: default is title + summary; source and url only when asked
    ("title:missile", "missile launch", "", True),
    ("title:missile", "launch", "missile", False),
    ("summary:missile", "launch", "a missile", True),
    ("summary:missile", "missile", "", False),
    ("source:kcna", "x", "", False),
    ("kcna", "x", "", False),
    # proximity
    ('"kim letter"~3', "Kim sends a long letter", "", True),
    ('"kim letter"~1', "Kim sends a long letter", "", False),
    ('"letter kim"~3', "Kim sends a long letter", "", True),  # any order
    ("kim NEAR/3 letter", "Kim sends a long letter", "", True),
    ("kim NEAR/2 letter", "Kim sends a long letter", "", False),
    ("letter NEAR/3 kim", "Kim sends a long letter", "", True),
    ("kim NEAR/50 letter", "Kim sends", "a letter", False),  # never across fields
    ("@kim NEAR/3 @letter", "Kim Jong-un sends a letter", "", True),
    ("(fire OR launch) NEAR/2 missile", "launch of a missile", "", True),
    ("a NEAR/1 b NEAR/1 c", "a b c", "", True),
    ("a NEAR/1 b NEAR/1 c", "a b x x x c", "", False),
    # aliases
    ("@kim", "Kim Dzong Una", "", True),
    ("@kim", "Kim Jong Il", "", False),
    # Korean: Hangul words match inside longer words (particles, compounds)
    ("북한", "북한이 미사일을 발사했다", "", True),
    ("미사일", "북, 탄도미사일 발사", "", True),
    ("북한 AND 발사", "북한의 탄도미사일 발사", "", True),
    ("@dprk", "북한의 입장", "", True),
    ("icbm", "북한 ICBM을 발사", "", True),
    ("@kim NEAR/3 미사일", "김정은 위원장 미사일 참관", "", True),
    # regular expressions (RE2, case-insensitive unless (?-i))
    ("/hwasong-?1[5-9]/", "Hwasong-18 test", "", True),
    ("/hwasong-?1[5-9]/", "Hwasong area housing", "", False),
    ("/(?-i)\\bUN\\b/", "Talks at UN", "", True),
    ("/(?-i)\\bUN\\b/", "Kim Jong Un speaks", "", False),
    ("/(?-i)\\bUN\\b/ NEAR/2 meeting", "UN emergency meeting", "", True),
    ("/(?-i)\\bUN\\b/ NEAR/2 meeting", "UN said a long time later the meeting", "", False),
    ("/(a+)+$/", "a" * 5000 + "!", "", False),  # catastrophic for backtracking engines
    ("/Ł[oó]dź/", "Łódź", "", True),
]


@pytest.mark.parametrize(("query", "title", "text", "expected"), MATCHES)
def test_match_table(query: str, title: str, text: str, expected: bool) -> None:
    assert bool(run(query, title, text)) is expected


def test_source_and_url_fields() -> None:
    assert run("source:kcna AND missile", "missile", source="kcna")
    assert not run("source:kcna AND missile", "missile", source="yonhap")
    assert run('url:"north-korea"', "x", url="https://ex.org/north-korea-missile")
    assert not run('url:"north-korea"', "x", url="https://ex.org/south-korea")


def test_sources_restriction() -> None:
    assert run("missile", "missile", source="kcna", sources=("kcna",))
    assert not run("missile", "missile", source="bbc", sources=("kcna",))


def test_exclude_vetoes() -> None:
    assert run("missile", "missile launch", exclude="drill")
    assert not run("missile", "missile drill", exclude="drill")
    assert not run("missile", "missile", "during a drill", exclude="drill")


def test_scoring_title_counts_double() -> None:
    (title_hit,) = run("missile", "missile fired")
    (body_hit,) = run("missile", "news", "a missile")
    (both,) = run("missile AND fired", "missile", "it was fired")
    assert title_hit.score == 2.0
    assert body_hit.score == 1.0
    assert both.score == 3.0


def test_text_is_credited_once() -> None:
    (m,) = run('(test OR "test fire*") AND missile', "North Korea test-fired a missile")
    assert m.terms == ("test fire*", "missile")
    assert m.score == 4.0
    (m,) = run("@kim", "Kim Jong-un")  # two spellings of one member count once
    assert m.terms == ("Kim Jong Un",) and m.score == 2.0


def test_min_score() -> None:
    assert run("missile OR launch", "missile launch", min_score=4)
    assert not run("missile OR launch", "missile", "launch", min_score=4)


def test_negated_terms_do_not_score() -> None:
    (m,) = run("missile NOT drill", "missile", "")
    assert m.terms == ("missile",)


def test_terms_snippet_and_highlights_point_at_the_words() -> None:
    text = (
        "Officials said on Tuesday that North Korea’s leader Kim Jong-un sent a letter "
        "to the president, state media reported."
    )
    (m,) = run("@kim NEAR/5 @letter", "Diplomacy", text)
    assert m.terms == ("Kim Jong Un", "letter")
    marked = [m.snippet[h.start : h.end] for h in m.highlights]
    assert marked == ["Kim Jong-un", "letter"]


def test_snippet_window_in_long_text() -> None:
    filler = "word " * 200
    text = filler + "North Korea fired a missile. " + filler
    (m,) = run("missile", "news", text)
    assert m.snippet.startswith("…") and m.snippet.endswith("…")
    assert len(m.snippet) < 300
    assert [m.snippet[h.start : h.end] for h in m.highlights] == ["missile"]


def test_highlight_offsets_survive_expanding_characters() -> None:
    text = "Die Straße: Kim Jong Un sent a letter."
    (m,) = run("@kim NEAR/3 letter", "x", text)
    assert [m.snippet[h.start : h.end] for h in m.highlights] == ["Kim Jong Un", "letter"]


def test_title_only_match_uses_title_as_snippet() -> None:
    (m,) = run("missile", "North Korea missile", "nothing here")
    assert m.snippet == "North Korea missile"
    assert [m.snippet[h.start : h.end] for h in m.highlights] == ["missile"]


def test_results_sorted_by_score_then_id() -> None:
    matcher = compile_matcher(
        [wl("missile", wid="b"), wl("missile AND launch", wid="a"), wl("missile", wid="c")]
    )
    found = matcher.match(art("missile launch"))
    assert [m.watchlist_id for m in found] == ["a", "b", "c"]
    assert [m.score for m in found] == [4.0, 2.0, 2.0]


def test_prefilter_only_evaluates_candidates() -> None:
    matcher = compile_matcher(
        [
            wl('"kim jong un" AND letter', wid="letters"),
            wl("missile*", wid="missiles"),
            wl("NOT anything", wid="always"),
            wl("/hwasong/", wid="regex"),
        ]
    )
    ids = [c.watchlist.id for c in matcher.compiled]
    picked = {ids[i] for i in matcher.candidates(art("Kim Jong-un writes"))}
    assert picked == {"always", "regex"}  # "letter" is required too and absent
    picked = {ids[i] for i in matcher.candidates(art("Kim Jong-un writes", "a letter"))}
    assert picked == {"letters", "always", "regex"}
    picked = {ids[i] for i in matcher.candidates(art("Missiles fired"))}
    assert picked == {"missiles", "always", "regex"}


def test_explain_reports_failing_clause_and_veto() -> None:
    matcher = compile_matcher(
        [wl("@kim AND (missile OR rocket)", wid="m", exclude="drill", min_score=1)]
    )
    why = matcher.explain(art("Kim Jong Un visits a farm"), "m")
    assert not why.matched
    assert why.reason == "no missile OR rocket; found: Kim Jong Un"
    why = matcher.explain(art("Kim Jong Un missile drill"), "m")
    assert not why.matched and why.reason == "vetoed by exclude (drill)"
    why = matcher.explain(art("Kim Jong Un missile"), "m")
    assert why.matched and why.match is not None and why.score == 4.0


def test_unknown_alias_and_bad_regex_fail_at_compile() -> None:
    with pytest.raises(QueryError, match="unknown alias @nope"):
        compile_matcher([wl("@nope")])
    with pytest.raises(QueryError, match="no backreferences"):
        compile_matcher([wl("/(a)\\1/")])
    with pytest.raises(QueryError, match="no backreferences"):
        compile_matcher([wl("/(?<=a)b/")])


_VOCAB = ["north", "korea", "kim", "jong", "un", "missile", "launch", "letter", "un", "x"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_VOCAB), max_size=12).map(" ".join),
    st.lists(st.sampled_from(_VOCAB), max_size=30).map(" ".join),
)
def test_prefilter_never_drops_a_match(title: str, text: str) -> None:
    """The Aho-Corasick prefilter must be a superset of what exact evaluation accepts."""
    queries = [
        '"north korea" AND missile',
        "(kim OR letter) AND launch*",
        '"kim jong un" NEAR/3 letter',
        "missile NOT launch",
        '"korea missile"~2',
    ]
    watchlists = [wl(q, wid=f"w{i}") for i, q in enumerate(queries)]
    matcher = compile_matcher(watchlists)
    article = art(title, text)
    fast = {m.watchlist_id for m in matcher.match(article)}
    slow = {w.id for w in watchlists if matcher.explain(article, w.id).matched}
    assert fast == slow


_PIECES = [
    "Kim Jong-un",
    "KIM JONG UN'S",
    "Kim Jong Un’s",
    "Straße",
    "ﬁre",
    "Łódź",
    "북한이",
    " ",
    ", ",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, "word", "x"]), max_size=40).map(" ".join))
def test_highlights_always_cover_the_matched_words(text: str) -> None:
    found = run('"kim jong un" OR 북한', "title", text)
    expected = "kim jong un" in " ".join(words(text)) or "북한" in text
    assert bool(found) is expected
    for m in found:
        for span in m.highlights:
            marked = words(m.snippet[span.start : span.end])
            assert marked in (["kim", "jong", "un"], ["북한이"]), (m.snippet, span)


@pytest.mark.parametrize(
    ("query", "title", "text", "reason"),
    [
        ("@kim NEAR/3 letter", "Kim Jong Un visits", "", "no letter; found: Kim Jong Un"),
        (
            "@kim NEAR/2 letter",
            "Kim Jong Un visited a farm and wrote a letter",
            "",
            "@kim and letter both found, but not within 2 words; found: Kim Jong Un, letter",
        ),
        ("missile NOT drill", "missile drill", "", "excluded by NOT: drill; found: missile"),
        ("title:missile AND launch", "launch", "missile", "no missile; found: launch"),
    ],
)
def test_explain_misses(query: str, title: str, text: str, reason: str) -> None:
    matcher = compile_matcher([wl(query)])
    why = matcher.explain(art(title, text), "w")
    assert not why.matched and why.reason == reason


def test_chinese_and_japanese_words_match_inside_longer_runs_and_feed_the_prefilter() -> None:
    """Japanese has no spaces: 北朝鮮 must match 北朝鮮が…, and be a literal the prefilter
    indexes (a regex would send every article to the full evaluation)."""
    assert words("北朝鮮、短距離弾道ミサイル10発超発射 ICBM을") == [
        "北朝鮮",
        "短距離弾道ミサイル",
        "10",
        "発超発射",
        "icbm",
        "을",
    ]
    matcher = compile_matcher([wl("北朝鮮 AND (ミサイル OR 発射)")])
    hit = matcher.match(art("北朝鮮が弾道ミサイルを発射、日本海に落下"))
    assert [m.watchlist_id for m in hit] == ["w"]
    assert "北朝鮮" in hit[0].terms
    assert matcher.match(art("韓国が弾道ミサイルを発射")) == []
    assert matcher.candidates(art("Weather in Seoul")) == []  # not evaluated at all
