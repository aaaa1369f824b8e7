"""Every failure of the network path, classified once into a `FetchError` with a `transient`
flag and a message whose URLs are redacted (`monitor.redact`): it is stored and shown."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import httpx

from monitor.fetch import netguard
from monitor.logs import get_logger
from monitor.model import ErrorKind, FetchError, FetchRequest
from monitor.redact import redact_text
from monitor.schedule import parse_retry_after

log = get_logger(__name__)


def status_error(req: FetchRequest, status: int, headers: dict[str, str]) -> FetchError:
    retry_after: float | None = None
    if "retry-after" in headers:
        retry_after = parse_retry_after(headers["retry-after"], datetime.now(UTC))
    wait = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
    if status == 410:
        return FetchError(
            req.source_id, "gone", False, "410 Gone: the server says this feed was removed", 410
        )
    if status == 429:
        return FetchError(
            req.source_id, "rate_limited", True, f"429 Too Many Requests{wait}", 429, retry_after
        )
    if status >= 500:
        return FetchError(
            req.source_id, "http_5xx", True, f"server error {status}{wait}", status, retry_after
        )
    if 400 <= status < 500:
        # 408/425 are about this attempt; every other 4xx needs someone to fix the URL or access.
        transient = status in (408, 425)
        hint = {
            401: "authentication required",
            403: "access forbidden",
            404: "not found: check the URL",
        }.get(status, "client error")
        return FetchError(
            req.source_id, "http_4xx", transient, f"{status} {hint}{wait}", status, retry_after
        )
    return FetchError(
        req.source_id, "protocol", True, f"unexpected HTTP status {status}", status, retry_after
    )


def classify(req: FetchRequest, exc: Exception) -> FetchError:
    """Map every exception of the network path to one `FetchError`."""
    text = str(exc) or type(exc).__name__
    kind: ErrorKind
    transient = True
    if isinstance(exc, netguard.BlockedError):
        kind, transient = "blocked_ssrf", False
    elif isinstance(exc, netguard.ResolveError):
        kind = "dns"
    elif isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
        phase = {
            httpx.ConnectTimeout: "connecting",
            httpx.ReadTimeout: "waiting for data",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        text = f"timed out {phase}".rstrip()
    elif isinstance(exc, httpx.ConnectError):
        kind = "tls" if _is_tls(exc) else "connect"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        kind, transient = "bad_url", False
    elif isinstance(exc, httpx.HTTPError):
        kind = "tls" if _is_tls(exc) else "protocol"
    elif isinstance(exc, OSError):
        kind = "connect"
    else:
        kind = "protocol"
        text = f"{type(exc).__name__}: {text}"
        log.error("unexpected fetch failure", source=req.source_id, exc_info=exc)
    return FetchError(req.source_id, kind, transient, redact_text(text, req.url))


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def fetch_error(req: FetchRequest, kind: ErrorKind, transient: bool, message: str) -> FetchError:
    """A failure found by hand; its message may quote a URL of the exchange (a redirect hop)."""
    return FetchError(req.source_id, kind, transient, redact_text(message, req.url))


def with_elapsed(error: FetchError, elapsed: float) -> FetchError:
    return FetchError(
        error.source_id,
        error.kind,
        error.transient,
        error.message,
        error.status,
        error.retry_after_seconds,
        elapsed,
    )
