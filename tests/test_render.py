"""Rendering and escaping: hostile article text reaches Slack, email and terminals harmlessly."""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import render
from monitor.notify import Outgoing
from monitor.notify.email import build_message, message_id
from monitor.render import (
    AlertContent,
    header_safe,
    render_console,
    render_email,
    render_slack,
    safe_link,
    slack_text,
)

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "<!channel> Kim Jong Un letter @here"


def content(**kw: object) -> AlertContent:
    base: dict[str, object] = {
        "kind": "alert",
        "watchlist_id": "nk",
        "watchlist_name": "NK desk",
        "title": "Kim Jong Un writes to Putin",
        "url": "https://example.org/a?x=1",
        "source": "Example News",
        "published": "2026-11-22T08:00:00+00:00",
        "score": 3.5,
        "terms": ("Kim Jong Un",),
        "snippet": "Leader Kim Jong Un sent a letter.",
        "highlights": ((7, 18),),
    }
    base.update(kw)
    return AlertContent(**base)  # type: ignore[arg-type]


def all_text(message: render.SlackMessage) -> str:
    return message.text + "\n" + json.dumps(message.blocks, ensure_ascii=False)


def test_mention_injection_pings_nobody() -> None:
    msg = render_slack(
        content(title=HOSTILE, snippet=HOSTILE + " <@U123> <#C1> <!everyone>", highlights=())
    )
    text = all_text(msg)
    # The only control sequences left are ours: the date token and the article link.
    controls = re.findall(r"<[!@#][^>]*>", text)
    assert all(c.startswith("<!date^") for c in controls), controls
    assert "<@U123>" not in text and "<#C1>" not in text
    assert not re.search(r"@(here|channel|everyone)\b", text)
    assert msg.blocks[0]["text"]["text"] == "\u2039!channel\u203a Kim Jong Un letter @\u2060here"
    assert "&lt;!channel&gt;" in msg.text
    section = msg.blocks[1]["text"]
    assert section["verbatim"] is True


def test_post_arguments_disable_parsing() -> None:
    # Defence in depth lives in the sender: verified on the wire in test_deliver.
    assert render_slack(content()).blocks[0]["type"] == "header"


def test_highlights_are_bold_and_link_is_safe() -> None:
    msg = render_slack(content())
    section = msg.blocks[1]["text"]["text"]
    assert "*Kim Jong Un*" in section
    assert "<https://example.org/a?x=1|Read the article>" in section
    context = msg.blocks[2]["elements"][0]["text"]
    assert "NK desk" in context and "3.5" in context and "Example News" in context
    assert context.count("<!date^") == 1


def test_formatting_spoofs_are_neutralised() -> None:
    msg = render_slack(
        content(title="*URGENT* ~fake~ `code`", snippet="*bold spoof*", highlights=())
    )
    body = msg.blocks[1]["text"]["text"]
    assert "*" not in body.split("\n")[0]
    # mrkdwn parts get look-alikes; the plain_text header shows the title as written.
    assert "`" not in msg.text and "*URGENT*" not in msg.text
    assert msg.blocks[0]["text"]["text"] == "*URGENT* ~fake~ `code`"


def test_zero_width_and_bidi_are_stripped() -> None:
    msg = render_slack(
        content(title="Kim\u200b Jong\u202e Un\u2060", snippet="a\u200db\x1bc", highlights=())
    )
    text = all_text(msg)
    for ch in ("\u200b", "\u202e", "\u200d", "\x1b"):
        assert ch not in text
    assert "\u2060" not in msg.blocks[0]["text"]["text"]


def test_long_title_fits_header_limit() -> None:
    msg = render_slack(content(title="&" * 10_000))
    header = msg.blocks[0]["text"]["text"]
    assert len(header) <= render.HEADER_LIMIT
    assert header.startswith("&&&")  # plain_text takes no entities
    assert len(msg.text) <= render.FALLBACK_LIMIT
    assert not re.search(r"&(?!amp;)", msg.text.replace("&amp;", "")), "an entity was split"


@given(st.text(max_size=400), st.integers(min_value=5, max_value=300))
@settings(max_examples=300, deadline=None)
def test_slack_text_properties(raw: str, limit: int) -> None:
    out = slack_text(raw, limit)
    assert len(out) <= limit
    assert "<" not in out and ">" not in out
    assert not re.search(r"@(here|channel|everyone)\b", out, re.I)
    assert not any(ch in out for ch in "\u200b\u202e\u2066\x00\x1b")
    assert re.sub(r"&(amp|lt|gt);", "", out).count("&") == 0


def test_safe_link() -> None:
    assert safe_link("javascript:alert(1)") is None
    assert safe_link("data:text/html,x") is None
    assert safe_link("/relative") is None
    link = safe_link("https://evil.example/a|b>c d")
    assert link is not None
    assert "|" not in link and ">" not in link and " " not in link
    msg = render_slack(content(url="javascript:alert(1)"))
    assert "javascript" not in all_text(msg)


def test_header_safe_blocks_crlf_and_encoded_words() -> None:
    crlf = header_safe("Hello\r\nBcc: victim@example.org")
    assert "\n" not in crlf and "\r" not in crlf
    encoded = header_safe("A subject=?UTF-8?Q?=0A?=Bcc: injected@example.com")
    assert "=?" not in encoded
    assert header_safe("x" * 500, 50).endswith("…") and len(header_safe("x" * 500, 50)) == 50


def _serialized(title: str) -> EmailMessage:
    msg = build_message(
        Outgoing(7, "a:nk:1:email:desk@example.org", "desk@example.org", content(title=title)),
        sender="monitor@example.org",
        domain="example.org",
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_email_header_injection_fails_without_header_safe() -> None:
    """The CPython encoded-word hole is real here, so header_safe is what stops it."""
    raw = EmailMessage(policy=email.policy.SMTP)
    raw["Subject"] = "A subject=?UTF-8?Q?=0A?=Bcc: injected@example.com"
    raw.set_content("x")
    reparsed = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    vulnerable = reparsed["Bcc"] is not None
    safe = _serialized("A subject=?UTF-8?Q?=0A?=Bcc: injected@example.com")
    assert safe["Bcc"] is None
    assert "=?" not in str(safe["Subject"])
    if not vulnerable:  # a fixed CPython: still no Bcc through our path
        assert safe["Bcc"] is None


def test_email_crlf_and_script() -> None:
    parsed = _serialized("Evil\r\nBcc: victim@example.org <script>alert(1)</script> & co")
    assert parsed["Bcc"] is None
    assert str(parsed["Subject"]).startswith("[NK desk] Evil Bcc:")
    html_part = parsed.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&amp; co" in html
    text_part = parsed.get_body(("plain",))
    assert text_part is not None and "Kim Jong Un" in text_part.get_content()
    assert parsed["Message-ID"] == message_id("a:nk:1:email:desk@example.org", "example.org")
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_email_html_attribute_injection() -> None:
    parts = render_email(
        content(title='"><img src=x onerror=alert(1)>', url='https://ex.org/"onmouseover="x')
    )
    assert "<img" not in parts.html
    assert 'onmouseover="x' not in parts.html


def test_message_id_is_stable() -> None:
    assert message_id("k", "d") == message_id("k", "d")
    assert message_id("k", "d") != message_id("k2", "d")


def test_digest_lists_copies_under_the_first() -> None:
    items = (
        content(title="Launch", story_id=5, source="A"),
        content(kind="also", title="Launch (copy)", story_id=5, source="B"),
        content(title="Other", story_id=6, source="C"),
    )
    digest = AlertContent(
        kind="digest",
        watchlist_id="nk",
        watchlist_name="NK desk",
        items=items,
        total=3,
        period="daily 08:00 UTC",
    )
    msg = render_slack(digest)
    text = all_text(msg)
    assert "also reported by B" in text
    assert text.count("Launch (copy)") == 0
    parts = render_email(digest)
    assert "Also reported by B" in parts.text and "Other" in parts.html
    assert parts.subject == "[NK desk] Digest: 3 articles"


def test_console_is_readable_and_safe() -> None:
    out = render_console(content(title="Kim \x1b[31mred\x1b[0m"), "console")
    assert "\x1b" not in out
    assert "ALERT · NK desk" in out and "https://example.org/a?x=1" in out
    assert "[Kim Jong Un]" in out


def test_content_round_trips_json() -> None:
    c = content(items=(content(kind="also"),), extra={"digest": "hourly"})
    assert AlertContent.from_json(c.to_json()) == c



def test_a_summary_says_whether_it_lists_new_or_updated_articles() -> None:
    items = (content(kind="update"), content(kind="update"))
    new = content(kind="summary", items=items, total=2, extra={"threshold": "1"})
    edits = content(kind="summary", items=items, total=2, extra={"threshold": "1", "updates": "2"})
    mixed = content(kind="summary", items=items, total=3, extra={"threshold": "1", "updates": "2"})
    assert "2 new articles from" in render_slack(new).text
    assert "2 updated articles from" in render_slack(edits).text
    assert "3 new or updated articles from" in render_email(mixed).subject
    parts = render_email(edits)
    assert "2 updated articles from" in parts.text and "2 updated articles from" in parts.html
