"""What an admin should do about a source's state, and text split for highlighting. Pure."""

from __future__ import annotations

from monitor.model import Match

_BY_KIND: dict[str, str] = {
    "timeout": "The server answered too slowly. Usually passing; if it lasts, open the URL in a "
    "browser, or raise MONITOR_FETCH_TOTAL_TIMEOUT for a slow but working site.",
    "connect": "The connection was refused or dropped: the site is down or blocks this "
    "machine. Open the URL from this machine; it is retried with backoff meanwhile.",
    "dns": "The host name does not resolve: check the spelling of the url in the sources "
    "file, or this machine's DNS.",
    "tls": "The TLS handshake or certificate failed (expired, wrong name, unknown CA). For an "
    "internal CA set MONITOR_FETCH_CA_FILE; otherwise tell the site.",
    "http_4xx": "The server refuses the request. 404: the feed moved; find its new address and "
    "update url in the sources file. 401/403: it needs a login or blocks our User-Agent "
    "(MONITOR_USER_AGENT) or bots.",
    "http_5xx": "The server fails on its side. Retried with backoff; nothing to change here "
    "unless it lasts for days.",
    "rate_limited": "The server asks us to poll less often (429): raise the source's every: in "
    "the sources file. Its Retry-After is honoured.",
    "gone": "410 Gone: the publisher removed this feed. Polling stopped; remove it from the "
    "sources file or replace its url.",
    "too_large": "The response is over MONITOR_FETCH_MAX_BYTES / MONITOR_FETCH_MAX_DECODED_BYTES: "
    "use a smaller feed (a section) or raise the cap.",
    "too_many_redirects": "More than 5 redirects: open the URL and put its final address "
    "in the sources file.",
    "blocked_ssrf": "The address is private or reserved and was refused (SSRF guard). If it is "
    "your own server, add its host to MONITOR_ALLOW_PRIVATE_HOSTS.",
    "bad_url": "The url cannot be fetched as written: fix it in the sources file.",
    "parse_error": "The document is not a feed we can read. Check the url points at RSS, Atom "
    "or JSON Feed, or set kind: html with selectors for a section page.",
    "rejected_entities": "The feed declares entities in a DTD, refused because that is how "
    "entity bombs work. Ask the publisher for a plain feed.",
    "too_complex": "The document is too deep or has too many elements to parse safely: use a "
    "smaller feed.",
    "protocol": "The server broke the HTTP exchange. Usually passing; open the URL if it "
    "lasts.",
}


def source_advice(
    health: str, status: str, disabled_reason: str | None, moved_to: str | None
) -> str:
    """One or two sentences: what this state means and what to change, if anything."""
    if health == "disabled":
        return (disabled_reason or "Disabled.") + " " + _BY_KIND["gone"]
    if health == "failing":
        return _BY_KIND.get(status, "The last poll failed; see the error.")
    if health == "moved":
        return (
            f"The feed moved permanently to {moved_to}: polling follows the redirect, but put "
            "the new address in the sources file."
        )
    if health == "new":
        return "Not polled yet: its first poll stores what it finds and alerts nobody."
    if health == "removed":
        return "No longer in the sources file: not polled; its history stays."
    return "Polling normally."


def highlighted(match: Match) -> list[tuple[str, bool]]:
    """The match's snippet as (text, is_hit) parts, for templates to escape and mark."""
    parts: list[tuple[str, bool]] = []
    cursor = 0
    for span in match.highlights:
        if span.start > cursor:
            parts.append((match.snippet[cursor : span.start], False))
        parts.append((match.snippet[span.start : span.end], True))
        cursor = span.end
    if cursor < len(match.snippet):
        parts.append((match.snippet[cursor:], False))
    return parts


def safe_href(url: str) -> str | None:
    """Only http(s) links become links: a hostile feed's `javascript:` URL stays text."""
    lowered = url.strip().lower()
    return url.strip() if lowered.startswith(("http://", "https://")) else None
