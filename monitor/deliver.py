"""The dispatcher: claims due outbox rows, sends them outside any transaction, completes fenced.

One `tick()`: build the digests whose period ended, claim due rows (short transaction), send
them concurrently, then record each outcome in its own short transaction, fenced by the lease
epoch. A row whose earlier attempt may have landed (crash or timeout mid-send) is first looked
up at the provider (Slack: message metadata via conversations.history/replies) and only posted
again when it is not there. Retry-After is persisted (`next_attempt_at`, and the channel's
`not_before`), never slept on, so shutdown is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TextIO

from monitor.clock import utcnow
from monitor.logs import get_logger
from monitor.model import AlertKind, Channel
from monitor.notify import DeliveryError, Notifier, Outgoing
from monitor.notify.console import ConsoleNotifier
from monitor.render import MAX_LIST, AlertContent, render_console
from monitor.settings import Settings
from monitor.store import alerts as outbox
from monitor.store.alerts import ClaimedAlert, HeldItem, NewAlert
from monitor.store.db import Engine

log = get_logger(__name__)

RETRY_CAP_SECONDS = 3600.0
RECONCILE_MARGIN_SECONDS = 60.0
EMAIL_CONCURRENCY = 5


def build_notifiers(settings: Settings, console: TextIO | None = None) -> dict[str, Notifier]:
    """The senders this configuration allows (console always)."""
    notifiers: dict[str, Notifier] = {"console": ConsoleNotifier(console)}
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    webhook = settings.slack_webhook_url.get_secret_value() if settings.slack_webhook_url else ""
    if token:
        from monitor.notify.slack import SlackNotifier

        notifiers["slack"] = SlackNotifier(
            token, base_url=settings.slack_api_url, timeout=settings.slack_timeout
        )
    elif webhook:
        from monitor.notify.slack import WebhookNotifier

        notifiers["slack"] = WebhookNotifier(webhook, timeout=settings.slack_timeout)
    if settings.smtp_host:
        from monitor.notify.email import EmailNotifier

        notifiers["email"] = EmailNotifier(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            sender=settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout,
            ca_file=settings.smtp_ca_file,
        )
    return notifiers


def backoff(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS), never below one second."""
    ceiling = min(RETRY_CAP_SECONDS, base * 2 ** max(0, attempts - 1))
    return max(1.0, (rng or random).uniform(0, ceiling))


class Dispatcher:
    """Delivers the outbox; one per process, driven by the scheduler or `deliver --once`."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        owner: str,
        dry_run: bool = False,
        notifiers: Mapping[str, Notifier] | None = None,
        console: TextIO | None = None,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.owner = owner
        self.dry_run = dry_run
        self.console = console
        # (channel, outcome) after each row: sent, reconciled, retry, rate_limited, dead, lost
        self.on_result = on_result
        self.notifiers: dict[str, Notifier] = dict(
            notifiers if notifiers is not None else build_notifiers(settings, console)
        )
        # A row must stay ours longer than one send can take, or another replica could
        # reconcile it while our call is still in flight.
        # (each sender bounds its call at its timeout + 2 s).
        timeouts = [0.0]
        if "slack" in self.notifiers:
            timeouts.append(settings.slack_timeout)
        if "email" in self.notifiers:
            timeouts.append(settings.smtp_timeout)
        self.lease_seconds = max(settings.lease_seconds, max(timeouts) + 3)
        self.draining = False
        self._inflight: dict[int, asyncio.Task[str]] = {}
        self._email_gates: dict[int, asyncio.Semaphore] = {}
        self._previewed: set[int] = set()  # dry run: each row is shown once, not every tick
        self.sent_total = 0
        self.failed_total = 0

    # --- tick ---------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> int:
        """Build due digests, claim due rows, send them; returns how many were delivered."""
        if self.draining:
            return 0
        if self.dry_run:
            return await asyncio.to_thread(self._dry_run, now or utcnow())
        await asyncio.to_thread(self._build_digests, now or utcnow())
        claims = await asyncio.to_thread(self._claim, now or utcnow())
        if not claims:
            return 0
        if self.draining:  # shutdown began while we were claiming: give them back unsent
            await asyncio.to_thread(self._unclaim, claims)
            return 0
        tasks = {claim.id: asyncio.create_task(self._deliver(claim)) for claim in claims}
        self._inflight.update(tasks)
        try:
            results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            for alert_id in tasks:
                self._inflight.pop(alert_id, None)
        return sum(1 for r in results if r == "sent")

    def _claim(self, now: datetime) -> list[ClaimedAlert]:
        return outbox.claim_due(
            self.engine,
            owner=self.owner,
            now=now,
            lease_seconds=self.lease_seconds,
            limit=self.settings.deliver_batch,
            slack_interval=self.settings.slack_channel_interval,
            exclude=set(self._inflight),
        )

    # --- one row --------------------------------------------------------------------------------

    async def _deliver(self, claim: ClaimedAlert) -> str:
        notifier = self.notifiers.get(claim.channel)
        if notifier is None:
            error = (
                f"{claim.channel} is not configured in this process: set "
                f"{_config_hint(claim.channel)}, then `monitor alerts retry {claim.id}`"
            )
            await asyncio.to_thread(self._finish_dead, claim, error)
            return "dead"
        try:
            content = AlertContent.from_json(claim.payload_json)
        except (ValueError, KeyError, TypeError) as exc:
            await asyncio.to_thread(self._finish_dead, claim, f"unreadable payload: {exc}")
            return "dead"
        message = Outgoing(
            alert_id=claim.id,
            dedup_key=claim.dedup_key,
            destination=claim.destination,
            content=content,
            thread_ref=_thread_ref(claim),
        )
        try:
            if claim.reconcile_since is not None:
                lookup = await self._lookup_target(claim, message)
                since = claim.reconcile_since.timestamp() - RECONCILE_MARGIN_SECONDS
                found = await notifier.find_sent(lookup, since)
                if found:
                    log.info(
                        "alert reconciled: found at the provider, not sent again",
                        alert=claim.id,
                        channel=claim.channel,
                    )
                    await asyncio.to_thread(self._finish_sent, claim, found, reconciled=True)
                    return "sent"
            if claim.channel == Channel.EMAIL:
                async with self._email_gate():
                    ref = await notifier.send(message)
            else:
                ref = await notifier.send(message)
        except DeliveryError as exc:
            await asyncio.to_thread(self._finish_error, claim, exc)
            return "failed"
        except asyncio.CancelledError:
            # Shutdown: the call may or may not have landed; keep the row marked for lookup.
            await asyncio.shield(asyncio.to_thread(self._release, claim))
            raise
        except Exception as exc:  # a bug or an unexpected library error: never lose the row
            log.error("alert delivery crashed", alert=claim.id, error=repr(exc)[:300])
            err = DeliveryError(
                "dropped", f"unexpected {type(exc).__name__}", transient=True, ambiguous=True
            )
            await asyncio.to_thread(self._finish_error, claim, err)
            return "failed"
        await asyncio.to_thread(self._finish_sent, claim, ref)
        return "sent"

    def _email_gate(self) -> asyncio.Semaphore:
        """A few SMTP connections at a time (one gate per event loop: CLI runs make new ones)."""
        key = id(asyncio.get_running_loop())
        if key not in self._email_gates:
            self._email_gates = {key: asyncio.Semaphore(EMAIL_CONCURRENCY)}
        return self._email_gates[key]

    async def _lookup_target(self, claim: ClaimedAlert, message: Outgoing) -> Outgoing:
        """Slack reads need the channel id: pass the one learned from earlier posts."""
        if claim.channel != Channel.SLACK:
            return message
        ref = await asyncio.to_thread(outbox.channel_ref, self.engine, claim.destination)
        return replace(message, channel_ref=ref) if ref else message

    # --- outcomes (each its own short transaction, fenced) ------------------------------------

    def _report(self, channel: str, outcome: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(channel, outcome)
            except Exception as exc:  # metrics must never break delivery
                log.warning("result callback failed", error=repr(exc)[:200])

    def _finish_sent(self, claim: ClaimedAlert, ref: str, *, reconciled: bool = False) -> None:
        ok = outbox.mark_sent(self.engine, claim, owner=self.owner, provider_ref=ref, now=utcnow())
        self._report(claim.channel, ("reconciled" if reconciled else "sent") if ok else "lost")
        if ok:
            self.sent_total += 1
            log.info(
                "alert sent",
                alert=claim.id,
                kind=claim.kind,
                channel=claim.channel,
                attempt=claim.attempts,
            )
        else:
            log.warning(
                "alert lease lost before completion; another replica owns it", alert=claim.id
            )

    def _finish_error(self, claim: ClaimedAlert, exc: DeliveryError) -> None:
        self._report(claim.channel, self._record_error(claim, exc))

    def _record_error(self, claim: ClaimedAlert, exc: DeliveryError) -> str:
        now = utcnow()
        self.failed_total += 1
        if exc.kind == "rate_limited":
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            outbox.retry_later(
                self.engine,
                claim,
                owner=self.owner,
                at=now + timedelta(seconds=wait),
                error=exc.reason,
                maybe_sent=claim.reconcile_since is not None and exc.ambiguous,
                count_attempt=False,
                hold_channel=claim.channel == Channel.SLACK,
            )
            log.warning(
                "alert rate limited; retry persisted",
                alert=claim.id,
                retry_after=wait,
                channel=claim.channel,
            )
            return "rate_limited"
        if not exc.transient:
            outbox.mark_dead(self.engine, claim, owner=self.owner, error=exc.reason, now=now)
            log.error(
                "alert dead: permanent failure",
                alert=claim.id,
                channel=claim.channel,
                reason=exc.reason,
            )
            return "dead"
        if claim.attempts >= self.settings.deliver_max_attempts:
            reason = f"gave up after {claim.attempts} attempts: {exc.reason}"
            outbox.mark_dead(self.engine, claim, owner=self.owner, error=reason, now=now)
            log.error(
                "alert dead: too many attempts",
                alert=claim.id,
                channel=claim.channel,
                reason=exc.reason,
            )
            return "dead"
        delay = backoff(claim.attempts, self.settings.deliver_retry_base_seconds)
        if exc.retry_after:
            delay = max(delay, exc.retry_after)
        maybe_sent = exc.ambiguous or (
            claim.reconcile_since is not None and exc.reason.startswith("reconciling")
        )
        outbox.retry_later(
            self.engine,
            claim,
            owner=self.owner,
            at=now + timedelta(seconds=delay),
            error=exc.reason,
            maybe_sent=maybe_sent,
        )
        log.warning(
            "alert delivery failed; will retry",
            alert=claim.id,
            channel=claim.channel,
            kind=exc.kind,
            reason=exc.reason,
            retry_in=round(delay, 1),
            maybe_sent=maybe_sent,
        )
        return "retry"

    def _finish_dead(self, claim: ClaimedAlert, error: str) -> None:
        outbox.mark_dead(self.engine, claim, owner=self.owner, error=error, now=utcnow())
        self._report(claim.channel, "dead")
        log.error("alert dead", alert=claim.id, reason=error)

    def _unclaim(self, claims: list[ClaimedAlert]) -> None:
        outbox.give_back(self.engine, claims, owner=self.owner, now=utcnow())

    def _release(self, claim: ClaimedAlert) -> None:
        outbox.release_claims(self.engine, self.owner, [claim.id], now=utcnow())

    # --- digests ------------------------------------------------------------------------------

    def _build_digests(self, now: datetime) -> int:
        """Fold the held entries of every ended period into one digest row per destination."""
        built = outbox.build_digests(self.engine, now, plan_digests)
        if built:
            log.info("digests built", digests=built)
        return built

    # --- dry run ------------------------------------------------------------------------------

    def _dry_run(self, now: datetime) -> int:
        """Render what is due without claiming or sending anything."""
        out = self.console or sys.stdout
        due = outbox.due_alerts(self.engine, now, self.settings.deliver_batch)
        rows = [r for r in due if r.id not in self._previewed]
        for row in rows:
            self._previewed.add(row.id)
            content = AlertContent.from_json(row.payload_json)
            out.write(f"[dry run] alert {row.id} would go to {row.channel} {row.destination}\n")
            out.write(render_console(content, f"{row.channel}:{row.destination}"))
        out.flush()
        return len(rows)

    async def check(self) -> list[str]:
        """Problems with the configured senders (Slack auth.test), for start-up and `health`."""
        problems = []
        for channel, notifier in self.notifiers.items():
            probe = getattr(notifier, "check", None)
            if probe is not None:
                problem = await probe()
                if problem:
                    problems.append(f"{channel}: {problem}")
        return problems

    # --- shutdown -----------------------------------------------------------------------------

    async def drain(self, grace: float = 3.0) -> None:
        """Stop claiming; give in-flight sends `grace` seconds, then cancel and release them."""
        self.draining = True
        pending = set(self._inflight.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=2)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release_all)

    def _release_all(self) -> None:
        released = outbox.release_claims(self.engine, self.owner, now=utcnow())
        if released:
            log.info("alerts released for another replica", alerts=released)

    async def aclose(self) -> None:
        for notifier in self.notifiers.values():
            with contextlib.suppress(Exception):
                await notifier.aclose()


def _thread_ref(claim: ClaimedAlert) -> str | None:
    """The parent's reference in this channel's terms (webhook/console have no threads)."""
    ref = claim.parent_ref
    if not ref:
        return None
    if claim.channel == Channel.SLACK and " " in ref:
        return ref
    if claim.channel == Channel.EMAIL and ref.startswith("<"):
        return ref
    return None


def plan_digests(items: Sequence[HeldItem]) -> list[tuple[NewAlert, list[int]]]:
    """One digest row per (watchlist, destination, period end), listing its held entries."""
    groups: dict[tuple[str, str, str, datetime], list[HeldItem]] = {}
    for item in items:
        groups.setdefault(
            (item.watchlist_id, item.channel, item.destination, item.digest_at), []
        ).append(item)
    planned: list[tuple[NewAlert, list[int]]] = []
    for (watchlist_id, channel, destination, at), members in groups.items():
        contents = [AlertContent.from_json(m.payload_json) for m in members]
        first = contents[0]
        spec = first.extra.get("digest", "")
        digest = AlertContent(
            kind=AlertKind.DIGEST,
            watchlist_id=watchlist_id,
            watchlist_name=first.watchlist_name,
            items=tuple(contents[: MAX_LIST * 3]),
            total=len(contents),
            period=f"{spec}, until {at:%Y-%m-%d %H:%M} UTC"
            if spec
            else f"until {at:%Y-%m-%d %H:%M} UTC",
        )
        key = f"d:{watchlist_id}:{channel}:{destination}:{at:%Y%m%dT%H%M}:{members[0].id}"
        row = NewAlert(
            dedup_key=key if len(key) <= 400 else key[:300] + outbox.short_hash(key),
            kind=AlertKind.DIGEST,
            watchlist_id=watchlist_id,
            channel=channel,
            destination=destination,
            payload_json=digest.to_json(),
        )
        planned.append((row, [m.id for m in members]))
    return planned


def _config_hint(channel: str) -> str:
    if channel == Channel.SLACK:
        return "MONITOR_SLACK_BOT_TOKEN (or MONITOR_SLACK_WEBHOOK_URL)"
    if channel == Channel.EMAIL:
        return "MONITOR_SMTP_HOST"
    return "nothing (console is always available)"


__all__ = ["Dispatcher", "backoff", "build_notifiers"]
