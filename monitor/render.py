"""Alert content → Slack blocks, email parts and console text, with every escape in one place.

Pure: takes plain values, does no I/O. Article text is hostile (feeds are written by strangers),
so each sink gets its own escaper: Slack mrkdwn (`&<>` entities, defanged broadcasts, no
formatting spoofs), email headers (no CR/LF, controls or RFC 2047 encoded words), HTML (Jinja2
autoescape) and terminals (no escape sequences).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from monitor.clock import as_utc
from monitor.model import AlertKind

if TYPE_CHECKING:
    import jinja2

HEADER_LIMIT = 150  # Slack header block, plain_text
SECTION_LIMIT = 3000  # Slack section text
FALLBACK_LIMIT = 3000
SUBJECT_LIMIT = 200
MAX_LIST = 40  # items listed in one summary or digest message (Slack: 50 blocks at most)


# --------------------------------------------------------------------------- content values


@dataclass(frozen=True, slots=True)
class AlertContent:
    """Everything a message shows, stored as JSON in the outbox row (rendered at send time)."""

    kind: AlertKind
    watchlist_id: str
    watchlist_name: str
    title: str = ""
    url: str = ""
    source: str = ""
    published: str | None = None  # ISO 8601 UTC
    score: float = 0.0
    terms: tuple[str, ...] = ()
    snippet: str = ""
    highlights: tuple[tuple[int, int], ...] = ()
    story_id: int | None = None
    items: tuple[AlertContent, ...] = ()  # summary and digest entries
    total: int = 0  # summary/digest: how many items in all (items may be capped)
    period: str = ""  # digest: the schedule text
    extra: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # the watchlist model's decision and why (empty: the query alone)
    language: str = ""  # the article's language by name ("Polish"); empty when unknown

    @property
    def outlet(self) -> str:
        """The outlet with its language, as follow-ups name it: "PAP (Polish)"."""
        source = self.source or "another outlet"
        return f"{source} ({self.language})" if self.language else source

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> AlertContent:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertContent:
        return cls(
            kind=AlertKind(data["kind"]),
            watchlist_id=str(data.get("watchlist_id", "")),
            watchlist_name=str(data.get("watchlist_name", "")),
            title=str(data.get("title", "")),
            url=str(data.get("url", "")),
            source=str(data.get("source", "")),
            published=data.get("published"),
            score=float(data.get("score", 0.0)),
            terms=tuple(str(t) for t in data.get("terms", ())),
            snippet=str(data.get("snippet", "")),
            highlights=tuple((int(a), int(b)) for a, b in data.get("highlights", ())),
            story_id=data.get("story_id"),
            items=tuple(cls.from_dict(item) for item in data.get("items", ())),
            total=int(data.get("total", 0)),
            period=str(data.get("period", "")),
            extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
            reason=str(data.get("reason", "")),
            language=str(data.get("language", "")),
        )


@dataclass(frozen=True, slots=True)
class SlackMessage:
    text: str  # notification / screen-reader fallback (mrkdwn, escaped)
    blocks: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class FeedbackMark:
    """A desk action in effect on an alert, as its message shows it."""

    feedback_id: int
    action: str  # a FeedbackAction: relevant, not_relevant, mute
    user: str  # who (display name)


@dataclass(frozen=True, slots=True)
class SlackFeedback:
    """Feedback buttons for one alert: what is in effect decides which buttons show."""

    alert_id: int
    marks: tuple[FeedbackMark, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedbackLink:
    """One signed email action link (made by monitor.feedback, shown as is)."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class EmailParts:
    subject: str  # header-safe already
    text: str
    html: str


# --------------------------------------------------------------------------- escapers

_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Slack formatting characters in untrusted text become look-alikes, so a title cannot fake
# bold, strike-through or code in the alert.
_SPOOF = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.I)
_WS = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")


def strip_controls(text: str, *, keep_newlines: bool = True) -> str:
    """Drop control, format (bidi overrides, zero-width), private-use and unassigned characters."""
    allowed = "\n\t" if keep_newlines else ""
    out = []
    for ch in text:
        if ch in allowed:
            out.append(ch)
        elif ch in "\u2028\u2029\r":
            out.append("\n" if keep_newlines else " ")
        elif unicodedata.category(ch)[0] != "C":
            out.append(ch)
    return "".join(out)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def slack_escape(text: str) -> str:
    """Escape an already-cleaned, already-truncated piece for Slack mrkdwn."""
    text = text.translate(_SPOOF).translate(_ESC)
    return _BROADCAST.sub("@\u2060", text)


def slack_text(text: str, limit: int) -> str:
    """Untrusted text → Slack mrkdwn that pings nobody, links nothing and fits `limit`."""
    clean = strip_controls(text)
    out = slack_escape(truncate(clean, limit))
    while len(out) > limit and clean:  # escaping grew it (& → &amp;): cut more, never mid-entity
        clean = clean[: max(0, len(clean) - (len(out) - limit) - 1)]
        out = slack_escape(truncate(clean, len(clean)) + "…")
    return out


def slack_plain(text: str, limit: int) -> str:
    """Untrusted text → a Slack plain_text field (header): no entities, no markup at all.

    plain_text is not parsed for mentions, but `<` and `>` still become look-alikes so the
    text is harmless however a client treats it, and `&` needs no entity.
    """
    clean = strip_controls(text).replace("\n", " ")
    clean = truncate(clean, limit).replace("<", "\u2039").replace(">", "\u203a")
    return _BROADCAST.sub("@\u2060", clean)


def safe_link(url: str) -> str | None:
    """Only absolute http(s) links, percent-encoded so `|`, `<`, `>` and spaces cannot break out."""
    url = strip_controls(url, keep_newlines=False).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def header_safe(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """A value fit for an email header: one line, no controls, no RFC 2047 encoded words.

    CPython before 3.11.10 decodes `=?UTF-8?Q?=0A?=` into a real newline when it refolds a
    header (CVE-2024-6923), so `=?` never reaches a header.
    """
    text = strip_controls(text, keep_newlines=False)
    text = _WS.sub(" ", text.replace("\n", " ").replace("\t", " "))
    while "=?" in text:
        text = text.replace("=?", "=")
    return truncate(text.strip(), limit)


def console_safe(text: str) -> str:
    """Terminal output: no escape sequences or other controls."""
    return strip_controls(text)


# --------------------------------------------------------------------------- shared pieces


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return as_utc(parsed)


def _human_time(value: str | None) -> str:
    when = _parse_time(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else ""


def _pieces(snippet: str, highlights: tuple[tuple[int, int], ...]) -> list[tuple[str, bool]]:
    """Split a snippet into (text, highlighted) runs; bad or overlapping spans are ignored."""
    runs: list[tuple[str, bool]] = []
    pos = 0
    for start, end in sorted(highlights):
        if start < pos or end <= start or end > len(snippet):
            continue
        if start > pos:
            runs.append((snippet[pos:start], False))
        runs.append((snippet[start:end], True))
        pos = end
    if pos < len(snippet):
        runs.append((snippet[pos:], False))
    return runs


def _clean_snippet(content: AlertContent, limit: int) -> list[tuple[str, bool]]:
    """Snippet runs, cleaned of controls (highlight offsets kept) and cut to `limit` chars."""
    runs: list[tuple[str, bool]] = []
    used = 0
    for text, marked in _pieces(content.snippet, content.highlights):
        text = strip_controls(text).replace("\n", " ")
        if used + len(text) > limit:
            text = truncate(text, max(1, limit - used))
            runs.append((text, marked))
            break
        runs.append((text, marked))
        used += len(text)
    return runs


def _slack_snippet(content: AlertContent, limit: int = 1200) -> str:
    out = []
    for text, marked in _clean_snippet(content, limit):
        esc = slack_escape(text)
        if marked and esc.strip():
            # Bold needs the asterisks to touch the word; move outer spaces out of the mark.
            lead = esc[: len(esc) - len(esc.lstrip())]
            trail = esc[len(esc.rstrip()) :]
            out.append(f"{lead}*{esc.strip()}*{trail}")
        else:
            out.append(esc)
    return "".join(out)


def _slack_link(url: str, label: str) -> str:
    link = safe_link(url)
    return f"<{link}|{label}>" if link else label


def _slack_date(value: str | None) -> str:
    when = _parse_time(value)
    if when is None:
        return ""
    iso = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{iso}>"


def _terms(content: AlertContent) -> str:
    terms = ", ".join(truncate(strip_controls(t, keep_newlines=False), 60) for t in content.terms)
    return truncate(terms, 300)


# --------------------------------------------------------------------------- Slack


def render_slack(content: AlertContent, feedback: SlackFeedback | None = None) -> SlackMessage:
    """Block Kit for one outbox row: header, summary with highlights, context, link, and the
    desk's feedback buttons (alerts and updates, when interactivity is set up)."""
    if content.kind in ("summary", "digest"):
        return _slack_list(content)
    if content.kind == "also":
        return _slack_also(content)
    title = slack_text(content.title or "(no title)", HEADER_LIMIT)
    prefix = "Updated: " if content.kind == "update" else ""
    header = slack_plain(prefix + (content.title or "(no title)"), HEADER_LIMIT)
    summary = _slack_snippet(content)
    link = _slack_link(content.url, "Read the article")
    section = truncate(f"{summary}\n{link}" if summary else link, SECTION_LIMIT)
    context = _slack_context(content)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": section, "verbatim": True}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context, "verbatim": True}]},
    ]
    if feedback is not None:
        blocks.extend(feedback_blocks(feedback))
    source = slack_text(content.source, 100)
    watchlist = slack_text(content.watchlist_name, 100)
    fallback = f"{prefix}[{watchlist}] {title} ({source})"
    return SlackMessage(text=truncate(fallback, FALLBACK_LIMIT), blocks=blocks)


ACTION_PREFIX = "monitor_fb_"
_MARKED = {
    "relevant": "Marked relevant",
    "not_relevant": "Marked not relevant",
    "mute": "Story muted in this channel",
}
_BUTTONS = (("relevant", "Relevant", "primary"), ("not_relevant", "Not relevant", None))


def _button(action: str, label: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{action}",
        "text": {"type": "plain_text", "text": label, "emoji": False},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def feedback_blocks(feedback: SlackFeedback) -> list[dict[str, Any]]:
    """ "Marked … by @name" lines for what is in effect, then the buttons: Relevant / Not
    relevant (or Undo of the label) and Mute story (or Undo of the mute).

    Button values carry the alert id (and the feedback id for Undo); the click is checked
    against the database, never trusted for more."""
    alert = str(feedback.alert_id)
    label = next((m for m in feedback.marks if m.action != "mute"), None)
    mute = next((m for m in feedback.marks if m.action == "mute"), None)
    blocks: list[dict[str, Any]] = []
    lines = [
        f"{_MARKED.get(m.action, m.action)} by @{slack_text(m.user or 'someone', 80)}"
        for m in (label, mute)
        if m is not None
    ]
    if lines:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": " · ".join(lines), "verbatim": True}],
            }
        )
    elements: list[dict[str, Any]] = []
    if label is None:
        elements.extend(_button(a, text, alert, style) for a, text, style in _BUTTONS)
    else:
        elements.append(_button("undo", "Undo", f"{alert}:{label.feedback_id}"))
    if mute is None:
        elements.append(_button("mute", "Mute story", alert))
    else:
        elements.append(_button("unmute", "Unmute story", f"{alert}:{mute.feedback_id}"))
    blocks.append({"type": "actions", "block_id": f"monitor_fb:{alert}", "elements": elements})
    return blocks


def _slack_context(content: AlertContent) -> str:
    parts = [f"*{slack_text(content.source, 100)}*"] if content.source else []
    when = _slack_date(content.published)
    if when:
        parts.append(when)
    matched = _terms(content)
    wl = slack_text(content.watchlist_name, 100)
    parts.append(f"_{wl}_ · score {content.score:.1f}")
    if matched:
        parts.append(f"matched {slack_text(matched, 300)}")
    if content.reason:
        parts.append(slack_text(strip_controls(content.reason, keep_newlines=False), 400))
    return " · ".join(parts)


def _slack_also(content: AlertContent) -> SlackMessage:
    source = slack_text(content.source or "another outlet", 100)
    title = slack_text(content.title or "(no title)", 300)
    language = f" ({slack_text(content.language, 40)})" if content.language else ""
    line = f"Also reported by *{source}*{language}: {_slack_link(content.url, title)}"
    when = _slack_date(content.published)
    if when:
        line += f" · {when}"
    block = {"type": "section", "text": {"type": "mrkdwn", "text": line, "verbatim": True}}
    plain = slack_text(content.outlet, 150)
    return SlackMessage(text=f"Also reported by {plain}: {title}", blocks=[block])


def summary_what(content: AlertContent) -> str:
    """What a flood-guard summary lists: new articles, updated ones (edits count against the
    guard too, `extra["updates"]`), or both."""
    raw = content.extra.get("updates", "")
    updates = int(raw) if raw.isdigit() else 0
    if not updates:
        return "new articles"
    return "updated articles" if updates >= content.total else "new or updated articles"


def _slack_list(content: AlertContent) -> SlackMessage:
    wl = slack_text(content.watchlist_name, 100)
    if content.kind == "summary":
        head = slack_plain(
            f"{content.total} {summary_what(content)} from {content.source or 'one source'}",
            HEADER_LIMIT,
        )
        note = (
            f"More than {content.extra.get('threshold', '?')} matches from one source in one "
            "poll were folded into this summary (flood guard)."
        )
    else:
        head = slack_plain(
            f"Digest: {content.watchlist_name} ({content.total} articles)", HEADER_LIMIT
        )
        note = f"_{wl}_ · {slack_text(content.period, 100)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": False}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": note, "verbatim": True}]},
    ]
    for line in _slack_list_lines(content):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": line, "verbatim": True}}
        )
    hidden = content.total - len(content.items)
    if hidden > 0:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {hidden} more", "verbatim": True}],
            }
        )
    return SlackMessage(text=slack_text(head, HEADER_LIMIT), blocks=blocks[:50])


def _slack_list_lines(content: AlertContent) -> list[str]:
    lines = []
    for entry in group_stories(content.items)[:MAX_LIST]:
        first, others = entry
        title = slack_text(first.title or "(no title)", 200)
        line = f"• {_slack_link(first.url, title)} — {slack_text(first.source, 80)}"
        if content.kind == "summary" and first.watchlist_name:
            line += f" · _{slack_text(first.watchlist_name, 80)}_"
        if others:
            names = ", ".join(slack_text(o.source or "?", 60) for o in others[:10])
            line += f"\n    also reported by {names}"
        lines.append(truncate(line, SECTION_LIMIT))
    return lines


def group_stories(
    items: tuple[AlertContent, ...],
) -> list[tuple[AlertContent, list[AlertContent]]]:
    """Digest entries with later copies of the same story listed under the first one."""
    groups: list[tuple[AlertContent, list[AlertContent]]] = []
    by_story: dict[int, int] = {}
    for item in items:
        if item.story_id is not None and item.story_id in by_story:
            groups[by_story[item.story_id]][1].append(item)
            continue
        if item.story_id is not None:
            by_story[item.story_id] = len(groups)
        groups.append((item, []))
    return groups


# --------------------------------------------------------------------------- email


@lru_cache(maxsize=1)
def _jinja() -> jinja2.Environment:
    import jinja2  # only emails use templates; `monitor poll` and `health` start without it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["clean"] = lambda s: strip_controls(str(s))
    env.filters["link"] = lambda s: safe_link(str(s)) or ""
    env.filters["when"] = _human_time
    return env


def email_subject(content: AlertContent) -> str:
    if content.kind == "digest":
        text = f"[{content.watchlist_name}] Digest: {content.total} articles"
    elif content.kind == "summary":
        what = summary_what(content)
        text = f"[{content.watchlist_name}] {content.total} {what} from {content.source}"
    elif content.kind == "also":
        text = f"[{content.watchlist_name}] Also reported by {content.outlet}: {content.title}"
    elif content.kind == "update":
        text = f"[{content.watchlist_name}] Updated: {content.title}"
    else:
        text = f"[{content.watchlist_name}] {content.title}"
    return header_safe(text, SUBJECT_LIMIT)


def render_email(content: AlertContent, links: tuple[FeedbackLink, ...] = ()) -> EmailParts:
    """Subject plus text and HTML bodies from the templates (HTML autoescaped); `links` are
    the desk's signed feedback links (Relevant / Not relevant / Mute story)."""
    env = _jinja()
    runs = _clean_snippet(content, 2000)
    groups = group_stories(content.items)[:MAX_LIST]
    values = {
        "c": content,
        "runs": runs,
        "groups": groups,
        "hidden": max(0, content.total - len(content.items)),
        "what": summary_what(content),
        "links": [(link.label, safe_link(link.url) or "") for link in links],
    }
    name = "list" if content.kind in ("summary", "digest") else "alert"
    text = env.get_template(f"email_{name}.txt").render(**values)
    html = env.get_template(f"email_{name}.html").render(**values)
    return EmailParts(subject=email_subject(content), text=text, html=html)


# --------------------------------------------------------------------------- console


def render_console(content: AlertContent, destination: str = "console") -> str:
    """A readable block for the terminal when neither Slack nor email is configured."""
    c = content
    rule = "─" * 72
    label = {
        "alert": "ALERT",
        "update": "UPDATE",
        "also": "ALSO REPORTED",
        "summary": "SUMMARY",
        "digest": "DIGEST",
    }[c.kind]
    lines = [rule, console_safe(f"{label} · {c.watchlist_name} → {destination}")]
    if c.kind in ("summary", "digest"):
        lines.append(console_safe(f"{c.total} articles" + (f" · {c.period}" if c.period else "")))
        for first, others in group_stories(c.items)[:MAX_LIST]:
            lines.append(console_safe(f"  • {truncate(first.title, 160)} ({first.source})"))
            if first.url:
                lines.append(console_safe(f"    {first.url}"))
            if others:
                names = ", ".join(o.source for o in others[:10])
                lines.append(console_safe(f"    also reported by {names}"))
    else:
        lines.append(console_safe(truncate(c.title or "(no title)", 300)))
        source = c.outlet if c.kind == "also" else c.source
        meta = [source, _human_time(c.published), f"score {c.score:.1f}"]
        lines.append(console_safe(" · ".join(m for m in meta if m)))
        if c.terms:
            lines.append(console_safe(f"matched: {_terms(c)}"))
        if c.reason:
            lines.append(console_safe(f"why: {truncate(c.reason, 400)}"))
        snippet = "".join(
            f"[{text}]" if marked else text for text, marked in _clean_snippet(c, 600)
        )
        if snippet:
            lines.append(console_safe(snippet))
        if c.url:
            lines.append(console_safe(c.url))
    lines.append(rule)
    return "\n".join(lines) + "\n"
