"""Email through a real aiosmtpd server: content, threading, deferrals, refusals, outages."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.clock import utcnow
from monitor.deliver import Dispatcher
from monitor.notify.email import mail_domain, message_id
from monitor.settings import Settings
from tests.support.alerts import enqueue, item, later, rows, run, run_due, settings, watchlist
from tests.support.smtpserver import SmtpServer

DEST = "desk@example.org"



@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def cfg_for(server: SmtpServer) -> Settings:
    return settings(
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_security="none",
        smtp_from="alerts@monitor.example",
        smtp_timeout=5,
    )


def queue(engine: Engine, cfg: Settings, *, title: str | None = None, n: int = 1) -> None:
    items = [item(i, title=title, story=(i, True)) for i in range(1, n + 1)]
    enqueue(engine, items, [watchlist(slack=(), email=(DEST,))], cfg, utcnow())


def test_email_is_multipart_with_stable_headers(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    queue(sq_engine, cfg, title="Kim Jong Un <script>alert(1)</script> & co")
    assert run(Dispatcher(cfg, sq_engine, owner="a")) == 1
    (mail,) = smtp.received
    assert mail.rcpt_tos == [DEST] and mail.mail_from == "alerts@monitor.example"
    msg = mail.message
    assert msg["Subject"] == "[NK desk] Kim Jong Un <script>alert(1)</script> & co"
    (row,) = rows(sq_engine)
    assert msg["Message-ID"] == message_id(row.dedup_key, "monitor.example")
    assert row.provider_ref == msg["Message-ID"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "<mark><b>Kim</b></mark>" in html


def test_header_injection_through_the_whole_path(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    queue(
        sq_engine, cfg, title="Hi=?UTF-8?Q?=0A?=Bcc: injected@evil.example\r\nBcc: b@evil.example"
    )
    run(Dispatcher(cfg, sq_engine, owner="a"))
    (mail,) = smtp.received
    assert mail.rcpt_tos == [DEST]
    msg = mail.message
    assert msg["Bcc"] is None and "injected" not in str(msg.get("Bcc", ""))
    header_block = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in header_block and b"=?UTF-8?Q?=0A?=" not in header_block


def test_followup_threads_under_the_first_mail(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    wl = watchlist(slack=(), email=(DEST,))
    enqueue(sq_engine, [item(1, story=(3, True))], [wl], cfg, utcnow())
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    run(dispatcher)
    enqueue(sq_engine, [item(2, source="b", story=(3, False))], [wl], cfg, utcnow(), source="b")
    run(dispatcher)
    first, second = (m.message for m in smtp.received)
    assert second["In-Reply-To"] == first["Message-ID"] == second["References"]
    assert second["Subject"].startswith("[NK desk] Also reported by B News")


def test_4xx_is_retried_and_delivered_once(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    queue(sq_engine, cfg)
    smtp.set_mode("4xx", times=1)
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 0
    (row,) = rows(sq_engine)
    assert row.status == "retry" and "451" in (row.last_error or "")
    assert run_due(dispatcher) == 1
    assert len(smtp.received) == 1 and smtp.attempts == 2


def test_5xx_is_dead_with_the_reason(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    queue(sq_engine, cfg)
    smtp.set_mode("5xx")
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    run(dispatcher)
    run_due(dispatcher)
    (row,) = rows(sq_engine)
    assert row.status == "dead" and "550" in (row.last_error or "")
    assert smtp.attempts == 1


def test_server_down_is_retried(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    queue(sq_engine, cfg)
    smtp.down()
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 0
    (row,) = rows(sq_engine)
    assert row.status == "retry" and "connect" in (row.last_error or "")
    assert row.attempt_started_at is None  # nothing can have been sent
    smtp.up()
    assert run_due(dispatcher) == 1
    assert len(smtp.received) == 1


def test_mail_domain() -> None:
    assert mail_domain("Alerts <alerts@news.example>") == "news.example"
    assert mail_domain("nobody") == "localhost"


def test_digest_is_one_email_per_period(sq_engine: Engine, smtp: SmtpServer) -> None:
    cfg = cfg_for(smtp)
    wl = watchlist(slack=(), email=(DEST,), mode="digest", digest="daily 08:00 Asia/Seoul")
    items = [item(1, story=(1, True)), item(2, source="b", story=(1, False)), item(3)]
    enqueue(sq_engine, items, [wl], cfg, utcnow())
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 0 and smtp.received == []
    assert run(dispatcher, later(86_400 + 60)) == 1
    (mail,) = smtp.received
    msg = mail.message
    assert msg["Subject"] == "[NK desk] Digest: 3 articles"
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "daily 08:00 Asia/Seoul" in body and "Also reported by SRC News" in body
    assert body.count("Kim Jong Un story") == 2  # the copy is listed under its story
    assert run(dispatcher, later(86_400 + 120)) == 0  # the period is sent once


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("trusted", [False, True])
def test_starttls_checks_the_certificate(
    sq_engine: Engine, certificate: tuple[Path, Path], trusted: bool
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with SmtpServer(tls_context=context) as server:
        cfg = settings(
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_security="starttls",
            smtp_ca_file=str(cert) if trusted else None,
            smtp_timeout=5,
        )
        queue(sq_engine, cfg)
        run(Dispatcher(cfg, sq_engine, owner="a"))
        (row,) = rows(sq_engine)
        if trusted:
            assert row.status == "sent" and len(server.received) == 1
        else:
            assert row.status == "dead" and "MONITOR_SMTP_CA_FILE" in (row.last_error or "")
            assert server.received == []
