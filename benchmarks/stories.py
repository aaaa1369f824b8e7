"""Benchmark: cost of assigning a story with N stored articles, and the memory of the index.

Usage:  .venv/bin/python benchmarks/stories.py [--sizes 10000,100000] [--probe 400] [--no-baseline]
                                               [--no-vectors]

For each size N the script fills a real SQLite database (WAL, the service's engine settings)
with N articles: the older ones bulk-loaded with band rows computed by monitor.dedup exactly as
`assign_story` writes them (to keep the set-up short), the newest 4,096 through `assign_story`
itself, as a running service would have stored them. It then times `assign_story` on `--probe` new
articles (a third of them edited copies of stored ones) through the real DB-backed path, one
transaction per 50 articles like a poll. Beside it, in the same run, the baseline: datasketch
MinHash (128 permutations) + MinHashLSH in memory, insert N then query+insert the same probes.

Article texts are drawn from the words of the shared corpus (real vocabulary, synthetic
sentences), spread over 30 days so a 72 h window holds about a tenth of the store.

The vector signal (MinHash + vectors rows): every article also gets a 512-dimensional unit
vector drawn around one of 40 topic centres (articles of one topic at cosine about 0.45, as
news of one desk are; an edited copy at about 0.9 to its original), stored in story_vector and
story_vector_band exactly as `assign_story` writes them. "all" vectors every stored article
(MONITOR_STORY_VECTORS=all, the worst case); "gated" one in 20 (the default: only articles that
passed a watchlist's gate; the probes all carry a vector, so the figure is the cost of one
vectored article, an upper bound of the mean). Embedding itself is not timed: it is the text
model's cost, paid once per article and shared with the watchlist models.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from monitor import dedup  # noqa: E402
from monitor.model import Article  # noqa: E402
from monitor.store import articles, db, stories  # noqa: E402
from monitor.store.tables import (  # noqa: E402
    ArticleRow,
    Story,
    StoryBand,
    StoryVector,
    StoryVectorBand,
)

CORPUS = ROOT / "tests" / "data" / "corpus" / "articles.jsonl"
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
WARM = 16384  # newest stored articles assigned through the real path
MODEL = "bench-512"
TOPICS = np.random.default_rng(40).standard_normal((40, 512)).astype(np.float32)
TOPICS /= np.linalg.norm(TOPICS, axis=1, keepdims=True)


@dataclass(frozen=True, slots=True)
class Doc:
    title: str
    text: str
    when: datetime
    vector: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def topic_vector(rng: random.Random) -> np.ndarray:
    """A unit vector near one of the topic centres: two of a topic at cosine about 0.45."""
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(512).astype(np.float32)
    return _unit(TOPICS[rng.randrange(len(TOPICS))] + 0.9 * _unit(noise))


def rss_mb() -> float:
    """Resident memory of this process (Linux), to see what an index really holds."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def vocabulary() -> list[str]:
    words: list[str] = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        words += [w for w in f"{obj['title']} {obj['summary']}".split() if w.isalpha()]
    return words


def make_docs(n: int, vocab: list[str], rng: random.Random) -> list[Doc]:
    docs: list[Doc] = []
    for i in range(n):
        title = " ".join(rng.choices(vocab, k=rng.randint(7, 13)))
        text = " ".join(rng.choices(vocab, k=rng.randint(0, 60)))
        docs.append(Doc(title, text, START + SPAN * (i / n), topic_vector(rng)))
    return docs


def edited(doc: Doc, vocab: list[str], rng: random.Random, when: datetime) -> Doc:
    words = doc.title.split()
    words[rng.randrange(len(words))] = rng.choice(vocab)
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(512).astype(np.float32)
    vector = _unit(doc.vector + 0.45 * _unit(noise))  # cosine about 0.9
    return Doc(" ".join(words), doc.text + " " + " ".join(rng.choices(vocab, k=8)), when, vector)


def probes(stored: list[Doc], count: int, vocab: list[str], rng: random.Random) -> list[Doc]:
    end = START + SPAN
    found: list[Doc] = []
    recent = stored[-max(1, len(stored) // 10) :]
    for i in range(count):
        when = end + timedelta(seconds=i)
        if i % 3 == 0:
            found.append(edited(rng.choice(recent), vocab, rng, when))
        else:
            fresh = make_docs(1, vocab, rng)[0]
            found.append(Doc(fresh.title, fresh.text, when, fresh.vector))
    return found


def fill(url: str, docs: list[Doc], every: int = 0) -> None:
    """Bulk-load N articles with one story each and their band rows (what assign_story writes);
    with `every`, one article in `every` also gets its vector rows."""
    engine = db.make_engine(url)
    art_t = ArticleRow.__table__  # type: ignore[attr-defined]
    story_t = Story.__table__  # type: ignore[attr-defined]
    band_t = StoryBand.__table__  # type: ignore[attr-defined]
    vec_t = StoryVector.__table__  # type: ignore[attr-defined]
    vband_t = StoryVectorBand.__table__  # type: ignore[attr-defined]
    batch = 5000
    with Session(engine) as session:
        for start in range(0, len(docs), batch):
            chunk = docs[start : start + batch]
            with session.begin():
                arts, story_rows, bands = [], [], []
                vecs: list[dict[str, object]] = []
                vbands: list[dict[str, object]] = []
                for offset, doc in enumerate(chunk):
                    aid = start + offset + 1
                    arts.append(
                        {
                            "id": aid,
                            "source_id": f"s{aid % 300}",
                            "entry_key": f"e{aid}",
                            "title": doc.title,
                            "summary": doc.text,
                            "published": doc.when,
                            "first_seen": doc.when,
                            "content_hash": f"h{aid}",
                            "story_id": aid,
                        }
                    )
                    story_rows.append(
                        {
                            "id": aid,
                            "key": dedup.story_key(f"s{aid}\x1fe{aid}"),
                            "first_article_id": aid,
                            "title": doc.title,
                            "created_at": doc.when,
                            "last_seen_at": doc.when,
                        }
                    )
                    fp = dedup.fingerprint(doc.title, doc.text, doc.when)
                    bands += [
                        {"band": k, "article_id": aid, "story_id": aid, "created_at": doc.when}
                        for k in dedup.band_keys(fp)
                    ]
                    if every and aid % every == 0:
                        vecs.append(
                            {
                                "article_id": aid,
                                "story_id": aid,
                                "model": MODEL,
                                "language": "en",
                                "vector": doc.vector.astype("<f4").tobytes(),
                                "created_at": doc.when,
                            }
                        )
                        vbands += [
                            {"band": k, "article_id": aid, "story_id": aid, "created_at": doc.when}
                            for k in dedup.vector_band_keys(doc.vector)
                        ]
                session.execute(insert(art_t), arts)
                session.execute(insert(story_t), story_rows)
                session.execute(insert(band_t), bands)
                if vecs:
                    session.execute(insert(vec_t), vecs)
                    session.execute(insert(vband_t), vbands)
    engine.dispose()


def bench_db(
    url: str, probe_docs: list[Doc], prefix: str = "p", every: int = 0
) -> dict[str, float]:
    """Time `assign_story` on the probes; with `every`, one in `every` carries its vector
    (1: all of them), prepared before the transaction as the poll does."""
    engine = db.make_engine(url)
    gc.collect()
    before = rss_mb()
    assign_times: list[float] = []
    cpu = 0.0
    joined = 0
    with Session(engine) as session:
        for start in range(0, len(probe_docs), 50):
            with session.begin():
                for i, doc in enumerate(probe_docs[start : start + 50], start=start):
                    art = Article(
                        f"{prefix}{i % 7}", f"{prefix}{i}", "", doc.title, doc.text, doc.when, "h"
                    )
                    aid = articles.insert_article(session, art, now=doc.when, catchup=False)
                    assert aid is not None
                    vectored = every and i % every == 0
                    embedding = dedup.Embedding(doc.vector, "en") if vectored else None
                    keys = stories.story_keys(art, doc.when, MODEL, embedding)
                    t, c = time.perf_counter(), time.process_time()
                    result = stories.assign_story(session, aid, art, doc.when, 72.0, keys)
                    assign_times.append(time.perf_counter() - t)
                    cpu += time.process_time() - c
                    joined += not result.is_new
    grown = rss_mb() - before
    engine.dispose()
    return {
        "ms_mean": statistics.fmean(assign_times) * 1000,
        "ms_p50": statistics.median(assign_times) * 1000,
        "ms_p95": sorted(assign_times)[int(len(assign_times) * 0.95)] * 1000,
        "cpu_ms": cpu / len(assign_times) * 1000,
        "ram_mb": grown,
        "joined": joined,
    }


def bench_datasketch(stored: list[Doc], probe_docs: list[Doc]) -> dict[str, float]:
    from datasketch import MinHash, MinHashLSH

    def sketch(doc: Doc) -> MinHash:
        m = MinHash(num_perm=128)
        tokens = dedup.stems(dedup.words(f"{doc.title} {doc.text}"))
        m.update_batch([t.encode() for t in set(tokens)] or [b""])
        return m

    gc.collect()
    before = rss_mb()
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    t = time.perf_counter()
    for i, doc in enumerate(stored):
        lsh.insert(f"a{i}", sketch(doc))
    build = time.perf_counter() - t
    held = rss_mb() - before
    times: list[float] = []
    joined = 0
    cpu = 0.0
    for i, doc in enumerate(probe_docs):
        t, c = time.perf_counter(), time.process_time()
        m = sketch(doc)
        joined += bool(lsh.query(m))
        lsh.insert(f"p{i}", m)
        times.append(time.perf_counter() - t)
        cpu += time.process_time() - c
    del lsh
    gc.collect()
    return {
        "ms_mean": statistics.fmean(times) * 1000,
        "ms_p50": statistics.median(times) * 1000,
        "ms_p95": sorted(times)[int(len(times) * 0.95)] * 1000,
        "cpu_ms": cpu / len(times) * 1000,
        "ram_mb": held,
        "build_s": build,
        "joined": joined,
    }


def cache_mb(vocab: list[str]) -> float:
    """Heap of a full fingerprint cache, the only part of the index that lives in memory."""
    import tracemalloc

    rng = random.Random(1)
    docs = make_docs(stories._cache.size, vocab, rng)
    gc.collect()
    tracemalloc.start()
    cache = stories._FingerprintCache(stories._cache.size)
    for i, doc in enumerate(docs):
        cache.put(i, doc.title, doc.text, dedup.fingerprint(doc.title, doc.text, doc.when))
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return used / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--probe", type=int, default=400)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-vectors", action="store_true", help="MinHash rows only")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vocab = vocabulary()
    rows: list[tuple[str, int, dict[str, float], float]] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        stored = make_docs(size, vocab, rng)
        probe_docs = probes(stored, args.probe, vocab, rng)
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            db.upgrade(url)
            t = time.perf_counter()
            # The newest articles go through assign_story, as a running service would have
            # stored them (this also warms the fingerprint cache the way the service has it).
            recent = min(len(stored), WARM)
            fill(url, stored[: len(stored) - recent])
            stories._cache.clear()
            bench_db(url, stored[len(stored) - recent :], prefix="w")
            print(f"filled {size} articles in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            result = bench_db(url, probe_docs)
            size_mb = os.path.getsize(f"{tmp}/bench.db") / 2**20
            rows.append(("monitor, all band rows", size, result, size_mb))
            # Steady state of a service: stories_tick prunes rows older than twice the window.
            engine = db.make_engine(url)
            with Session(engine) as session, session.begin():
                stories.prune_bands(session, START + SPAN, timedelta(hours=144))
            engine.dispose()
            again = probes(stored, args.probe, vocab, rng)
            rows.append(("monitor, pruned to 2x window", size, bench_db(url, again, "q"), size_mb))
        for label, every in (() if args.no_vectors else (("gated", 20), ("all", 1))):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                db.upgrade(url)
                t = time.perf_counter()
                recent = min(len(stored), WARM)
                fill(url, stored[: len(stored) - recent], every)
                stories._cache.clear()
                bench_db(url, stored[len(stored) - recent :], prefix="w", every=every)
                print(
                    f"filled {size} articles with vectors ({label}) in "
                    f"{time.perf_counter() - t:.1f} s",
                    file=sys.stderr,
                )
                engine = db.make_engine(url)
                with Session(engine) as session, session.begin():
                    stories.prune_bands(session, START + SPAN, timedelta(hours=144))
                engine.dispose()
                size_mb = os.path.getsize(f"{tmp}/bench.db") / 2**20
                result = bench_db(url, probes(stored, args.probe, vocab, rng), "v", every=1)
                rows.append((f"monitor, MinHash + vectors ({label})", size, result, size_mb))
        if not args.no_baseline:
            rows.append(
                ("datasketch MinHashLSH, memory", size, bench_datasketch(stored, probe_docs), 0.0)
            )
    print()
    print(
        f"{'index':32} {'stored':>8} {'ms/article':>10} {'p50':>6} {'p95':>6} {'CPU ms':>7} "
        f"{'RAM MB':>8} {'DB MB':>7} {'joined':>7}"
    )
    for name, size, r, size_mb in rows:
        print(
            f"{name:32} {size:>8} {r['ms_mean']:>10.3f} {r['ms_p50']:>6.3f} {r['ms_p95']:>6.3f} "
            f"{r['cpu_ms']:>7.3f} {r['ram_mb']:>8.1f} {size_mb:>7.1f} "
            f"{int(r['joined']):>4}/{args.probe}"
        )
    print(
        "\nRAM MB: growth of the process RSS. monitor: while assigning the probes (the index is"
        " the story_band table on disk; in memory are only the fingerprint cache and SQLite's"
        " page cache). datasketch: held by the in-memory LSH after inserting N."
        "\nms/article: wall time (mean, p50, p95); CPU ms: process CPU time per article (user +"
        " system, so page-cache reads count), which other load on the machine does not inflate."
        "\nmonitor rows: SQLite, the story_band table as the index; 'pruned' keeps band rows of"
        " the last 144 h only (what stories_tick maintains), the articles stay."
        "\nDB MB: the SQLite file (articles, stories, band rows and their indexes)."
        "\nMinHash + vectors: pruned to 2x window; every probe carries a vector (the cost of one"
        " vectored article); 'gated' stores a vector for 1 in 20 articles, 'all' for every one."
    )
    print(
        f"fingerprint cache at capacity ({stories._cache.size} entries): {cache_mb(vocab):.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
