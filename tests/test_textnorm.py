"""Folding: the same words come out of every spelling a desk would call the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.textnorm import fold, fold_mapped, fold_term, haystack, is_unspaced_word, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kim Jong-un", ["kim", "jong", "un"]),
        ("Kim Jong Un", ["kim", "jong", "un"]),
        ("KIM JONG UN'S", ["kim", "jong", "un", "s"]),
        ("Kim Jong Un’s", ["kim", "jong", "un", "s"]),
        ("Kim Jong‐un", ["kim", "jong", "un"]),  # U+2010 hyphen
        ("Kim\u00a0Jong\u2013un", ["kim", "jong", "un"]),  # nbsp, en dash
        ("N. Korea", ["n", "korea"]),
        ("Hwasong-18", ["hwasong", "18"]),
        ("Korea Północna wystrzeliła", ["korea", "polnocna", "wystrzelila"]),
        ("Łódź", ["lodz"]),
        ("António Guterres", ["antonio", "guterres"]),
        ("ＩＣＢＭ", ["icbm"]),  # full-width letters (NFKC)
        ("Straße", ["strasse"]),
        ("ﬁre", ["fire"]),  # ligature
        ("북한이 ICBM을 발사했다", ["북한이", "icbm", "을", "발사했다"]),
        ("“quoted” — text…", ["quoted", "text"]),
        ("", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_fold_keeps_length_for_common_text() -> None:
    text = "North Korea’s Kim Jong-un fired a ‘missile’ — Pyongyang, Korei Północnej"
    assert len(fold(text)) == len(text)
    assert fold_mapped(text).origin is None


def test_offset_map_when_a_character_expands() -> None:
    text = "Die Straße nach Pyongyang"
    folded = fold_mapped(text)
    assert folded.origin is not None
    start = folded.text.index("pyongyang")
    assert text[folded.source_offset(start, len(text)) :].startswith("Pyongyang")


def test_combining_marks_are_dropped_with_offsets() -> None:
    text = "Cafe\u0301 Pyongyang"  # e + combining acute
    folded = fold_mapped(text)
    assert words(text) == ["cafe", "pyongyang"]
    start = folded.text.index("pyongyang")
    assert text[folded.source_offset(start, len(text))] == "P"


def test_haystack_is_single_spaced_and_padded() -> None:
    assert haystack("Kim  Jong-un, (DPRK)") == " kim jong un dprk "
    assert haystack("북한이 SLBM을") == " 북한이 slbm 을 "


def test_fold_term_and_hangul() -> None:
    assert fold_term("Kim Jong-Un's") == ("kim", "jong", "un", "s")
    assert is_unspaced_word("북한")
    assert not is_unspaced_word("dprk")


@given(st.text(max_size=200))
def test_fold_never_fails_and_words_are_folded(text: str) -> None:
    found = words(text)
    assert all(w and w == w.casefold() and " " not in w for w in found)
    folded = fold_mapped(text)
    if folded.origin is not None:
        assert len(folded.origin) == len(folded.text)
        assert all(0 <= i < len(text) for i in folded.origin)
    # Folding is idempotent on words: folding folded words changes nothing.
    assert words(" ".join(found)) == found
