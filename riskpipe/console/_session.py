"""Console logins: a signed session cookie, its expiry, logout, and the CSRF token bound to it.

A login presents an API token once; the cookie then names the token's
``name`` (never the token), a random session id and an expiry, signed with
HMAC-SHA256 under the console's key. Who the session is, role and tenants,
is looked up in the tokens table at every request, so a session never
outlives its token's entry. Logging out records the session id as ended
until it would have expired anyway. The CSRF token of every form is an HMAC
of the session id: bound to the session, nothing to store.

The cookie is ``HttpOnly`` and ``SameSite=Strict``, and ``Secure`` whenever
the request came over TLS (directly, or through a proxy that says so).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from riskpipe.api._tokens import ALL_TENANTS, Principal

if TYPE_CHECKING:
    from collections.abc import Callable

    from riskpipe.api._tokens import TokenTable

__all__ = ["COOKIE", "Session", "SessionKeeper", "sign_session"]

COOKIE = "riskpipe_console"
"""The session cookie's name."""
_MAX_COOKIE = 1024


@dataclass(frozen=True, slots=True)
class Session:
    """A valid login: who, until when, and the CSRF token of its forms."""

    sid: str
    principal: Principal
    expires_at: float
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, message: str) -> str:
    return _b64(hmac.new(key, f"{purpose}:{message}".encode(), hashlib.sha256).digest())


def sign_session(key: bytes, *, sid: str, name: str, expires_at: float) -> str:
    """The cookie value of a session: its payload, a dot, and the payload's HMAC."""
    payload = _b64(json.dumps({"sid": sid, "name": name, "exp": expires_at}).encode())
    return f"{payload}.{_mac(key, 'session', payload)}"


@dataclass
class SessionKeeper:
    """Makes, checks and ends console sessions for one API process."""

    key: bytes
    tokens: TokenTable
    ttl_seconds: float
    clock: Callable[[], float] = time.time
    _ended: dict[str, float] = field(default_factory=dict)

    def login(self, token: str) -> tuple[Session, str] | None:
        """A new session for ``token`` and its cookie value, or ``None``: not a valid token."""
        principal = self.tokens.authenticate(token)
        if principal is None:
            return None
        sid = secrets.token_urlsafe(18)
        expires_at = self.clock() + self.ttl_seconds
        cookie = sign_session(self.key, sid=sid, name=principal.name, expires_at=expires_at)
        return Session(sid, principal, expires_at, self.csrf_of(sid)), cookie

    def check(self, cookie: str | None) -> Session | str:  # noqa: PLR0911 - one per reason
        """The session ``cookie`` names, or why there is none: ``missing`` or ``expired``.

        A cookie that is malformed, badly signed, ended by logout or whose
        token is gone counts as ``missing``: the person logs in again.
        """
        if not cookie or len(cookie) > _MAX_COOKIE or "." not in cookie:
            return "missing"
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac, _mac(self.key, "session", payload)):
            return "missing"
        try:
            doc = json.loads(_unb64(payload))
            sid, name, expires_at = str(doc["sid"]), str(doc["name"]), float(doc["exp"])
        except (ValueError, KeyError, TypeError):
            return "missing"
        if sid in self._ended:
            return "missing"
        if expires_at <= self.clock():
            return "expired"
        principal = self._principal(name)
        if principal is None:
            return "missing"
        return Session(sid, principal, expires_at, self.csrf_of(sid))

    def logout(self, session: Session) -> None:
        """End ``session`` now (remembered until it would have expired)."""
        now = self.clock()
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now}
        self._ended[session.sid] = session.expires_at

    def csrf_of(self, sid: str) -> str:
        """The CSRF token of the session ``sid``'s forms."""
        return _mac(self.key, "csrf", sid)

    def login_csrf(self, nonce: str) -> str:
        """The CSRF token of the login form shown with the pre-login ``nonce`` cookie."""
        return _mac(self.key, "login", nonce)

    def _principal(self, name: str) -> Principal | None:
        for entry in self.tokens.entries:
            if entry.name == name:
                tenants = None if ALL_TENANTS in entry.tenants else frozenset(entry.tenants)
                return Principal(name=entry.name, role=entry.role, tenants=tenants)
        return None
