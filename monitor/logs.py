"""Logs with stable keys, secrets redacted, noisy library loggers quieted: JSON for machines,
aligned colour lines for people.

structlog renders our events; the stdlib logging of libraries goes through the same renderer, so
every line is one event. The default format, `auto`, is JSON unless the log stream is a
terminal: a person running a command sees readable lines, a container runtime or log shipper
(never a terminal) gets one JSON object per line. httpx logs full URLs at INFO and slack_sdk's
webhook client logs the secret webhook URL on retries, hence WARNING for both.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from monitor.redact import redact_text, redact_url

# structlog imports rich and pygments when they are installed, for pretty console tracebacks:
# about 50 ms of every command's start-up. Our lines are JSON or plain text and tracebacks are
# rendered without locals, so structlog is imported with rich hidden and uses its plain
# formatters (rich stays importable afterwards, for the progress bars and the demo).
_HIDE_RICH = "rich" not in sys.modules and "structlog" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
try:
    import structlog
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]

_SECRET_KEYS = re.compile(
    r"token|secret|password|passwd|authorization|cookie|dsn|webhook|api_key|database_url", re.I
)
# Secrets with a shape of their own; URLs in general go through `monitor.redact`.
_SECRET_VALUES = (
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "xox?-[redacted]"),
    # a webhook's secret is its path, which URL redaction keeps
    (re.compile(r"https://hooks\.slack\.com/services/\S+"), "https://hooks.slack.com/[redacted]"),
)
# Keys whose whole value is a URL even without a scheme (`feeds.example/rss?token=…`).
_URL_KEYS = re.compile(r"(?:^|_)(?:url|uri|href|location|moved_to)$", re.I)
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


# The configured secrets themselves (tokens, passwords): a library may echo one in free text
# ("login pw-… refused") where no pattern can spot it.
_known_secrets: tuple[str, ...] = ()
MIN_KNOWN_SECRET = 6


def add_secrets(values: Iterable[str | None]) -> None:
    """Redact these exact strings from every log line from now on (short ones are ignored)."""
    global _known_secrets
    merged = set(_known_secrets) | {v for v in values if v and len(v) >= MIN_KNOWN_SECRET}
    _known_secrets = tuple(sorted(merged, key=len, reverse=True))


def settings_secrets(settings: Any) -> list[str]:
    """Every SecretStr of a Settings object, plus the password inside URL-shaped ones."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        getter = getattr(value, "get_secret_value", None)
        if getter is None:
            continue
        secret = str(getter())
        try:
            password = urlsplit(secret).password
        except ValueError:
            password = None
        if password:
            found.append(password)
        if not secret.startswith("sqlite:"):
            found.append(secret)
    return found


def scrub(text: str) -> str:
    """Remove secrets that may hide inside free text (exception messages, URLs): the configured
    secrets, Slack tokens and webhooks, and every URL's query values and userinfo."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return redact_text(text)


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    """Redact one value under `key`, looking inside dicts and lists (exceptions, payloads).

    Any string may quote a URL (an error message, a library line), so every string is scrubbed,
    not only the `url` key; other objects (an `httpx.URL`, an exception) would be rendered with
    `repr`, so that text is scrubbed too.
    """
    if _SECRET_KEYS.search(key):
        return "[redacted]"
    if isinstance(value, str):
        return scrub(redact_url(value) if _URL_KEYS.search(key) else value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict) and depth <= 8:
        return {scrub(str(k)): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth <= 8:
        return [_clean(key, v, depth + 1) for v in value]
    return scrub(repr(value))


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if not key.startswith("_"):  # structlog's own `_record`, `_from_structlog`
            event[key] = _clean(key, event[key])
    return event


# Tracebacks as JSON, without local variables: locals may hold tokens, passwords, whole payloads.
_exceptions = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def resolve_format(fmt: str, stream: Any) -> str:
    """`auto` → `console` on a terminal, else `json`; other values stay."""
    if fmt == "auto":
        return "console" if _is_terminal(stream) else "json"
    return fmt


def configure(
    level: str = "INFO", fmt: str = "auto", stream: Any = None, secrets: Iterable[str] = ()
) -> None:
    """Install the logging setup once per process.

    The secrets of the process settings are registered for redaction too (when they load).
    """
    out = stream or sys.stdout
    fmt = resolve_format(fmt, out)
    add_secrets(secrets)
    try:
        from monitor.settings import get_settings

        add_secrets(settings_secrets(get_settings()))
    except Exception:  # invalid settings are reported by the command itself
        pass
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=_is_terminal(out))
    )
    structlog.configure(
        processors=[
            # first: an event below the level costs one check, not the whole chain (a poll of
            # 500 unchanged feeds logs 500 DEBUG lines that INFO drops)
            structlog.stdlib.filter_by_level,
            *shared,
            _exceptions,
            _redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # tests capture logs after a command configured them
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _exceptions, _redact],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # A tick still running when the next is due is skipped by design (max_instances=1, the
    # tick-duration histogram shows it); APScheduler's per-skip WARNING would flood the logs.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
