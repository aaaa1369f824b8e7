"""What the demo prints: Slack messages and emails drawn for a terminal, rounds, the summary.

Everything goes through rich `Text` objects, never markup strings, so article text cannot
inject styles; rich drops colour by itself when the output is not a terminal. Slack's mrkdwn
(already escaped by `render_slack`) is turned back into styled text: `*bold*`, `_italic_`,
`<url|label>` links and `<!date^…|fallback>` dates.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from monitor.render import EmailParts, SlackMessage, console_safe

_TOKEN = re.compile(
    r"<(?P<target>[^>|]+)(?:\|(?P<label>[^>]*))?>"
    r"|\*(?P<bold>[^*\n]+)\*"
    r"|(?<!\w)_(?P<italic>[^_\n]+)_(?!\w)"
)


def _unescape(text: str) -> str:
    return console_safe(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def mrkdwn(text: str, base: str = "") -> Text:
    """Slack mrkdwn → styled terminal text (links keep their address, dates their fallback)."""
    out = Text(style=base)
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(_unescape(text[pos : m.start()]))
        if m.group("target") is not None:
            target, label = m.group("target"), m.group("label")
            if target.startswith("!date"):
                out.append(_unescape(label or ""))
            else:
                shown = _unescape(label or target)
                out.append(shown, style="underline")
                if label:
                    out.append(f" ({_unescape(target)})", style="dim")
        elif m.group("bold") is not None:
            out.append(_unescape(m.group("bold")), style="bold")
        else:
            out.append(_unescape(m.group("italic")), style="italic")
        pos = m.end()
    out.append(_unescape(text[pos:]))
    return out


def _block_text(block: dict[str, Any]) -> list[Text]:
    kind = block.get("type")
    if kind == "header":
        return [Text(console_safe(block["text"]["text"]), style="bold")]
    if kind == "section":
        return [mrkdwn(block["text"]["text"])]
    if kind == "context":
        return [mrkdwn(e.get("text", ""), base="dim") for e in block.get("elements", [])]
    return []


def slack_panel(message: SlackMessage, destination: str, *, reply_to: int | None) -> Panel:
    """One Slack message as a panel; a thread reply is marked with the alert it answers."""
    lines: list[Text] = []
    for block in message.blocks:
        lines.extend(_block_text(block))
    title = f"Slack → {destination}"
    if reply_to is not None:
        title += f" · reply in the thread of alert #{reply_to}"
    return Panel(
        Group(*lines),
        title=Text(title, style="cyan"),
        title_align="left",
        border_style="cyan" if reply_to is None else "blue",
        padding=(0, 1),
    )


def email_panel(parts: EmailParts) -> Panel:
    body = Text(console_safe(parts.text.rstrip()))
    head = Text("Subject: ", style="bold").append(console_safe(parts.subject))
    return Panel(
        Group(head, Text(""), body),
        title=Text("the same alert as an email (text part)", style="magenta"),
        title_align="left",
        border_style="magenta",
        padding=(0, 1),
    )


def heading(console: Console, text: str) -> None:
    console.print()
    console.print(Text(text, style="bold yellow"))


def line(console: Console, *parts: tuple[str, str] | str) -> None:
    """Print pieces of text, each plain or (text, style); nothing is read as markup."""
    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append(console_safe(part[0]), style=part[1])
        else:
            out.append(console_safe(part))
    console.print(out)
