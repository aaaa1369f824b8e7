"""Text folding shared by queries and articles, so both sides compare the same way.

Folding casefolds, applies NFKC, strips diacritics (also the Polish/Nordic letters that Unicode
does not decompose, such as ł and ø), and turns every character that is not a letter or a digit
into a space. Hyphen, space and apostrophe variants therefore all become one word boundary:
"Kim Jong-un", "Kim Jong Un" and "Kim Jong Un's" share the words ``kim jong un``.

The fold is length-preserving for almost every character, so offsets found in folded text point
at the same characters in the original (needed for highlights). The few characters that fold to
several letters (ß, ligatures) take a slower path that keeps an explicit offset map.

Korean: Hangul runs and Latin/digit runs are split into separate words ("ICBM을" gives
``icbm`` and ``을``), and query words written in Hangul match inside longer Hangul words,
because Korean attaches particles and compounds without spaces ("북한이", "탄도미사일").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Letters that NFD does not decompose but a reader treats as the base letter.
_EXTRA = {
    "ł": "l",
    "Ł": "l",
    "đ": "d",
    "Đ": "d",
    "ø": "o",
    "Ø": "o",
    "ħ": "h",
    "Ħ": "h",
    "ı": "i",
    "ŧ": "t",
    "Ŧ": "t",
    "ð": "d",
    "Ð": "d",
    "þ": "th",
    "Þ": "th",
    "æ": "ae",
    "Æ": "ae",
    "œ": "oe",
    "Œ": "oe",
}

# Punctuation variants unified before the word fold (all become word breaks anyway).
_PUNCT = {
    "\u2018": "'",
    "\u2019": "'",
    "\u02bc": "'",
    "\u2032": "'",
    "`": "'",
    "\u00b4": "'",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u201c": '"',
    "\u201d": '"',
    "\u00a0": " ",
}

# Scripts whose words are not always set apart by spaces: Hangul (particles join the noun:
# 북한이), and the Chinese characters and kana of Chinese and Japanese (北朝鮮がミサイル発射).
_UNSPACED = (
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Hangul
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
)
UNSPACED_RE = re.compile(f"[{_UNSPACED}]")
# A word is a run of those scripts, or a run of other letters/digits; the two never join.
WORD_RE = re.compile(f"[{_UNSPACED}]+|[^\\W_{_UNSPACED}]+")


def _fold_char(ch: str) -> str:
    """Light fold of one character: casefold, NFKC, no diacritics, punctuation kept."""
    if ch in _PUNCT:
        return _PUNCT[ch]
    if ch in _EXTRA:
        return _EXTRA[ch]
    out = unicodedata.normalize("NFKC", ch).casefold()
    decomposed = unicodedata.normalize("NFD", out)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    out = unicodedata.normalize("NFC", stripped)
    return "".join(_EXTRA.get(c, c) for c in out)


def _word_fold(light: str) -> str:
    """Letters and digits stay; everything else becomes a space (one per input char if possible)."""
    if not light:
        return ""
    if all(not (c.isalnum()) for c in light):
        return " "
    return "".join(c if c.isalnum() else " " for c in light)


class _Table(dict[int, str]):
    """A translate table that computes (and caches) each character's fold on first sight."""

    def __init__(self, word: bool) -> None:
        super().__init__()
        self.word = word
        self.irregular: set[str] = set()

    def __missing__(self, key: int) -> str:
        ch = chr(key)
        light = _fold_char(ch)
        value = _word_fold(light) if self.word else light
        if len(value) != 1:
            self.irregular.add(ch)
        self[key] = value
        return value


_WORD_TABLE = _Table(word=True)
for _code in range(128):  # warm the ASCII range so common text never calls __missing__
    _WORD_TABLE[_code]


@dataclass(frozen=True, slots=True)
class Folded:
    """Folded text plus, when the fold changed lengths, where each folded char came from."""

    text: str
    origin: tuple[int, ...] | None = None  # origin[i] = index in the source of folded char i

    def source_offset(self, index: int, source_len: int) -> int:
        """Map an offset in the folded text back to the source text."""
        if self.origin is None:
            return min(index, source_len)
        if index >= len(self.origin):
            return source_len
        return self.origin[index]


# ASCII fast path: bytes.translate over a 256-entry table is far cheaper than str.translate,
# which leaves its ASCII fast path at the first curly quote and looks up every later character.
_ASCII_BYTES = bytes(
    c + 32 if 65 <= c <= 90 else c if (48 <= c <= 57 or 97 <= c <= 122) else 32 for c in range(256)
)
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")


def _fold_run(found: re.Match[str]) -> str:
    return found.group().translate(_WORD_TABLE)


def fold(text: str) -> str:
    """Word fold: lowercase letters and digits, everything else a space."""
    if not text.isascii():
        text = _NON_ASCII_RE.sub(_fold_run, text)
        if not text.isascii():  # letters of other scripts remain (Hangul, Cyrillic, …)
            return text.translate(_WORD_TABLE)
    return text.encode("ascii").translate(_ASCII_BYTES).decode("ascii")


def _fold_with(text: str, table: _Table, out: str | None = None) -> Folded:
    out = fold(text) if out is None else out
    if len(out) == len(text) and (not table.irregular or table.irregular.isdisjoint(text)):
        return Folded(out)
    parts: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        piece = table[ord(ch)]
        parts.append(piece)
        origin.extend([index] * len(piece))
    return Folded("".join(parts), tuple(origin))


def fold_mapped(text: str, folded: str | None = None) -> Folded:
    """Word fold with an offset map back to `text` (identity when lengths are kept).

    Pass `folded` (= fold(text)) when it is at hand, to skip folding again.
    """
    return _fold_with(text, _WORD_TABLE, folded)


def words(text: str) -> list[str]:
    """The folded words of `text`, Hangul and other scripts split apart."""
    return WORD_RE.findall(fold(text))


def fold_words(text: str) -> list[str]:
    """Like `words`, faster: a plain split unless Hangul needs splitting from other scripts."""
    return split_folded(fold(text))


def split_folded(folded: str) -> list[str]:
    """The words of already folded text."""
    if not folded.isascii() and UNSPACED_RE.search(folded):
        return WORD_RE.findall(folded)
    return folded.split()


_DIGITS_RE = re.compile(r"\d+")


def fold_without_numbers(text: str) -> str:
    """Folded words with every digit removed, joined by single spaces.

    For telling a real edit from a changed counter: "1,234 views" and "1,301 views" both give
    ``views``, "updated 5 min ago" and "updated 12 min ago" both give ``updated min ago``; a
    changed word ("3rd" → "4th" keeps ``rd``/``th``) still differs.
    """
    return " ".join(_DIGITS_RE.sub(" ", fold(text)).split())


def haystack(text: str) -> str:
    """Folded words joined by single spaces with a space at each end, for the prefilter."""
    return " " + " ".join(fold_words(text)) + " "


def is_unspaced_word(word: str) -> bool:
    return bool(UNSPACED_RE.match(word))


@lru_cache(maxsize=4096)
def fold_term(text: str) -> tuple[str, ...]:
    """Fold a query term or phrase into its words (cached: queries repeat)."""
    return tuple(words(text))
