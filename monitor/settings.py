"""Every option of the service, typed and defaulted, read once from `MONITOR_*` variables.

pydantic-settings reads the environment (and `/run/secrets` files); secrets are `SecretStr`
so they are masked in repr, JSON and logs.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Service configuration; see the README table for each `MONITOR_*` variable."""

    model_config = SettingsConfigDict(
        env_prefix="MONITOR_",
        extra="ignore",
        secrets_dir=None,
        validate_default=True,
    )

    # --- core ---
    database_url: SecretStr = Field(
        SecretStr("sqlite:///./data/monitor.db"),
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user:pw@host/db.",
    )
    watchlists_dir: Path = Field(Path("watchlists"), description="Folder of watchlist YAML files.")
    sources_file: Path | None = Field(
        None, description="Sources YAML; defaults to <watchlists_dir>/sources.yaml."
    )
    allow_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of host names or CIDRs that may be fetched although private.",
    )
    instance_name: str = Field(
        "", description="Replica name in logs and leases (default host:pid)."
    )
    log_level: str = Field("INFO", description="Log level of the JSON logs on stdout.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="auto (aligned colour lines on a terminal, JSON otherwise), json or console.",
    )

    # polling
    tick_seconds: float = Field(5.0, description="How often the poll tick looks for due sources.")
    poll_batch: int = Field(200, description="Most sources claimed by one poll tick.")
    lease_seconds: float = Field(120.0, description="How long a claimed source/alert stays ours.")
    min_interval_seconds: int = Field(10, description="Shortest accepted poll interval.")
    max_interval_seconds: int = Field(86400, description="Longest interval (backoff cap).")
    max_article_age_hours: float = Field(
        72.0, description="Entries published longer ago than this never alert."
    )
    max_entries_per_document: int = Field(
        500,
        ge=1,
        description="Most entries taken from one fetched document: the newest (by date, else "
        "document order); the rest are skipped and the poll says how many.",
    )
    parser: Literal["auto", "feedparser"] = Field(
        "auto",
        description="Feed parser: auto (lxml for clean RSS/Atom documents, feedparser for the "
        "rest; the same entries, several times faster) or feedparser (always).",
    )
    ingest_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Fetched feeds parsed and stored at once (threads). SQLite has one writer, "
        "so more do not go faster there and each holds memory; on PostgreSQL more can help.",
    )
    write_chunk_entries: int = Field(
        200,
        ge=1,
        description="Most entries one poll writes in one transaction: a big document is stored "
        "in several short transactions, so other writers wait for the lock only that long.",
    )

    # fetching
    user_agent: str = Field(
        "monitor/0.1 (+https://github.com/monitor-news/monitor; self-hosted news alerts)",
        description="User-Agent sent with every fetch.",
    )
    fetch_connect_timeout: float = Field(5.0, description="Seconds to connect.")
    fetch_read_timeout: float = Field(15.0, description="Seconds between two received chunks.")
    fetch_total_timeout: float = Field(30.0, description="Overall deadline of one fetch.")
    fetch_max_bytes: int = Field(10 * 1024 * 1024, description="Largest raw response body.")
    fetch_max_decoded_bytes: int = Field(
        20 * 1024 * 1024, description="Largest body after gzip/deflate decoding."
    )
    fetch_concurrency: int = Field(10, description="Fetches in flight at once (all hosts).")
    fetch_per_host: int = Field(2, description="Fetches in flight at once per host.")
    fetch_host_spacing: float = Field(
        1.0,
        ge=0,
        description="Least seconds between two requests to one host; hosts listed in "
        "MONITOR_ALLOW_PRIVATE_HOSTS (your own servers) are not spaced.",
    )
    fetch_ca_file: str | None = Field(
        None,
        description="CA bundle (PEM) to trust for feed servers' TLS certificates instead of the "
        "public roots (certifi), e.g. for internal sources behind your own CA.",
    )

    # --- watchlists ---
    watchlists_reload: bool = Field(True, description="Reload watchlists when files change.")

    # --- alerts ---
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token (xoxb-…).")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL.")
    slack_webhook_url: SecretStr | None = Field(
        None, description="Slack incoming webhook URL (simple mode: no threads, no reconciliation)."
    )
    slack_default_channel: str | None = Field(
        None, description="Channel for watchlists whose alert: names no Slack channel."
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        description="Signing secret of the Slack app: verifies clicks on POST /slack/actions; "
        "with it (or an app token) Slack alerts carry the desk's feedback buttons.",
    )
    slack_app_token: SecretStr | None = Field(
        None,
        description="Slack app-level token (xapp-…, connections:write): receive clicks through "
        "Socket Mode, so no public URL is needed.",
    )
    public_url: str | None = Field(
        None,
        description="Where desk staff reach this service's listener (https://monitor.example.org)"
        ": the base of the feedback links in alert emails.",
    )
    feedback_secret: SecretStr | None = Field(
        None,
        description="Key that signs the feedback links in alert emails (with MONITOR_PUBLIC_URL; "
        "without both, emails carry no feedback links).",
    )
    feedback_link_hours: float = Field(
        168.0, gt=0, description="Hours an email feedback link stays valid."
    )
    feedback_retrain_seconds: float = Field(
        300.0,
        gt=0,
        description="How often the service looks for new desk feedback and, when there is, "
        "fits the watchlist models again.",
    )
    smtp_host: str | None = Field(None, description="SMTP server host; email is off without it.")
    smtp_port: int | None = Field(None, description="SMTP port (587 starttls, 465 tls, 25 none).")
    smtp_username: str | None = Field(None, description="SMTP login.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field("monitor@localhost", description="From address of alert emails.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls, tls (implicit, port 465) or none (local relay)."
    )
    smtp_timeout: float = Field(20.0, description="Seconds for one SMTP exchange.")
    smtp_ca_file: str | None = Field(
        None, description="CA bundle (PEM) to trust for the SMTP server's TLS certificate."
    )
    deliver_tick_seconds: float = Field(1.0, description="How often the dispatcher runs.")
    slack_timeout: float = Field(10.0, description="Seconds for one Slack API call.")
    slack_channel_interval: float = Field(
        1.0, description="Seconds between two messages to one Slack channel (all replicas)."
    )
    deliver_batch: int = Field(50, description="Most alerts one dispatcher tick sends.")
    deliver_retry_base_seconds: float = Field(
        2.0, description="First retry delay; doubles per attempt, with full jitter (cap 1 h)."
    )
    deliver_retry_hours: float = Field(
        24.0,
        gt=0,
        description="Hours a failing alert is retried, counted from when it first became due; "
        "then it is dead (permanent errors are dead at once).",
    )
    flood_threshold: int = Field(
        10, description="More new alerts than this from one source in one poll become a summary."
    )

    # --- stories ---
    embedder: Literal["use", "hashing"] = Field(
        "use",
        description="Text model of the watchlist models: use (USE multilingual v3, offline, "
        "in the image) or hashing (character n-grams; fast, weaker; for tests).",
    )
    story_window_hours: float = Field(
        72.0, description="Near-duplicates within this window join the same story."
    )
    story_vectors: Literal["gated", "all", "off"] = Field(
        "gated",
        description="Which new articles get a text vector for story grouping: gated (those "
        "that passed a watchlist's gate: every article that can alert), all, or off (MinHash "
        "alone).",
    )

    # --- operations ---
    http_host: str = Field("0.0.0.0", description="Address of the health/metrics listener.")
    admin_token: SecretStr | None = Field(
        None,
        description=(
            "Token for the pages with desk data (/status), sent as `Authorization: Bearer <token>`;"
            " without one those pages are off. /livez, /readyz and /metrics stay open."
        ),
    )
    desk_token: SecretStr | None = Field(
        None,
        description="Token of the console's read-only role (desk staff): they see every page "
        "and can preview drafts, but cannot save watchlists or retry alerts.",
    )
    session_hours: float = Field(
        12.0, gt=0, description="Hours a console login lasts (the signed session cookie)."
    )
    http_port: int = Field(
        8080, description="Port of /livez /readyz /metrics /status (0: free port, logged; -1: off)"
    )
    migrate_on_start: bool = Field(
        False, description="Run migrations at start (under an advisory lock on PostgreSQL)."
    )
    shutdown_grace_seconds: float = Field(8.0, description="Time to finish in-flight work.")

    @field_validator("allow_private_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("allow_private_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for item in value:
            if "/" in item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a valid CIDR ({exc})") from exc
        return value

    @property
    def sources_path(self) -> Path:
        return self.sources_file or self.watchlists_dir / "sources.yaml"

    @property
    def slack_interactive(self) -> bool:
        """Can clicks on Slack buttons reach us (signed request URL or Socket Mode)?"""
        return self.slack_signing_secret is not None or self.slack_app_token is not None

    @property
    def email_feedback(self) -> bool:
        return bool(self.public_url) and self.feedback_secret is not None

    @property
    def db_url(self) -> str:
        return self.database_url.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
