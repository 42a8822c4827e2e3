"""Sessions and identity: login/logout headers, rotation, tampering, auth_request, key prefix.

The upload route used to observe identity is the Fine Uploader route's ``GET P/config``, which
needs an identity and answers the user's key prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from http.cookies import Morsel, SimpleCookie
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from multidict import CIMultiDict

from gateway import sessions as sessions_module
from gateway.config import Config
from gateway.identity import IdentityService, RotatingCookieStorage
from gateway.keys import user_hash
from gateway.logs import JsonFormatter
from tests.support.gateway import OTHER_SESSION_KEY, SESSION_KEY, SettableClock
from tests.support.processes import StartGateway
from tests.support.upstream import make_upstream_app

CONFIG_PATH = "/uploads/photos/config"
COOKIE = "gateway_session"
PREFIX = "upload_prefix"

SEEN = web.AppKey("seen", Counter)


@web.middleware
async def _count(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[SEEN][request.path] += 1
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
async def upstream_server(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream, counting requests by path (overrides the shared fixture)."""
    app = make_upstream_app()
    app[SEEN] = Counter()
    app.middlewares.append(_count)
    server: TestServer = await aiohttp_server(app)
    return server


@pytest.fixture
def seen(upstream_server: TestServer) -> Counter[str]:
    """How many requests reached the upstream, by path."""
    return upstream_server.app[SEEN]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client with no cookie jar: every cookie a test sends is written out explicitly."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


@pytest.fixture
def json_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[dict[str, Any]]]:
    """The gateway's log lines as the JSON formatter writes them (request id included)."""
    caplog.set_level(logging.INFO, logger="gateway")
    caplog.handler.setFormatter(JsonFormatter())

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")]

    return lines


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, list[Morsel[str]]]:
    """Every Set-Cookie of a response, parsed, by cookie name (a list, to count repeats)."""
    out: dict[str, list[Morsel[str]]] = {}
    for header in resp.headers.getall("Set-Cookie", []):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            out.setdefault(name, []).append(morsel)
    return out


def only(cookies: dict[str, list[Morsel[str]]], name: str) -> Morsel[str]:
    """The one Set-Cookie for ``name``; fails on none or several (aiohttp-session #373/#640)."""
    assert len(cookies.get(name, [])) == 1, cookies.get(name)
    return cookies[name][0]


def stored(token: str, key: str = SESSION_KEY) -> dict[str, Any]:
    """What a session cookie holds, decrypted with ``key``."""
    data: dict[str, Any] = json.loads(Fernet(key.encode()).decrypt(token.encode()))
    session: dict[str, Any] = data["session"]
    return session


def prefix_of(user: str, key: str = SESSION_KEY) -> str:
    return f"{user_hash(key, user)}/"


async def login(client: aiohttp.ClientSession, gw: str, user: str, **query: str) -> str:
    """Log ``user`` in through the upstream's login header; the session cookie value."""
    async with client.get(gw + "/login", params={"user": user, **query}) as resp:
        assert resp.status == 200
        await resp.read()
        return only(set_cookies(resp), COOKIE).value


async def config_of(
    client: aiohttp.ClientSession, gw: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with client.get(gw + CONFIG_PATH, headers=headers or {}) as resp:
        body = await resp.json(content_type=None)
    return resp.status, body, resp


# ------------------------------------------------------------------ login and logout headers


async def test_login_header_sets_session_and_prefix_cookies(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """The upstream's login header becomes a session (HttpOnly) and a JS-readable prefix cookie,
    each in exactly one Set-Cookie, and the header itself never reaches the client."""
    async with client.get(gw + "/login?user=alice") as resp:
        assert resp.status == 200
        assert await resp.json() == {"logged_in": "alice"}
        assert "X-Upload-User" not in resp.headers
        cookies = set_cookies(resp)
    assert sorted(cookies) == ["app_user", COOKIE, PREFIX]
    session = only(cookies, COOKIE)
    assert stored(session.value) == {"user": "alice", "via": "login"}
    assert session["httponly"] is True
    assert session["path"] == "/"
    assert session["max-age"] == "86400"
    assert session["samesite"] == "Lax"
    assert not session["secure"]  # the test config says secure: false
    prefix = only(cookies, PREFIX)
    assert prefix.value == quote(prefix_of("alice"), safe="")
    assert prefix.value.endswith("%2F") and len(prefix.value) == 16 + 3
    assert not prefix["httponly"]
    assert prefix["path"] == "/"
    assert only(cookies, "app_user").value == "alice"


async def test_session_identifies_the_user_on_an_upload_route(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """The session cookie alone identifies the user to the upload routes; without it, 401."""
    token = await login(client, gw, "alice")
    status, body, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    assert status == 200
    assert body["keyPrefix"] == prefix_of("alice")
    status, problem, resp = await config_of(client, gw)
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert problem["reason"] == "no-identity"


async def test_login_header_on_a_streamed_response_is_saved(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """A chunked (streamed) answer's login header still saves the session: aiohttp-session's own
    middleware would skip it (its issues #373 and #640)."""
    async with client.get(gw + "/login?user=bob&stream=1") as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert await resp.read() == b"streamed login"
        assert "X-Upload-User" not in resp.headers
        cookies = set_cookies(resp)
    assert stored(only(cookies, COOKIE).value)["user"] == "bob"
    assert only(cookies, PREFIX).value == quote(prefix_of("bob"), safe="")


async def test_a_second_login_replaces_the_user(gw: str, client: aiohttp.ClientSession) -> None:
    """Logging in as someone else on the same browser switches the session and the prefix."""
    token = await login(client, gw, "alice")
    async with client.get(
        gw + "/login?user=bob",
        headers={"Cookie": f"{COOKIE}={token}; {PREFIX}={quote(prefix_of('alice'), safe='')}"},
    ) as resp:
        cookies = set_cookies(resp)
    assert stored(only(cookies, COOKIE).value)["user"] == "bob"
    assert only(cookies, PREFIX).value == quote(prefix_of("bob"), safe="")


async def test_prefix_cookie_not_resent_when_the_browser_has_it(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """A browser that already holds the right prefix cookie is not sent it again."""
    token = await login(client, gw, "alice")
    prefix = quote(prefix_of("alice"), safe="")
    _, _, resp = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}; {PREFIX}={prefix}"})
    assert PREFIX not in set_cookies(resp)
    _, _, resp = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    assert only(set_cookies(resp), PREFIX).value == prefix


@pytest.mark.parametrize("user", ["", " ", "a" * 257, "tab\there"])
async def test_unusable_login_header_logs_nobody_in(
    gw: str, client: aiohttp.ClientSession, user: str
) -> None:
    """An empty, overlong or control-character user name is ignored, never stored."""
    async with client.get(gw + "/login", params={"user": user}) as resp:
        assert resp.status == 200
        cookies = set_cookies(resp)
        assert "X-Upload-User" not in resp.headers
    assert COOKIE not in cookies
    assert PREFIX not in cookies


@pytest.fixture
async def underscore_upstream(aiohttp_server: Any) -> str:
    """An upstream whose answer spells the login header with underscores."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="hi", headers=CIMultiDict([("X_Upload_User", "mallory")]))

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_underscore_login_header_neither_logs_in_nor_leaks(
    start_gateway: StartGateway, underscore_upstream: str, client: aiohttp.ClientSession
) -> None:
    """Only the configured spelling logs in; the '_' lookalike is removed from the answer."""
    gw = await start_gateway(upstream={"url": underscore_upstream})
    async with client.get(gw + "/page") as resp:
        assert await resp.text() == "hi"
        assert not any(n.lower() == "x_upload_user" for n in resp.headers)
        assert COOKIE not in set_cookies(resp)


async def test_logout_header_clears_both_cookies(gw: str, client: aiohttp.ClientSession) -> None:
    """The upstream's logout header expires the session and the prefix cookie, and is removed."""
    token = await login(client, gw, "alice")
    async with client.get(
        gw + "/logout",
        headers={"Cookie": f"{COOKIE}={token}; {PREFIX}={quote(prefix_of('alice'), safe='')}"},
    ) as resp:
        assert resp.status == 200
        assert "X-Upload-Logout" not in resp.headers
        cookies = set_cookies(resp)
    for name in (COOKIE, PREFIX):
        cleared = only(cookies, name)
        assert cleared.value == ""
        assert cleared["max-age"] == "0"
        assert cleared["path"] == "/"


async def test_cookie_attributes_follow_the_config(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """cookie_name, Secure, SameSite and Max-Age come from the config; HttpOnly always."""
    gw = await start_gateway(
        session={"cookie_name": "gw_sid", "secure": True, "samesite": "Strict", "max_age": 600},
        identity={"prefix_cookie": "my_prefix", "key_prefix": "u/{user_hash}/"},
    )
    async with client.get(gw + "/login?user=alice") as resp:
        cookies = set_cookies(resp)
    session = only(cookies, "gw_sid")
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Strict"
    assert session["max-age"] == "600"
    prefix = only(cookies, "my_prefix")
    assert prefix.value == quote(f"u/{user_hash(SESSION_KEY, 'alice')}/", safe="")
    assert prefix["secure"] is True
    assert not prefix["httponly"]
    assert COOKIE not in cookies


# ------------------------------------------------------------------ keys: rotation and tampering


async def test_key_rotation_keeps_users_logged_in(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """A cookie made under an old key is accepted while that key is still listed, and is
    re-encrypted under the new first key; once the old key is gone, so are its cookies."""
    old_gw = await start_gateway()
    token = await login(client, old_gw, "alice")
    rotated_gw = await start_gateway(session={"keys": [OTHER_SESSION_KEY, SESSION_KEY]})
    status, body, resp = await config_of(client, rotated_gw, {"Cookie": f"{COOKIE}={token}"})
    assert status == 200
    # The prefix is derived from the first key, so it follows the rotation.
    assert body["keyPrefix"] == prefix_of("alice", OTHER_SESSION_KEY)
    renewed = only(set_cookies(resp), COOKIE).value
    assert stored(renewed, OTHER_SESSION_KEY)["user"] == "alice"
    new_only_gw = await start_gateway(session={"keys": [OTHER_SESSION_KEY]})
    status, _, _ = await config_of(client, new_only_gw, {"Cookie": f"{COOKIE}={renewed}"})
    assert status == 200
    status, problem, _ = await config_of(client, new_only_gw, {"Cookie": f"{COOKIE}={token}"})
    assert status == 401
    assert problem["reason"] == "no-identity"


async def test_cookie_under_the_first_key_is_not_rewritten(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """A current cookie is not re-issued on every request (only rotated ones are)."""
    gw = await start_gateway(session={"keys": [SESSION_KEY, OTHER_SESSION_KEY]})
    token = await login(client, gw, "alice")
    status, _, resp = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    assert status == 200
    assert COOKIE not in set_cookies(resp)


def _tampered(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(_tampered, id="tampered"),
        pytest.param(
            lambda _: (
                Fernet(OTHER_SESSION_KEY.encode())
                .encrypt(b'{"created": 1, "session": {"user": "alice", "via": "login"}}')
                .decode()
            ),
            id="foreign-key",
        ),
        pytest.param(
            lambda _: Fernet(SESSION_KEY.encode()).encrypt(b'["not", "a", "session"]').decode(),
            id="not-a-session",
        ),
        pytest.param(
            lambda _: Fernet(SESSION_KEY.encode()).encrypt(b"\xff\xfe").decode(),
            id="not-json",
        ),
        pytest.param(lambda _: "not-a-fernet-token", id="garbage"),
        pytest.param(lambda _: "\u00e9t\u00e9", id="non-ascii"),
    ],
)
async def test_bad_session_cookie_counts_as_no_session(
    gw: str,
    client: aiohttp.ClientSession,
    json_logs: Callable[[], list[dict[str, Any]]],
    forge: Callable[[str], str],
) -> None:
    """A tampered, foreign or malformed cookie is no session: 401 (never an error page), logged."""
    token = await login(client, gw, "alice")
    status, problem, resp = await config_of(
        client, gw, {"Cookie": f"{COOKIE}={forge(token)}", "X-Request-ID": "forged-1"}
    )
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert problem["reason"] == "no-identity"
    assert any(
        line["event"] == "session_cookie_rejected" and line.get("request_id") == "forged-1"
        for line in json_logs()
    )


async def test_bad_session_cookie_does_not_break_proxying(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """Pages of the app still load with a broken session cookie."""
    async with client.get(gw + "/echo/page", headers={"Cookie": f"{COOKIE}=garbage"}) as resp:
        assert resp.status == 200


async def test_expired_session_is_refused_even_if_the_cookie_is_replayed(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """max_age is enforced on the token itself, not only by the browser dropping the cookie."""
    gw = await start_gateway(session={"max_age": 600})
    plain = json.dumps({"created": int(time.time()) - 700, "session": {"user": "alice"}})
    old = Fernet(SESSION_KEY.encode()).encrypt_at_time(plain.encode(), int(time.time()) - 700)
    status, _, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={old.decode()}"})
    assert status == 401
    fresh = Fernet(SESSION_KEY.encode()).encrypt(
        json.dumps(
            {"created": int(time.time()), "session": {"user": "alice", "via": "login"}}
        ).encode()
    )
    status, _, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={fresh.decode()}"})
    assert status == 200


# ------------------------------------------------------------------ decrypted-session cache


class EpochClock:
    """Seconds since the epoch, moved by the test (the storage's clock for token ages)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def storage_server(aiohttp_server: Any) -> tuple[str, RotatingCookieStorage, EpochClock]:
    """A real app answering the user of its session cookie, with a movable storage clock."""
    clock = EpochClock(time.time())
    storage = RotatingCookieStorage(
        [SESSION_KEY], cookie_name=COOKIE, secure=False, samesite="Lax", max_age=600, clock=clock
    )

    async def whoami(request: web.Request) -> web.Response:
        session = await storage.load_session(request)
        return web.json_response({"user": session.get("user"), "changed": session.modified})

    app = web.Application()
    app.router.add_get("/", whoami)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("/")), storage, clock


def _token(key: str, user: str, at: float) -> str:
    plain = json.dumps({"created": int(at), "session": {"user": user, "via": "login"}})
    return Fernet(key.encode()).encrypt_at_time(plain.encode(), int(at)).decode()


async def _user_of(client: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with client.get(url, headers={"Cookie": f"{COOKIE}={token}"}) as resp:
        return (await resp.json())["user"]


async def test_cached_session_still_expires_at_max_age(
    storage_server: tuple[str, RotatingCookieStorage, EpochClock], client: aiohttp.ClientSession
) -> None:
    """A token decrypted once and cached is still refused once older than max_age: the cache
    saves the decryption, never the expiry check."""
    url, storage, clock = storage_server
    token = _token(SESSION_KEY, "alice", clock.now)
    assert await _user_of(client, url, token) == "alice"
    assert await _user_of(client, url, token) == "alice"
    assert storage.cache_info().hits == 1
    clock.now += 601
    assert await _user_of(client, url, token) is None
    assert storage.cache_info().hits == 2  # refused from the cache, not by a fresh decryption


async def test_parsed_cookie_headers_are_kept_within_their_bound(
    storage_server: tuple[str, RotatingCookieStorage, EpochClock],
    client: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each distinct Cookie header is parsed once and kept, at most COOKIE_HEADER_CACHE_SIZE of
    them; a kept header gives the same session as a fresh parse (other cookies, quoting and a
    repeated name included: the last one counts, as in aiohttp's request.cookies)."""
    monkeypatch.setattr(sessions_module, "COOKIE_HEADER_CACHE_SIZE", 4)
    url, storage, clock = storage_server
    alice = _token(SESSION_KEY, "alice", clock.now)
    bob = _token(SESSION_KEY, "bob", clock.now)
    headers = [f'theme="dark; wide"; n{i}=x; {COOKIE}={alice}' for i in range(10)]
    for _ in range(2):
        for header in headers:
            async with client.get(url, headers={"Cookie": header}) as resp:
                assert (await resp.json())["user"] == "alice"
            assert 1 <= storage.parsed_headers <= 4
    repeated = f"{COOKIE}={alice}; {COOKIE}={bob}"
    for _ in range(2):
        async with client.get(url, headers={"Cookie": repeated}) as resp:
            assert (await resp.json())["user"] == "bob"
    assert storage.parsed_headers == 4


async def test_cache_never_lets_a_tampered_or_future_token_in(
    storage_server: tuple[str, RotatingCookieStorage, EpochClock], client: aiohttp.ClientSession
) -> None:
    """With the genuine token cached, a tampered copy is still refused (it is its own cache
    key and fails authentication), and a token from the future is refused like Fernet does."""
    url, _, clock = storage_server
    token = _token(SESSION_KEY, "alice", clock.now)
    assert await _user_of(client, url, token) == "alice"
    assert await _user_of(client, url, _tampered(token)) is None
    assert await _user_of(client, url, _tampered(token)) is None
    future = _token(SESSION_KEY, "alice", clock.now + 120)
    assert await _user_of(client, url, future) is None
    clock.now += 90  # now within Fernet's 60 s clock-skew allowance
    assert await _user_of(client, url, future) == "alice"


async def test_rotated_cookie_is_renewed_on_every_cached_use(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """A cookie under a retiring key is re-encrypted each time it is presented, also when its
    decryption comes from the cache."""
    gw = await start_gateway(session={"keys": [OTHER_SESSION_KEY, SESSION_KEY]})
    old = _token(SESSION_KEY, "alice", time.time())
    for _ in range(2):
        status, _, resp = await config_of(client, gw, {"Cookie": f"{COOKIE}={old}"})
        assert status == 200
        assert stored(only(set_cookies(resp), COOKIE).value, OTHER_SESSION_KEY)["user"] == "alice"


async def test_rotation_keeps_the_sessions_issue_time(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """Re-encrypting a cookie under the new key keeps its issue time: rotating keys must not
    give an old (perhaps stolen) session a fresh max_age."""
    gw = await start_gateway(session={"keys": [OTHER_SESSION_KEY, SESSION_KEY]})
    issued = int(time.time()) - 100
    old = _token(SESSION_KEY, "alice", issued)
    status, _, resp = await config_of(client, gw, {"Cookie": f"{COOKIE}={old}"})
    assert status == 200
    renewed = only(set_cookies(resp), COOKIE).value
    assert stored(renewed, OTHER_SESSION_KEY)["user"] == "alice"
    assert Fernet(OTHER_SESSION_KEY.encode()).extract_timestamp(renewed.encode()) == issued


def _no_upstream() -> NoReturn:
    raise AssertionError("deriving an identity asks no upstream")


def test_identity_is_derived_once_per_user(make_config: Callable[..., Config]) -> None:
    """The cached Identity is the one the key derivation gives (hash and prefix), per user."""
    service = IdentityService(make_config(), upstream=_no_upstream)
    alice = service.identity_for("alice")
    assert service.identity_for("alice") is alice
    assert alice.user_hash == user_hash(SESSION_KEY, "alice")
    assert alice.key_prefix == prefix_of("alice")
    assert service.identity_for("bob").user_hash == user_hash(SESSION_KEY, "bob")


# ------------------------------------------------------------------ auth_request


AUTH = {"auth_request": {"path": "/api/me", "cache_seconds": 60}}


async def test_auth_request_with_a_bearer_token(
    start_gateway: StartGateway, client: aiohttp.ClientSession, seen: Counter[str]
) -> None:
    """With no session, the upstream's auth path is asked with the client's Authorization; the
    user is cached in the session, so the next request does not ask again."""
    gw = await start_gateway(identity=AUTH)
    bearer = {"Authorization": "Bearer alice"}
    status, body, resp = await config_of(client, gw, bearer)
    assert status == 200
    assert body["keyPrefix"] == prefix_of("alice")
    assert seen["/api/me"] == 1
    token = only(set_cookies(resp), COOKIE).value
    assert stored(token)["user"] == "alice"
    status, body, _ = await config_of(client, gw, {**bearer, "Cookie": f"{COOKIE}={token}"})
    assert status == 200
    assert body["keyPrefix"] == prefix_of("alice")
    assert seen["/api/me"] == 1


async def test_auth_request_cache_is_bound_to_the_authorization(
    start_gateway: StartGateway, client: aiohttp.ClientSession, seen: Counter[str]
) -> None:
    """Another bearer token with the same session cookie is asked about, not served alice."""
    gw = await start_gateway(identity=AUTH)
    _, _, resp = await config_of(client, gw, {"Authorization": "Bearer alice"})
    token = only(set_cookies(resp), COOKIE).value
    status, body, _ = await config_of(
        client, gw, {"Authorization": "Bearer bob", "Cookie": f"{COOKIE}={token}"}
    )
    assert status == 200
    assert body["keyPrefix"] == prefix_of("bob")
    assert seen["/api/me"] == 2


async def test_auth_request_cache_expires(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    seen: Counter[str],
    clock: SettableClock,
) -> None:
    """After cache_seconds the upstream is asked again (a revoked user stops being trusted)."""
    gw = await start_gateway(identity=AUTH)
    _, _, resp = await config_of(client, gw, {"Authorization": "Bearer alice"})
    token = only(set_cookies(resp), COOKIE).value
    clock.advance(59)
    await config_of(client, gw, {"Authorization": "Bearer alice", "Cookie": f"{COOKIE}={token}"})
    assert seen["/api/me"] == 1
    clock.advance(2)
    status, _, _ = await config_of(
        client, gw, {"Authorization": "Bearer alice", "Cookie": f"{COOKIE}={token}"}
    )
    assert status == 200
    assert seen["/api/me"] == 2
    clock.advance(61)
    status, _, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    assert status == 401  # expired, and no credentials left to ask the upstream about


async def test_auth_request_with_the_apps_cookie(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """The client's Cookie header is passed to the auth path (without the gateway's cookie),
    every line of it, joined as one (RFC 9113 8.2.3): the app's cookie may be in any."""
    gw = await start_gateway(identity=AUTH)
    status, body, _ = await config_of(client, gw, {"Cookie": f"app_user=carol; {COOKIE}=garbage"})
    assert status == 200
    assert body["keyPrefix"] == prefix_of("carol")
    lines = CIMultiDict([("Cookie", "theme=dark"), ("Cookie", "app_user=dave")])
    async with client.get(gw + CONFIG_PATH, headers=lines) as resp:
        assert resp.status == 200
        assert (await resp.json())["keyPrefix"] == prefix_of("dave")


async def test_auth_request_refused_is_401(
    start_gateway: StartGateway, client: aiohttp.ClientSession, seen: Counter[str]
) -> None:
    """The upstream's 401 is no identity; a request with no credentials is not even asked about."""
    gw = await start_gateway(identity=AUTH)
    status, problem, _ = await config_of(client, gw, {"Cookie": "unrelated=1"})
    assert status == 401
    assert problem["reason"] == "no-identity"
    assert seen["/api/me"] == 1
    status, _, _ = await config_of(client, gw)
    assert status == 401
    assert seen["/api/me"] == 1


@pytest.fixture
async def auth_upstream(aiohttp_server: Any) -> str:
    """An auth endpoint that answers in pieces, by header, with 500, or too much."""

    async def pieces(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"username": ')
        await asyncio.sleep(0.05)  # the second piece must arrive separately
        await response.write(b'"dora", "padding": "' + b"p" * 100_000 + b'"}')
        await response.write_eof()
        return response

    async def by_header(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Upload-User": "erin"})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": "db down"}, status=500)

    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"username": "x", "padding": "p" * 2_000_000})

    app = web.Application()
    app.router.add_get("/pieces", pieces)
    app.router.add_get("/by-header", by_header)
    app.router.add_get("/broken", broken)
    app.router.add_get("/huge", huge)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    ("path", "status", "user"),
    [
        ("/pieces", 200, "dora"),
        ("/by-header", 200, "erin"),
        ("/broken", 502, None),
        ("/huge", 502, None),
    ],
)
async def test_auth_request_answers(
    start_gateway: StartGateway,
    auth_upstream: str,
    client: aiohttp.ClientSession,
    path: str,
    status: int,
    user: str | None,
) -> None:
    """A JSON answer sent in pieces is read whole; the login header names the user too; a failing
    or oversized auth answer is a 502, never a guess."""
    gw = await start_gateway(
        upstream={"url": auth_upstream}, identity={"auth_request": {"path": path}}
    )
    got, body, _ = await config_of(client, gw, {"Authorization": "Bearer x"})
    assert got == status
    if user is not None:
        assert body["keyPrefix"] == prefix_of(user)
    else:
        assert body["status"] == status


async def test_auth_request_upgrades_an_anonymous_session(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """With anonymous: true a visitor gets a random identity; once the app knows them, the
    auth path's answer replaces it instead of leaving them anonymous for the session's life."""
    gw = await start_gateway(identity={**AUTH, "anonymous": True})
    status, body, resp = await config_of(client, gw)
    assert status == 200
    token = only(set_cookies(resp), COOKIE).value
    anon = stored(token)["user"]
    assert anon.startswith("anonymous:")
    assert body["keyPrefix"] == prefix_of(anon)
    status, again, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    assert again["keyPrefix"] == prefix_of(anon)
    status, known, _ = await config_of(
        client, gw, {"Cookie": f"{COOKIE}={token}", "Authorization": "Bearer frank"}
    )
    assert known["keyPrefix"] == prefix_of("frank")


async def test_anonymous_identity_is_kept_for_the_session(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """anonymous: true gives each session its own stable random user; other sessions differ."""
    gw = await start_gateway(identity={"anonymous": True})
    _, first, resp = await config_of(client, gw)
    token = only(set_cookies(resp), COOKIE).value
    _, again, _ = await config_of(client, gw, {"Cookie": f"{COOKIE}={token}"})
    _, other, _ = await config_of(client, gw)
    assert first["keyPrefix"] == again["keyPrefix"]
    assert other["keyPrefix"] != first["keyPrefix"]


async def test_access_log_names_the_user_by_hash(
    gw: str, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The access log line of an identified request carries the user's hash (never the name)."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    token = await login(client, gw, "alice")
    await config_of(client, gw, {"Cookie": f"{COOKIE}={token}", "X-Request-ID": "who-1"})
    await config_of(client, gw, {"X-Request-ID": "nobody-1"})
    async with asyncio.timeout(5):
        while len([r for r in caplog.records if r.name == "aiohttp.access"]) < 3:
            await asyncio.sleep(0.01)
    lines = {
        getattr(r, "request_id", None): r for r in caplog.records if r.name == "aiohttp.access"
    }
    assert getattr(lines["who-1"], "user_hash", None) == user_hash(SESSION_KEY, "alice")
    assert getattr(lines["nobody-1"], "user_hash", "missing") is None
    formatter = JsonFormatter()
    gateway_lines = [formatter.format(r) for r in lines.values() if hasattr(r, "route")]
    assert len(gateway_lines) == 3
    assert not any("alice" in line for line in gateway_lines)  # not even /login?user=alice


async def test_session_cookie_works_as_a_browser_sends_it_back(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """Browsers return a cookie value exactly as set, quotes included (a Fernet token ends in
    '=', which Python's cookie module quotes): that form must identify the user too."""
    async with client.get(gw + "/login?user=alice") as resp:
        raw = next(
            h.split(";", 1)[0]
            for h in resp.headers.getall("Set-Cookie")
            if h.startswith(COOKIE + "=")
        )
    status, body, _ = await config_of(client, gw, {"Cookie": raw})
    assert status == 200
    assert body["keyPrefix"] == prefix_of("alice")


async def test_login_logout_flow_with_a_cookie_jar(gw: str) -> None:
    """A client that keeps cookies like a browser: logged in after the login page, known to the
    upload route, logged out (both cookies gone from its jar) after the logout page."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(gw + "/login?user=alice") as resp:
            assert resp.status == 200
        assert {c.key for c in browser.cookie_jar} >= {COOKIE, PREFIX}
        status, body, _ = await config_of(browser, gw)
        assert status == 200
        assert body["keyPrefix"] == prefix_of("alice")
        async with browser.get(gw + "/logout") as resp:
            assert resp.status == 200
        assert not {c.key for c in browser.cookie_jar} & {COOKIE, PREFIX}
        status, _, _ = await config_of(browser, gw)
        assert status == 401
