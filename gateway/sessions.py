"""The session cookie's storage: Fernet-encrypted, every key decrypts, the first encrypts.

Apart from ``identity`` (who the caller is, asked of the upstream) so that the cookie's
cryptography and its caches can be read and tested on their own.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp_session import AbstractStorage, Session
from aiohttp_session import SessionData as StoredSession
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .requestkeys import SCOPE, SessionData

log = logging.getLogger(__name__)

# Decrypted session cookies kept (a Fernet token is authenticated, so the same token is the same
# session): about one per active browser; a few MiB at most.
SESSION_CACHE_SIZE = 4096

# Parsed Cookie headers kept: a browser sends the same header with each of its requests (every
# chunk of an upload is signed), and aiohttp parses it into morsels anew each time. A header is
# at most 8 KiB (the server's field limit), so this holds at most a few MiB.
COOKIE_HEADER_CACHE_SIZE = 512
_NO_COOKIES: Mapping[str, str] = MappingProxyType({})


# cryptography's Fernet refuses tokens stamped more than this far in the future (its
# _MAX_CLOCK_SKEW); the cached path applies the same rule.
_MAX_CLOCK_SKEW = 60
# On the request: (issue time, session contents) of a cookie that is re-encrypted only because
# it was made under a retiring key.
_ROTATING: web.RequestKey[tuple[int, dict[str, Any]]] = web.RequestKey("session_rotating")


@dataclass(frozen=True)
class _Decoded:
    """An authentic session token's content: its data, when it was made, and under which key."""

    data: dict[str, Any]
    issued: int
    rotated: bool


class RotatingCookieStorage(AbstractStorage):
    """Fernet-encrypted cookie session: the first key encrypts, every key decrypts (rotation).

    aiohttp-session's EncryptedCookieStorage takes exactly one Fernet, so rotation needs this.
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        cookie_name: str,
        secure: bool,
        samesite: str,
        max_age: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: seconds since the epoch, what token ages are measured against (Fernet's own
        clock by default; tests move it)."""
        super().__init__(
            cookie_name=cookie_name,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=True,
            samesite=samesite,
        )
        fernets = [Fernet(k.encode()) for k in keys]
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._clock = clock
        # Decrypting is an HMAC, an AES pass and a json.loads per request; only authentic tokens
        # are cached (a refused one raises, and lru_cache keeps no exceptions), and the age is
        # checked against the clock on every use, cached or not.
        self._decode = functools.lru_cache(maxsize=SESSION_CACHE_SIZE)(self._decrypt)
        self._parsed: dict[str, Mapping[str, str]] = {}

    def cookies(self, request: web.Request) -> Mapping[str, str]:
        """``request.cookies``, parsed once per distinct Cookie header (aiohttp's parser, so the
        same names and values; the mapping is read-only, so sharing it is safe)."""
        header = request.headers.get(hdrs.COOKIE)
        if not header:
            return _NO_COOKIES
        parsed = self._parsed.get(header)
        if parsed is None:
            parsed = request.cookies
            if len(self._parsed) >= COOKIE_HEADER_CACHE_SIZE:
                # The oldest entry goes (dicts keep insertion order): a bound, not an LRU.
                del self._parsed[next(iter(self._parsed))]
            self._parsed[header] = parsed
        return parsed

    @property
    def parsed_headers(self) -> int:
        """How many distinct Cookie headers are held parsed."""
        return len(self._parsed)

    def load_cookie(self, request: web.Request) -> str | None:
        return self.cookies(request).get(self.cookie_name)

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses and size of the decrypted-token cache."""
        return self._decode.cache_info()

    def _decrypt(self, cookie: str) -> _Decoded:
        token = cookie.encode()
        rotated = False
        try:
            plain = self._primary.decrypt(token)
        except InvalidToken:
            plain = self._fernet.decrypt(token)
            rotated = True
        data = json.loads(plain)
        if not isinstance(data, dict) or not isinstance(data.get("session"), dict):
            raise ValueError("not a session")
        # Bytes 1-8 of an (authenticated) Fernet token are its creation time, big-endian.
        issued = int.from_bytes(base64.urlsafe_b64decode(token[:12])[1:9], "big")
        return _Decoded(data, issued, rotated)

    def _fresh(self, issued: int) -> bool:
        """Fernet's ttl rule (max_age) and its clock-skew rule, against this storage's clock."""
        now = int(self._clock())
        if self.max_age is not None and issued + self.max_age < now:
            return False
        return now + _MAX_CLOCK_SKEW >= issued

    async def load_session(self, request: web.Request) -> SessionData:
        cookie = self.load_cookie(request)
        if cookie is None:
            return SessionData(None, data=None, new=True, max_age=self.max_age)
        try:
            decoded = self._decode(cookie)
            if not self._fresh(decoded.issued):
                raise InvalidToken
        except (InvalidToken, ValueError):
            # A tampered, expired or foreign cookie is no session, never an error page.
            scope = request.get(SCOPE)  # None: a storage used without the front
            request_id = None if scope is None else scope.request_id
            log.info("session_cookie_rejected", extra={"request_id": request_id})
            return SessionData(None, data=None, new=True, max_age=self.max_age)
        # Session copies the stored mapping, so the cached data is never changed through it.
        session = SessionData(
            None, data=cast(StoredSession, decoded.data), new=False, max_age=self.max_age
        )
        if decoded.rotated:
            # Made under a retiring key: re-encrypted under the first key on this response, so
            # the old key can be dropped once every active user has been seen once.
            request[_ROTATING] = (decoded.issued, decoded.data["session"])
            session.changed()
        return session

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
            return
        data = self._get_session_data(session)
        plain = json.dumps(data, separators=(",", ":")).encode()
        rotating = request.get(_ROTATING)
        if rotating is not None and rotating[1] == data["session"]:
            # Only the key changes: the token keeps its issue time, so rotating keys never
            # lengthens a session past max_age from when it was made.
            token = self._fernet.encrypt_at_time(plain, rotating[0]).decode()
        else:
            token = self._fernet.encrypt(plain).decode()
        self.save_cookie(response, token, max_age=session.max_age)
