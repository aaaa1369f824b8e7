"""Relevance models: what the text model and the per-watchlist classifiers cost, beside the
query-only path, in one run on one core.

    .venv/bin/python benchmarks/relevance.py [--articles tests/data/corpus/articles.jsonl]
        [--repeat 3] [--quick]

1. Embedding: articles per second of `article_text` (title + start of the summary) through USE
   multilingual v3 (`UseEmbedder(threads=1)`) and the hashing embedder, at batch sizes 1, 32
   and 128 over an evenly spaced sample of the corpus (`--embed-sample`). The pipeline embeds
   one article at a time today, so batch 1 is the live figure; the best batch is what a
   backfill or a batched pipeline would get.
2. Cost per new article, at the 3 shipped watchlists (models trained on their examples) and at
   1,000 (the 3 shipped + 997 synthetic query-only watchlists from benchmarks/match.py: models
   are attached to the 3 shipped ones only): the query-only path (`matcher.match`) against the
   gate stage (`match` + `wants_vector`), gate + judge with the vector given (as when it is in
   the vector cache), and gate + embed (batch 1, only for articles that pass a modelled gate)
   + judge, which is what a cache miss costs in `pipeline.judge_articles` (the vector table's
   look-up and write are not included). `match` decides and orders (which reads the scores of
   an article's matches when it has several); a match works out the rest of its evidence when
   read, so the judge runs on fresh matches (it reads their scores) and one more row reads
   every match's score, terms and snippet, as alerting a match does. The model's parts are
   timed on their own, on the matches the query found, and added to the query's time: two
   passes of the same matcher differ by more than `wants_vector` costs on a busy machine.
3. Memory: this process's RSS before and after loading USE and after embedding a batch of 128,
   and the pickled size of the trained models; the RSS of a process after start-up, with and
   without models (section 4).
4. Start-up, each in a fresh subprocess: query-only (import the matcher, load the shipped
   watchlists, compile); with models, vectors cached (import `monitor.relevance.models`, load,
   read the example vectors from an .npz file standing in for the database's vector table —
   counted, as the service reads them at start-up — train, load USE); cold (the same with an
   empty cache, so every gate-passing example is embedded). The cold run writes the .npz the
   cached runs read.

Times are CPU seconds of the measuring process (`time.process_time`), best of `--repeat` runs
(the runs compared side by side take turns, so they see the same load; the embed + judge runs
and the cached start-up get half / at most 2 of them, the cold start-up one), so other work on
a shared machine disturbs them less; start-up also shows wall time. BLAS threads are pinned to
1 (OMP/OPENBLAS/MKL_NUM_THREADS, set before numpy is imported) and USE runs with threads=1.
`--quick` (150 articles, 32 embedded, 100 watchlists, one run) is a smoke run, not a figure.
Takes about 2.5 minutes; the summary table comes last, ready for the README.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy (imported by monitor.relevance) loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.match import synthetic  # noqa: E402
from monitor.corpus import read_articles  # noqa: E402
from monitor.logs import configure  # noqa: E402
from monitor.model import Article, Match, Watchlist  # noqa: E402
from monitor.query.matcher import Matcher, Signals, compile_matcher, compile_signals  # noqa: E402
from monitor.relevance.classifier import WatchlistModel  # noqa: E402
from monitor.relevance.embed import (  # noqa: E402
    Embedder,
    HashingEmbedder,
    UseEmbedder,
    Vectors,
    article_text,
)
from monitor.relevance.models import (  # noqa: E402
    MemoryCache,
    RelevanceModels,
    Vector,
    accepted,
    file_examples,
    fit,
    prepare,
)
from monitor.textnorm import words  # noqa: E402
from monitor.watchlists import load_watchlists  # noqa: E402

WATCHLISTS = REPO / "watchlists"
BATCHES = (1, 32, 128)
EMBED_TARGET = 200.0  # articles/s on one core
GATE_TARGET = 20_000.0  # articles/s of the gate stage at 1,000 watchlists
MEMORY_BATCH = 128


# --- measuring ---------------------------------------------------------------------------


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: now, VmHWM: peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def best_cpu(runs: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Least CPU seconds of each run over `repeat` rounds (other processes only ever slow a
    run down). The runs take turns within a round, so the ones compared side by side see the
    same load on a shared machine."""
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            started = time.process_time()
            run()
            best[i] = min(best[i], time.process_time() - started)
    return best


def best_cpu_prepared(
    runs: Sequence[tuple[Callable[[], Any], Callable[[Any], object]]], repeat: int
) -> list[float]:
    """`best_cpu` for runs that need fresh input each time (set up outside the timing):
    matches read their evidence once, so a second pass over the same ones would cost less."""
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, (setup, run) in enumerate(runs):
            given = setup()
            started = time.process_time()
            run(given)
            best[i] = min(best[i], time.process_time() - started)
    return best


def out(line: str = "") -> None:
    print(line, flush=True)


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- 1. embedding ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedResult:
    name: str
    rates: dict[int, float]  # batch size: articles/s

    @property
    def best(self) -> tuple[int, float]:
        size = max(self.rates, key=lambda b: self.rates[b])
        return size, self.rates[size]


def embed_rates(embedder: Embedder, texts: Sequence[str], repeat: int) -> EmbedResult:
    def batches(size: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, len(texts), size):
                embedder.embed(texts[i : i + size])

        return run

    seconds = best_cpu([batches(size) for size in BATCHES], repeat)
    rates = {size: len(texts) / s for size, s in zip(BATCHES, seconds, strict=True)}
    note(f"  {embedder.name}: " + ", ".join(f"batch {b}: {r:,.0f}/s" for b, r in rates.items()))
    return EmbedResult(embedder.name, rates)


@dataclass(frozen=True, slots=True)
class Memory:
    before_kb: int
    loaded_kb: int
    batch_kb: int
    peak_kb: int
    load_cpu: float
    load_wall: float


def load_use(embedder: UseEmbedder, texts: Sequence[str]) -> Memory:
    """Load USE and embed one batch, with this process's RSS around each step."""
    before = status_kb("VmRSS")
    cpu, wall = time.process_time(), time.perf_counter()
    embedder.embed(["warm-up"])  # the weights load on first use
    load_cpu, load_wall = time.process_time() - cpu, time.perf_counter() - wall
    loaded = status_kb("VmRSS")
    embedder.embed(texts[:MEMORY_BATCH])
    return Memory(before, loaded, status_kb("VmRSS"), status_kb("VmHWM"), load_cpu, load_wall)


# --- 2. gate, judge, embed per article ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """Seconds per pass over the articles; the model's parts are timed apart from the query
    (on the same matches) and added to it, so a difference of a few per cent between two
    passes of the same matcher on a busy machine does not swamp them."""

    watchlists: int
    query_s: float  # matcher.match, every article: the query-only path
    wants_s: float  # wants_vector on those matches, every article: the gate's extra work
    judge_s: float  # judge + accepted, gated articles only, the vector given
    embed_s: float  # embed (batch 1) + judge + accepted, gated articles only
    evidence_s: float  # score, terms, snippet and highlights of every match read
    articles: int
    gated: int  # articles that passed a modelled gate (need a vector)

    @property
    def gate_s(self) -> float:
        return self.query_s + self.wants_s

    def us(self, seconds: float) -> float:
        return seconds / self.articles * 1e6

    def rate(self, seconds: float) -> float:
        return self.articles / seconds


def stage(
    matcher: Matcher,
    query_s: float,
    models: RelevanceModels,
    articles: Sequence[Article],
    vectors: dict[int, Vector],
    embedder: Embedder,
    repeat: int,
) -> Stage:
    """On the query's matches (its pass timed by `query_passes`), the gate's check over every
    article and judging / embedding over the articles that need a vector."""
    every = [matcher.match(a) for a in articles]
    assert set(vectors) == {i for i, m in enumerate(every) if models.wants_vector(m)}

    # A match works out its score, terms and snippet when first read, so judging (which
    # reads the score) and reading the evidence are timed on fresh matches each run.
    def fresh() -> list[list[Match]]:
        return [matcher.match(a) for a in articles]

    def fresh_gated() -> dict[int, list[Match]]:
        return {i: matcher.match(articles[i]) for i in vectors}

    def wants() -> None:
        for matches in every:
            models.wants_vector(matches)

    def judge(found: dict[int, list[Match]]) -> None:
        for i, matches in found.items():
            accepted(models.judge(articles[i], vectors[i], matches))

    def embed(found: dict[int, list[Match]]) -> None:
        for i, matches in found.items():
            vector = embedder.embed([article_text(articles[i])])[0]
            accepted(models.judge(articles[i], vector, matches))

    def evidence(found: list[list[Match]]) -> None:
        read = []
        for matches in found:
            read.extend((m.score, m.terms, m.snippet, m.highlights) for m in matches)

    slow = max(1, repeat // 2)  # embedding dominates and varies little: fewer runs
    (wants_s,) = best_cpu([wants], repeat)
    judge_s, evidence_s = best_cpu_prepared([(fresh_gated, judge), (fresh, evidence)], repeat)
    (embed_s,) = best_cpu_prepared([(fresh_gated, embed)], slow)
    result = Stage(
        len(matcher),
        query_s,
        wants_s,
        judge_s,
        embed_s,
        evidence_s,
        len(articles),
        len(vectors),
    )
    note(
        f"  {len(matcher):,} watchlists: query {result.us(query_s):.1f} µs/article, gate check "
        f"{result.us(wants_s):.2f}, evidence of every match {result.us(evidence_s):.1f}, judge "
        f"{judge_s / result.gated * 1e6:.0f} µs and embed + judge "
        f"{embed_s / result.gated * 1e3:.1f} ms per gated article"
    )
    return result


def query_passes(
    matchers: Sequence[Matcher], articles: Sequence[Article], repeat: int
) -> list[float]:
    """Seconds of one `match` pass over the articles per matcher, the matchers taking turns."""

    def passes(matcher: Matcher) -> Callable[[], None]:
        def run() -> None:
            for article in articles:
                matcher.match(article)

        return run

    return best_cpu([passes(m) for m in matchers], repeat)


def gated_vectors(
    matcher: Matcher, models: RelevanceModels, articles: Sequence[Article], embedder: Embedder
) -> dict[int, Vector]:
    """Vectors (batch 128) of the articles that pass a modelled gate, by index."""
    index = [i for i, a in enumerate(articles) if models.wants_vector(matcher.match(a))]
    rows: list[Vectors] = []
    for i in range(0, len(index), 128):
        rows.append(embedder.embed([article_text(articles[j]) for j in index[i : i + 128]]))
    matrix = np.vstack(rows) if rows else np.zeros((0, embedder.dim), dtype=np.float32)
    return {j: matrix[k] for k, j in enumerate(index)}


def vocabulary(articles: Sequence[Article]) -> list[str]:
    """Entity words for synthetic watchlists, drawn as benchmarks/match.py draws them."""
    freq: Counter[str] = Counter()
    for article in articles:
        freq.update(set(words(article.title + " " + article.text)))
    rare = sorted(w for w, n in freq.items() if 1 <= n <= 5 and len(w) > 3 and w.isalpha())
    common = sorted(w for w, n in freq.items() if 6 <= n <= 40 and len(w) > 3 and w.isalpha())
    return rare + common[: len(rare) // 10]


# --- 4. start-up in a subprocess ---------------------------------------------------------

CHILD = r"""
import sys, time
cpu0, wall0 = time.process_time(), time.perf_counter()
mode, repo, folder, cache_path, out_path = sys.argv[1:6]
sys.path.insert(0, repo)
laps = []
def lap(name):
    laps.append((name, time.process_time() - cpu0, time.perf_counter() - wall0))
if mode == "query":
    from pathlib import Path
    from monitor.query.matcher import compile_matcher
    from monitor.watchlists import load_watchlists
    lap("import")
    found, _ = load_watchlists(Path(folder))
    lap("load")
    compile_matcher(found.values())
    lap("compile")
    embedded = 0
else:
    from pathlib import Path
    import monitor.relevance.models as rm
    from monitor.query.matcher import compile_matcher
    from monitor.relevance.embed import UseEmbedder
    from monitor.watchlists import load_watchlists
    lap("import")
    found, _ = load_watchlists(Path(folder))
    compile_matcher(found.values())
    lap("load")
    cache = rm.MemoryCache()
    if mode == "warm":
        import numpy as np
        with np.load(cache_path) as z:
            cache.put_many(str(z["model"]), dict(zip(z["keys"].tolist(), z["vectors"])))
        lap("cache")
    embedder = UseEmbedder(threads=1)
    models = rm.train_models(found.values(), embedder, cache)
    lap("train")
    embedder.embed(["warm-up"])  # the model loaded, as the first gated article would
    lap("model")
    embedded = len(cache.rows)
    if mode == "cold":
        import numpy as np
        keys = [k for (_, k) in cache.rows]
        np.savez(cache_path, model=np.array(embedder.name), keys=np.array(keys),
                 vectors=np.vstack(list(cache.rows.values())))
        assert len(models.models) == 3, models.problems
rss = hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1])
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1])
import json
with open(out_path, "w") as f:
    json.dump({"laps": laps, "rss_kb": rss, "hwm_kb": hwm, "embedded": embedded}, f)
"""


@dataclass(frozen=True, slots=True)
class Startup:
    mode: str
    cpu: float
    wall: float
    laps: list[tuple[str, float, float]]  # name, CPU s, wall s (cumulative)
    rss_kb: int
    hwm_kb: int
    embedded: int

    def describe(self) -> str:
        steps, prev_cpu, prev_wall = [], 0.0, 0.0
        for name, cpu, wall in self.laps:
            steps.append(f"{name} {cpu - prev_cpu:.2f}/{wall - prev_wall:.2f}")
            prev_cpu, prev_wall = cpu, wall
        return ", ".join(steps)


def startup(mode: str, cache_path: Path, repeat: int) -> Startup:
    """The run with the least CPU of `repeat` fresh interpreters."""
    best: Startup | None = None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["MKL_NUM_THREADS"] = "1"
    for _ in range(repeat):
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            args = [sys.executable, "-c", CHILD, mode, str(REPO), str(WATCHLISTS)]
            done = subprocess.run(
                [*args, str(cache_path), result.name],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"start-up ({mode}) failed:\n{done.stderr}")
            data: dict[str, Any] = json.loads(Path(result.name).read_text())
        laps = [(str(n), float(c), float(w)) for n, c, w in data["laps"]]
        rss, hwm = int(data["rss_kb"]), int(data["hwm_kb"])
        run = Startup(mode, laps[-1][1], laps[-1][2], laps, rss, hwm, int(data["embedded"]))
        if best is None or run.cpu < best.cpu:
            best = run
    assert best is not None
    note(f"  start-up {mode}: {best.cpu:.2f} s CPU, {best.wall:.2f} s wall")
    return best


@dataclass(frozen=True, slots=True)
class Training:
    examples: int
    read_s: float  # reading the examples files
    prepare_s: float  # gating every example, its signals, vectors from the cache
    fit_s: float  # the logistic regressions


def cached_models(
    watchlists: Sequence[Watchlist], embedder: Embedder, cache_path: Path
) -> tuple[RelevanceModels, Training]:
    """The shipped models, trained here (as `train_models` does, step by step, timed) from the
    vectors the cold start-up embedded."""
    cache = MemoryCache()
    with np.load(cache_path) as z:
        cache.put_many(str(z["model"]), dict(zip(z["keys"].tolist(), z["vectors"], strict=True)))
    models: dict[str, WatchlistModel] = {}
    signals: dict[str, Signals] = {}
    read = prep = fitting = 0.0
    count = 0
    for wl in watchlists:
        started = time.process_time()
        examples = file_examples(wl)
        read_done = time.process_time()
        prepared = prepare(wl, examples, embedder, cache)
        prepared_done = time.process_time()
        models[wl.id] = fit(wl, prepared)
        fitting += time.process_time() - prepared_done
        read, prep = read + read_done - started, prep + prepared_done - read_done
        signals[wl.id] = compile_signals(wl)
        count += len(examples)
    return RelevanceModels(embedder, models, signals), Training(count, read, prep, fitting)


def gate_costs(
    shipped: Sequence[Watchlist], articles: Sequence[Article]
) -> list[tuple[str, float, float]]:
    """Each shipped gate alone: µs/article (one run) and the share of articles the prefilter
    leaves to evaluate."""
    found = []
    for wl in shipped:
        matcher = compile_matcher([wl])
        share = sum(1 for a in articles if matcher.candidates(a)) / len(articles)
        found.append((wl.id, query_passes([matcher], articles, 1)[0] / len(articles) * 1e6, share))
    return found


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    articles: int
    sample: int
    use: EmbedResult
    hashing: EmbedResult
    memory: Memory
    models_bytes: int
    clf_bytes: int
    training: Training
    small: Stage
    large: Stage
    synthetic_rate: float  # query-only, the synthetic watchlists alone
    gates: list[tuple[str, float, float]]
    query_start: Startup
    warm_start: Startup
    cold_start: Startup


def mark(value: float, target: float) -> str:
    return "✓" if value >= target else "✗ below target"


def stage_rows(s: Stage, target: bool) -> list[tuple[str, str, str, str]]:
    n = f"{s.watchlists:,} watchlists"
    q, g = s.us(s.query_s), s.us(s.gate_s)

    def plus(us: float) -> str:
        return f"{us:,.1f} ({us - q:+,.1f})"

    gate_rate = s.rate(s.gate_s)
    goal = f"≥ {GATE_TARGET:,.0f}/s {mark(gate_rate, GATE_TARGET)}" if target else "—"
    e = s.us(s.evidence_s)
    return [
        (f"gate stage, articles/s, {n}", f"{s.rate(s.query_s):,.0f}", f"{gate_rate:,.0f}", goal),
        (f"µs/article, gate only, {n}", f"{q:,.1f}", plus(g), "—"),
        (
            f"µs/article, gate + every match's score, terms, snippet read, {n}",
            f"{q + e:,.1f}",
            plus(g + e),
            "—",
        ),
        (
            f"µs/article, gate + judge (vector given), {n}",
            f"{q:,.1f}",
            plus(g + s.us(s.judge_s)),
            "—",
        ),
        (
            f"µs/article, gate + embed (batch 1) + judge, {n}",
            f"{q:,.1f}",
            plus(g + s.us(s.embed_s)),
            "—",
        ),
    ]


def table(r: Run) -> list[str]:
    size, best = r.use.best
    hsize, hbest = r.hashing.best
    one = r.use.rates[1]
    m = r.memory
    rows: list[tuple[str, str, str, str]] = [
        (
            f"embedding, articles/s on one core, best batch (USE: {size}; hashing: {hsize})",
            "—",
            f"{best:,.0f} (hashing {hbest:,.0f})",
            f"≥ {EMBED_TARGET:.0f}/s {mark(best, EMBED_TARGET)}",
        ),
        (
            "embedding, articles/s, batch 1 (the pipeline today)",
            "—",
            f"{one:,.0f} (hashing {r.hashing.rates[1]:,.0f})",
            f"≥ {EMBED_TARGET:.0f}/s {mark(one, EMBED_TARGET)}",
        ),
        *stage_rows(r.small, target=False),
        *stage_rows(r.large, target=r.large.watchlists >= 1000),
        (
            f"gate articles/s, the {r.large.watchlists - 3:,} synthetic watchlists alone",
            f"{r.synthetic_rate:,.0f}",
            "—",
            "(benchmarks/match.py's case)",
        ),
        (
            "RSS added by USE: loaded / + a batch of 128 embedded (peak)",
            "—",
            f"+{mb(m.loaded_kb - m.before_kb)} / +{mb(m.batch_kb - m.before_kb)} "
            f"({mb(m.peak_kb)} peak)",
            "—",
        ),
        (
            "trained models (3), pickled: classifiers / with example vectors",
            "—",
            f"{r.clf_bytes / 1024:,.0f} KB / {r.models_bytes / 1024:,.0f} KB",
            "—",
        ),
        (
            "process RSS after start-up (USE loaded)",
            mb(r.query_start.rss_kb),
            mb(r.warm_start.rss_kb),
            "—",
        ),
        (
            "start-up, s CPU (wall), vectors cached",
            f"{r.query_start.cpu:.2f} ({r.query_start.wall:.2f})",
            f"{r.warm_start.cpu:.2f} ({r.warm_start.wall:.2f})",
            "—",
        ),
        (
            f"start-up, s CPU (wall), cold ({r.cold_start.embedded} examples embedded)",
            f"{r.query_start.cpu:.2f} ({r.query_start.wall:.2f})",
            f"{r.cold_start.cpu:.2f} ({r.cold_start.wall:.2f})",
            "—",
        ),
    ]
    lines = ["| metric | query-only | with models | target |", "|---|---:|---:|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def details(r: Run, repeat: int) -> list[str]:
    m, big, t = r.memory, r.large, r.training
    rates = ", ".join(f"batch {b}: {v:,.0f}/s" for b, v in r.use.rates.items())
    hrates = ", ".join(f"batch {b}: {v:,.0f}/s" for b, v in r.hashing.rates.items())
    gates = "; ".join(f"{w} {us:,.0f} µs ({share:.0%} evaluated)" for w, us, share in r.gates)
    return [
        f"{r.articles} articles; embedding on an evenly spaced sample of {r.sample}; "
        f"best of {repeat} runs; CPU time of one process, BLAS and USE on 1 thread",
        f"- USE ({r.use.name}): {rates}; weights loaded in {m.load_cpu:.2f} s CPU "
        f"({m.load_wall:.2f} s wall)",
        f"- hashing ({r.hashing.name}): {hrates}",
        f"- {big.gated} of {big.articles} articles ({big.gated / big.articles:.0%}) pass a "
        f"modelled gate and need a vector; per such article: judge "
        f"{big.judge_s / big.gated * 1e6:,.0f} µs, embed (batch 1) + judge "
        f"{big.embed_s / big.gated * 1e3:,.1f} ms",
        f"- at {big.watchlists:,} watchlists: the 3 shipped (with models) + "
        f"{big.watchlists - 3:,} synthetic query-only ones (benchmarks/match.py's generator)",
        f"- each shipped gate alone, per article (share the prefilter leaves to evaluate): {gates}",
        f"- RSS of this process: {mb(m.before_kb)} before USE, {mb(m.loaded_kb)} loaded, "
        f"{mb(m.batch_kb)} after a batch of {MEMORY_BATCH}",
        f"- training the 3 models from cached vectors ({t.examples:,} examples): read "
        f"{t.read_s:.2f} s, gate + signals of every example {t.prepare_s:.2f} s, "
        f"fit {t.fit_s:.2f} s",
        f"- start-up, query-only ({r.query_start.describe()}; s CPU/wall per step); "
        f"RSS {mb(r.query_start.rss_kb)}",
        f"- start-up, cached ({r.warm_start.describe()}); RSS {mb(r.warm_start.rss_kb)}, "
        f"peak {mb(r.warm_start.hwm_kb)}",
        f"- start-up, cold ({r.cold_start.describe()}); {r.cold_start.embedded} examples "
        f"embedded; peak RSS {mb(r.cold_start.hwm_kb)}",
    ]


def models_size(models: RelevanceModels) -> tuple[int, int]:
    whole = sum(len(pickle.dumps(m)) for m in models.models.values())
    clf = sum(len(pickle.dumps(m._clf)) for m in models.models.values())
    return whole, clf


def measure(articles: list[Article], sample: int, size: int, repeat: int, seed: int) -> Run:
    texts = [article_text(a) for a in articles]
    step = max(1, len(texts) // sample)
    chosen = texts[::step][:sample]
    use = UseEmbedder(threads=1)
    note("1. embedding")
    memory = load_use(use, texts)
    use_rates = embed_rates(use, chosen, repeat)
    hashing_rates = embed_rates(HashingEmbedder(), chosen, repeat)

    note("4. start-up")
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = Path(tmp) / "vectors.npz"
        query_start = startup("query", cache_path, min(repeat, 3))
        cold_start = startup("cold", cache_path, 1)  # writes the vectors the cached runs read
        warm_start = startup("warm", cache_path, min(repeat, 2))
        found, errors = load_watchlists(WATCHLISTS)
        if errors:
            raise SystemExit(f"watchlists: {errors}")
        shipped = list(found.values())
        models, training = cached_models(shipped, use, cache_path)

    note("2. gate, judge, embed")
    extra = synthetic(size - len(shipped), vocabulary(articles), random.Random(seed))
    few, many, alone = (compile_matcher(w) for w in (shipped, [*shipped, *extra], extra))
    vectors = gated_vectors(few, models, articles, use)
    few_s, many_s, alone_s = query_passes([few, many, alone], articles, repeat)
    small = stage(few, few_s, models, articles, vectors, use, repeat)
    large = stage(many, many_s, models, articles, vectors, use, repeat)
    synthetic_rate = len(articles) / alone_s
    gates = gate_costs(shipped, articles)
    whole, clf = models_size(models)
    return Run(
        len(articles),
        len(chosen),
        use_rates,
        hashing_rates,
        memory,
        whole,
        clf,
        training,
        small,
        large,
        synthetic_rate,
        gates,
        query_start,
        warm_start,
        cold_start,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--articles", type=Path, default=REPO / "tests" / "data" / "corpus" / "articles.jsonl"
    )
    parser.add_argument("--repeat", type=int, help="Runs per measurement; the best counts (3).")
    parser.add_argument("--embed-sample", type=int, help="Articles embedded per run (256).")
    parser.add_argument("--watchlists", type=int, help="The large size (1000).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="Small sizes, one run: a smoke run.")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    sample = args.embed_sample or (32 if args.quick else 256)
    size = args.watchlists or (100 if args.quick else 1000)
    configure(level="WARNING", fmt="console", stream=sys.stderr)  # training logs off stdout
    articles = [item.article for item in read_articles(args.articles)]
    if args.quick:
        articles = articles[:150]
    run = measure(articles, sample, size, repeat, args.seed)
    out("\n".join(details(run, repeat)))
    out()
    out("\n".join(table(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
