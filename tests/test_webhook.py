"""The completion message's X-Upload-Signature: signed by the gateway, checked upstream."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

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
    """The header's name is part of the public contract (SPEC, the completion, step 3)."""
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
