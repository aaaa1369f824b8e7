"""JSON logs on stdout with stable keys, secrets redacted, noisy library loggers quieted.

structlog renders our events; the stdlib logging of libraries goes through the same renderer, so
every line on stdout is one JSON object. httpx logs full URLs at INFO and slack_sdk's webhook
client logs the secret webhook URL on retries, hence WARNING for both (conventions.md §8.2).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

_SECRET_KEYS = re.compile(
    r"token|secret|password|passwd|authorization|cookie|dsn|webhook|api_key|database_url", re.I
)
_SECRET_VALUES = (
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "xox?-[redacted]"),
    (re.compile(r"https://hooks\.slack\.com/services/\S+"), "https://hooks.slack.com/[redacted]"),
    (re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/\s]+:)[^@\s]+@"), r"\1[redacted]@"),
    (
        re.compile(
            r"([?&](?:token|key|api_key|apikey|secret|password|sig|signature)=)[^&\s]+", re.I
        ),
        r"\1[redacted]",
    ),
)
_QUIET = (
    "httpx",
    "httpcore",
    "slack_sdk",
    "apscheduler",
    "aiosmtplib",
    "asyncio",
    "watchfiles",
    "alembic.runtime.plugins",
)


def scrub(text: str) -> str:
    """Remove secrets that may hide inside free text (exception messages, URLs)."""
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return text


def safe_url(url: str) -> str:
    """A URL fit for logs: no credentials, no query string."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[unparsable url]"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        value = event[key]
        if _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif key == "url" and isinstance(value, str):
            event[key] = safe_url(value)
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


def configure(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Install the logging setup once per process."""
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.dict_tracebacks,
            _redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _redact],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
