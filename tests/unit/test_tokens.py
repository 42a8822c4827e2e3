"""Opaque upload tokens: sealed with keys derived from the session keys, checked on every use."""

from __future__ import annotations

import base64
import json
import re
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from gateway import keys
from gateway.problems import Forbidden, Gone
from gateway.tokens import TokenSealer, UploadToken

KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
FOREIGN_KEY = Fernet.generate_key().decode()

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EXPIRES = int(NOW.timestamp()) + 3600

TOKEN = UploadToken(
    route="files",
    user="alice@example.com",
    key="files/3f2a9c0e1b4d5a6f/0b9e6c1a-4c2d-4f7e-9a3b-2d1e0f9c8b7a/holiday-photo.jpg",
    multipart_id=(
        "2~iCw_lDY8VoWiDzTaomDz8fbOmX1lO3sAAQh7Pj5UbCgW8y1p1ZC5QCl9I-4y9hdnY7RkD1UZFk0rj1kbN"
        "Jv4wx9Yn3xlxLdw3kkdNx1aqmZVVgmjJvD5EzrOd3RGB8sUvA"
    ),
    size=734_003_200,
    content_type="image/jpeg",
    filename="holiday-photo.jpg",
    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    part_size=8 * 1024 * 1024,
    expires_at=EXPIRES,
)

SIMPLE = replace(TOKEN, multipart_id=None, sha256=None, part_size=None, size=1234)


def _reason(exc: pytest.ExceptionInfo[Exception]) -> str:
    reason = getattr(exc.value, "reason", None)
    assert isinstance(reason, str)
    return reason


def _open(sealer: TokenSealer, text: str, now: datetime = NOW) -> UploadToken:
    return sealer.open(text, route=TOKEN.route, user=TOKEN.user, now=now)


@pytest.mark.parametrize("token", [TOKEN, SIMPLE], ids=["multipart", "single-put"])
def test_round_trip(token: UploadToken) -> None:
    """A sealed token opens to the same values, optional fields included or absent."""
    sealer = TokenSealer([KEY])
    assert _open(sealer, sealer.seal(token)) == token


def test_the_sealed_format_is_the_one_letter_names_under_the_upload_token_keys() -> None:
    """Tokens outlive a deploy: one sealed by any release opens in any other. The payload is
    JSON with one-letter names under keys derived for "upload-gateway/upload-token/v1", so a
    renamed field or label would refuse every token in flight; both are pinned here."""
    assert keys.UPLOAD_TOKEN_PURPOSE == "upload-gateway/upload-token/v1"
    fernet = keys.fernet_for([KEY], keys.UPLOAD_TOKEN_PURPOSE)
    sealed = TokenSealer([KEY]).seal(TOKEN)
    plain = json.loads(fernet.decrypt(sealed + "=" * (-len(sealed) % 4)))
    assert plain == {
        "r": TOKEN.route,
        "u": TOKEN.user,
        "k": TOKEN.key,
        "m": TOKEN.multipart_id,
        "s": TOKEN.size,
        "c": TOKEN.content_type,
        "f": TOKEN.filename,
        "h": TOKEN.sha256,
        "p": TOKEN.part_size,
        "e": TOKEN.expires_at,
    }
    # And a payload written by hand in that format (as an earlier release sealed it) opens.
    earlier = fernet.encrypt(json.dumps(plain).encode()).decode().rstrip("=")
    assert _open(TokenSealer([KEY]), earlier) == TOKEN


def test_any_instance_with_the_same_keys_opens_it() -> None:
    """No server-side state: another sealer built from the same keys opens the token."""
    assert _open(TokenSealer([KEY]), TokenSealer([KEY]).seal(TOKEN)) == TOKEN


def test_text_is_url_path_safe_and_opaque() -> None:
    """Every length of token is url-safe base64 without padding, and shows nothing it holds."""
    sealer = TokenSealer([KEY])
    for n in range(48):
        token = replace(SIMPLE, filename="f" * n, key="files/x/" + "f" * n)
        text = sealer.seal(token)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", text), text
        assert _open(sealer, text) == token
    text = sealer.seal(TOKEN)
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    for secret in (b"alice", b"holiday", b"image/jpeg", b"9f86d081884c7d65"):
        assert secret not in raw
        assert secret.decode() not in text


def test_typical_length_is_compact() -> None:
    """Short field names keep a multipart token (AWS-length upload id) to a few hundred chars."""
    text = TokenSealer([KEY]).seal(TOKEN)
    # 631 and 332 chars today; with the dataclass's own field names they would be 716 and 396.
    assert len(text) < 660, len(text)
    assert len(TokenSealer([KEY]).seal(SIMPLE)) < 360


def test_unicode_filename() -> None:
    """Non-ASCII names survive the trip (UTF-8 inside the encryption, ASCII outside)."""
    sealer = TokenSealer([KEY])
    token = replace(SIMPLE, filename="Zoë — résumé 日本.pdf")
    assert _open(sealer, sealer.seal(token)) == token


def test_each_seal_differs() -> None:
    """Sealing twice gives two texts (random IV), so equal uploads are not linkable by id."""
    sealer = TokenSealer([KEY])
    assert sealer.seal(TOKEN) != sealer.seal(TOKEN)


def test_flip_any_character() -> None:
    """Changing any one character anywhere, even in the last one's unused bits, is refused."""
    sealer = TokenSealer([KEY])
    alphabet = string.ascii_letters + string.digits + "-_"
    # Three lengths, one 16-byte block apart, so the text ends with 0, 2 and 4 unused bits.
    texts = [sealer.seal(replace(SIMPLE, filename="f" * n)) for n in (0, 16, 32)]
    assert {len(t) % 4 for t in texts} == {0, 2, 3}
    for text in texts:
        for i, char in enumerate(text):
            position = alphabet.index(char)
            for other in (alphabet[(position + 1) % 64], alphabet[position ^ 1]):
                tampered = text[:i] + other + text[i + 1 :]
                with pytest.raises(Forbidden) as caught:
                    _open(sealer, tampered)
                assert _reason(caught) == "token-invalid", (i, other)


def test_truncated_or_extended() -> None:
    """Every truncation, and any appended character, is refused."""
    sealer = TokenSealer([KEY])
    text = sealer.seal(SIMPLE)
    candidates = [text[:cut] for cut in range(len(text))]
    candidates += [text + "A", text + "AA", text + "=", text + "=="]
    for candidate in candidates:
        with pytest.raises(Forbidden) as caught:
            _open(sealer, candidate)
        assert _reason(caught) == "token-invalid"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not a token", id="spaces"),
        pytest.param("../../etc/passwd", id="path"),
        pytest.param("gAAAAA" + "é" * 80, id="non-ascii"),
        pytest.param("A" * 10_000, id="huge"),
        pytest.param("a+b/c==", id="standard-base64"),
    ],
)
def test_junk_is_invalid(text: str) -> None:
    """Anything that is not a sealed token is a 403 token-invalid, never a 500."""
    with pytest.raises(Forbidden) as caught:
        _open(TokenSealer([KEY]), text)
    assert _reason(caught) == "token-invalid"
    assert caught.value.status == 403


def test_another_deployments_keys() -> None:
    """A token sealed by a gateway with other keys is refused."""
    text = TokenSealer([FOREIGN_KEY]).seal(TOKEN)
    with pytest.raises(Forbidden) as caught:
        _open(TokenSealer([KEY]), text)
    assert _reason(caught) == "token-invalid"


def test_rotation() -> None:
    """Sealed under the old key, opened by [new, old]; [new] alone no longer opens it."""
    text = TokenSealer([OLD_KEY]).seal(TOKEN)
    assert _open(TokenSealer([KEY, OLD_KEY]), text) == TOKEN
    with pytest.raises(Forbidden):
        _open(TokenSealer([KEY]), text)
    fresh = TokenSealer([KEY, OLD_KEY]).seal(TOKEN)
    assert _open(TokenSealer([KEY]), fresh) == TOKEN


def test_other_user() -> None:
    """A token presented by another user is a 403 token-other-user."""
    sealer = TokenSealer([KEY])
    with pytest.raises(Forbidden) as caught:
        sealer.open(sealer.seal(TOKEN), route=TOKEN.route, user="mallory", now=NOW)
    assert _reason(caught) == "token-other-user"


def test_other_route() -> None:
    """A token used at another route (other limits, other forward) is a 403 token-other-route."""
    sealer = TokenSealer([KEY])
    with pytest.raises(Forbidden) as caught:
        sealer.open(sealer.seal(TOKEN), route="avatars", user=TOKEN.user, now=NOW)
    assert _reason(caught) == "token-other-route"


def test_expired() -> None:
    """Valid strictly before expires_at; at or after it, 410 token-expired."""
    sealer = TokenSealer([KEY])
    text = sealer.seal(TOKEN)
    assert _open(sealer, text, NOW + timedelta(seconds=3599)) == TOKEN
    for later in (timedelta(seconds=3600), timedelta(days=30)):
        with pytest.raises(Gone) as caught:
            _open(sealer, text, NOW + later)
        assert _reason(caught) == "token-expired"
        assert caught.value.status == 410


def test_expired_token_of_another_user_is_forbidden_not_gone() -> None:
    """Ownership is checked first, so another user learns nothing about the token's age."""
    sealer = TokenSealer([KEY])
    with pytest.raises(Forbidden) as caught:
        sealer.open(
            sealer.seal(TOKEN), route=TOKEN.route, user="mallory", now=NOW + timedelta(days=1)
        )
    assert _reason(caught) == "token-other-user"


def test_raw_session_key_fernet_is_refused() -> None:
    """Domain separation: a valid payload encrypted with the raw session key (a cookie) fails."""
    payload = json.dumps(
        {
            "r": "files",
            "u": TOKEN.user,
            "k": "files/x/y",
            "s": 1,
            "c": "a/b",
            "f": "y",
            "e": EXPIRES,
        }
    ).encode()
    cookie = Fernet(KEY).encrypt(payload).decode().rstrip("=")
    # The same payload under the derived key is accepted: only the key makes the difference.
    fernet = keys.fernet_for([KEY], keys.UPLOAD_TOKEN_PURPOSE)
    derived = fernet.encrypt(payload).decode().rstrip("=")
    assert _open(TokenSealer([KEY]), derived).key == "files/x/y"
    with pytest.raises(Forbidden) as caught:
        _open(TokenSealer([KEY]), cookie)
    assert _reason(caught) == "token-invalid"


def test_a_session_cookie_is_refused() -> None:
    """A real-shaped session cookie (aiohttp-session JSON under the raw key) is not a token."""
    session = json.dumps({"created": 1, "session": {"user": TOKEN.user}}).encode()
    cookie = Fernet(KEY).encrypt(session).decode().rstrip("=")
    with pytest.raises(Forbidden) as caught:
        _open(TokenSealer([KEY]), cookie)
    assert _reason(caught) == "token-invalid"


BASE = {"r": "files", "u": TOKEN.user, "k": "k", "s": 1, "c": "a/b", "f": "y", "e": EXPIRES}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[]", id="list"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(json.dumps({**BASE, "s": "1"}).encode(), id="size-as-string"),
        pytest.param(json.dumps({**BASE, "s": True}).encode(), id="size-as-bool"),
        pytest.param(json.dumps({**BASE, "e": 1.5}).encode(), id="float-expiry"),
        pytest.param(
            json.dumps({k: v for k, v in BASE.items() if k != "u"}).encode(), id="no-user"
        ),
        pytest.param(json.dumps({**BASE, "x": 1}).encode(), id="unknown-field"),
        pytest.param(json.dumps({**BASE, "m": 5}).encode(), id="upload-id-as-int"),
    ],
)
def test_authentic_but_malformed_payload_is_invalid(payload: bytes) -> None:
    """Even under the right key, a payload of the wrong shape is token-invalid, never a crash."""
    text = keys.fernet_for([KEY], keys.UPLOAD_TOKEN_PURPOSE).encrypt(payload).decode().rstrip("=")
    with pytest.raises(Forbidden) as caught:
        _open(TokenSealer([KEY]), text)
    assert _reason(caught) == "token-invalid"


def test_naive_now_is_a_programming_error() -> None:
    """A naive datetime would be read as local time and shift the expiry: refused outright."""
    sealer = TokenSealer([KEY])
    with pytest.raises(ValueError, match="timezone"):
        _open(sealer, sealer.seal(TOKEN), datetime(2026, 5, 1, 12, 0))
