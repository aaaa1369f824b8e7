"""Email over SMTP with aiosmtplib: multipart text + HTML, stable Message-ID, safe headers.

Every header value built from article text goes through `render.header_safe` (no CR/LF,
controls or encoded words), and the Message-ID is derived from the outbox row, so a re-send
after a crash threads with (and is de-duplicated by) the first copy in most mail clients.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import hashlib
import ssl
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage

import aiosmtplib

from monitor.model import AlertKind
from monitor.notify import DeliveryError, Outgoing
from monitor.render import FeedbackLink, header_safe, render_email


def message_id(dedup_key: str, domain: str) -> str:
    """Deterministic per outbox row: the same alert always gets the same Message-ID."""
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:32]
    return f"<alert.{digest}@{domain}>"


def mail_domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >") if "@" in sender else "localhost"
    return header_safe(domain, 200).replace(" ", "") or "localhost"


def build_message(
    message: Outgoing,
    *,
    sender: str,
    domain: str,
    links: Callable[[int], tuple[FeedbackLink, ...]] | None = None,
) -> EmailMessage:
    takes = message.content.kind in (AlertKind.ALERT, AlertKind.UPDATE)
    parts = render_email(message.content, links(message.alert_id) if links and takes else ())
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = Address(display_name="monitor", addr_spec=header_safe(sender, 300))
    msg["To"] = header_safe(message.destination, 300)
    msg["Subject"] = parts.subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = message_id(message.dedup_key, domain)
    if message.thread_ref:
        parent = header_safe(message.thread_ref, 300)
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["List-Id"] = f"monitor alerts <alerts.{domain}>"
    msg.set_content(parts.text)
    msg.add_alternative(parts.html, subtype="html")
    return msg


def classify_smtp_error(exc: Exception) -> DeliveryError:
    """4xx and connection trouble retry; 5xx (a refusal) is final; 535 is our configuration."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [err.code for err in exc.recipients]
        worst = max(codes) if codes else 550
        if all(400 <= c < 500 for c in codes):
            return DeliveryError("deferred", f"SMTP {worst}: recipient deferred", transient=True)
        return DeliveryError(
            "rejected",
            f"SMTP {worst}: recipient refused "
            f"({_msg(exc.recipients[0].message) if exc.recipients else ''})",
            transient=False,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(
            "config",
            f"SMTP {exc.code}: login refused; check MONITOR_SMTP_USERNAME/PASSWORD",
            transient=False,
        )
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError):
        return DeliveryError(
            "connection",
            f"cannot connect to the SMTP server ({type(exc).__name__})",
            transient=True,
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return DeliveryError(
            "timeout", "SMTP server did not answer in time", transient=True, ambiguous=True
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return DeliveryError(
            "dropped", "SMTP server closed the connection", transient=True, ambiguous=True
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 400 <= exc.code < 500:
            return DeliveryError(
                "deferred", f"SMTP {exc.code}: {_msg(exc.message)}", transient=True
            )
        return DeliveryError("rejected", f"SMTP {exc.code}: {_msg(exc.message)}", transient=False)
    return DeliveryError("connection", f"SMTP failure ({type(exc).__name__})", transient=True)


def _msg(text: str) -> str:
    return header_safe(str(text), 200)


class EmailNotifier:
    channel = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int | None,
        security: str,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 20.0,
        ca_file: str | None = None,
        links: Callable[[int], tuple[FeedbackLink, ...]] | None = None,
    ) -> None:
        self.links = links  # signed feedback links of an alert (monitor.feedback.LinkSigner)
        self.host = host
        self.security = security
        self.port = port or {"tls": 465, "starttls": 587}.get(security, 25)
        self.target: str | None = f"smtp:{host}:{self.port}"  # one SMTP server, one breaker
        self.sender = sender
        self.domain = mail_domain(sender)
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ca_file = ca_file

    async def send(self, message: Outgoing) -> str:
        msg = build_message(message, sender=self.sender, domain=self.domain, links=self.links)
        try:
            async with asyncio.timeout(self.timeout + 2):
                await aiosmtplib.send(
                    msg,
                    sender=self.sender,
                    recipients=[message.destination],
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    use_tls=self.security == "tls",
                    start_tls=self.security == "starttls",
                    cert_bundle=self.ca_file,
                    timeout=self.timeout,
                )
        except TimeoutError:
            raise DeliveryError(
                "timeout", "SMTP exchange took too long", transient=True, ambiguous=True
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise classify_smtp_error(exc) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                "config",
                f"the SMTP server's TLS certificate is not trusted ({exc.verify_message}): "
                "set MONITOR_SMTP_CA_FILE to its CA bundle",
                transient=False,
            ) from None
        except OSError as exc:
            raise DeliveryError(
                "connection",
                f"cannot reach the SMTP server ({type(exc).__name__})",
                transient=True,
            ) from None
        return str(msg["Message-ID"])

    async def find_sent(self, message: Outgoing, since_epoch: float) -> str | None:
        return None  # SMTP cannot be asked: at-least-once with a stable Message-ID

    async def aclose(self) -> None:
        return None
