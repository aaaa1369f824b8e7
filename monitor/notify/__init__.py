"""Senders behind one small Protocol, and the one error type every sender raises.

The dispatcher decides retry/dead/reconcile from `DeliveryError` alone, so each sender
classifies its library's exceptions once, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from monitor.render import AlertContent

DeliveryKind = Literal[
    "rate_limited",  # 429: wait Retry-After, not counted as an attempt
    "server_error",  # 5xx from the provider
    "timeout",
    "connection",  # could not connect: nothing was sent
    "dropped",  # connection lost after the request went out: maybe sent
    "rejected",  # the provider refused this message for good (ok:false, SMTP 5xx)
    "deferred",  # SMTP 4xx: try later
    "config",  # our configuration is wrong (invalid_auth, channel_not_found, SMTP 535)
]


class DeliveryError(Exception):
    """A failed send. `ambiguous` means the provider may have accepted the message anyway."""

    def __init__(
        self,
        kind: DeliveryKind,
        reason: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        self.ambiguous = ambiguous


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbox row ready to send."""

    alert_id: int
    dedup_key: str
    destination: str  # Slack channel, email address or "console"
    content: AlertContent
    thread_ref: str | None = None  # Slack "channel ts" / email Message-ID of the first alert
    channel_ref: str | None = None  # Slack: the channel id Slack answered with for this name


class Notifier(Protocol):
    channel: str  # "slack" | "email" | "console"
    # What an outage takes down (the Slack API host, the SMTP server): the key of the circuit
    # breaker its rows share across replicas; None for senders that cannot be down (console).
    target: str | None

    async def send(self, message: Outgoing) -> str:
        """Deliver; return the provider reference (Slack "channel ts", Message-ID, …)."""
        ...

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        """The reference of an earlier delivery of this alert, if the provider can tell."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["DeliveryError", "DeliveryKind", "Notifier", "Outgoing"]
