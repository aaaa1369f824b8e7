"""JSON logs: one object per line, stable keys, secrets redacted, noisy libraries quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from monitor import logs
from monitor.settings import Settings, get_settings

SENTINELS = ("xoxb-SENTINEL-1", "pw-SENTINEL-2", "SENTINEL-3", "SENTINEL-4", "SENTINEL-5")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Logs configured the way the CLI does it, with the settings' secrets in the environment."""
    monkeypatch.setenv("MONITOR_SLACK_BOT_TOKEN", "xoxb-SENTINEL-1")
    monkeypatch.setenv("MONITOR_SMTP_PASSWORD", "pw-SENTINEL-2")
    get_settings.cache_clear()
    buf = io.StringIO()
    logs.configure("INFO", "json", buf)
    yield buf
    get_settings.cache_clear()
    logs.configure("INFO", "json")


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_every_line_is_json_with_stable_keys(captured: io.StringIO) -> None:
    log = logs.get_logger("monitor.test")
    log.info(
        "alert sent",
        source="nknews",
        url="https://feeds.example/rss?token=SENTINEL-3&x=1",
        article=42,
        watchlist="missile-tests",
        destination="#nk-desk",
        alert=7,
    )
    logging.getLogger("somelib").warning("plain stdlib line %s", "ok")
    records = lines(captured)
    assert len(records) == 2
    first = records[0]
    assert first["event"] == "alert sent" and first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    for key, value in {
        "source": "nknews",
        "article": 42,
        "watchlist": "missile-tests",
        "destination": "#nk-desk",
        "alert": 7,
    }.items():
        assert first[key] == value
    assert first["url"] == "https://feeds.example/rss?token=[redacted]&x=[redacted]"
    assert records[1]["logger"] == "somelib" and records[1]["level"] == "warning"


def test_secrets_never_reach_the_output(captured: io.StringIO) -> None:
    log = logs.get_logger("monitor.test")
    log.info("config", slack_bot_token="xoxb-SENTINEL-1", smtp_password="pw-SENTINEL-2")
    log.info("nested", payload={"authorization": "Bearer SENTINEL-4", "items": ["xoxb-SENTINEL-1"]})
    log.warning("db", error="connection to postgresql+psycopg://u:pw-SENTINEL-2@db/monitor failed")
    log.warning("feed", error="GET https://user:pw-SENTINEL-2@feeds.example/a?api_key=SENTINEL-3")
    log.info("hook", target="https://hooks.slack.com/services/T000/B000/SENTINEL-4")
    try:
        token = "xoxb-SENTINEL-1"  # a local variable: must not be dumped with the traceback
        raise RuntimeError(f"slack auth failed for {token}")
    except RuntimeError:
        log.exception("delivery failed")
    try:
        raise ConnectionError("smtp login pw-SENTINEL-2 refused")
    except ConnectionError:
        logging.getLogger("aiosmtplib.fake").exception(
            "library failure %s", "GET https://feed.example/a?token=SENTINEL-3"
        )
    logging.getLogger("slack_sdk.webhook").warning(
        "retrying https://hooks.slack.com/services/T/B/SENTINEL-4"
    )
    # Source URLs: any parameter name, under any key, in any shape a value can take.
    signed = (
        "https://b.example/f.xml?access_token=SENTINEL-3&X-Amz-Signature=SENTINEL-5#t=SENTINEL-4"
    )
    log.warning("moved", moved_to=signed, reason=f"parse error in {signed}: bozo")
    log.info("objects", target=httpx.URL(signed), seen={signed: 1}, hops=[signed, (signed,)])
    log.info("schemeless", url="b.example/f.xml?sig=SENTINEL-3")
    logging.getLogger("feedparser.fake").warning("could not fetch '%s'", signed)
    out = captured.getvalue()
    for sentinel in SENTINELS:
        assert sentinel not in out, (sentinel, out)
    records = lines(captured)
    assert len(records) == 12
    moved = next(r for r in records if r["event"] == "moved")
    shown = (
        "https://b.example/f.xml?access_token=[redacted]&X-Amz-Signature=[redacted]#t=[redacted]"
    )
    assert moved["moved_to"] == shown and moved["reason"] == f"parse error in {shown}: bozo"
    failure = next(r for r in records if r["event"] == "delivery failed")
    exception = failure["exception"]
    assert isinstance(exception, list) and exception[0]["exc_type"] == "RuntimeError"
    assert "locals" not in json.dumps(exception)
    library = next(r for r in records if r.get("logger") == "aiosmtplib.fake")
    assert isinstance(library["exception"], list)  # stdlib tracebacks are structured too


async def test_httpx_request_lines_are_quiet(captured: io.StringIO) -> None:
    """httpx logs every request URL (with its query) at INFO; we keep it at WARNING."""

    async def feed(_request: web.Request) -> web.Response:
        return web.Response(text="<rss/>")

    app = web.Application()
    app.router.add_get("/feed", feed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/feed?token=SENTINEL-3")
        assert response.status_code == 200
    finally:
        await runner.cleanup()
    assert "SENTINEL-3" not in captured.getvalue()
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("slack_sdk").getEffectiveLevel() >= logging.WARNING


def test_scrub() -> None:
    assert logs.scrub("xoxp-123-abc and xapp-1-X") == "xox?-[redacted] and xapp-1-X"
    assert "pw" not in logs.scrub("smtp://me:pw@mail.example:587")
    assert logs.scrub("GET https://h.example/a?key=k1") == "GET https://h.example/a?key=[redacted]"
    assert logs.scrub("no secrets here") == "no secrets here"


def test_console_format_is_readable() -> None:
    buf = io.StringIO()
    logs.configure("DEBUG", "console", buf)
    try:
        logs.get_logger("monitor.test").info("hello", source="a", token="xoxb-SENTINEL-1")
    finally:
        logs.configure("INFO", "json")
    out = buf.getvalue()
    assert "hello" in out and "source=a" in out and "SENTINEL" not in out


def test_settings_secrets_cover_urls_and_tokens() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://monitor:pw-SENTINEL-2@db:5432/monitor",
        slack_bot_token="xoxb-SENTINEL-1",
    )
    found = logs.settings_secrets(settings)
    assert "pw-SENTINEL-2" in found and "xoxb-SENTINEL-1" in found
    logs.add_secrets(["tiny", None, "plain-SENTINEL-4-long"])
    assert logs.scrub("x plain-SENTINEL-4-long tiny") == "x [redacted] tiny"
