"""The messages' signatures: X-Upload-Signature and the Standard Webhooks headers, made with the
key of either form of the secret, checked by gateway.webhook and the standardwebhooks package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway import webhook

SECRET = "whsec-0123456789abcdef"
BODY = b'{"event":"upload.completed","id":"abc","user":"alice"}'
T = 1_700_000_000


def test_round_trip() -> None:
    """A header made by sign() verifies and gives back its timestamp."""
    header = webhook.sign(SECRET, BODY, T)
    assert webhook.verify(SECRET, header, BODY, now=T) == T


def test_sign_defaults_to_now() -> None:
    """Without a timestamp sign() uses the current time, which verify()'s default clock accepts."""
    header = webhook.sign(SECRET, BODY)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    webhook.verify(SECRET, header, BODY)


def test_known_answer() -> None:
    """The header is t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, computed here with hmac."""
    mac = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert webhook.sign(SECRET, BODY, T) == f"t={T},v1={mac}"
    assert webhook.verify(SECRET, f"t={T},v1={mac}", BODY, now=T) == T


def test_header_name() -> None:
    """The header's name is part of the public contract (docs/webhooks.md)."""
    assert webhook.HEADER == "X-Upload-Signature"


def test_wrong_secret() -> None:
    """A header signed with another secret is refused."""
    header = webhook.sign("another-secret-0123456789", BODY, T)
    with pytest.raises(webhook.InvalidSignature, match="does not match"):
        webhook.verify(SECRET, header, BODY, now=T)


@pytest.mark.parametrize("index", [0, len(BODY) // 2, len(BODY) - 1])
def test_changed_body(index: int) -> None:
    """Changing one byte of the body anywhere breaks the signature."""
    header = webhook.sign(SECRET, BODY, T)
    changed = bytearray(BODY)
    changed[index] ^= 0x01
    with pytest.raises(webhook.InvalidSignature, match="does not match"):
        webhook.verify(SECRET, header, bytes(changed), now=T)


def test_changed_timestamp() -> None:
    """The timestamp is signed too: moving it forward to dodge the tolerance breaks the MAC."""
    mac = webhook.sign(SECRET, BODY, T).split("v1=")[1]
    with pytest.raises(webhook.InvalidSignature, match="does not match"):
        webhook.verify(SECRET, f"t={T + 1000},v1={mac}", BODY, now=T + 1000)


def test_old_timestamp() -> None:
    """A genuine header older than the tolerance is refused (replay), and accepted at the edge."""
    header = webhook.sign(SECRET, BODY, T)
    assert webhook.verify(SECRET, header, BODY, now=T + 300) == T
    with pytest.raises(webhook.InvalidSignature, match="too old"):
        webhook.verify(SECRET, header, BODY, now=T + 301)
    with pytest.raises(webhook.InvalidSignature, match="too old"):
        webhook.verify(SECRET, header, BODY, tolerance=10, now=T + 11)


def test_future_timestamp() -> None:
    """The tolerance applies forward too, so a header stamped far ahead cannot be stockpiled."""
    header = webhook.sign(SECRET, BODY, T)
    assert webhook.verify(SECRET, header, BODY, now=T - 300) == T
    with pytest.raises(webhook.InvalidSignature, match="future"):
        webhook.verify(SECRET, header, BODY, now=T - 301)


MAC = "0" * 64


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("", "no X-Upload-Signature", id="empty"),
        pytest.param("   ", "no X-Upload-Signature", id="blank"),
        pytest.param(f"v1={MAC}", "no t=", id="no-t"),
        pytest.param(f"t={T}", "no v1=", id="no-v1"),
        pytest.param(f"t={T},v0={MAC}", "no v1=", id="only-unknown-scheme"),
        pytest.param(f"t=abc,v1={MAC}", "t= is not unix seconds", id="non-numeric-t"),
        pytest.param(f"t=-5,v1={MAC}", "t= is not unix seconds", id="negative-t"),
        pytest.param(f"t={'9' * 5000},v1={MAC}", "t= is not unix seconds", id="huge-t"),
        pytest.param(f"t={T},t={T},v1={MAC}", "more than one t=", id="two-t"),
        pytest.param(f"t={T},v1=xyz", "not 64 hex", id="v1-not-hex"),
        pytest.param(f"t={T},v1={MAC[:-1]}", "not 64 hex", id="v1-short"),
        pytest.param("garbage", "not name=value", id="garbage"),
        pytest.param(f"t={T};v1={MAC}", "t= is not unix seconds", id="wrong-separator"),
        pytest.param(f"t={T},,v1={MAC}", "not name=value", id="empty-item"),
    ],
)
def test_malformed_headers(header: str, message: str) -> None:
    """Every malformed header is an InvalidSignature (a ValueError) with a message saying what."""
    with pytest.raises(webhook.InvalidSignature, match=message) as caught:
        webhook.verify(SECRET, header, BODY, now=T)
    assert isinstance(caught.value, ValueError)


def test_spaces_and_upper_case_hex_are_accepted() -> None:
    """Whitespace around items and upper-case hex are harmless variations of the same header."""
    mac = webhook.sign(SECRET, BODY, T).split("v1=")[1]
    assert webhook.verify(SECRET, f" t={T} , v1={mac.upper()} ", BODY, now=T) == T


def test_multiple_v1_entries_any_match_passes() -> None:
    """During a secret rotation the sender signs with both; either entry may be the valid one."""
    good = webhook.sign(SECRET, BODY, T).split("v1=")[1]
    stale = webhook.sign("old-secret-0123456789ab", BODY, T).split("v1=")[1]
    assert webhook.verify(SECRET, f"t={T},v1={stale},v1={good}", BODY, now=T) == T
    assert webhook.verify(SECRET, f"t={T},v1={good},v1={stale}", BODY, now=T) == T
    assert webhook.verify(SECRET, f"t={T},v2=abc,v1={good}", BODY, now=T) == T
    with pytest.raises(webhook.InvalidSignature, match="does not match"):
        webhook.verify(SECRET, f"t={T},v1={stale},v1={MAC}", BODY, now=T)


def test_signature_is_checked_before_the_clock() -> None:
    """A forged header is a mismatch even when stale, so 'too old' implies an authentic one."""
    with pytest.raises(webhook.InvalidSignature, match="does not match"):
        webhook.verify(SECRET, f"t={T},v1={MAC}", BODY, now=T + 10_000)


def test_negative_inputs_are_programming_errors() -> None:
    """A negative tolerance or timestamp is a caller's bug, not a signature problem."""
    with pytest.raises(ValueError, match="tolerance"):
        webhook.verify(SECRET, webhook.sign(SECRET, BODY, T), BODY, tolerance=-1, now=T)
    with pytest.raises(ValueError, match="timestamp"):
        webhook.sign(SECRET, BODY, -1)


# ----------------------------------------------------------------------------- the secret's forms

# 32 bytes that are no valid UTF-8, so only a decoded key can match what is computed below.
RAW_KEY = bytes(range(224, 256))
WHSEC = "whsec_" + base64.b64encode(RAW_KEY).decode()
MESSAGE_ID = "0123456789abcdef0123456789abcdef"


def _standard(key: bytes, message_id: str, t: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers, computed from the spec with hmac and base64 alone."""
    mac = hmac.new(key, f"{message_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(t),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        pytest.param(SECRET, SECRET.encode(), id="plain"),
        pytest.param("sécret-clé-0123456789", "sécret-clé-0123456789".encode(), id="plain-utf8"),
        pytest.param(WHSEC, RAW_KEY, id="whsec"),
    ],
)
def test_both_headers_use_one_key_per_secret_form(secret: str, key: bytes) -> None:
    """The key of both headers: a plain secret's UTF-8 bytes, a whsec_ secret's decoded bytes."""
    mac = hmac.new(key, f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert webhook.sign(secret, BODY, T) == f"t={T},v1={mac}"
    assert webhook.verify(secret, f"t={T},v1={mac}", BODY, now=T) == T
    assert webhook.standard_headers(secret, MESSAGE_ID, BODY, T) == _standard(
        key, MESSAGE_ID, T, BODY
    )


def test_a_plain_secret_and_its_whsec_form_are_one_key() -> None:
    """``whsec_`` + base64 of a plain secret's UTF-8 signs exactly as the plain secret: the form
    an app hands its library, which ``standard_secret`` gives (a whsec_ secret unchanged)."""
    plain = "sécret-clé-0123456789"
    converted = "whsec_" + base64.b64encode(plain.encode()).decode()
    assert webhook.standard_secret(plain) == converted
    assert webhook.standard_secret(WHSEC) == WHSEC
    assert webhook.sign(converted, BODY, T) == webhook.sign(plain, BODY, T)
    assert webhook.standard_headers(converted, "m", BODY, T) == webhook.standard_headers(
        plain, "m", BODY, T
    )


@pytest.mark.parametrize("secret", [SECRET, "sécret-clé-0123456789", WHSEC])
def test_the_standardwebhooks_library_verifies_the_headers(secret: str) -> None:
    """The PyPI ``standardwebhooks`` package, given standard_secret(secret), accepts the headers
    and refuses them for another body."""
    headers = webhook.standard_headers(secret, MESSAGE_ID, BODY)
    verifier = Webhook(webhook.standard_secret(secret))
    assert verifier.verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY.replace(b"alice", b"bob"), headers)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("whsec_", id="empty"),
        pytest.param("whsec_" + "A" * 31, id="not-a-multiple-of-4"),
        pytest.param("whsec_" + _b64(bytes(25)).rstrip("="), id="unpadded"),
        pytest.param("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode(), id="url-safe"),
        pytest.param("whsec_ " + _b64(RAW_KEY), id="space"),
        pytest.param(WHSEC + "\n", id="newline"),
    ],
)
def test_whsec_secrets_libraries_would_read_differently_are_refused(secret: str) -> None:
    """After whsec_ only padded standard base64 is taken (Go's decoder wants the padding, none
    takes the url-safe alphabet): anything else is a ValueError whose text never holds it."""
    for use in (webhook.secret_key, webhook.check_secret, lambda s: webhook.sign(s, BODY, T)):
        with pytest.raises(ValueError, match="not standard base64") as caught:
            use(secret)
        assert secret.removeprefix("whsec_").strip() not in str(caught.value) or secret == "whsec_"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        pytest.param("whsec_" + _b64(bytes(23)), "decodes to 23 bytes", id="whsec-23-bytes"),
        pytest.param("fifteen-chars!!", "too short: use at least 16", id="plain-15-characters"),
    ],
)
def test_weak_secrets_are_refused_for_signing(secret: str, message: str) -> None:
    """The gateway signs with a whsec_ secret of at least 24 bytes (the spec's floor) or a plain
    one of at least 16 characters; check_secret says which rule is broken."""
    with pytest.raises(ValueError, match=message):
        webhook.check_secret(secret)


def test_secrets_at_the_floors_are_accepted() -> None:
    """24 bytes (the size Svix generates) and 16 characters are enough."""
    webhook.check_secret("whsec_" + _b64(bytes(24)))
    webhook.check_secret("sixteen-chars!!!")
    assert webhook.secret_key("whsec_" + _b64(bytes(24))) == bytes(24)


@pytest.mark.parametrize(
    "message_id",
    ["", "a.b", "a b", "id\r\nX-Evil: 1", "é", "x" * 257],
    ids=["empty", "dot", "space", "crlf", "non-ascii", "too-long"],
)
def test_message_ids_that_would_break_the_scheme_are_refused(message_id: str) -> None:
    """The id joins the signed text with '.', and travels in a header: the spec forbids '.' in
    it, and a space, a line break or a non-ASCII character has no business in it either."""
    with pytest.raises(ValueError, match="message id"):
        webhook.standard_headers(SECRET, message_id, BODY, T)
    assert webhook.standard_headers(SECRET, "x" * 256, BODY, T)["webhook-id"] == "x" * 256
