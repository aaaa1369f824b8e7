"""APScheduler 3.11 wiring only: a few fixed tick jobs; the database decides what is due."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

if TYPE_CHECKING:
    from monitor.service import Service


def build_scheduler(service: Service) -> AsyncIOScheduler:
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
    return scheduler


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)
