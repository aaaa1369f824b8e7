"""APScheduler 3.11 wiring only: a few fixed tick jobs; the database decides what is due."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.settings import Settings


class Ticks(Protocol):
    """What the scheduler triggers; the service implements it (so neither imports the other)."""

    settings: Settings

    def poll_tick(self) -> Awaitable[None]: ...
    def deliver_tick(self) -> Awaitable[None]: ...
    def heartbeat_tick(self) -> Awaitable[None]: ...
    def stories_tick(self) -> Awaitable[None]: ...
    def feedback_tick(self) -> Awaitable[None]: ...


def build_scheduler(service: Ticks) -> AsyncIOScheduler:
    settings = service.settings
    scheduler = AsyncIOScheduler(timezone="UTC")
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
    scheduler.add_job(
        service.poll_tick,
        "interval",
        seconds=settings.tick_seconds,
        id="poll-tick",
        jitter=min(2.0, settings.tick_seconds / 4),
        next_run_time=_now(),
        **common,
    )
    scheduler.add_job(
        service.deliver_tick,
        "interval",
        seconds=settings.deliver_tick_seconds,
        id="deliver-tick",
        next_run_time=_now(),
        **common,
    )
    scheduler.add_job(
        service.heartbeat_tick,
        "interval",
        seconds=10,
        id="heartbeat",
        next_run_time=_now(),
        **common,
    )
    scheduler.add_job(
        service.stories_tick,
        "interval",
        seconds=60,
        id="stories",
        jitter=10,
        **common,
    )
    scheduler.add_job(
        service.feedback_tick,
        "interval",
        seconds=settings.feedback_retrain_seconds,
        id="feedback",
        jitter=min(10.0, settings.feedback_retrain_seconds / 10),
        **common,
    )
    return scheduler


def _now() -> datetime:
    return datetime.now(UTC)
