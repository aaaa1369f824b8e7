"""The one URL redaction: every URL we show (logs, CLI, stored errors, `/status`) goes through
`redact_url`, and free text through `redact_text`, which finds the URLs in it.

Secrets ride in URLs as query values (`?access_token=…`, presigned `X-Amz-Signature=…`), in
fragments (`#access_token=…`) and in userinfo (`user:password@`, or a token as the user name).
No list of parameter names can know them all, so every query and fragment value is replaced and
only the names stay (they say what the URL is for); the whole userinfo goes. Paths are kept:
a secret in a path cannot be told from a slug (Slack webhooks are handled in `monitor.logs`).

Pure: no I/O, no state; safe to apply twice (`redact_url(redact_url(u)) == redact_url(u)`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MARK = "[redacted]"

# A parameter name worth keeping; anything else (a bare token, base64 with its `=` padding,
# something 65 characters long) is treated as a value.
_NAME = re.compile(r"[A-Za-z0-9_.~\-\[\]%+]{1,64}")
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*:)?//")
# URLs in free text: absolute or scheme-relative ones, and relative references that carry a
# query or fragment (`GET /feed?token=…`). Whitespace, `"`, `<`, `>` and backticks end a URL
# (browsers and httpx percent-encode them); a `'` may be inside a value, so only a trailing one
# is dropped ('https://…' in an exception's repr).
_IN_TEXT = re.compile(
    r"(?:\b[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^\s<>\"`]+"
    r"|(?<![\w/.:\-])/[^\s<>\"`?#]*[?#][^\s<>\"`]+"
)
_TRAILING = ".,;:!?)'\""  # sentence punctuation after a URL, not part of it
MIN_KNOWN = 6  # shorter query values are not hunted for in free text: too many false hits


def redact_url(url: str) -> str:
    """`url` with every query and fragment value replaced by `[redacted]` (names kept) and its
    userinfo replaced by `[redacted]`; never raises, whatever the input."""
    head, rest = "", url
    scheme = _SCHEME.match(url)
    if scheme is not None:
        end = _authority_end(url, scheme.end())
        if end is None:
            return url[: scheme.end()] + MARK
        at, hostport = url[scheme.end() : end].rpartition("@")[1:]
        head = url[: scheme.end()] + (MARK + at if at else "") + hostport
        rest = url[end:]
    rest, has_fragment, fragment = rest.partition("#")
    path, has_query, query = rest.partition("?")
    out = head + path
    if has_query:
        out += "?" + _redact_params(query)
    if has_fragment:
        out += "#" + _redact_params(fragment)
    return out


def _authority_end(url: str, start: int) -> int | None:
    """Where the authority after `//` ends: at the first `/`, `?` or `#` (RFC 3986). None when
    an `@` follows a `?` or `#` before the first `/` (`u:p?w@host/`, `h?mail=a@b/`): userinfo
    or query, no one can tell, so none of it is shown."""
    strict = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    slash = url.find("/", start)
    loose = len(url) if slash == -1 else slash
    if loose > strict and "@" in url[strict:loose]:
        return None
    return strict


def _redact_params(text: str) -> str:
    """`a=1&b=2` → `a=[redacted]&b=[redacted]`; a segment that is not `name=value` (a bare
    token, base64 ending in `=` padding) is all value."""
    out = []
    for segment in text.split("&"):
        name, eq, value = segment.partition("=")
        if not segment:
            out.append("")
        elif eq and _NAME.fullmatch(name) and not (value and not value.strip("=")):
            out.append(f"{name}={MARK}")
        else:
            out.append(MARK)
    return "&".join(out)


def redact_text(text: str, *known_urls: str) -> str:
    """Free text (an exception message, a parser's complaint) with every URL in it redacted.

    `known_urls` are URLs the text may quote in a form no pattern finds (percent-decoded, cut
    in pieces): their userinfo and query/fragment values are also removed wherever they appear.
    """
    out = _IN_TEXT.sub(_redact_match, text)
    for url in known_urls:
        for secret in _secrets_of(url):
            out = out.replace(secret, MARK)
    return out


def _redact_match(match: re.Match[str]) -> str:
    found = match.group(0)
    kept = found.rstrip(_TRAILING)
    return redact_url(kept) + found[len(kept) :]


def _secrets_of(url: str) -> list[str]:
    """The secret-bearing pieces of `url` (userinfo, query and fragment values), raw and
    percent-decoded, longest first, the short ones left out."""
    pieces: list[str] = []
    rest = url
    scheme = _SCHEME.match(url)
    if scheme is not None:
        end = _authority_end(url, scheme.end())
        loose = url.find("/", scheme.end())
        end = end if end is not None else len(url) if loose == -1 else loose
        userinfo = url[scheme.end() : end].rpartition("@")[0]
        # the password, or a token as the user name; a plain user name is not worth hunting
        pieces += [userinfo, userinfo.partition(":")[2]]
        rest = url[end:]
    rest, _, fragment = rest.partition("#")
    for part in (rest.partition("?")[2], fragment):
        for segment in part.split("&"):
            name, eq, value = segment.partition("=")
            pieces.append(value if eq else name)
    found = {p for piece in pieces for p in (piece, unquote(piece)) if len(p) >= MIN_KNOWN}
    # a value already redacted, or one inside the marker itself, would only mangle the marker
    return sorted((p for p in found if p not in MARK), key=len, reverse=True)
