"""Matching throughput: the compiled matcher vs. a naive one-regex-per-watchlist baseline.

    .venv/bin/python benchmarks/match.py [--articles tests/data/corpus/articles.jsonl]

Synthetic watchlists have the shape admins write, `("a b" OR c) AND (d OR e OR f) NOT g`, with
entity words drawn from the corpus vocabulary (mostly rare words, as names are) and event words
from a list of common news verbs. The baseline turns each watchlist into one lookahead regex run
over the folded text of every article. Both must return the same watchlists for every article;
the script exits non-zero if they ever differ. Runs on one core (plain CPython); times are CPU
seconds of this process (`time.process_time`), best of `--repeat` runs, so other work on a shared
machine does not distort them.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.corpus import read_articles  # noqa: E402
from monitor.model import Article  # noqa: E402
from monitor.query.matcher import compile_matcher  # noqa: E402
from monitor.textnorm import words  # noqa: E402
from monitor.watchlists import AlertSpec, Watchlist  # noqa: E402

_EVENT_WORDS = """launch launched fires fired attack attacked sanctions election vote voted letter
meeting talks deal killed arrested protest strike warns warned says said report reported crisis
court trial summit visit visited test tested deploy missile war ceasefire"""
EVENTS = tuple(_EVENT_WORDS.split())


def synthetic(count: int, vocabulary: list[str], rng: random.Random) -> list[Watchlist]:
    out = []
    for i in range(count):
        a, b, c, g = rng.sample(vocabulary, 4)
        events = rng.sample(EVENTS, 3)
        query = f'("{a} {b}" OR {c}) AND ({" OR ".join(events)}) NOT {g}'
        out.append(
            Watchlist(
                id=f"w{i:05d}",
                name=f"w{i}",
                description="",
                query=query,
                exclude=None,
                min_score=0.0,
                sources=(),
                alert=AlertSpec(),
                path=Path(f"w{i}.yaml"),
            )
        )
    return out


def naive_pattern(watchlist: Watchlist) -> re.Pattern[str]:
    """The same query as one regex over `title | text` folded words (the baseline)."""
    m = re.fullmatch(r'\("(\w+) (\w+)" OR (\w+)\) AND \(([\w ]+)\) NOT (\w+)', watchlist.query)
    assert m, watchlist.query
    a, b, c, events, g = m.groups()
    alternatives = "|".join(e for e in events.split(" OR "))
    return re.compile(
        rf"^(?=.*(?<!\S)(?:{a} {b}|{c})(?!\S))(?=.*(?<!\S)(?:{alternatives})(?!\S))"
        rf"(?!.*(?<!\S){g}(?!\S))"
    )


def naive_match(patterns: list[tuple[str, re.Pattern[str]]], article: Article) -> set[str]:
    text = " ".join(words(article.title)) + " | " + " ".join(words(article.text))
    return {wid for wid, pattern in patterns if pattern.search(text)}


def bench(articles: list[Article], sizes: list[int], seed: int, repeat: int) -> bool:
    rng = random.Random(seed)
    freq: Counter[str] = Counter()
    for article in articles:
        freq.update(set(words(article.title + " " + article.text)))
    # Names are rare: draw entity words that occur in 1-5 articles, plus a few more common ones.
    rare = sorted(w for w, n in freq.items() if 1 <= n <= 5 and len(w) > 3 and w.isalpha())
    common = sorted(w for w, n in freq.items() if 6 <= n <= 40 and len(w) > 3 and w.isalpha())
    vocabulary = rare + common[: len(rare) // 10]
    ok = True
    print(
        f"{len(articles)} articles, vocabulary {len(vocabulary)} words, seed {seed}, "
        f"best of {repeat} runs\n"
    )
    print("| watchlists | matcher articles/s | naive regex articles/s | speed-up | matches |")
    print("|---:|---:|---:|---:|---:|")
    for size in sizes:
        watchlists = synthetic(size, vocabulary, rng)
        started = time.process_time()
        matcher = compile_matcher(watchlists)
        compile_s = time.process_time() - started
        fast: list[set[str]] = []
        best = float("inf")
        for _ in range(repeat):  # best of N: other processes on the machine only slow runs down
            started = time.process_time()
            fast = [{m.watchlist_id for m in matcher.match(a)} for a in articles]
            best = min(best, time.process_time() - started)
        fast_rate = len(articles) / best
        patterns = [(w.id, naive_pattern(w)) for w in watchlists]
        # The baseline is slow: time it on a slice big enough for a stable rate.
        sample = articles[: max(20, min(len(articles), 200_000 // size))]
        slow: list[set[str]] = []
        best = float("inf")
        for _ in range(max(1, repeat // 2)):
            started = time.process_time()
            slow = [naive_match(patterns, a) for a in sample]
            best = min(best, time.process_time() - started)
        slow_rate = len(sample) / best
        same = fast[: len(sample)] == slow
        ok = ok and same
        total = sum(len(s) for s in fast)
        print(
            f"| {size:,} | {fast_rate:,.0f} | {slow_rate:,.0f} | {fast_rate / slow_rate:,.0f}× "
            f"| {total:,}{'' if same else ' MISMATCH'} |"
        )
        print(
            f"  (compile {compile_s * 1000:.0f} ms; baseline on {len(sample)} articles)",
            file=sys.stderr,
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--articles", type=Path, default=REPO / "tests" / "data" / "corpus" / "articles.jsonl"
    )
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="Runs per size; the best counts.")
    args = parser.parse_args()
    articles = [item.article for item in read_articles(args.articles)]
    sizes = [int(s) for s in args.sizes.split(",")]
    if not bench(articles, sizes, args.seed, args.repeat):
        print("the matcher and the baseline disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
