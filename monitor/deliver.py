"""The dispatcher: claims due outbox rows, sends them outside any transaction, completes fenced.

One `tick()`: build the digests whose period ended, claim due rows (short transaction), send
them concurrently, then record each outcome in its own short transaction, fenced by the lease
epoch. A row whose earlier attempt may have landed (crash or timeout mid-send) is first looked
up at the provider (Slack: message metadata via conversations.history/replies) and only posted
again when it is not there. Retry-After is persisted (`next_attempt_at`, and the channel's
`not_before`), never slept on, so shutdown is never blocked.

Giving up is by time, not by count: a failing alert is retried with capped backoff for
`MONITOR_DELIVER_RETRY_HOURS` from when it first became due, then it is `dead` (permanent errors
at once), loudly: an ERROR line, `on_result(channel, "dead")` for the metric, and /status.

A target that looks down (connection refused, timeout, 5xx, dropped connection) opens its
circuit breaker, shared by replicas in the database: its rows wait, one probe goes out when the
breaker's time comes (doubling up to `PROBE_CAP_SECONDS`), and any answer closes it.

A send that succeeded is never sent again because its completion could not be written: the
completion is retried a few times at once, then kept in memory and retried at every tick, and
the row stays out of this process's claims meanwhile. Should the process die first, the row is
still marked "maybe sent", so the next claim (any replica) reconciles it before posting (Slack);
email cannot be asked, and stays at-least-once with its stable Message-ID.
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
from monitor.logs import get_logger, scrub
from monitor.model import AlertKind, Channel
from monitor.notify import DeliveryError, Notifier, Outgoing
from monitor.notify.console import ConsoleNotifier
from monitor.render import MAX_LIST, AlertContent, FeedbackLink, render_console
from monitor.settings import Settings
from monitor.store import alerts as outbox
from monitor.store.alerts import ClaimedAlert, HeldItem, NewAlert
from monitor.store.db import Engine

log = get_logger(__name__)

RETRY_CAP_SECONDS = 3600.0
RECONCILE_MARGIN_SECONDS = 60.0
EMAIL_CONCURRENCY = 5
# An open breaker probes again after base, 2×base, 4×base … seconds, never later than this: an
# outage of any length costs about one attempt a minute, and its end is noticed within one.
PROBE_CAP_SECONDS = 60.0
# Failures that say the target is down rather than that this message is wrong.
DOWN_KINDS = frozenset({"connection", "timeout", "server_error", "dropped"})
# Pauses between the attempts to record an outcome (a locked or briefly unreachable database).
RECORD_PAUSES = (0.2, 0.5, 1.0)


def build_notifiers(settings: Settings, console: TextIO | None = None) -> dict[str, Notifier]:
    """The senders this configuration allows (console always)."""
    notifiers: dict[str, Notifier] = {"console": ConsoleNotifier(console)}
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    webhook = settings.slack_webhook_url.get_secret_value() if settings.slack_webhook_url else ""
    if token:
        from monitor.notify.slack import SlackNotifier

        notifiers["slack"] = SlackNotifier(
            token,
            base_url=settings.slack_api_url,
            timeout=settings.slack_timeout,
            feedback_buttons=settings.slack_interactive,
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
            links=_feedback_links(settings),
        )
    return notifiers


def _feedback_links(settings: Settings) -> Callable[[int], tuple[FeedbackLink, ...]] | None:
    """Signed Relevant / Not relevant / Mute story links for alert emails, when configured."""
    if not settings.email_feedback or settings.feedback_secret is None:
        return None
    from monitor.feedback import LinkSigner

    signer = LinkSigner(
        settings.feedback_secret.get_secret_value(),
        settings.public_url or "",
        settings.feedback_link_hours,
    )
    return lambda alert_id: signer.links(alert_id, utcnow())


def backoff(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS), never below one second."""
    ceiling = min(RETRY_CAP_SECONDS, base * 2 ** max(0, attempts - 1))
    return max(1.0, (rng or random).uniform(0, ceiling))


def probe_delay(failures: int, base: float) -> float:
    """Seconds an open breaker waits before its next probe: doubling, capped. No jitter: the
    state is shared, so replicas never probe in a herd."""
    return float(min(PROBE_CAP_SECONDS, max(1.0, base) * 2.0 ** max(0, failures - 1)))


class Dispatcher:
    """Delivers the outbox; one per process, driven by the scheduler or `deliver --once`.

    `clock` is the time of every decision (claims, backoff, breakers, the retry horizon), so
    tests can run a long outage in a moment.
    """

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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.owner = owner
        self.dry_run = dry_run
        self.console = console
        self.clock = clock
        # (channel, outcome) after each row: sent, reconciled, retry, rate_limited, dead, lost
        self.on_result = on_result
        self.notifiers: dict[str, Notifier] = dict(
            notifiers if notifiers is not None else build_notifiers(settings, console)
        )
        # channel → the breaker key of the target its sender talks to
        self.breakers: dict[str, str] = {}
        for channel, notifier in self.notifiers.items():
            target = getattr(notifier, "target", None)
            if target:
                self.breakers[channel] = str(target)
        # A row must stay ours longer than one send can take, or another replica could
        # reconcile it while our call is still in flight.
        # (each sender bounds its call at its timeout + 2 s).
        timeouts = [0.0]
        if "slack" in self.notifiers:
            timeouts.append(settings.slack_timeout)
        if "email" in self.notifiers:
            timeouts.append(settings.smtp_timeout)
        self.lease_seconds = max(settings.lease_seconds, max(timeouts) + 3)
        self.horizon = timedelta(hours=settings.deliver_retry_hours)
        self.draining = False
        self._inflight: dict[int, asyncio.Task[str]] = {}
        # Sent, but the completion could not be written yet: (claim, provider ref, reconciled).
        self._unrecorded: dict[int, tuple[ClaimedAlert, str, bool]] = {}
        self._email_gates: dict[int, asyncio.Semaphore] = {}
        self._previewed: set[int] = set()  # dry run: each row is shown once, not every tick
        self._breakers_checked = False
        self.sent_total = 0
        self.failed_total = 0

    # --- tick ---------------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> int:
        """Build due digests, claim due rows, send them; returns how many were delivered."""
        if self.draining:
            return 0
        if self.dry_run:
            return await asyncio.to_thread(self._dry_run, now or self.clock())
        await self._record_unrecorded()
        if not self._breakers_checked:
            await asyncio.to_thread(self._forget_old_breakers)
        await asyncio.to_thread(self._build_digests, now or self.clock())
        claims = await asyncio.to_thread(self._claim, now or self.clock())
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
        for alert_id, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):  # never silent: the row waits for its lease
                log.error(
                    "alert delivery failed unexpectedly", alert=alert_id, error=_short(result)
                )
        return sum(1 for r in results if r == "sent")

    def _claim(self, now: datetime) -> list[ClaimedAlert]:
        return outbox.claim_due(
            self.engine,
            owner=self.owner,
            now=now,
            lease_seconds=self.lease_seconds,
            limit=self.settings.deliver_batch,
            slack_interval=self.settings.slack_channel_interval,
            exclude=set(self._inflight) | set(self._unrecorded),
            breakers=self.breakers,
        )

    # --- one row --------------------------------------------------------------------------------

    async def _deliver(self, claim: ClaimedAlert) -> str:
        notifier = self.notifiers.get(claim.channel)
        if notifier is None:
            error = (
                f"{claim.channel} is not configured in this process: set "
                f"{_config_hint(claim.channel)}, then `monitor alerts retry {claim.id}`"
            )
            await self._record(claim, "dead", self._finish_dead, claim, error)
            return "dead"
        try:
            content = AlertContent.from_json(claim.payload_json)
        except (ValueError, KeyError, TypeError) as exc:
            error = f"unreadable payload: {exc}"
            await self._record(claim, "dead", self._finish_dead, claim, error)
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
                    await self._complete_sent(claim, found, reconciled=True)
                    return "sent"
            if claim.channel == Channel.EMAIL:
                async with self._email_gate():
                    ref = await notifier.send(message)
            else:
                ref = await notifier.send(message)
        except DeliveryError as exc:
            await self._record(claim, "outcome", self._finish_error, claim, exc)
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
            await self._record(claim, "outcome", self._finish_error, claim, err, False)
            return "failed"
        await self._complete_sent(claim, ref)
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

    # --- recording outcomes (each its own short transaction, fenced, retried) ------------------

    async def _record(
        self, claim: ClaimedAlert, what: str, func: Callable[..., None], *args: object
    ) -> bool:
        """Run one outcome's transaction, again after a short pause when the database fails
        (a lock, a blip); False when it never went through: the row then stays `sending` under
        our lease and its next claim, after the lease, reconciles before sending."""
        for attempt, pause in enumerate((*RECORD_PAUSES, None), start=1):
            try:
                await asyncio.to_thread(func, *args)
                return True
            except Exception as exc:
                log.error(
                    f"alert {what} could not be recorded",
                    alert=claim.id,
                    channel=claim.channel,
                    attempt=attempt,
                    retry_in=pause,
                    error=_short(exc),
                )
            if pause is not None:
                await asyncio.sleep(pause)
        return False

    async def _complete_sent(
        self, claim: ClaimedAlert, ref: str, *, reconciled: bool = False
    ) -> None:
        """Record a send that happened. If the database will not take it, keep it: it is retried
        every tick and the row stays out of our claims, so it is never sent twice by us."""
        if await self._record(claim, "sent", self._finish_sent, claim, ref, reconciled):
            return
        self._unrecorded[claim.id] = (claim, ref, reconciled)
        log.error(
            "alert sent but not recorded; kept in memory and recorded when the database allows",
            alert=claim.id,
            channel=claim.channel,
            destination=claim.destination,
        )

    async def _record_unrecorded(self) -> None:
        """Completions a failing database refused earlier, before anything new is claimed."""
        for alert_id, (claim, ref, reconciled) in list(self._unrecorded.items()):
            try:
                await asyncio.to_thread(self._finish_sent, claim, ref, reconciled)
            except Exception as exc:
                log.warning(
                    "alert completion still not recorded", alert=alert_id, error=_short(exc)
                )
                continue
            self._unrecorded.pop(alert_id, None)

    def _report(self, channel: str, outcome: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(channel, outcome)
            except Exception as exc:  # metrics must never break delivery
                log.warning("result callback failed", error=repr(exc)[:200])

    def _finish_sent(self, claim: ClaimedAlert, ref: str, reconciled: bool = False) -> None:
        now = self.clock()
        ok = outbox.mark_sent(self.engine, claim, owner=self.owner, provider_ref=ref, now=now)
        if not ok:  # an earlier try may have committed before its error reached us
            ok = outbox.sent_ref(self.engine, claim.id) == ref[:400]
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
            if claim.probe:
                self._close_breaker(claim, now)
        else:
            log.warning(
                "alert lease lost before completion; another replica owns it", alert=claim.id
            )

    def _finish_error(self, claim: ClaimedAlert, exc: DeliveryError, trips: bool = True) -> None:
        self._report(claim.channel, self._record_error(claim, exc, trips=trips))

    def _record_error(self, claim: ClaimedAlert, exc: DeliveryError, *, trips: bool = True) -> str:
        now = self.clock()
        self.failed_total += 1
        key = self.breakers.get(claim.channel)
        down = trips and key is not None and exc.kind in DOWN_KINDS
        if claim.probe and not down:
            self._close_breaker(claim, now)  # it answered: the target is up
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
            return self._dead(claim, exc.reason, now, cause="permanent failure")
        breaker = None
        if down and key is not None:
            breaker = outbox.breaker_failed(
                self.engine,
                key,
                channel=claim.channel,
                probe=claim.probe,
                now=now,
                error=exc.reason,
                delay=self._probe_delay,
            )
            if breaker.changed:
                log.warning(
                    "delivery target down; its alerts wait for the next probe",
                    target=key,
                    channel=claim.channel,
                    failures=breaker.failures,
                    next_probe_at=breaker.open_until.isoformat() if breaker.open_until else None,
                    reason=exc.reason,
                )
            # The breaker decides when this target is tried again, not the row's own backoff.
            at = breaker.open_until or now
        else:
            delay = backoff(claim.attempts, self.settings.deliver_retry_base_seconds)
            at = now + timedelta(seconds=delay)
        if exc.retry_after:
            at = max(at, now + timedelta(seconds=exc.retry_after))
        deadline = (claim.due_since or now) + self.horizon
        if now >= deadline:
            hours = self.settings.deliver_retry_hours
            reason = f"gave up after {hours:g} h ({claim.attempts} attempts): {exc.reason}"
            outcome = self._dead(claim, reason, now, cause="retry horizon passed")
        else:
            maybe_sent = exc.ambiguous or (
                claim.reconcile_since is not None and exc.reason.startswith("reconciling")
            )
            at = min(at, deadline)  # the last attempt happens at the horizon, not after it
            outbox.retry_later(
                self.engine,
                claim,
                owner=self.owner,
                at=at,
                error=exc.reason,
                maybe_sent=maybe_sent,
            )
            log.warning(
                "alert delivery failed; will retry",
                alert=claim.id,
                channel=claim.channel,
                kind=exc.kind,
                reason=exc.reason,
                retry_in=round((at - now).total_seconds(), 1),
                maybe_sent=maybe_sent,
            )
            outcome = "retry"
        if breaker is not None and breaker.changed:
            self._expire(claim.channel, now, exc.reason)
        return outcome

    def _forget_old_breakers(self) -> None:
        """A target this configuration no longer uses (a new SMTP host) is not down: drop its
        breaker, or /status would show it down for ever."""
        gone = outbox.forget_breakers(self.engine, self.breakers)
        self._breakers_checked = True
        if gone:
            log.info("breakers of targets no longer configured dropped", targets=gone)

    def _probe_delay(self, failures: int) -> float:
        return probe_delay(failures, self.settings.deliver_retry_base_seconds)

    def _close_breaker(self, claim: ClaimedAlert, now: datetime) -> None:
        """Best effort: a breaker left open only costs a probe more."""
        key = self.breakers.get(claim.channel)
        if key is None:
            return
        try:
            was = outbox.close_breaker(self.engine, key, now=now)
        except Exception as exc:
            log.warning("breaker could not be closed", target=key, error=_short(exc))
            return
        if was is not None:
            log.info(
                "delivery target reachable again; breaker closed",
                target=key,
                channel=claim.channel,
                failures=was.failures,
                down_seconds=round((now - (was.opened_at or now)).total_seconds(), 1),
            )

    def _expire(self, channel: str, now: datetime, error: str) -> None:
        """A target still down: rows it held back past their horizon are given up on."""
        hours = self.settings.deliver_retry_hours
        reason = f"gave up after {hours:g} h: {channel} unreachable ({error})"
        for gone in outbox.expire_waiting(
            self.engine, channel, due_before=now - self.horizon, now=now, error=reason
        ):
            self._loud(gone.id, gone.watchlist_id, channel, gone.destination, reason, None)
            self._report(channel, "dead")

    def _dead(self, claim: ClaimedAlert, error: str, now: datetime, *, cause: str) -> str:
        if not outbox.mark_dead(self.engine, claim, owner=self.owner, error=error, now=now):
            log.warning(
                "alert lease lost before completion; another replica owns it", alert=claim.id
            )
            return "lost"
        self._loud(
            claim.id,
            claim.watchlist_id,
            claim.channel,
            claim.destination,
            error,
            claim.attempts,
            cause=cause,
        )
        return "dead"

    @staticmethod
    def _loud(
        alert_id: int,
        watchlist: str,
        channel: str,
        destination: str,
        error: str,
        attempts: int | None,
        *,
        cause: str = "retry horizon passed",
    ) -> None:
        """The one ERROR line of an alert given up on: what, where, why, and how to resend."""
        log.error(
            "alert dead",
            alert=alert_id,
            watchlist=watchlist,
            channel=channel,
            destination=destination,
            attempts=attempts,
            cause=cause,
            error=scrub(error)[:500],
            hint=f"fix the cause, then `monitor alerts retry {alert_id}` (or --dead)",
        )

    def _finish_dead(self, claim: ClaimedAlert, error: str) -> None:
        self._report(claim.channel, self._dead(claim, error, self.clock(), cause="undeliverable"))

    def _unclaim(self, claims: list[ClaimedAlert]) -> None:
        outbox.give_back(self.engine, claims, owner=self.owner, now=self.clock())

    def _release(self, claim: ClaimedAlert) -> None:
        outbox.release_claims(self.engine, self.owner, [claim.id], now=self.clock())

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
        await self._record_unrecorded()
        for alert_id, (claim, _ref, _r) in self._unrecorded.items():
            log.error(
                "alert sent but not recorded at shutdown; its next claim looks it up first "
                "(Slack), email may be sent again",
                alert=alert_id,
                channel=claim.channel,
            )
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release_all)

    def _release_all(self) -> None:
        released = outbox.release_claims(self.engine, self.owner, now=self.clock())
        if released:
            log.info("alerts released for another replica", alerts=released)

    async def aclose(self) -> None:
        for notifier in self.notifiers.values():
            with contextlib.suppress(Exception):
                await notifier.aclose()


def _short(exc: BaseException) -> str:
    """One line of an exception, scrubbed of secrets (database URLs, tokens)."""
    lines = str(exc).strip().splitlines()
    return scrub(f"{type(exc).__name__}: {lines[0] if lines else ''}")[:300]


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
