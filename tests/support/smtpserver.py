"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records mail, defers, refuses or is down.

`Controller(port=0)` cannot work (its start-up self-check connects to port 0), so a free port is
picked first and kept across `down()`/`up()`, letting a test take the server away and back.
`on_receive` runs after a mail is accepted, before the server answers 250.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.slackfake import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.server
        with owner.lock:
            owner.attempts += 1
            if owner.mode == "4xx" and owner._use_failure():
                return "451 4.3.0 Temporary failure, try again later"
            if owner.mode == "5xx" and owner._use_failure():
                return "550 5.7.1 Message refused by policy"
            mail = Received(
                str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content)
            )
            owner.received.append(mail)
        if owner.on_receive is not None:
            owner.on_receive(mail)
        return "250 2.0.0 OK"


class SmtpServer:
    """Modes: "accept", "4xx", "5xx" (optionally only for the next `times` messages), down."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.tls_context = tls_context  # set: STARTTLS offered and required
        self.port = free_port()
        self.host = "127.0.0.1"
        self.received: list[Received] = []
        self.mode = "accept"
        self.attempts = 0
        self.lock = threading.Lock()
        self.on_receive: Callable[[Received], None] | None = None
        self._times: int | None = None
        self._controller: Controller | None = None

    def _use_failure(self) -> bool:
        if self._times is None:
            return True
        if self._times <= 0:
            return False
        self._times -= 1
        return True

    def set_mode(self, mode: str, times: int | None = None) -> None:
        with self.lock:
            self.mode = mode
            self._times = times

    def up(self) -> SmtpServer:
        if self._controller is None:
            tls: dict[str, Any] = {}
            if self.tls_context is not None:
                tls = {"tls_context": self.tls_context, "require_starttls": True}
            self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **tls)
            self._controller.start()
        return self

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
