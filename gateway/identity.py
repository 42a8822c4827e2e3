"""Who the caller is: the encrypted session cookie, login/logout headers, auth_request, prefix.

The session is loaded lazily (only requests that need it pay for the decryption) and saved by
``on_prepare``, which the front (gateway/front.py) runs on every answer before its head goes
out, streamed ones too; aiohttp-session's own middleware skips streamed responses (its issues
#373 and #640), and the proxy streams large answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp_session import Session

from . import headers as hdr
from .config import Config
from .keys import hash_user, user_hash_key
from .problems import NotAuthenticated, UpstreamUnavailable
from .requestkeys import SCOPE
from .requestkeys import SessionData as SessionData
from .sessions import COOKIE_HEADER_CACHE_SIZE as COOKIE_HEADER_CACHE_SIZE
from .sessions import SESSION_CACHE_SIZE as SESSION_CACHE_SIZE
from .sessions import RotatingCookieStorage as RotatingCookieStorage
from .values import Clock
from .values import Identity as Identity

if TYPE_CHECKING:
    from .upstream import Upstream

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


_MAX_USER_LENGTH = 256

IDENTITY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def _cookie_value(key_prefix: str) -> str:
    """A key prefix as the prefix cookie holds it (the same few per process: cached)."""
    return quote(key_prefix, safe="")


class IdentityService:
    """Loads, learns and saves who the caller is; one per app."""

    def __init__(
        self,
        config: Config,
        *,
        upstream: Callable[[], Upstream],
        clock: Clock | None = None,
    ) -> None:
        """``upstream``: gives the app's upstream pool, which auth_request asks; a provider, as
        the pool opens when the app starts, after this is built (``Services.upstream``).
        ``clock``: the app's (tests move it), for the auth_request cache and login times."""
        self._config = config
        self._upstream = upstream
        self._now = clock or _utc_now
        self._identity = config.identity
        keys = [k.get_secret_value() for k in config.session.keys]
        self._hash_key = user_hash_key(keys[0])
        self._login = config.identity.login_header
        self._logout = config.identity.logout_header
        self._identities = functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)(self._new_identity)
        self.storage = RotatingCookieStorage(
            keys,
            cookie_name=config.session.cookie_name,
            secure=config.session.secure,
            samesite=config.session.samesite,
            max_age=config.session.max_age,
        )

    def identity_for(self, user: str) -> Identity:
        """The Identity of a user name: hash and key prefix derived from the first session key."""
        return self._identities(user)

    def _new_identity(self, user: str) -> Identity:
        digest = hash_user(self._hash_key, user)
        return Identity(user, digest, self._identity.key_prefix.replace("{user_hash}", digest))

    async def session(self, request: web.Request) -> SessionData:
        """The request's session, decrypted on first use."""
        scope = request[SCOPE]
        session = scope.session
        if session is None:
            session = scope.session = await self.storage.load_session(request)
        return session

    async def identify(self, request: web.Request) -> Identity | None:
        """The caller's identity from the session, else from auth_request, else anonymous."""
        identity = await self._identify(request)
        request[SCOPE].user = identity
        return identity

    async def _identify(self, request: web.Request) -> Identity | None:
        session = await self.session(request)
        now = self._now().timestamp()
        user = session.get("user")
        known = user if isinstance(user, str) and user else None
        via = session.get("via")
        if known is not None:
            if via == "login" or (via == "auth" and self._auth_cache_valid(session, request, now)):
                return self.identity_for(known)
            if via == "anon" and self._identity.auth_request is None:
                return self.identity_for(known)
        if self._identity.auth_request is not None:
            # Asked before an anonymous id is reused: a visitor who has since logged in to the
            # app becomes that user instead of staying anonymous for the session's lifetime.
            asked = await self._ask_upstream(request)
            if asked is not None:
                self._remember(session, asked, via="auth", request=request, now=now)
                return self.identity_for(asked)
        if known is not None and via == "anon":
            return self.identity_for(known)
        if self._identity.anonymous:
            anon = f"anonymous:{secrets.token_hex(8)}"
            self._remember(session, anon, via="anon", request=request, now=now)
            return self.identity_for(anon)
        return None

    async def require(self, request: web.Request) -> Identity:
        """The caller's identity, or 401."""
        identity = await self.identify(request)
        if identity is None:
            raise NotAuthenticated(
                "log in to the application first: this request carries no identity",
                reason="no-identity",
            )
        return identity

    def _auth_cache_valid(self, session: Session, request: web.Request, now: float) -> bool:
        expires = session.get("exp", 0)
        return (
            isinstance(expires, int | float)
            and now < expires
            and session.get("ah") == _auth_hash(request)
        )

    def _remember(
        self, session: Session, user: str, *, via: str, request: web.Request, now: float
    ) -> None:
        session.clear()
        session["user"] = user
        session["via"] = via
        if via == "auth" and self._identity.auth_request is not None:
            cache = self._identity.auth_request.cache_seconds
            if cache <= 0:
                session.clear()
                return
            session["exp"] = int(now) + cache
            session["ah"] = _auth_hash(request)

    async def _ask_upstream(self, request: web.Request) -> str | None:
        auth = self._identity.auth_request
        assert auth is not None  # noqa: S101
        headers = {"Accept": "application/json", "X-Request-ID": request[SCOPE].request_id}
        cookies = request.headers.getall("Cookie", None)
        if cookies:
            joined = hdr.upstream_cookie(cookies, self._config.session.cookie_name)
            if joined:
                headers["Cookie"] = joined
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        if "Cookie" not in headers and "Authorization" not in headers:
            return None
        answer = await self._upstream().call("GET", auth.path, headers=headers)
        if answer.status in (401, 403, 404):
            return None
        if answer.status >= 300:
            raise UpstreamUnavailable(
                f"auth_request answered {answer.status}", reason="auth-request-failed"
            )
        user = answer.headers.get(self._identity.login_header)
        if not user:
            try:
                body: Any = json.loads(answer.body or b"null")
            except ValueError:
                body = None
            value = body.get(auth.user_field) if isinstance(body, dict) else None
            user = value if isinstance(value, str) else None
        return _valid_user(user)

    def has_news(self, request: web.Request, response: web.StreamResponse) -> bool:
        """Whether ``on_prepare`` has work: a session was loaded, or the answer logs a user in
        or out. Most proxied answers have none, and skip making a coroutine."""
        headers = response.headers
        return (
            request[SCOPE].session is not None
            or self._login in headers
            or self._logout in headers
        )

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Apply login/logout headers from the upstream, save the session, set the prefix."""
        headers = response.headers
        login = self._login in headers
        logout = self._logout in headers
        # (Their spellings with _ never reach here: the proxy drops them with the hop-by-hop
        # headers, in the one pass it makes over the upstream's headers.)
        scope = request[SCOPE]
        session = scope.session
        if session is None and not login and not logout:
            # The common proxied answer: no session was loaded and nothing to learn from it.
            return
        login_values = headers.popall(self._login, []) if login else []
        logout_values = headers.popall(self._logout, []) if logout else []
        # Cookies are collected on a scratch response (aiohttp's own formatting), made only when
        # a cookie is set, and added as Set-Cookie headers, once each, beside the upstream's own
        # Set-Cookie headers, which pass untouched.
        jar: web.StreamResponse | None = None
        if logout_values:
            session = await self.session(request)
            session.invalidate()
            jar = web.StreamResponse()
            self._clear_prefix(jar)
        elif login_values:
            user = _valid_user(login_values[-1])
            if user is not None:
                session = await self.session(request)
                now = self._now().timestamp()
                self._remember(session, user, via="login", request=request, now=now)
        if session is not None:
            if session.modified:
                jar = jar or web.StreamResponse()
                await self.storage.save_session(request, jar, session)
            user = session.get("user") if not session.empty else None
            if isinstance(user, str) and user:
                known = scope.user
                if known is None or known.user != user:
                    # Who the answer was for, as the access line names them (a login, say).
                    known = scope.user = self.identity_for(user)
                value = self._prefix_value(request, known)
                if value is not None:
                    jar = jar or web.StreamResponse()
                    self._set_prefix(jar, value)
        if jar is not None:
            for morsel in jar.cookies.values():
                headers.add(hdrs.SET_COOKIE, morsel.OutputString())

    def _prefix_value(self, request: web.Request, identity: Identity) -> str | None:
        """The prefix cookie's value to set, or None when the browser already holds it."""
        # Percent-encoded so the cookie value carries no quotes (Python quotes values with "/");
        # the page reads it with decodeURIComponent.
        value = _cookie_value(identity.key_prefix)
        if self.storage.cookies(request).get(self._identity.prefix_cookie) == value:
            return None
        return value

    def _set_prefix(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(
            self._identity.prefix_cookie,
            value,
            path="/",
            max_age=self._config.session.max_age,
            secure=self._config.session.secure,
            httponly=False,
            samesite=self._config.session.samesite,
        )

    def _clear_prefix(self, response: web.StreamResponse) -> None:
        response.del_cookie(self._identity.prefix_cookie, path="/")


def _auth_hash(request: web.Request) -> str:
    return hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()[:16]


def _valid_user(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_USER_LENGTH or not value.isprintable():
        return None
    return value
