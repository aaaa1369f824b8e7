"""Near-duplicate signatures and the same-story decision (pure: plain values in, plain values out).

An article becomes a `Fingerprint`: folded word stems of the headline and of the whole text,
word-trigram shingles, the numbers and calendar dates it mentions, and its time. Candidates are
found through LSH band keys (MinHash over stems, r rows per band), stored and indexed wherever
the caller keeps them; `same_story` then decides on the pair with explicit guards, because wire
copies of two *different* launches read alike: different days, numbers or dates keep them apart.

The second signal is the article's text embedding (`Embedding`: one multilingual vector and the
article's language). Its candidates come from random-hyperplane (SimHash) band keys
(`vector_band_keys`), and `vector_verdict` accepts a pair whose cosine is high enough for how far
apart in time the two are, unless the same guards veto it. That is what groups one event told in
other words, by other outlets, in other languages.

Why stems are 5-letter prefixes: it is a crude stemmer that works the same for English and
Polish ("launches"/"launched", "rakietę"/"rakietą") without a language model or word lists.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import cast

import numpy as np

from monitor.textnorm import fold

STEM_LEN = 5
TITLE_BANDS, TITLE_ROWS = 14, 2
TEXT_BANDS, TEXT_ROWS = 10, 3
_PERMS = TITLE_BANDS * TITLE_ROWS + TEXT_BANDS * TEXT_ROWS

_rng = np.random.default_rng(0x5EED_600D)
_A = (_rng.integers(1, 2**63, size=_PERMS, dtype=np.uint64) | np.uint64(1)).astype(np.uint64)
_B = _rng.integers(0, 2**63, size=_PERMS, dtype=np.uint64).astype(np.uint64)


# Function words of the two main corpus languages; they carry no story identity.
STOPWORDS = frozenset(
    " ".join(
        (
            "a an the and or but of to in on at by for from with as is are was were be been being",
            "has have had it its this that these those he she they we you his her their our not",
            "no into over after before about than then so if out up says said say will would can",
            "could may might new also more most who what when where which while how why all any",
            "some just amid via per",
            "i w z na do sie nie o od po za ze to jest ale oraz czy jak dla przez pod nad jego",
            "jej ich tym tej ten ta te juz co",
        )
    ).split()
)

MONTHS: dict[str, int] = {}
for _i, _month_names in enumerate(
    (
        "january jan stycznia styczen",
        "february feb lutego luty",
        "march mar marca marzec",
        "april apr kwietnia kwiecien",
        "may maja maj",
        "june jun czerwca czerwiec",
        "july jul lipca lipiec",
        "august aug sierpnia sierpien",
        "september sep sept wrzesnia wrzesien",
        "october oct pazdziernika pazdziernik",
        "november nov listopada listopad",
        "december dec grudnia grudzien",
    ),
    start=1,
):
    for _n in _month_names.split():
        MONTHS[_n] = _i

_ABBREV = re.compile(r"\b([A-Z])\.([A-Z])\.")  # U.S. -> US, U.N. -> UN
_COMPASS = re.compile(r"\b([NS])\.? (?=[A-Z][a-z])")  # N. Korea / S Korea -> North/South
_YEAR = re.compile(r"^(19|20)\d\d$")


def _expand(text: str) -> str:
    text = _ABBREV.sub(r"\1\2", text)
    return _COMPASS.sub(lambda m: "North " if m.group(1) == "N" else "South ", text)


def words(text: str) -> list[str]:
    """Folded words of a text, in order, with abbreviations expanded."""
    return fold(_expand(text)).split()


def stem(word: str) -> str:
    return word if word.isdigit() else word[:STEM_LEN]


def stems(ws: Iterable[str]) -> list[str]:
    return [stem(w) for w in ws if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


@dataclass(frozen=True)
class Fingerprint:
    """What the same-story decision looks at; cheap to rebuild from a title and a text."""

    title: frozenset[str]
    words: frozenset[str]
    numbers: frozenset[str]  # numerals of the headline, years excluded
    dates: frozenset[tuple[int, int]]  # (month, day) mentioned anywhere
    text_len: int  # stems of the body alone
    when: datetime | None
    source: tuple[str, str] = field(default=("", ""), repr=False, compare=False)
    sequence: tuple[str, ...] = field(default=(), repr=False, compare=False)  # stems in order

    @cached_property
    def shingles(self) -> frozenset[str]:
        """Word trigrams of the stems; computed on first use (most candidates never need them)."""
        seq = self.sequence
        return frozenset(" ".join(seq[i : i + 3]) for i in range(max(0, len(seq) - 2)))

    @cached_property
    def names(self) -> frozenset[str]:
        """Headline words that are proper names (places, people, groups).

        Computed on first use: only pairs that already read alike reach the names guard.
        """
        title, text = self.source
        return frozenset(_names(_RAW.findall(title), _RAW.findall(text), set(self.title)))


def _dates(ws: Sequence[str]) -> set[tuple[int, int]]:
    found: set[tuple[int, int]] = set()
    for i, w in enumerate(ws):
        month = MONTHS.get(w)
        if month is None or len(w) < 3:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < len(ws) and ws[j].isdigit() and 1 <= int(ws[j]) <= 31:
                found.add((month, int(ws[j])))
    return found


_RAW = re.compile(r"[^\W_]+|[.!?:;\"“”«»]", re.UNICODE)
_SENTENCE_END = frozenset('.!?:;"“”«»')


def _capitalized(tokens: list[str]) -> tuple[set[str], int, int]:
    """Stems of words capitalized inside a sentence, with the count of words and capitals."""
    found: set[str] = set()
    initial = True
    total = caps = 0
    for raw in tokens:
        if raw in _SENTENCE_END:
            initial = True
            continue
        if len(raw) > 1 and raw[0].isalpha():
            total += 1
            if raw[0].isupper():
                caps += 1
                if not initial or raw.isupper():
                    found.add(stem(fold(raw)))
        initial = False
    return found, total, caps


def _names(title: list[str], body: list[str], title_stems: set[str]) -> set[str]:
    """Headline words that name something: capitalized where ordinary words are not.

    In a Title Case headline capitals say nothing, so a word counts only when the body also
    capitalizes it mid-sentence (or it is an acronym). Takes raw tokens of the expanded text.
    """
    in_title, total, caps = _capitalized(title)
    in_body, _, _ = _capitalized(body) if body else (set(), 0, 0)
    if total and caps / total >= 0.6:
        acronyms = {stem(fold(w)) for w in title if len(w) > 1 and w.isupper()}
        found = (in_body & title_stems) | acronyms
    else:
        found = in_title | (in_body & title_stems)
    return {w for w in found if w not in STOPWORDS and not w.isdigit()}


# "… - Reuters", "… -KCNA", "… | AP News": who syndicated it, not what happened.
_CREDIT = re.compile(r"\s+(?:-|–|—|\|)\s*[A-Z][\w.&']*(?:\s+[A-Z][\w.&']*){0,2}\s*$")


def strip_credit(title: str) -> str:
    return _CREDIT.sub("", title).strip() or title


def fingerprint(title: str, text: str, when: datetime | None) -> Fingerprint:
    """Build the features of one article from its plain-text headline and body."""
    title = _expand(strip_credit(title))
    text = _expand(text)
    tw = fold(title).split()
    bw = fold(text).split()
    ts = stems(tw)
    bs = stems(bw)
    both = ts + bs
    numbers = {w for w in tw if w.isdigit() and not _YEAR.match(w)}
    return Fingerprint(
        title=frozenset(ts),
        words=frozenset(both),
        numbers=frozenset(numbers),
        dates=frozenset(_dates(tw + bw)),
        text_len=len(bs),
        when=when,
        source=(title, text),
        sequence=tuple(both),
    )


# --- LSH band keys ------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "little")


def _token_hashes(tokens: Iterable[str]) -> np.ndarray:
    return np.fromiter((_token_hash(t) for t in tokens), dtype=np.uint64)


_ROW_MIX = _rng.integers(1, 2**63, size=4, dtype=np.uint64) | np.uint64(1)
_SALT_TITLE = _rng.integers(0, 2**63, size=TITLE_BANDS, dtype=np.uint64)
_SALT_TEXT = _rng.integers(0, 2**63, size=TEXT_BANDS, dtype=np.uint64)
_SHIFT_32 = np.uint64(32)


def band_keys(fp: Fingerprint) -> tuple[int, ...]:
    """Signed 64-bit LSH keys: two articles sharing any key are candidates of one another.

    Headline bands (few rows) catch edited headlines and headline-only items; text bands
    catch copies whose bodies match; an article with no usable text has no keys. Both
    MinHash signatures come from one multiply-shift pass over the token hashes. The keys are
    stored in the database: `tests/test_dedup.py` pins them.
    """
    return band_keys_many([fp])[0]


def band_keys_many(fps: Sequence[Fingerprint]) -> list[tuple[int, ...]]:
    """`band_keys` of many articles (one poll's) in a few numpy calls, not a few per article:
    the per-call overhead of small arrays was most of the cost."""
    out: list[tuple[int, ...]] = [()] * len(fps)
    lists: list[list[str]] = []
    titled: list[int] = []  # title tokens first, then the other words, per article
    todo: list[int] = []
    for i, fp in enumerate(fps):
        title = list(fp.title)
        tokens = title + [t for t in fp.words if t not in fp.title]
        if len(tokens) >= 2:
            todo.append(i)
            lists.append(tokens)
            titled.append(len(title))
    if not todo:
        return out
    lengths = np.fromiter((len(t) for t in lists), dtype=np.intp, count=len(lists))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.intp)
    hv = _token_hashes(t for tokens in lists for t in tokens)
    split = TITLE_BANDS * TITLE_ROWS
    with np.errstate(over="ignore"):
        mixed = (hv[:, None] * _A[None, :] + _B[None, :]) >> _SHIFT_32
    text_sig = np.minimum.reduceat(mixed[:, split:], starts, axis=0)
    # Minimum over each article's first `titled` rows: reduce over [start, start + titled) by
    # interleaving those bounds (a trailing pad row keeps the last bound inside the array).
    title_len = np.asarray(titled, dtype=np.intp)
    bounds = np.empty(2 * len(todo), dtype=np.intp)
    bounds[0::2] = starts
    bounds[1::2] = starts + title_len
    padded = np.vstack((mixed[:, :split], np.zeros((1, split), dtype=mixed.dtype)))
    title_sig = np.minimum.reduceat(padded, bounds, axis=0)[0::2]
    title_keys = _band_matrix(title_sig, TITLE_ROWS, _SALT_TITLE)
    text_keys = _band_matrix(text_sig, TEXT_ROWS, _SALT_TEXT)
    for j, i in enumerate(todo):
        keys: list[int] = []
        if titled[j] >= 2:
            keys += title_keys[j]
        if len(fps[i].words) >= 4:
            keys += text_keys[j]
        out[i] = tuple(dict.fromkeys(keys))
    return out


def _band_matrix(sigs: np.ndarray, rows: int, salt: np.ndarray) -> list[list[int]]:
    """One signed 64-bit key per band of each row of `sigs` (one signature per article): its
    rows mixed, salted per band, then avalanched (the splitmix64 finalizer) so keys spread
    over the whole index."""
    n, width = sigs.shape
    with np.errstate(over="ignore"):
        mixed = sigs.reshape(n, width // rows, rows) * _ROW_MIX[:rows]
        v = np.bitwise_xor.reduce(mixed, axis=2) ^ salt[None, :]
        v ^= v >> np.uint64(30)
        v *= np.uint64(0xBF58476D1CE4E5B9)
        v ^= v >> np.uint64(27)
        v *= np.uint64(0x94D049BB133111EB)
        v ^= v >> np.uint64(31)
    return cast(list[list[int]], v.view(np.int64).tolist())


# --- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    same: bool
    score: float
    reason: str


def _containment(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _conflict(a: Fingerprint, b: Fingerprint, names: bool = True) -> str | None:
    """A reason why two alike texts still report different events, or None.

    `names=False` skips the names guard: across languages a name is spelled differently
    ("Kim Jong Un" / "Kim Dzong Un", "UN" / "ONZ"), so its absence says nothing."""
    if a.numbers and b.numbers and not a.numbers & b.numbers:
        return "different numbers"
    if (a.dates - b.dates) and (b.dates - a.dates):
        return "different dates"
    # A name missing from the other side counts only when that side has a body to miss it in.
    if not names:
        return None
    a_only = a.names - b.words if b.text_len >= BODY_MIN else frozenset()
    b_only = b.names - a.words if a.text_len >= BODY_MIN else frozenset()
    if a_only and b_only:
        return "different names"
    return None


def same_story(a: Fingerprint, b: Fingerprint, window: timedelta) -> Verdict:
    """Decide whether two articles report the same story (the MinHash rule: the text alone)."""
    if a.when is not None and b.when is not None and abs(a.when - b.when) > window:
        return Verdict(False, 0.0, "outside window")
    score = 0.0
    if _jaccard(a.title, b.title) >= TITLE_J:
        score = 0.8 * _containment(a.title, b.title)
    # Half the trigrams of one text in the other needs most of its words there too: the
    # word test is a cheap bound that spares building trigrams for unrelated candidates.
    if score < 0.5 and _containment(a.words, b.words) >= WORDS_FOR_SHINGLES:
        score = max(score, _containment(a.shingles, b.shingles))
    if score < 0.5:
        return Verdict(False, score, "not alike")
    conflict = _conflict(a, b)
    if conflict is not None:
        return Verdict(False, score, conflict)
    return Verdict(True, score, "alike")


WORDS_FOR_SHINGLES = 0.3
TITLE_J = 0.52  # 0.5 exactly is mostly follow-ups: "warns to scrap launch" / "launch successful"
BODY_MIN = 8


# --- the vector signal ---------------------------------------------------------------------------

VECTOR_BANDS, VECTOR_ROWS = 24, 4  # SimHash: 24 bands of 4 hyperplane bits
#: Same language: cosine needed at 0 hours apart, growing by SAME_SLOPE per hour, up to
#: SAME_HOURS apart. Measured with USE multilingual v3 on the dev pairs: reworded copies of one
#: event 0.61-0.98 (all within 9 h), the closest different event in the window 0.64 at 15 h.
SAME_COS, SAME_SLOPE, SAME_HOURS = 0.70, 0.004, 36.0
#: Other language: a translation scores lower (0.47 and 0.65 on the dev pairs, both within
#: 6 h), so it must be close in time, the nearest of its language, and free of conflicts.
CROSS_COS, CROSS_HOURS = 0.45, 12.0
VECTOR_HOURS = max(SAME_HOURS, CROSS_HOURS)  # the vector rules' reach in time
VECTOR_REASONS = frozenset({"vector: close", "vector: translation"})


@dataclass(frozen=True, slots=True)
class Embedding:
    """The vector signal of one article: its L2-normalised text vector and language ("?":
    unknown, treated as the same language as anything, the stricter rule)."""

    vector: np.ndarray
    language: str = "?"


@lru_cache(maxsize=4)
def _hyperplanes(dim: int) -> np.ndarray:
    """Fixed random hyperplanes (same seed in every process and replica) for `dim` dimensions."""
    rng = np.random.default_rng(0x5105_4A5E + dim)
    return rng.standard_normal((dim, VECTOR_BANDS * VECTOR_ROWS)).astype(np.float32)


_SALT_VECTOR = np.random.default_rng(0xBA5D_0C7E).integers(
    0, 2**63, size=VECTOR_BANDS, dtype=np.uint64
)
_ROW_BITS = (np.uint64(1) << np.arange(VECTOR_ROWS, dtype=np.uint64)).astype(np.uint64)


def _avalanche(v: np.ndarray) -> list[int]:
    with np.errstate(over="ignore"):
        v = v.copy()
        v ^= v >> np.uint64(30)
        v *= np.uint64(0xBF58476D1CE4E5B9)
        v ^= v >> np.uint64(27)
        v *= np.uint64(0x94D049BB133111EB)
        v ^= v >> np.uint64(31)
    return [int(x) for x in v.view(np.int64)]


def vector_band_keys(vector: np.ndarray) -> tuple[int, ...]:
    """Signed 64-bit SimHash band keys of a text vector: vectors at a small angle share many.

    Each band is the sign pattern of the vector against VECTOR_ROWS fixed hyperplanes; two
    vectors at cosine c agree on one bit with probability 1 - arccos(c)/pi. A key never equals
    a MinHash key by design (different salts), but they are kept in a table of their own."""
    if not vector.size or not np.any(vector):
        return ()
    bits = (vector.astype(np.float32) @ _hyperplanes(int(vector.shape[0]))) > 0
    codes = (bits.reshape(VECTOR_BANDS, VECTOR_ROWS) * _ROW_BITS).sum(axis=1).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = codes * np.uint64(0x9E3779B97F4A7C15) ^ _SALT_VECTOR
    return tuple(_avalanche(mixed))


def cosine(a: Embedding, b: Embedding) -> float:
    if a.vector.shape != b.vector.shape:
        return 0.0
    return float(np.dot(a.vector, b.vector))


def close_enough(embedding: Embedding, others: Mapping[int, Embedding]) -> set[int]:
    """Keys of `others` whose cosine to `embedding` reaches CROSS_COS, the lowest any vector
    rule accepts (one matrix product): the rest need no fingerprint or verification."""
    keys = [k for k, e in others.items() if e.vector.shape == embedding.vector.shape]
    if not keys:
        return set()
    matrix = np.stack([others[k].vector for k in keys])
    cosines = matrix @ embedding.vector
    return {k for k, c in zip(keys, cosines.tolist(), strict=True) if c >= CROSS_COS}


def hours_apart(a: Fingerprint, b: Fingerprint) -> float:
    if a.when is None or b.when is None:
        return 0.0
    return abs((a.when - b.when).total_seconds()) / 3600


def cross_language(a: Embedding, b: Embedding) -> bool:
    return a.language != b.language and "?" not in (a.language, b.language)


def vector_verdict(a: Fingerprint, b: Fingerprint, ea: Embedding, eb: Embedding) -> Verdict:
    """Decide on a pair by its text vectors, time and guards (the second signal).

    Same language: cosine >= SAME_COS + SAME_SLOPE per hour apart, within SAME_HOURS. Other
    languages: cosine >= CROSS_COS within CROSS_HOURS, and the dates and numbers guards only
    (names are spelled differently across languages). Conflicts veto as for the text rule."""
    cos = cosine(ea, eb)
    hours = hours_apart(a, b)
    cross = cross_language(ea, eb)
    if cross:
        if hours > CROSS_HOURS:
            return Verdict(False, cos, "vector: too far apart in time")
        if cos < CROSS_COS:
            return Verdict(False, cos, "vector: not close")
    else:
        if hours > SAME_HOURS:
            return Verdict(False, cos, "vector: too far apart in time")
        if cos < SAME_COS + SAME_SLOPE * hours:
            return Verdict(False, cos, "vector: not close")
    conflict = _conflict(a, b, names=not cross)
    if conflict is not None:
        return Verdict(False, cos, conflict)
    return Verdict(True, cos, "vector: translation" if cross else "vector: close")


def pair_verdict(
    a: Fingerprint,
    b: Fingerprint,
    window: timedelta,
    ea: Embedding | None = None,
    eb: Embedding | None = None,
) -> Verdict:
    """Both signals on one pair: the text rule, else (with both vectors) the vector rule.

    A conflict found by the text rule stands: the vector rule cannot overturn a veto."""
    verdict = same_story(a, b, window)
    if verdict.same or verdict.reason in CONFLICTS or ea is None or eb is None:
        return verdict
    if verdict.reason == "outside window":
        return verdict
    return vector_verdict(a, b, ea, eb)


# --- story keys and the in-memory index ---------------------------------------------------------


def story_key(seed: str) -> str:
    """A stable story key from its first article's identity, the same on every replica."""
    return "st_" + hashlib.blake2b(seed.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An earlier article that shares band keys with the new one (MinHash `shared`, SimHash
    `vector_shared`), with its vector when it has one."""

    article_id: int
    story_id: int
    shared: int
    fingerprint: Fingerprint
    embedding: Embedding | None = None
    vector_shared: int = 0
    story_languages: frozenset[str] = frozenset()  # languages of the story's vectored members


@dataclass(frozen=True, slots=True)
class Choice:
    """The outcome of matching one article against its candidates."""

    story_id: int | None  # None: start a new story
    score: float
    merge: tuple[int, ...]  # other matching stories, to merge into `story_id`


MAX_CANDIDATES = 24
CONFLICTS = frozenset({"different numbers", "different dates", "different names"})
# A single shared band is what unrelated texts produce by chance; real copies share many
# (the labelled copies in one language share 5 to 24 of 24).
MIN_SHARED = 2


def shortlist(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates worth verifying: the MAX_CANDIDATES sharing the most MinHash keys and the
    MAX_CANDIDATES sharing the most SimHash keys (at least MIN_SHARED of either)."""
    pool = list(candidates)
    by_text = sorted(
        (c for c in pool if c.shared >= MIN_SHARED), key=lambda c: (-c.shared, c.article_id)
    )[:MAX_CANDIDATES]
    by_vector = sorted(
        (c for c in pool if c.vector_shared >= MIN_SHARED and c.embedding is not None),
        key=lambda c: (-c.vector_shared, c.article_id),
    )[:MAX_CANDIDATES]
    seen: set[int] = set()
    out: list[Candidate] = []
    for cand in (*by_text, *by_vector):
        if cand.article_id not in seen:
            seen.add(cand.article_id)
            out.append(cand)
    return out


def choose(
    fp: Fingerprint,
    candidates: Iterable[Candidate],
    window: timedelta,
    embedding: Embedding | None = None,
) -> Choice:
    """Pick the story to join among verified candidates (the oldest story wins ties).

    Every candidate that passes `pair_verdict` votes for its story; joining the lowest story id
    and merging the others is what lets two stories created at the same moment (two replicas,
    two copies) converge into one. Only text matches with text on both sides merge stories; a
    match through a bare headline or through the vectors alone just joins. A story is vetoed
    when another of its members reads alike (or lies close by vector) but conflicts (other
    dates, numbers or names), so a headline-only member does not bridge two events that share a
    headline template ("Kim Receives Greetings from …"). Of the vector matches in other
    languages only the closest counts, and only into a story with no member in the new
    article's own language yet: once a story has one, a new report in that language must match
    it by the same-language rules (stricter), or a loosely related article would reach the
    story through its translation.
    """
    best: dict[int, float] = {}
    strong: set[int] = set()  # stories matched with text on both sides
    vetoed: set[int] = set()
    translation: tuple[float, int] | None = None  # (cosine, story) of the closest translation
    for cand in shortlist(candidates):
        verdict = pair_verdict(fp, cand.fingerprint, window, embedding, cand.embedding)
        if verdict.same and verdict.reason == "vector: translation":
            if embedding is not None and embedding.language in cand.story_languages:
                continue
            if translation is None or verdict.score > translation[0]:
                translation = (verdict.score, cand.story_id)
        elif verdict.same:
            best[cand.story_id] = max(best.get(cand.story_id, 0.0), verdict.score)
            text_match = verdict.reason not in VECTOR_REASONS
            if text_match and min(fp.text_len, cand.fingerprint.text_len) >= BODY_MIN:
                strong.add(cand.story_id)
        elif verdict.reason in CONFLICTS:
            vetoed.add(cand.story_id)
    if translation is not None:
        score, story = translation
        best[story] = max(best.get(story, 0.0), score)
    for story in vetoed:
        best.pop(story, None)
    strong -= vetoed
    if strong:
        keep = min(strong)
        return Choice(keep, best[keep], tuple(sorted(s for s in strong if s != keep)))
    if not best:
        return Choice(None, 0.0, ())
    # Only bare headlines or vectors matched: weak evidence. Join the story resembled most and
    # merge nothing, or template headlines would bridge different events.
    keep = max(best, key=lambda s: (best[s], -s))
    return Choice(keep, best[keep], ())


@dataclass(slots=True)
class _Entry:
    fingerprint: Fingerprint
    story: int
    keys: tuple[int, ...]
    embedding: Embedding | None = None


@dataclass(frozen=True, slots=True)
class MemoryAssignment:
    story_id: int
    story_key: str
    is_new: bool
    first_article: str


class MemoryStoryIndex:
    """The same algorithm as the database index, held in dicts: for `stories test`/`eval`.

    Articles must arrive in time order (the way they would be ingested); memory grows with
    every article, so this is for files and benchmarks, not for the service.
    """

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._bands: dict[int, list[int]] = {}
        self._vector_bands: dict[int, list[int]] = {}
        self._entries: list[_Entry] = []
        self._ids: list[str] = []
        self._story_first: dict[int, int] = {}
        self._merged: dict[int, int] = {}
        self._languages: dict[int, set[str]] = {}  # story: languages of its vectored members

    def _resolve(self, story: int) -> int:
        while story in self._merged:
            story = self._merged[story]
        return story

    def assign(
        self, article_id: str, fp: Fingerprint, embedding: Embedding | None = None
    ) -> MemoryAssignment:
        keys = band_keys(fp)
        vkeys = vector_band_keys(embedding.vector) if embedding is not None else ()
        shared: dict[int, int] = {}
        for key in keys:
            for idx in self._bands.get(key, ()):
                shared[idx] = shared.get(idx, 0) + 1
        vshared: dict[int, int] = {}
        for key in vkeys:
            for idx in self._vector_bands.get(key, ()):
                vshared[idx] = vshared.get(idx, 0) + 1
        candidates = []
        for idx in shared.keys() | vshared.keys():
            entry = self._entries[idx]
            when_ok = (
                fp.when is None
                or entry.fingerprint.when is None
                or abs(fp.when - entry.fingerprint.when) <= self.window
            )
            if when_ok:
                story = self._resolve(entry.story)
                langs = frozenset(self._languages.get(story, ()))
                candidates.append(
                    Candidate(
                        idx,
                        story,
                        shared.get(idx, 0),
                        entry.fingerprint,
                        entry.embedding,
                        vshared.get(idx, 0),
                        langs,
                    )
                )
        choice = choose(fp, candidates, self.window, embedding)
        idx = len(self._entries)
        if choice.story_id is None:
            story, is_new = idx, True
            self._story_first[story] = idx
        else:
            story, is_new = choice.story_id, False
            for other in choice.merge:
                self._merged[other] = story
                self._languages.setdefault(story, set()).update(self._languages.pop(other, ()))
        if embedding is not None:
            self._languages.setdefault(story, set()).add(embedding.language)
        self._entries.append(_Entry(fp, story, keys, embedding))
        self._ids.append(article_id)
        for key in keys:
            self._bands.setdefault(key, []).append(idx)
        for key in vkeys:
            self._vector_bands.setdefault(key, []).append(idx)
        first = self._ids[self._story_first[story]]
        return MemoryAssignment(story, story_key(first), is_new, first)

    def story_of(self, position: int) -> str:
        """The final story key of the n-th assigned article (after any later merges)."""
        story = self._resolve(self._entries[position].story)
        return story_key(self._ids[self._story_first[story]])


# --- explaining one pair -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairExplanation:
    """Every figure the decision looks at for one pair, for `monitor stories explain`."""

    hours_apart: float | None
    window_hours: float
    title_jaccard: float
    title_containment: float
    words_containment: float
    shingles_containment: float
    bands_shared: int
    bands_total: int
    text: Verdict  # the MinHash rule
    numbers: tuple[tuple[str, ...], tuple[str, ...]]
    dates: tuple[tuple[str, ...], tuple[str, ...]]
    names_missing: tuple[tuple[str, ...], tuple[str, ...]]  # names of one the other lacks
    cosine: float | None = None
    languages: tuple[str, str] = ("?", "?")
    cosine_needed: float | None = None
    vector_bands_shared: int = 0
    vector: Verdict | None = None  # the vector rule (None: a side has no vector)
    decision: Verdict = field(default_factory=lambda: Verdict(False, 0.0, "not alike"))

    def as_dict(self) -> dict[str, object]:
        def verdict(v: Verdict | None) -> dict[str, object] | None:
            return None if v is None else {"same": v.same, "score": v.score, "reason": v.reason}

        return {
            "hours_apart": self.hours_apart,
            "window_hours": self.window_hours,
            "title_jaccard": self.title_jaccard,
            "title_containment": self.title_containment,
            "words_containment": self.words_containment,
            "shingles_containment": self.shingles_containment,
            "bands_shared": self.bands_shared,
            "bands_total": self.bands_total,
            "text": verdict(self.text),
            "numbers": [list(x) for x in self.numbers],
            "dates": [list(x) for x in self.dates],
            "names_missing": [list(x) for x in self.names_missing],
            "cosine": self.cosine,
            "languages": list(self.languages),
            "cosine_needed": self.cosine_needed,
            "vector_bands_shared": self.vector_bands_shared,
            "vector": verdict(self.vector),
            "same_story": self.decision.same,
            "reason": self.decision.reason,
        }


def _month_day(d: tuple[int, int]) -> str:
    return f"{d[0]:02d}-{d[1]:02d}"


def explain_pair(
    a: Fingerprint,
    b: Fingerprint,
    window: timedelta,
    ea: Embedding | None = None,
    eb: Embedding | None = None,
) -> PairExplanation:
    """Why two articles are, or are not, one story: both rules' scores and every guard."""
    hours = hours_apart(a, b) if a.when is not None and b.when is not None else None
    ka, kb = set(band_keys(a)), set(band_keys(b))
    a_names = a.names - b.words if b.text_len >= BODY_MIN else frozenset()
    b_names = b.names - a.words if a.text_len >= BODY_MIN else frozenset()
    cos = needed = None
    vector = None
    vshared = 0
    langs = ("?", "?")
    if ea is not None and eb is not None:
        cos = cosine(ea, eb)
        langs = (ea.language, eb.language)
        cross = cross_language(ea, eb)
        needed = CROSS_COS if cross else SAME_COS + SAME_SLOPE * (hours or 0.0)
        vector = vector_verdict(a, b, ea, eb)
        vshared = len(set(vector_band_keys(ea.vector)) & set(vector_band_keys(eb.vector)))
    return PairExplanation(
        hours_apart=hours,
        window_hours=window.total_seconds() / 3600,
        title_jaccard=_jaccard(a.title, b.title),
        title_containment=_containment(a.title, b.title),
        words_containment=_containment(a.words, b.words),
        shingles_containment=_containment(a.shingles, b.shingles),
        bands_shared=len(ka & kb),
        bands_total=min(len(ka), len(kb)),
        text=same_story(a, b, window),
        numbers=(tuple(sorted(a.numbers)), tuple(sorted(b.numbers))),
        dates=(
            tuple(_month_day(d) for d in sorted(a.dates)),
            tuple(_month_day(d) for d in sorted(b.dates)),
        ),
        names_missing=(tuple(sorted(a_names)), tuple(sorted(b_names))),
        cosine=cos,
        languages=langs,
        cosine_needed=needed,
        vector_bands_shared=vshared,
        vector=vector,
        decision=pair_verdict(a, b, window, ea, eb),
    )
