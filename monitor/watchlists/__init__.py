"""Watchlists: the admin's files (`files`), their strict validation (`validation`), digest
schedules (`digest`), and the live set that reloads when files change (`registry`)."""

from monitor.model import AlertSpec, Watchlist
from monitor.watchlists.digest import DigestSchedule, next_digest_at, parse_digest
from monitor.watchlists.errors import WatchlistError
from monitor.watchlists.files import (
    ALIASES_FILE,
    RESERVED,
    SCHEMA_COMMENT,
    SCHEMA_FILE,
    config_hash,
    load_aliases,
    load_watchlist_file,
    load_watchlist_text,
    load_watchlists,
)
from monitor.watchlists.registry import WATCH_RESTART_SECONDS, RegistryHealth, WatchlistRegistry
from monitor.watchlists.validation import schema_json

__all__ = [
    "ALIASES_FILE",
    "RESERVED",
    "SCHEMA_COMMENT",
    "SCHEMA_FILE",
    "WATCH_RESTART_SECONDS",
    "AlertSpec",
    "DigestSchedule",
    "RegistryHealth",
    "Watchlist",
    "WatchlistError",
    "WatchlistRegistry",
    "config_hash",
    "load_aliases",
    "load_watchlist_file",
    "load_watchlist_text",
    "load_watchlists",
    "next_digest_at",
    "parse_digest",
    "schema_json",
]
