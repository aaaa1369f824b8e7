"""Console delivery: alerts printed readably, so a newcomer without Slack or SMTP sees them."""

from __future__ import annotations

import sys
from typing import TextIO

from monitor.notify import Outgoing
from monitor.render import render_console


class ConsoleNotifier:
    channel = "console"
    target: str | None = None  # stdout is never "down": no breaker

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(self, message: Outgoing) -> str:
        out = self.stream or sys.stdout
        out.write(render_console(message.content, message.destination))
        out.flush()
        return "console"

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
