"""Who may use the console: roles, signed session cookies, CSRF tokens and a login throttle.

No session table: a cookie carries its role, expiry and a random id, signed with HMAC-SHA256
under a key derived from that role's token. Every replica derives the same key, so a cookie
works on any of them; changing a token ends every session made with it. The CSRF token of a
form is an HMAC of the session id, so it needs no storage either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

COOKIE = "monitor_session"
_KEY_LABEL = b"monitor console session v1"


class Role(StrEnum):
    """`admin` changes things (save a watchlist, retry an alert); `desk` only reads."""

    ADMIN = "admin"
    DESK = "desk"


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    sid: str  # random, names the session (CSRF tokens derive from it)
    expires: float  # Unix time
    via_cookie: bool  # False for `Authorization: Bearer` (scripts: no CSRF, no ambient auth)

    @property
    def can_write(self) -> bool:
        return self.role is Role.ADMIN


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issue and check session cookies and CSRF tokens for the configured tokens."""

    def __init__(self, tokens: dict[Role, str], lifetime_seconds: float) -> None:
        self._tokens = {role: t for role, t in tokens.items() if t}
        self._keys = {
            role: hmac.new(t.encode(), _KEY_LABEL, hashlib.sha256).digest()
            for role, t in self._tokens.items()
        }
        self.lifetime = lifetime_seconds

    @property
    def enabled(self) -> bool:
        """The console is off unless at least one token is set."""
        return bool(self._tokens)

    def role_of_token(self, sent: str) -> Role | None:
        """The role whose token this is (constant-time compare against each)."""
        found: Role | None = None
        for role, token in self._tokens.items():
            if hmac.compare_digest(sent.encode(), token.encode()):
                found = role
        return found

    def issue(self, role: Role, now: float | None = None) -> tuple[str, Session]:
        expires = (now if now is not None else time.time()) + self.lifetime
        session = Session(role, secrets.token_urlsafe(12), expires, True)
        body = _b64(json.dumps({"r": role.value, "s": session.sid, "e": int(expires)}).encode())
        return f"{body}.{self._sign(role, body)}", session

    def _sign(self, role: Role, body: str) -> str:
        return _b64(hmac.new(self._keys[role], body.encode(), hashlib.sha256).digest())

    def check(self, cookie: str, now: float | None = None) -> Session | None:
        """The session a cookie proves, or None (bad signature, expired, unknown role)."""
        body, _, signature = cookie.partition(".")
        try:
            data = json.loads(_unb64(body))
            role = Role(data["r"])
            sid, expires = str(data["s"]), float(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if role not in self._keys or not hmac.compare_digest(signature, self._sign(role, body)):
            return None
        if expires <= (now if now is not None else time.time()):
            return None
        return Session(role, sid, expires, True)

    def csrf(self, session: Session) -> str:
        return _b64(
            hmac.new(self._keys[session.role], b"csrf:" + session.sid.encode(), hashlib.sha256)
            .digest()[:18]
        )

    def csrf_ok(self, session: Session, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent, self.csrf(session))


class LoginThrottle:
    """At most `limit` failed logins per client address per `window` seconds: a token cannot
    be guessed through the login form."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}

    def blocked(self, client: str, now: float | None = None) -> bool:
        now = now if now is not None else time.monotonic()
        recent = [t for t in self._failures.get(client, []) if now - t < self.window]
        self._failures[client] = recent
        if not recent:
            self._failures.pop(client, None)
        return len(recent) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        if len(self._failures) > 10_000:  # a flood of addresses cannot grow this without bound
            self._failures.clear()
        self._failures.setdefault(client, []).append(
            now if now is not None else time.monotonic()
        )
