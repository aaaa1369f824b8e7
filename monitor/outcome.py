"""What a poll reports, and the schedule update of an answer that needs no ingest.

A 304 (or a body identical to the last one) only moves the source's next poll: the poller
batches those without importing the ingest path (`monitor.pipeline`: parsers, story grouping,
matching, the article tables), so a run over unchanged feeds never loads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from monitor.clock import as_utc
from monitor.logs import get_logger
from monitor.model import ErrorKind, FetchResult, ParsedFeed, PollStatus
from monitor.redact import redact_url
from monitor.schedule import next_poll_at
from monitor.settings import Settings
from monitor.store.sources import ClaimedSource, SourceUpdate, Validators

log = get_logger("monitor.pipeline")  # the events keep the logger name they always had


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll of one source did, for the CLI line, logs and metrics."""

    source_id: str
    status: PollStatus
    new: int = 0
    updated: int = 0
    alerts: int = 0
    seconds: float = 0.0
    skipped: int = 0  # entries beyond MONITOR_MAX_ENTRIES_PER_DOCUMENT, the oldest ones
    message: str = ""
    matches: tuple[tuple[str, str, float], ...] = ()  # (article title, watchlist, score), dry runs
    previews: tuple[str, ...] = ()  # dry runs: the alerts as they would be sent
    error_kind: ErrorKind | None = None  # with status ERROR: how the poll failed

    @property
    def label(self) -> str:
        """The status as the CLI and logs show it: `error:<kind>` for a failed poll."""
        if self.status == PollStatus.ERROR:
            return f"error:{self.error_kind}"
        return str(self.status)


def quiet_status(claim: ClaimedSource, fetched: FetchResult) -> PollStatus | None:
    """NOT_MODIFIED for a 304, UNCHANGED for a body identical to the last one (a server that
    ignores our validators); None when there is something to parse."""
    if fetched.status == 304 or fetched.body is None:
        return PollStatus.NOT_MODIFIED
    if claim.first_poll_done and hashlib.sha256(fetched.body).hexdigest() == claim.body_hash:
        return PollStatus.UNCHANGED
    return None


def success_update(
    settings: Settings,
    claim: ClaimedSource,
    result: FetchResult,
    now: datetime,
    parsed: ParsedFeed | None,
    status: PollStatus,
) -> SourceUpdate:
    """The source's new state after an answer: next poll time, validators, a permanent move."""
    when = next_poll_at(
        now,
        claim.every_seconds,
        max_age_seconds=result.max_age_seconds,
        ttl_seconds=parsed.ttl_seconds if parsed else None,
        min_seconds=settings.min_interval_seconds,
        max_seconds=settings.max_interval_seconds,
    )
    # Stored and shown redacted (the admin knows the secrets; polling uses the configured URL),
    # so the redacted form is what tells a new move from the one already reported.
    moved_to = redact_url(result.moved_to) if result.moved_to else None
    if moved_to and moved_to != claim.moved_to:
        log.warning(
            "source moved permanently: update its url in the sources file",
            source=claim.id,
            url=claim.url,
            moved_to=moved_to,
        )
    return SourceUpdate(
        status=status,
        polled_at=now,
        next_poll_at=as_utc(when),
        failures=0,
        http_status=result.status,
        succeeded=True,
        moved_to=moved_to,
        # A 304 confirms the stored validators: only a full answer replaces them.
        validators=None if result.status == 304 else Validators(result.etag, result.last_modified),
    )
