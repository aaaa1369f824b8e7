"""Prometheus metrics of one replica, on its own registry (never the global default one).

Two kinds of series:
* what THIS process did (fetches, new articles, matches, alerts enqueued, tick durations):
  counters and histograms observed by the service as work happens;
* what the SHARED database holds (alerts by state, outbox depth and age, failing sources, live
  replicas): read at scrape time by `read_store_state`, so every replica reports the same value;
  aggregate those with `max()`, not `sum()`.

Names follow the Prometheus guide: `monitor_` prefix, base units, `_total` counters, and no label
that grows with the data (no source id or URL: per-source state is on `/status`).
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import WAITING, AlertStatus, PollStatus
from monitor.store.status import REPLICA_ALIVE_SECONDS, StoreState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The order the `monitor_alerts` series are listed in.
ALERT_STATES = (
    AlertStatus.HELD,
    AlertStatus.PENDING,
    AlertStatus.SENDING,
    AlertStatus.SENT,
    AlertStatus.RETRY,
    AlertStatus.DEAD,
    AlertStatus.DIGESTED,
)
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TICK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# `_created` series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _StoreCollector(Collector):
    """Renders the last StoreState read (the web handler refreshes it before each scrape)."""

    def __init__(self) -> None:
        self.state: StoreState | None = None
        self.up = False
        self.read_seconds = 0.0

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "monitor_database_up", "1 when the last scrape could read the database, else 0"
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        read = GaugeMetricFamily(
            "monitor_database_read_duration_seconds", "Time the scrape spent reading the database"
        )
        read.add_metric([], self.read_seconds)
        yield read
        state = self.state
        if state is None or not self.up:
            return
        yield from self._state_families(state)

    @staticmethod
    def _state_families(state: StoreState) -> Iterator[Metric]:
        alerts = GaugeMetricFamily(
            "monitor_alerts",
            "Alerts in the shared outbox by channel and state (same on every replica)",
            labels=["channel", "state"],
        )
        channels = sorted({ch for ch, _ in state.alerts_by_state} | {"slack"})
        for channel in channels:
            for status in ALERT_STATES:
                alerts.add_metric(
                    [channel, status], state.alerts_by_state.get((channel, status), 0)
                )
        yield alerts
        depth = GaugeMetricFamily(
            "monitor_outbox_pending",
            "Alerts waiting for delivery (pending, sending or retry) by channel",
            labels=["channel"],
        )
        age = GaugeMetricFamily(
            "monitor_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert still waiting for delivery, by channel (0 when none)",
            labels=["channel"],
        )
        for channel in channels:
            waiting = sum(state.alerts_by_state.get((channel, s), 0) for s in WAITING)
            depth.add_metric([channel], waiting)
            age.add_metric([channel], state.oldest_waiting_age.get(channel, 0.0))
        yield depth
        yield age
        breakers = GaugeMetricFamily(
            "monitor_delivery_breakers_open",
            "Delivery targets (Slack API, SMTP server) whose circuit breaker is open, by channel",
            labels=["channel"],
        )
        for channel in sorted(set(channels) | set(state.breakers_open)):
            breakers.add_metric([channel], state.breakers_open.get(channel, 0))
        yield breakers
        for name, doc, value in (
            ("monitor_sources", "Enabled sources", state.sources_total),
            (
                "monitor_sources_failing",
                "Enabled sources whose last poll failed",
                state.sources_failing,
            ),
            (
                "monitor_sources_leased",
                "Sources leased by a replica right now",
                state.sources_leased,
            ),
            (
                "monitor_sources_overdue",
                "Sources due for over a minute and not yet polled (grows when replicas lag)",
                state.sources_overdue,
            ),
            (
                "monitor_replicas_alive",
                f"Replicas with a heartbeat in the last {REPLICA_ALIVE_SECONDS:.0f} s",
                state.replicas_alive,
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            yield family


def build_commit() -> str:
    """The git commit the code runs from, when known (env, image label or a checkout)."""
    import os

    value = os.environ.get("MONITOR_BUILD_COMMIT", "")
    if value:
        return value[:40]
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
            return out.stdout.strip()[:40] or "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    return "unknown"


class ServiceMetrics:
    """The metrics of one replica; the service calls `observe_*`, `/metrics` calls `render`."""

    def __init__(self, *, commit: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.fetch_duration = Histogram(
            "monitor_feed_fetch_duration_seconds",
            "Time to poll one source: fetch, parse and store",
            buckets=FETCH_BUCKETS,
            registry=reg,
        )
        self.fetches = Counter(
            "monitor_feed_fetches",
            "Source polls by outcome (ok, not_modified, unchanged, timeout, http_5xx, …)",
            ["outcome"],
            registry=reg,
        )
        self.articles_new = Counter(
            "monitor_articles_new", "Articles stored for the first time", registry=reg
        )
        self.articles_updated = Counter(
            "monitor_articles_updated", "Stored articles seen again with edited text", registry=reg
        )
        self.matches = Counter(
            "monitor_watchlist_matches", "Watchlist matches on new or edited articles", registry=reg
        )
        self.alerts_enqueued = Counter(
            "monitor_alerts_enqueued", "Alerts written to the outbox by this replica", registry=reg
        )
        self.alerts_dead = Counter(
            "monitor_alerts_dead",
            "Alerts this replica gave up on (dead: permanent error or retry horizon passed)",
            ["channel"],
            registry=reg,
        )
        self.deliveries = Counter(
            "monitor_deliveries",
            "Delivery outcomes of this replica (sent, reconciled, retry, rate_limited, dead, lost)",
            ["channel", "outcome"],
            registry=reg,
        )
        self.tick_duration = Histogram(
            "monitor_tick_duration_seconds",
            "Duration of one scheduler tick by job",
            ["job"],
            buckets=TICK_BUCKETS,
            registry=reg,
        )
        self.reloads = Counter(
            "monitor_watchlist_reloads",
            "Watchlist reloads by result",
            ["result"],
            registry=reg,
        )
        self.reload_last_success = Gauge(
            "monitor_watchlist_last_success_timestamp_seconds",
            "Unix time of the last reload where every watchlist file was valid",
            registry=reg,
        )
        self.watchlists = Gauge("monitor_watchlists", "Watchlists in effect", registry=reg)
        self.draining = Gauge(
            "monitor_draining", "1 while the replica shuts down and claims nothing", registry=reg
        )
        self.heartbeat_age = Gauge(
            "monitor_heartbeat_age_seconds",
            "Seconds since the scheduler last started a tick",
            registry=reg,
        )
        self.start_time = Gauge(
            "monitor_start_time_seconds", "Unix time the process started", registry=reg
        )
        self.start_time.set(time.time())
        self.build_info = Gauge(
            "monitor_build_info",
            "Always 1; labels say which build runs",
            ["version", "commit", "python"],
            registry=reg,
        )
        self.build_info.labels(
            __version__, commit or build_commit(), platform.python_version()
        ).set(1)
        self.store = _StoreCollector()
        reg.register(self.store)
        self._reloads_seen = (0, 0)

    # --- observations --------------------------------------------------------------------

    def observe_poll(
        self,
        status: PollStatus,
        seconds: float,
        *,
        new: int,
        updated: int,
        alerts: int,
        matches: int,
        error_kind: str | None = None,
    ) -> None:
        """One polled source (PollReport fields); a failed poll counts under its error kind."""
        outcome = error_kind if status == PollStatus.ERROR and error_kind else status
        self.fetches.labels(outcome).inc()
        self.fetch_duration.observe(max(0.0, seconds))
        if new:
            self.articles_new.inc(new)
        if updated:
            self.articles_updated.inc(updated)
        if alerts:
            self.alerts_enqueued.inc(alerts)
        if matches:
            self.matches.inc(matches)

    def observe_delivery(self, channel: str, outcome: str) -> None:
        """One outbox row's outcome (the dispatcher's `on_result`)."""
        self.deliveries.labels(channel, outcome).inc()
        if outcome == "dead":
            self.alerts_dead.labels(channel).inc()

    def watch_channels(self, channels: Iterable[str]) -> None:
        """Show the dead counters at 0 from the start, so `increase()` sees the first one."""
        for channel in channels:
            self.alerts_dead.labels(channel)

    def observe_tick(self, job: str, seconds: float) -> None:
        self.tick_duration.labels(job).observe(max(0.0, seconds))

    def sync_watchlists(
        self, *, ok: int, error: int, last_success: float | None, count: int
    ) -> None:
        """Follow the registry's own counters (it counts reloads; we only mirror them)."""
        seen_ok, seen_error = self._reloads_seen
        if ok > seen_ok:
            self.reloads.labels("ok").inc(ok - seen_ok)
        if error > seen_error:
            self.reloads.labels("error").inc(error - seen_error)
        self._reloads_seen = (max(ok, seen_ok), max(error, seen_error))
        if last_success is not None:
            self.reload_last_success.set(last_success)
        self.watchlists.set(count)

    def set_store_state(self, state: StoreState | None, read_seconds: float) -> None:
        self.store.state = state
        self.store.up = state is not None
        self.store.read_seconds = read_seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metric_names(payload: bytes | str) -> set[str]:
    """The sample names in an exposition (tests and `monitor health --metrics` use it)."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    names: set[str] = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def sample_value(payload: bytes | str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample in an exposition; KeyError when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    text = payload.decode() if isinstance(payload, bytes) else payload
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (labels is None or _has(sample.labels, labels)):
                return float(sample.value)
    raise KeyError(f"{name}{labels or ''} not in the exposition")


def _has(actual: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(actual.get(k) == v for k, v in wanted.items())
