"""The demo itself: the service's own poller, pipeline and dispatcher over the sample feeds.

Nothing here re-implements the service: `Service.prepare` migrates a temporary database, trains
the shipped watchlists' models and syncs a sources file naming the local feeds; each round
publishes items and asks the poller to poll every source now (the scheduler would wait for
each source's interval), then runs the dispatcher, whose only sender draws each alert as the
Slack message and the email it would be. The demo never talks to Slack or SMTP: it turns both
off whatever the environment says.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console

from monitor.app import App
from monitor.clock import utcnow
from monitor.demo import DemoItem, load_sample
from monitor.demo.feeds import DemoFeeds
from monitor.demo.show import email_panel, heading, line, slack_panel
from monitor.notify import Outgoing
from monitor.relevance.models import Vector, embed_articles
from monitor.render import render_email, render_slack
from monitor.service import Service
from monitor.settings import Settings
from monitor.store import alerts, articles, stories
from monitor.store.articles import StoredArticle
from monitor.store.vectors import DatabaseVectors

ROUNDS = 3


@dataclass(frozen=True, slots=True)
class DemoOptions:
    watchlists_dir: Path
    database_url: str | None = None  # None: a temporary SQLite database, removed at the end
    embedder: str = "use"
    all_emails: bool = False
    pause: float = 0.0  # seconds between rounds, so a person can follow along


@dataclass(slots=True)
class DemoResult:
    """What happened, for the summary and for tests."""

    sources: int = 0
    articles: int = 0
    catchup: int = 0
    catchup_matches: int = 0
    alerts: Counter[str] = field(default_factory=Counter)  # by kind
    by_watchlist: Counter[str] = field(default_factory=Counter)
    held_back: list[tuple[str, str, float]] = field(default_factory=list)  # title, wl, conf
    grouped: list[tuple[str, list[str]]] = field(default_factory=list)  # story title, sources
    stories: int = 0
    training_seconds: float = 0.0
    seconds: float = 0.0


class TerminalNotifier:
    """The demo's only sender: each alert drawn as its Slack message (and email)."""

    channel = "console"
    target: str | None = None

    def __init__(self, console: Console, *, all_emails: bool) -> None:
        self.console = console
        self.all_emails = all_emails
        self.sent: list[Outgoing] = []
        self._emails_shown = 0
        # The console has no threads; Slack would thread a story's follow-ups under its alert.
        self._first: dict[tuple[str, int], int] = {}

    async def send(self, message: Outgoing) -> str:
        self.sent.append(message)
        content = message.content
        story = (content.watchlist_id, content.story_id or 0)
        reply_to = self._first.get(story) if content.kind in ("also", "update") else None
        if content.kind == "alert" and content.story_id is not None:
            self._first.setdefault(story, message.alert_id)
        self.console.print(slack_panel(render_slack(content), "#desk", reply_to=reply_to))
        if content.kind == "alert" and (self.all_emails or self._emails_shown == 0):
            self.console.print(email_panel(render_email(content)))
            self._emails_shown += 1
        return f"demo:{message.alert_id}"

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


def sources_yaml(feeds: DemoFeeds) -> str:
    lines = ["sources:"]
    for feed, name in feeds.feeds.items():
        lines += [f"  - id: {feed}", f'    name: "{name}"', f"    url: {feeds.url(feed)}"]
        lines.append("    every: 1m")
    return "\n".join(lines) + "\n"


def demo_settings(options: DemoOptions, workdir: Path, feeds: DemoFeeds) -> Settings:
    """The environment's settings, with what the demo must own: its database, its sources,
    its feed server allowed past the SSRF guard, no listener, and no real Slack or email."""
    sources = workdir / "sources.yaml"
    sources.write_text(sources_yaml(feeds), encoding="utf-8")
    url = options.database_url or f"sqlite:///{workdir / 'demo.db'}"
    return Settings(
        database_url=url,
        watchlists_dir=options.watchlists_dir,
        sources_file=sources,
        allow_private_hosts=["127.0.0.1"],
        http_port=-1,
        slack_bot_token=None,
        slack_webhook_url=None,
        slack_default_channel=None,
        smtp_host=None,
        embedder=options.embedder,  # type: ignore[arg-type]
        watchlists_reload=False,
        instance_name="demo",
        migrate_on_start=True,
    )


async def run_demo(options: DemoOptions, console: Console) -> DemoResult:
    """Run the whole demo, printing as it goes; returns what happened."""
    started = time.monotonic()
    sample = load_sample()
    feeds = DemoFeeds(sample)
    await feeds.start()
    result = DemoResult(sources=len(feeds.feeds))
    try:
        with tempfile.TemporaryDirectory(prefix="monitor-demo-") as tmp:
            workdir = Path(tmp)
            settings = demo_settings(options, workdir, feeds)
            notifier = TerminalNotifier(console, all_emails=options.all_emails)
            app = App(settings, notifiers={"console": notifier})
            await _run(app, feeds, sample, options, console, result)
    finally:
        await feeds.stop()
    result.seconds = time.monotonic() - started
    return result


async def _run(
    app: App,
    feeds: DemoFeeds,
    sample: Sequence[DemoItem],
    options: DemoOptions,
    console: Console,
    result: DemoResult,
) -> None:
    line(
        console,
        ("monitor demo", "bold"),
        f": {len(sample)} real news items from public datasets, served by {len(feeds.feeds)} "
        f"feeds on 127.0.0.1:{feeds.port}, published over {ROUNDS} rounds and polled by the "
        "service's own poller; alerts are drawn here instead of being sent.",
    )
    service = Service(app)
    try:
        with console.status("Loading the watchlists and training their models on the examples"):
            t0 = time.monotonic()
            await asyncio.to_thread(service.prepare, exclusive=True)
            result.training_seconds = time.monotonic() - t0
        registry = app.watchlists
        names = ", ".join(sorted(registry.watchlists))
        trained = sorted(registry.relevance.models)
        line(
            console,
            f"Watchlists: {names} (from {app.settings.watchlists_dir}); ",
            f"{len(trained)} learn from examples; ready in {result.training_seconds:.1f} s.",
        )
        demo_start = utcnow() - timedelta(seconds=1)
        for round_ in range(ROUNDS + 1):
            await _round(app, service, feeds, round_, console, result)
            if options.pause and round_ < ROUNDS:
                await asyncio.sleep(options.pause)
        _collect(app, demo_start, result)
    finally:
        await service.aclose()


async def _round(
    app: App,
    service: Service,
    feeds: DemoFeeds,
    round_: int,
    console: Console,
    result: DemoResult,
) -> None:
    round_start = utcnow() - timedelta(milliseconds=1)
    fresh = feeds.publish(round_, utcnow())
    if round_ == 0:
        heading(console, f"Catch-up: the feeds already hold {len(fresh)} items")
    else:
        heading(console, f"Round {round_}: {len(fresh)} new items are published")
    reports = await service.poller.poll_due(force=True)
    failed = [r for r in reports if r.label not in ("ok", "not_modified", "unchanged")]
    for report in failed:
        line(console, (f"  {report.source_id}: {report.label} {report.message}", "red"))
    new = await asyncio.to_thread(_new_articles, app, round_start)
    verdicts = await asyncio.to_thread(_verdicts, app, new, judge=round_ > 0)
    for item in new:
        _print_article(console, item, verdicts.get(item.id, []), catchup=round_ == 0)
    if len(fresh) > len(new):
        copies = len(fresh) - len(new)
        line(
            console,
            (
                f"  + {copies} exact copy of an article already stored: linked to it, "
                "not stored again",
                "dim",
            ),
        )
    if round_ == 0:
        result.catchup = len(new)
        result.catchup_matches = sum(1 for i in new if verdicts.get(i.id))
        line(
            console,
            ("  A new source's first poll is a catch-up: stored, alerting nobody ", "dim"),
            ("(otherwise every restart on a new feed would flood the desk).", "dim"),
        )
        return
    for item in new:
        for title, watchlist, confidence, alerted in verdicts.get(item.id, []):
            if not alerted:
                result.held_back.append((title, watchlist, confidence))
    sent = await _deliver(service)
    if not sent:
        line(console, ("  No alert this round.", "dim"))


async def _deliver(service: Service) -> int:
    """Dispatcher passes until the outbox is empty (thread replies wait for their parent)."""
    total = 0
    for _ in range(10):
        sent = await service.dispatcher.tick()
        total += sent
        if not sent:
            break
    return total


def _new_articles(app: App, since: datetime) -> list[StoredArticle]:
    found = articles.read_articles(app.engine, since=since)
    return sorted(found, key=lambda a: a.id)


Verdict = tuple[str, str, float, bool]  # title, watchlist, model confidence (-1: no model), alert


def _verdicts(app: App, new: Sequence[StoredArticle], *, judge: bool) -> dict[int, list[Verdict]]:
    """Each new article's gate matches and the models' decisions, as the pipeline made them
    (the same matcher and models; the vectors the pipeline stored are read back, not redone).
    A catch-up is not judged, by the pipeline or here."""
    registry = app.watchlists
    models = registry.relevance
    cache = DatabaseVectors(app.engine)
    out: dict[int, list[Verdict]] = {}
    for item in new:
        matches = registry.matcher.match(item.article)
        if not matches:
            continue
        vector: Vector | None = None
        if judge and models.embedder is not None and models.wants_vector(matches):
            vector = embed_articles(models.embedder, cache, [item.article])[0]
        rows: list[Verdict] = []
        for match in models.judge(item.article, vector, matches):
            judgement = match.judgement
            confidence = judgement.confidence if judgement else -1.0
            alerted = judgement is None or judgement.relevant
            rows.append((item.article.title, match.watchlist_id, confidence, alerted))
        out[item.id] = rows
    return out


def _print_article(
    console: Console, item: StoredArticle, verdicts: Sequence[Verdict], *, catchup: bool
) -> None:
    title = item.article.title[:90]
    if not verdicts:
        line(console, f"  + [{item.source_id}] ", (title, ""), ("  · no watchlist", "dim"))
        return
    for _, watchlist, confidence, alerted in verdicts:
        model = f"model {confidence:.2f}" if confidence >= 0 else "query only"
        if catchup:
            verdict: tuple[str, str] = (f"  · {watchlist}: matches the query (catch-up)", "dim")
        elif alerted:
            verdict = (f"  · {watchlist}: ALERT ({model})", "green")
        else:
            verdict = (f"  · {watchlist}: passed the query, the model said no ({model})", "yellow")
        line(console, f"  + [{item.source_id}] ", (title, "bold"), verdict)


def _collect(app: App, since: datetime, result: DemoResult) -> None:
    stored = articles.read_articles(app.engine, since=since)
    result.articles = len(stored)
    sources_of: dict[int, list[str]] = {}
    for item in sorted(stored, key=lambda a: a.id):
        if item.story_id is not None:
            sources_of.setdefault(item.story_id, []).append(item.source_id)
    found = stories.read_stories(app.engine, since)
    result.stories = len(found)
    for story in found:
        if story.article_count > 1:
            result.grouped.append((story.title, sources_of.get(story.id, [])))
    for view in alerts.read_alerts(app.engine, limit=500):
        result.alerts[view.kind] += 1
        result.by_watchlist[view.watchlist_id] += 1


def print_summary(console: Console, result: DemoResult, options: DemoOptions) -> None:
    heading(console, "Summary")
    new = result.articles - result.catchup
    line(
        console,
        f"  {result.sources} sources · {result.articles} articles stored ",
        f"({result.catchup} at catch-up, {new} published during the demo) · ",
        f"{result.stories} stories",
    )
    kinds = result.alerts
    line(
        console,
        f"  {sum(kinds.values())} messages: {kinds.get('alert', 0)} alerts, ",
        f"{kinds.get('also', 0)} thread replies for other outlets' copies of a story",
        f", {kinds.get('update', 0)} updates" if kinds.get("update") else "",
    )
    for watchlist, count in sorted(result.by_watchlist.items()):
        line(console, f"    {watchlist}: {count}")
    for title, sources in result.grouped:
        line(console, "  grouped as one story: ", (title[:70], "bold"), f" ({', '.join(sources)})")
    for title, watchlist, confidence in result.held_back:
        line(
            console,
            f"  held back by the {watchlist} model ({confidence:.2f}): ",
            (title[:70], "dim"),
        )
    if result.catchup_matches:
        line(
            console,
            f"  {result.catchup_matches} catch-up article(s) matched a watchlist and alerted "
            "nobody (the first poll of a new source)",
        )
    line(
        console,
        f"  done in {result.seconds:.1f} s (models ready after {result.training_seconds:.1f} s)",
    )
    heading(console, "Next")
    where = "" if options.database_url else " --database sqlite:///demo.db"
    steps = [
        ("monitor watchlists check", "validate the watchlists (file:line errors)"),
        ("monitor watchlists test missile-tests --articles FILE.jsonl", "try a watchlist"),
        ("monitor watchlists eval", "how well each watchlist's model does, cross-validated"),
        (f"monitor demo{where}", "keep the demo's database to look around in"),
        (
            "monitor run",
            f"the service for real, on {options.watchlists_dir / 'sources.yaml'} (alerts print "
            "here until MONITOR_SLACK_BOT_TOKEN or MONITOR_SMTP_HOST is set)",
        ),
    ]
    if options.database_url:
        env = f"MONITOR_DATABASE_URL={options.database_url}"
        steps[3] = (f"{env} monitor stories list --since 1d", "the stories the demo stored")
    for command, why in steps:
        line(console, "  ", (command, "bold cyan"), f"  {why}")
    line(console, "  Docs: README.md, docs/watchlists.md, docs/alerts.md, docs/operations.md")
