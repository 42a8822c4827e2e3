"""The signing rules: what Fine Uploader really sends passes, anything an attacker could use fails.

Valid inputs are payloads Fine Uploader 5.16.2 sent (captured from its npm build), moved into
this test's bucket and user prefix; the tampered ones are what an attacker would want signed:
other keys, buckets, methods and queries, public ACLs, presigned URLs, far expirations.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import pytest
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.problems import BadRequest, PayloadTooLarge, PolicyRefused, UnsupportedMediaType
from gateway.rules import (
    SigningContext,
    check_declared_file,
    check_key,
    check_rest_v2,
    check_rest_v4,
    content_type_allowed,
    escape_key,
    media,
    tighten_policy,
)
from gateway.rules.media import is_active, is_inert, media_essence

NOW = datetime(2026, 11, 25, 3, 11, 0, tzinfo=UTC)
PREFIX = "3f2a9c0d1e2b4a5c/"
BUCKET = "mybucket"
HOST = "mybucket.s3-eu-west-1.amazonaws.com"
BLANK = "https://app.example.com/uploads/photos/blank"
MAX_SIZE = 20 * 1024 * 1024
CTX = SigningContext(
    uploads_bucket=BUCKET,
    bucket_host=HOST,
    key_prefix=PREFIX,
    acl="private",
    content_types=("image/*",),
    max_size=MAX_SIZE,
    signature_ttl=900,
    blank_page_url=BLANK,
    access_key_id="AKIDEXAMPLE",
    region="eu-west-1",
)
EXPIRES = "2026-11-25T03:26:00.000Z"  # NOW + signature_ttl
CRED = "AKIDEXAMPLE/20261125/eu-west-1/s3/aws4_request"
SCOPE = "20261125/eu-west-1/s3/aws4_request"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
PART_SHA = "c036cbb7553a909f8b8877d4461924307f27ecb66cff928eeeafd569c3887e29"
AMZ = "20261125T031043Z"
HTTP_DATE = "Wed, 25 Nov 2026 03:10:38 GMT"
KEY = PREFIX + "e51a6e40-d562-44af-ae32-c75a68408ffb.jpg"
UPLOAD_ID = "UPLOADID123"

# Fine Uploader's v2 policy (captured), with the key under this user's prefix.
V2_POLICY: dict[str, Any] = {
    "expiration": "2026-11-25T03:15:31.611Z",
    "conditions": [
        {"acl": "private"},
        {"bucket": BUCKET},
        {"Content-Type": "image/jpeg"},
        {"success_action_status": "200"},
        {"key": PREFIX + "a08348b8-9a24-4b81-94c0-7789d58340b2.jpg"},
        {"x-amz-meta-dataset": "ds-1"},
        {"Cache-Control": "max-age=60"},
        {"x-amz-meta-qqfilename": "my%20photo%20(1).jpg"},
        ["content-length-range", "0", "15000000"],
    ],
}
# Fine Uploader's v4 policy (captured, reduced redundancy and SSE on), with the route's acl
# and prefix.
V4_POLICY: dict[str, Any] = {
    "expiration": "2026-11-25T03:15:35.695Z",
    "conditions": [
        {"acl": "private"},
        {"bucket": BUCKET},
        {"Content-Type": "image/jpeg"},
        {"success_action_status": "200"},
        {"x-amz-storage-class": "REDUCED_REDUNDANCY"},
        {"x-amz-server-side-encryption": "AES256"},
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"key": PREFIX + "0ad2285b-0d88-4cf4-9a8b-18462287efe3.jpg"},
        {"x-amz-credential": CRED},
        {"x-amz-date": "20261125T031035Z"},
        {"x-amz-meta-dataset": "ds-1"},
        {"Cache-Control": "max-age=60"},
        {"x-amz-meta-qqfilename": "my%20photo%20(1).jpg"},
        ["content-length-range", "1", "15000000"],
    ],
}

# Fine Uploader's v4 string of part 1 (captured), with the key under this user's prefix.
V4_PART = (
    "AWS4-HMAC-SHA256\n20261125T031043Z\n20261125/eu-west-1/s3/aws4_request\n"
    f"PUT\n/{KEY}\npartNumber=1&uploadId=UPLOADID123\n"
    f"host:{HOST}\nx-amz-content-sha256:{PART_SHA}\nx-amz-date:20261125T031043Z\n"
    f"\nhost;x-amz-content-sha256;x-amz-date\n{PART_SHA}"
)
# Fine Uploader's v4 string of an initiate (captured).
V4_INITIATE = (
    "AWS4-HMAC-SHA256\n20261125T031043Z\n20261125/eu-west-1/s3/aws4_request\n"
    f"POST\n/{KEY}\nuploads=\nhost:{HOST}\nx-amz-acl:private\n"
    f"x-amz-content-sha256:{EMPTY_SHA}\nx-amz-date:20261125T031043Z\n"
    "x-amz-meta-dataset:ds-1\nx-amz-meta-qqfilename:my%20photo%20(1).jpg\n\n"
    "host;x-amz-acl;x-amz-content-sha256;x-amz-date;x-amz-meta-dataset;x-amz-meta-qqfilename\n"
    f"{EMPTY_SHA}"
)
# Fine Uploader's v2 strings (captured), with the key under this user's prefix.
V2_KEY_PATH = f"/{BUCKET}/{PREFIX}967b632e-07c1-4cb3-b1ef-2393bb3734bb.jpg"
V2_INITIATE = (
    f"POST\n\nimage/jpeg\n\nx-amz-acl:private\nx-amz-date:{HTTP_DATE}\n"
    f"x-amz-meta-dataset:ds-1\nx-amz-meta-qqfilename:my%20photo%20(1).jpg\n{V2_KEY_PATH}?uploads"
)
V2_PART = f"PUT\n\n\n\nx-amz-date:{HTTP_DATE}\n{V2_KEY_PATH}?partNumber=1&uploadId=UPLOADID123"
V2_COMPLETE = (
    f"POST\n\napplication/xml; charset=UTF-8\n\nx-amz-date:{HTTP_DATE}\n"
    f"{V2_KEY_PATH}?uploadId=UPLOADID123"
)
V2_ABORT = (
    f"DELETE\n\n\n\nx-amz-date:Wed, 25 Nov 2026 03:11:06 GMT\n{V2_KEY_PATH}?uploadId=UPLOADID123"
)


def v4_rest(
    method: str = "PUT",
    path: str = "/" + KEY,
    query: str = "partNumber=1&uploadId=UPLOADID123",
    headers: dict[str, str | None] | None = None,
    payload: str = PART_SHA,
    *,
    amz: str = AMZ,
    scope: str = "20261125/eu-west-1/s3/aws4_request",
    signed: str | None = None,
) -> str:
    """A Fine Uploader-style raw v4 string; headers default to host, content hash and date."""
    merged: dict[str, str | None] = {
        "host": HOST,
        "x-amz-content-sha256": payload,
        "x-amz-date": amz,
    }
    given_headers = {k: v for k, v in {**merged, **(headers or {})}.items() if v is not None}
    names = sorted(given_headers)
    lines = [f"{name}:{given_headers[name]}" for name in names]
    signed_line = ";".join(names) if signed is None else signed
    canonical = "\n".join([method, path, query, *lines, "", signed_line, payload])
    return f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{canonical}"


def v4_initiate(**headers: str) -> str:
    """An initiate string with Fine Uploader's headers, plus or minus the given ones."""
    base: dict[str, str | None] = {
        "x-amz-acl": "private",
        "x-amz-meta-qqfilename": "a.jpg",
        **headers,
    }
    return v4_rest("POST", query="uploads=", headers=base, payload=EMPTY_SHA)


def v2_rest(
    method: str = "PUT",
    content_type: str = "",
    headers: list[str] | None = None,
    resource: str = V2_KEY_PATH + "?partNumber=1&uploadId=UPLOADID123",
    *,
    md5: str = "",
    date_line: str = "",
) -> str:
    """A v2 string to sign in Fine Uploader's layout; headers are given as sorted lines."""
    lines = [f"x-amz-date:{HTTP_DATE}"] if headers is None else headers
    return "\n".join([method, md5, content_type, date_line, *lines, resource])


def conditions_with(doc: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of doc with the named condition's value replaced (added at the end if absent)."""
    out = copy.deepcopy(doc)
    for cond in out["conditions"]:
        if isinstance(cond, dict) and name in cond:
            cond[name] = value
            return out
    out["conditions"].append({name: value})
    return out


def without(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of doc without the named condition."""
    out = copy.deepcopy(doc)
    out["conditions"] = [
        c for c in out["conditions"] if not (isinstance(c, dict) and name in c)
        and not (isinstance(c, list) and c and c[0] == name)
    ]  # fmt: skip
    return out


def appended(doc: dict[str, Any], *conditions: Any) -> dict[str, Any]:
    """A copy of doc with extra conditions at the end."""
    out = copy.deepcopy(doc)
    out["conditions"].extend(conditions)
    return out


def with_range(doc: dict[str, Any], *bounds: Any) -> dict[str, Any]:
    """A copy of doc whose content-length-range holds the given elements."""
    return appended(without(doc, "content-length-range"), ["content-length-range", *bounds])


def reason_of(call: Callable[[], object]) -> str:
    """The reason of the PolicyRefused that call raises."""
    with pytest.raises(PolicyRefused) as info:
        call()
    assert info.value.status == 400
    return info.value.reason


# --- accepted documents --------------------------------------------------------------------------


def test_v2_captured_policy_is_tightened() -> None:
    """Fine Uploader's v2 policy passes; only the expiration changes and the range becomes ints."""
    out = tighten_policy(copy.deepcopy(V2_POLICY), CTX, version=2, now=NOW)
    assert out == {
        "expiration": EXPIRES,
        "conditions": [*V2_POLICY["conditions"][:-1], ["content-length-range", 0, 15_000_000]],
    }


def test_v4_captured_policy_is_tightened() -> None:
    """Fine Uploader's v4 policy passes with every form-field condition kept as sent, in order."""
    out = tighten_policy(copy.deepcopy(V4_POLICY), CTX, version=4, now=NOW)
    assert out == {
        "expiration": EXPIRES,
        "conditions": [*V4_POLICY["conditions"][:-1], ["content-length-range", 1, 15_000_000]],
    }


def test_missing_length_range_is_added() -> None:
    """Without a page size limit Fine Uploader sends no range; the gateway adds 0..max_size."""
    out = tighten_policy(without(V4_POLICY, "content-length-range"), CTX, version=4, now=NOW)
    assert out["conditions"][-1] == ["content-length-range", 0, MAX_SIZE]
    assert out["conditions"][:-1] == V4_POLICY["conditions"][:-1]


def test_length_range_is_clamped_to_max_size() -> None:
    """A client maximum above the route's (Fine Uploader's 2**53 default) is cut to max_size."""
    doc = with_range(V4_POLICY, 1, "9007199254740992")
    assert tighten_policy(doc, CTX, version=4, now=NOW)["conditions"][-1] == [
        "content-length-range",
        1,
        MAX_SIZE,
    ]


def test_length_range_keeps_its_position() -> None:
    """A range placed mid-list stays there: the signed copy differs from the sent one only there."""
    doc = copy.deepcopy(V2_POLICY)
    doc["conditions"].insert(2, doc["conditions"].pop())
    out = tighten_policy(doc, CTX, version=2, now=NOW)
    assert out["conditions"][2] == ["content-length-range", 0, 15_000_000]
    assert [c for c in out["conditions"] if isinstance(c, dict)] == [
        c for c in doc["conditions"] if isinstance(c, dict)
    ]


@pytest.mark.parametrize("expiration", ["2099-01-01T00:00:00.000Z", "1970-01-01T00:00:00Z", ""])
def test_client_expiration_is_replaced(expiration: str) -> None:
    """A far-future (or any) client expiration never reaches the signed copy: now + ttl does."""
    doc = copy.deepcopy(V4_POLICY)
    doc["expiration"] = expiration
    assert tighten_policy(doc, CTX, version=4, now=NOW)["expiration"] == EXPIRES


def test_iframe_policy_with_blank_page_redirect_passes() -> None:
    """The iframe path sends success_action_redirect (this route's blank page) and no type."""
    doc = conditions_with(
        without(V2_POLICY, "success_action_status"), "success_action_redirect", BLANK
    )
    doc = without(doc, "Content-Type")
    out = tighten_policy(doc, CTX, version=2, now=NOW)
    assert {"success_action_redirect": BLANK} in out["conditions"]


def test_unusual_but_valid_keys_pass() -> None:
    """Keys from filenames (spaces, parens, accents, emoji, nested folders) are fine."""
    for name in ["my photo (1).jpg", "été/ça.png", "a/b/c.d", "👨‍👩‍👧.gif", "...", ".hidden"]:
        doc = conditions_with(V2_POLICY, "key", PREFIX + name)
        tighten_policy(doc, CTX, version=2, now=NOW)


def test_prefix_hijack_admin_admin2() -> None:
    """User admin's prefix is admin/, so a key under admin2/ is refused (drf-to-s3 98fa2ce)."""
    admin = replace(CTX, key_prefix="admin/")
    assert reason_of(lambda: check_key("admin2/x.jpg", "admin/")) == "key-outside-prefix"
    doc = conditions_with(V2_POLICY, "key", "admin2/x.jpg")
    assert reason_of(lambda: tighten_policy(doc, admin, version=2, now=NOW)) == (
        "key-outside-prefix"
    )
    tighten_policy(conditions_with(V2_POLICY, "key", "admin/x.jpg"), admin, version=2, now=NOW)


def test_literal_active_type_is_allowed_when_listed() -> None:
    """A route that lists text/html literally may take it; */* alone never does."""
    doc = conditions_with(V2_POLICY, "Content-Type", "text/html")
    tighten_policy(doc, replace(CTX, content_types=("text/html",)), version=2, now=NOW)
    star = replace(CTX, content_types=("*/*",))
    assert reason_of(lambda: tighten_policy(doc, star, version=2, now=NOW)) == (
        "content-type-not-allowed"
    )


def test_no_redirect_without_a_blank_page() -> None:
    """A context without a blank page (API routes) allows no redirect at all, not even ""."""
    doc = conditions_with(
        without(V2_POLICY, "success_action_status"), "success_action_redirect", ""
    )
    no_blank = replace(CTX, blank_page_url="")
    assert reason_of(lambda: tighten_policy(doc, no_blank, version=2, now=NOW)) == (
        "redirect-not-allowed"
    )


def test_refusal_detail_quotes_client_text_briefly() -> None:
    """Error details echo client names quoted and cut to 40 characters, never whole bodies."""
    doc = appended(V2_POLICY, {"x" * 5000: "1"})
    with pytest.raises(PolicyRefused) as info:
        tighten_policy(doc, CTX, version=2, now=NOW)
    assert info.value.reason == "unknown-condition"
    assert len(info.value.detail) < 120


def test_naive_now_is_a_programming_error() -> None:
    """A naive clock would shift every skew check by the local offset, so it is refused loudly."""
    with pytest.raises(ValueError):
        tighten_policy(V2_POLICY, CTX, version=2, now=NOW.replace(tzinfo=None))


# --- refused documents ---------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _key(value: str) -> Mutation:
    return lambda d: conditions_with(d, "key", value)


POLICY_V4_CASES = [
    pytest.param(lambda d: [d], "not-a-policy", id="list-body"),
    pytest.param(lambda d: {"headers": "PUT\n"}, "not-a-policy", id="rest-body"),
    pytest.param(lambda d: {**d, "signature": "x"}, "policy-extra-field", id="extra-top-level"),
    pytest.param(lambda d: {**d, "expiration": 4102444800}, "expiration-invalid", id="expiry-int"),
    pytest.param(lambda d: {**d, "conditions": {"acl": "x"}}, "conditions-invalid", id="cond-dict"),
    pytest.param(_key("other/x.jpg"), "key-outside-prefix", id="key-other-user"),
    pytest.param(_key("3f2a9c0d1e2b4a5c0/x.jpg"), "key-outside-prefix", id="prefix-hijack"),
    pytest.param(_key("site/index.html"), "key-outside-prefix", id="key-site-asset"),
    pytest.param(_key(PREFIX + "../other/x.jpg"), "key-dot-segment", id="key-dotdot"),
    pytest.param(_key(PREFIX + "./x.jpg"), "key-dot-segment", id="key-dot"),
    pytest.param(_key(PREFIX + "a//b.jpg"), "key-empty-segment", id="key-double-slash"),
    pytest.param(_key(PREFIX), "key-empty-segment", id="key-is-prefix"),
    pytest.param(_key(PREFIX + "a\\..\\b"), "key-bad-character", id="key-backslash"),
    pytest.param(_key(PREFIX + "a\nb"), "key-bad-character", id="key-newline"),
    pytest.param(_key(PREFIX + "a\x85b"), "key-bad-character", id="key-c1-control"),
    pytest.param(_key(PREFIX + "a\ud800"), "key-bad-character", id="key-lone-surrogate"),
    pytest.param(_key(PREFIX + "é" * 600), "key-too-long", id="key-1200-bytes"),
    pytest.param(
        lambda d: appended(without(d, "key"), ["starts-with", "$key", PREFIX]),
        "starts-with-not-allowed",
        id="starts-with-key",
    ),
    pytest.param(
        lambda d: appended(d, ["STARTS-WITH", "$Content-Type", ""]),
        "starts-with-not-allowed",
        id="starts-with-upper",
    ),
    pytest.param(
        lambda d: appended(without(d, "acl"), ["eq", "$acl", "private"]),
        "eq-array-not-allowed",
        id="eq-array",
    ),
    pytest.param(lambda d: conditions_with(d, "acl", "public-read"), "acl-not-allowed", id="acl"),
    pytest.param(
        lambda d: appended(without(d, "acl"), {"ACL": "public-read-write"}),
        "acl-not-allowed",
        id="acl-upper-case-name",
    ),
    pytest.param(lambda d: conditions_with(d, "bucket", "other"), "bucket-mismatch", id="bucket"),
    pytest.param(
        lambda d: conditions_with(d, "Content-Type", "text/html"),
        "content-type-not-allowed",
        id="text-html",
    ),
    pytest.param(
        lambda d: conditions_with(d, "Content-Type", "image/svg+xml"),
        "content-type-not-allowed",
        id="svg-under-image-star",
    ),
    pytest.param(
        lambda d: conditions_with(d, "Content-Type", "image/png, text/html"),
        "content-type-not-allowed",
        id="type-list",
    ),
    pytest.param(
        lambda d: conditions_with(d, "success_action_status", "201"),
        "success-status-not-allowed",
        id="status-201",
    ),
    pytest.param(
        lambda d: conditions_with(
            without(d, "success_action_status"), "success_action_redirect", "https://evil.example/"
        ),
        "redirect-not-allowed",
        id="open-redirect",
    ),
    pytest.param(
        lambda d: conditions_with(
            without(d, "success_action_status"), "success_action_redirect", BLANK + "?next=//evil"
        ),
        "redirect-not-allowed",
        id="redirect-with-query",
    ),
    pytest.param(
        lambda d: conditions_with(d, "success_action_redirect", BLANK),
        "success-action-conflict",
        id="status-and-redirect",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-credential", CRED.replace("AKIDEXAMPLE", "AKIDOTHER")),
        "credential-mismatch",
        id="foreign-credential",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-credential", CRED.replace("eu-west-1", "us-east-1")),
        "credential-mismatch",
        id="credential-region",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-credential", CRED.replace("/s3/", "/iam/")),
        "credential-mismatch",
        id="credential-service",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-credential", CRED.replace("20261125", "20261130")),
        "credential-date-skewed",
        id="credential-date-ahead",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-credential", CRED.replace("20261125", "20261124")),
        "date-credential-mismatch",
        id="credential-other-day",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-date", "20261125T040000Z"),
        "date-skewed",
        id="skewed-date",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-date", "2026-11-25T03:10:35Z"),
        "date-invalid",
        id="date-format",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-algorithm", "AWS4-HMAC-SHA1"),
        "algorithm-not-allowed",
        id="algorithm",
    ),
    pytest.param(lambda d: without(d, "key"), "missing-condition", id="missing-key"),
    pytest.param(lambda d: without(d, "bucket"), "missing-condition", id="missing-bucket"),
    pytest.param(
        lambda d: without(d, "x-amz-credential"), "missing-condition", id="missing-credential"
    ),
    pytest.param(
        lambda d: appended(d, {"Key": PREFIX + "x.jpg"}), "duplicate-condition", id="dup-key-case"
    ),
    pytest.param(
        lambda d: appended(d, {"content-type": "image/png"}),
        "duplicate-condition",
        id="dup-type-case",
    ),
    pytest.param(
        lambda d: appended(d, ["content-length-range", 0, 5]),
        "duplicate-condition",
        id="dup-length-range",
    ),
    pytest.param(
        lambda d: conditions_with(d, "acl", 1), "condition-value-not-string", id="value-int"
    ),
    pytest.param(
        lambda d: conditions_with(d, "key", [PREFIX + "a"]),
        "condition-value-not-string",
        id="value-array",
    ),
    pytest.param(
        lambda d: conditions_with(d, "bucket", None),
        "condition-value-not-string",
        id="value-null",
    ),
    pytest.param(
        lambda d: appended(d, [["content-length-range", 0, 5]]),
        "condition-malformed",
        id="nested-array",
    ),
    pytest.param(
        lambda d: appended(d, {"x-amz-meta-a": "1", "x-amz-meta-b": "2"}),
        "condition-malformed",
        id="two-key-object",
    ),
    pytest.param(lambda d: appended(d, {}), "condition-malformed", id="empty-object"),
    pytest.param(lambda d: appended(d, "acl"), "condition-malformed", id="bare-string"),
    pytest.param(
        lambda d: appended(d, ["x-amz-meta-a", "1", "2"]), "condition-malformed", id="other-array"
    ),
    pytest.param(
        lambda d: appended(d, {"x-amz-website-redirect-location": "/evil"}),
        "unknown-condition",
        id="website-redirect",
    ),
    pytest.param(
        lambda d: appended(d, {"x-amz-security-token": "t"}),
        "unknown-condition",
        id="security-token",
    ),
    pytest.param(lambda d: appended(d, {"redirect": BLANK}), "unknown-condition", id="redirect"),
    pytest.param(
        lambda d: appended(d, {"x-amz-grant-read": "uri=AllUsers"}),
        "unknown-condition",
        id="grant",
    ),
    pytest.param(
        lambda d: appended(without(d, "content-length-range"), {"content-length-range": "1"}),
        "length-range-invalid",
        id="range-as-object",
    ),
    pytest.param(lambda d: with_range(d, -1, 10), "length-range-invalid", id="range-negative"),
    pytest.param(lambda d: with_range(d, 10, 5), "length-range-invalid", id="range-inverted"),
    pytest.param(lambda d: with_range(d, "0", "1e9"), "length-range-invalid", id="range-float"),
    pytest.param(lambda d: with_range(d, False, 10), "length-range-invalid", id="range-bool"),
    pytest.param(lambda d: with_range(d, 0), "length-range-invalid", id="range-short"),
    pytest.param(lambda d: with_range(d, 1.5, 10), "length-range-invalid", id="range-real"),
    pytest.param(
        lambda d: with_range(d, MAX_SIZE + 1, MAX_SIZE + 2),
        "length-range-above-max",
        id="range-min-above-max",
    ),
    pytest.param(
        lambda d: appended(d, {"x-amz-meta-big": "a" * 3000}), "meta-too-large", id="huge-meta"
    ),
    pytest.param(
        lambda d: appended(d, *({f"x-amz-meta-m{i}": "v" * 100} for i in range(20))),
        "meta-too-large",
        id="many-meta",
    ),
    pytest.param(
        lambda d: appended(d, {"x-amz-meta-a.b": "1"}), "meta-name-invalid", id="meta-name-dot"
    ),
    pytest.param(lambda d: appended(d, {"x-amz-meta-": "1"}), "meta-name-invalid", id="meta-empty"),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-meta-dataset", "é"),
        "meta-value-invalid",
        id="meta-utf8",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-storage-class", "GLACIER"),
        "storage-class-not-allowed",
        id="glacier",
    ),
    pytest.param(
        lambda d: conditions_with(d, "x-amz-server-side-encryption", "aws:kms:dsse"),
        "encryption-not-allowed",
        id="sse",
    ),
    pytest.param(
        lambda d: conditions_with(d, "Cache-Control", "max-age=60\r\nX-Evil: 1"),
        "header-value-invalid",
        id="header-crlf",
    ),
    pytest.param(
        lambda d: appended(d, {"Content-Disposition": "attachment; filename=" + "a" * 1100}),
        "header-value-too-long",
        id="header-long",
    ),
]


@pytest.mark.parametrize(("mutation", "reason"), POLICY_V4_CASES)
def test_tampered_v4_policy_is_refused(mutation: Mutation, reason: str) -> None:
    """Each tampering of the captured v4 policy is refused for its own reason."""
    doc = mutation(copy.deepcopy(V4_POLICY))
    assert reason_of(lambda: tighten_policy(doc, CTX, version=4, now=NOW)) == reason


POLICY_V2_CASES = [
    pytest.param(
        lambda d: appended(d, {"x-amz-credential": CRED}), "v4-condition-in-v2", id="credential"
    ),
    pytest.param(lambda d: appended(d, {"x-amz-date": AMZ}), "v4-condition-in-v2", id="date"),
    pytest.param(
        lambda d: appended(d, {"X-Amz-Algorithm": "AWS4-HMAC-SHA256"}),
        "v4-condition-in-v2",
        id="algorithm",
    ),
    pytest.param(lambda d: without(d, "acl"), "missing-condition", id="missing-acl"),
    pytest.param(_key("admin/../" + PREFIX + "x"), "key-outside-prefix", id="key-climbs-in"),
]


@pytest.mark.parametrize(("mutation", "reason"), POLICY_V2_CASES)
def test_tampered_v2_policy_is_refused(mutation: Mutation, reason: str) -> None:
    """v2 policies may not carry v4 fields, and share every other rule."""
    doc = mutation(copy.deepcopy(V2_POLICY))
    assert reason_of(lambda: tighten_policy(doc, CTX, version=2, now=NOW)) == reason


def test_refused_policy_left_the_input_alone() -> None:
    """The tightened copy is new: checking never edits the caller's document."""
    doc = copy.deepcopy(V4_POLICY)
    tighten_policy(doc, CTX, version=4, now=NOW)
    assert doc == V4_POLICY


# --- REST strings: accepted ----------------------------------------------------------------------


def _sts(raw: str) -> str:
    head, canonical = raw.split("\n", 3)[:3], raw.split("\n", 3)[3]
    return "\n".join([*head, hashlib.sha256(canonical.encode()).hexdigest()])


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(V4_PART, id="part"),
        pytest.param(V4_INITIATE, id="initiate"),
        pytest.param(
            v4_rest(
                "POST", query="uploadId=UPLOADID123", payload=hashlib.sha256(b"<x/>").hexdigest()
            ),
            id="complete",
        ),
        pytest.param(
            v4_rest("DELETE", query="uploadId=UPLOADID123", payload=EMPTY_SHA), id="abort"
        ),
        pytest.param(
            v4_initiate(
                **{"x-amz-storage-class": "REDUCED_REDUNDANCY"},
                **{"x-amz-server-side-encryption": "AES256"},
            ),
            id="initiate-rr-sse",
        ),
        pytest.param(
            v4_rest(
                path="/" + escape_key(PREFIX + "my photo (1).jpg"),
                query="partNumber=4&uploadId=a%2Bb",
            ),
            id="escaped-key-last-part",
        ),
    ],
)
def test_v4_rest_forms_are_signed(raw: str) -> None:
    """The four multipart calls pass; the answer hashes the canonical request."""
    assert check_rest_v4(raw, CTX, now=NOW) == _sts(raw)


def test_v4_captured_part_string_to_sign() -> None:
    """The captured part request gives the standard string to sign, hash spelled out."""
    canonical = V4_PART.split("\n", 3)[3]
    assert check_rest_v4(V4_PART, CTX, now=NOW) == (
        "AWS4-HMAC-SHA256\n20261125T031043Z\n20261125/eu-west-1/s3/aws4_request\n"
        + hashlib.sha256(canonical.encode()).hexdigest()
    )


def test_v4_string_to_sign_matches_botocore() -> None:
    """botocore's own canonical request for an upload part passes and yields its string to sign."""
    url = f"https://{HOST}/{escape_key(PREFIX + 'my photo (1).jpg')}?partNumber=2&uploadId=U1"
    request = AWSRequest(method="PUT", url=url, data=b"chunk bytes")
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "s3", "eu-west-1")
    request.context["timestamp"] = AMZ
    request.context["payload_signing_enabled"] = True
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    raw = f"AWS4-HMAC-SHA256\n{AMZ}\n20261125/eu-west-1/s3/aws4_request\n{canonical}"
    assert check_rest_v4(raw, CTX, now=NOW) == auth.string_to_sign(request, canonical)


@pytest.mark.parametrize("raw", [V2_INITIATE, V2_PART, V2_COMPLETE, V2_ABORT])
def test_v2_captured_rest_strings_are_signed_unchanged(raw: str) -> None:
    """The captured v2 initiate/part/complete/abort pass and are signed as sent."""
    assert check_rest_v2(raw, CTX, now=NOW) == raw


def test_v2_escaped_filename_key_passes() -> None:
    """With objectProperties.key = filename, the resource is escaped per segment."""
    raw = V2_PART.replace(V2_KEY_PATH, f"/{BUCKET}/{PREFIX}my%20photo%20%281%29.jpg")
    assert check_rest_v2(raw, CTX, now=NOW) == raw


# --- REST strings: refused -----------------------------------------------------------------------

PRESIGN_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261125%2Feu-west-1%2Fs3"
    "%2Faws4_request&X-Amz-Date=20261125T031043Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
)

REST_V4_CASES = [
    pytest.param(v4_rest("GET", "/" + PREFIX + "x", ""), "rest-method-not-allowed", id="get-own"),
    pytest.param(
        v4_rest("GET", "/other/secret.pdf", ""), "rest-method-not-allowed", id="get-other"
    ),
    pytest.param(v4_rest("GET", "/", "list-type=2"), "rest-method-not-allowed", id="list-bucket"),
    pytest.param(v4_rest("HEAD", query="uploadId=U"), "rest-method-not-allowed", id="head"),
    pytest.param(v4_rest("GET", query="uploadId=U"), "rest-method-not-allowed", id="list-parts"),
    pytest.param(
        v4_rest("PUT", query=PRESIGN_QUERY, payload=EMPTY_SHA),
        "rest-query-not-allowed",
        id="presign-x-amz-expires",
    ),
    pytest.param(
        v4_rest(query="partNumber=1&uploadId=U&X-Amz-Expires=604800"),
        "rest-query-not-allowed",
        id="part-plus-expires",
    ),
    pytest.param(v4_rest("PUT", query="acl="), "rest-query-not-allowed", id="put-acl"),
    pytest.param(v4_rest("PUT", "/", "policy="), "rest-query-not-allowed", id="put-policy"),
    pytest.param(v4_rest("PUT", query=""), "rest-query-not-allowed", id="plain-put"),
    pytest.param(v4_rest(query="partNumber=01&uploadId=U"), "rest-query-not-allowed", id="pn-01"),
    pytest.param(v4_rest(query="partNumber=1&uploadId=a&b"), "rest-query-not-allowed", id="id-amp"),
    pytest.param(v4_rest(query="uploadId=U&partNumber=1"), "rest-query-not-allowed", id="unsorted"),
    pytest.param(v4_rest("PUT", query="uploads="), "rest-method-not-allowed", id="put-uploads"),
    pytest.param(v4_rest("DELETE", query="uploads="), "rest-method-not-allowed", id="del-uploads"),
    pytest.param(v4_rest("POST"), "rest-method-not-allowed", id="post-part"),
    pytest.param(v4_rest(query="partNumber=0&uploadId=U"), "part-number-out-of-range", id="pn-0"),
    pytest.param(v4_rest(query="partNumber=5&uploadId=U"), "part-number-out-of-range", id="pn-5"),
    pytest.param(
        v4_rest(query="partNumber=10001&uploadId=U"), "part-number-out-of-range", id="pn-10001"
    ),
    pytest.param(
        v4_rest("POST", "/", "uploads=", payload=EMPTY_SHA),
        "key-outside-prefix",
        id="bucket-root",
    ),
    pytest.param(v4_rest(path="/other/x.jpg"), "key-outside-prefix", id="other-key"),
    pytest.param(v4_rest(path="/" + PREFIX + "../x"), "key-dot-segment", id="uri-dotdot"),
    pytest.param(v4_rest(path="/" + PREFIX + "a%5Cb"), "key-bad-character", id="uri-backslash"),
    pytest.param(v4_rest(path="/" + PREFIX + "(1).jpg"), "rest-uri-invalid", id="uri-raw-parens"),
    pytest.param(v4_rest(path="/" + PREFIX + "a%2fb"), "rest-uri-invalid", id="uri-lower-hex"),
    pytest.param(v4_rest(path="/" + PREFIX + "a%2Fb"), "rest-uri-invalid", id="uri-slash-escaped"),
    pytest.param(v4_rest(path="/" + PREFIX + "%2E%2E"), "rest-uri-invalid", id="uri-dots-escaped"),
    pytest.param(v4_rest(path="/" + PREFIX + "%FF"), "rest-uri-invalid", id="uri-not-utf8"),
    pytest.param(v4_rest(path=PREFIX + "x"), "rest-uri-invalid", id="uri-relative"),
    pytest.param(
        v4_rest(headers={"x-amz-copy-source": "/other-bucket/secret"}),
        "rest-header-not-allowed",
        id="copy-source",
    ),
    pytest.param(
        v4_initiate(**{"x-amz-grant-read": "uri=http://acs.amazonaws.com/groups/global/AllUsers"}),
        "rest-header-not-allowed",
        id="grant-read",
    ),
    pytest.param(
        v4_initiate(**{"x-amz-website-redirect-location": "https://evil.example/"}),
        "rest-header-not-allowed",
        id="website-redirect",
    ),
    pytest.param(v4_initiate(**{"x-amz-tagging": "a=b"}), "rest-header-not-allowed", id="tagging"),
    pytest.param(
        v4_rest(headers={"x-amz-acl": "private"}), "rest-header-not-allowed", id="acl-on-part"
    ),
    pytest.param(
        v4_rest(headers={"x-amz-meta-a": "1"}), "rest-header-not-allowed", id="meta-on-part"
    ),
    pytest.param(
        v4_rest(headers={"x-amz-security-token": "t"}),
        "rest-header-not-allowed",
        id="security-token",
    ),
    pytest.param(v4_initiate(**{"x-amz-acl": "public-read"}), "acl-not-allowed", id="public-acl"),
    pytest.param(
        v4_initiate(**{"content-type": "text/html"}),
        "content-type-not-allowed",
        id="initiate-text-html",
    ),
    pytest.param(
        v4_rest(headers={"content-type": "image/png"}),
        "content-type-not-allowed",
        id="type-on-part",
    ),
    pytest.param(
        v4_initiate(**{"x-amz-storage-class": "DEEP_ARCHIVE"}),
        "storage-class-not-allowed",
        id="deep-archive",
    ),
    pytest.param(
        v4_initiate(**{"x-amz-meta-big": "a" * 2100}), "meta-too-large", id="initiate-huge-meta"
    ),
    pytest.param(
        v4_rest(headers={"content-md5": "not-md5"}), "content-md5-invalid", id="content-md5"
    ),
    pytest.param(
        v4_rest(payload="UNSIGNED-PAYLOAD"), "rest-payload-hash-invalid", id="unsigned-payload"
    ),
    pytest.param(
        v4_rest(payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        "rest-payload-hash-invalid",
        id="streaming-payload",
    ),
    pytest.param(v4_rest(payload=PART_SHA.upper()), "rest-payload-hash-invalid", id="hash-upper"),
    pytest.param(
        v4_rest(headers={"x-amz-content-sha256": EMPTY_SHA}),
        "rest-payload-hash-mismatch",
        id="hash-header-differs",
    ),
    pytest.param(
        v4_rest(headers={"host": "other-bucket.s3-eu-west-1.amazonaws.com"}),
        "rest-host-mismatch",
        id="other-host",
    ),
    pytest.param(
        v4_rest(headers={"host": "mybucketXs3-eu-west-1.amazonaws.com"}),
        "rest-host-mismatch",
        id="host-regex-dot",
    ),
    pytest.param(
        v4_initiate(host="victim.s3-eu-west-1.amazonaws.com", **{"x-amz-meta-x": f"host:{HOST}"}),
        "rest-host-mismatch",
        id="host-in-meta-value",
    ),
    pytest.param(v4_rest(headers={"host": None}), "rest-header-missing", id="no-host"),
    pytest.param(
        v4_rest(headers={"x-amz-content-sha256": None}),
        "rest-header-missing",
        id="no-content-sha",
    ),
    pytest.param(
        v4_rest(headers={"x-amz-date": "20261125T031044Z"}),
        "rest-date-mismatch",
        id="header-date-differs",
    ),
    pytest.param(
        v4_rest(signed="host;x-amz-date"), "rest-signed-headers-mismatch", id="signed-subset"
    ),
    pytest.param(
        V4_PART.replace(
            f"host:{HOST}\nx-amz-content-sha256:{PART_SHA}",
            f"x-amz-content-sha256:{PART_SHA}\nhost:{HOST}",
        ),
        "rest-header-order",
        id="headers-unsorted",
    ),
    pytest.param(
        V4_PART.replace(f"host:{HOST}\n", f"host:{HOST}\nhost:{HOST}\n"),
        "rest-header-duplicate",
        id="header-twice",
    ),
    pytest.param(
        V4_PART.replace(f"host:{HOST}", f"Host:{HOST}"), "rest-header-malformed", id="header-case"
    ),
    pytest.param(
        v4_rest(amz="20261125T040000Z", scope="20261125/eu-west-1/s3/aws4_request"),
        "date-skewed",
        id="skewed-date",
    ),
    pytest.param(v4_rest(amz="20261125 031043Z"), "date-invalid", id="date-format"),
    pytest.param(
        v4_rest(scope="20261125/us-east-1/s3/aws4_request"), "rest-scope-mismatch", id="region"
    ),
    pytest.param(
        v4_rest(scope="20261124/eu-west-1/s3/aws4_request"), "rest-scope-mismatch", id="scope-day"
    ),
    pytest.param(
        v4_rest(scope="20261125/eu-west-1/sts/aws4_request"), "rest-scope-mismatch", id="service"
    ),
    pytest.param(
        V4_PART.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1),
        "algorithm-not-allowed",
        id="algorithm",
    ),
    pytest.param(V4_PART.replace("\n\nhost;", "\nhost;"), "rest-bad-format", id="no-blank-line"),
    pytest.param(V4_PART + "\n", "rest-bad-format", id="trailing-newline"),
    pytest.param(V4_PART.replace("\n", "\r\n"), "rest-bad-format", id="crlf"),
    pytest.param(V4_PART.split("\n", 3)[3], "rest-bad-format", id="bare-canonical"),
    pytest.param(v4_initiate(**{"x-amz-meta-z": "a" * 17000}), "rest-too-long", id="too-long"),
]


@pytest.mark.parametrize(("raw", "reason"), REST_V4_CASES)
def test_tampered_v4_rest_is_refused(raw: str, reason: str) -> None:
    """Each v4 REST string outside the four multipart calls is refused for its own reason."""
    assert reason_of(lambda: check_rest_v4(raw, CTX, now=NOW)) == reason


REST_V2_CASES = [
    pytest.param(
        f"GET\n\n\n2000000000\n/{BUCKET}/{PREFIX}x.jpg",
        "rest-presign-not-allowed",
        id="presign-expires",
    ),
    pytest.param(
        v2_rest(date_line="Wed, 25 Nov 2026 03:10:38 GMT"),
        "rest-presign-not-allowed",
        id="date-line",
    ),
    pytest.param(
        v2_rest("GET", resource=f"/{BUCKET}/other/secret.pdf"),
        "rest-method-not-allowed",
        id="get-other-key",
    ),
    pytest.param(v2_rest("GET", resource=f"/{BUCKET}/"), "rest-method-not-allowed", id="list"),
    pytest.param(
        v2_rest("PUT", resource=f"/{BUCKET}/{PREFIX}x.jpg?acl"), "rest-query-not-allowed", id="acl"
    ),
    pytest.param(
        v2_rest("PUT", resource=f"/{BUCKET}/?policy"), "rest-query-not-allowed", id="policy"
    ),
    pytest.param(
        v2_rest("PUT", resource=f"/{BUCKET}/{PREFIX}x.jpg"), "rest-query-not-allowed", id="put"
    ),
    pytest.param(
        v2_rest(resource=V2_KEY_PATH + "?partNumber=1&uploadId=U&response-content-type=text/html"),
        "rest-query-not-allowed",
        id="response-override",
    ),
    pytest.param(
        v2_rest(resource=V2_KEY_PATH.replace(BUCKET, "otherbucket") + "?partNumber=1&uploadId=U"),
        "bucket-mismatch",
        id="other-bucket",
    ),
    pytest.param(
        v2_rest("POST", resource=f"/{BUCKET}/?uploads"), "key-outside-prefix", id="bucket-root"
    ),
    pytest.param(
        v2_rest(
            "POST",
            headers=[f"x-amz-date:{HTTP_DATE}", f"x-amz-meta-x:/{BUCKET}/{PREFIX}a"],
            resource=f"/otherbucket/{PREFIX}a?uploads",
        ),
        "bucket-mismatch",
        id="bucket-in-meta-value",
    ),
    pytest.param(
        v2_rest(resource=f"/{BUCKET}/other/x.jpg?partNumber=1&uploadId=U"),
        "key-outside-prefix",
        id="other-key",
    ),
    pytest.param(
        v2_rest(headers=["x-amz-copy-source:/other/secret", f"x-amz-date:{HTTP_DATE}"]),
        "rest-header-not-allowed",
        id="copy-source",
    ),
    pytest.param(
        v2_rest(headers=[f"x-amz-date:{HTTP_DATE}", "x-amz-meta-a:1"]),
        "rest-header-not-allowed",
        id="meta-on-part",
    ),
    pytest.param(
        v2_rest(headers=[f"x-amz-date:{HTTP_DATE}", "x-amz-acl:private"]),
        "rest-header-order",
        id="headers-unsorted",
    ),
    pytest.param(v2_rest(headers=[]), "rest-header-missing", id="no-headers"),
    pytest.param(v2_rest(headers=["x-amz-acl:private"]), "rest-header-not-allowed", id="acl-part"),
    pytest.param(
        V2_INITIATE.replace(f"x-amz-date:{HTTP_DATE}\n", ""), "rest-header-missing", id="no-date"
    ),
    pytest.param(
        v2_rest(headers=["x-amz-date:Wed, 25 Nov 2026 04:10:38 GMT"]), "date-skewed", id="skewed"
    ),
    pytest.param(
        v2_rest(headers=["x-amz-date:Thu, 25 Nov 2026 03:10:38 GMT"]), "date-invalid", id="weekday"
    ),
    pytest.param(
        V2_INITIATE.replace("x-amz-acl:private", "x-amz-acl:public-read"),
        "acl-not-allowed",
        id="public-acl",
    ),
    pytest.param(
        V2_INITIATE.replace("image/jpeg", "text/html"),
        "content-type-not-allowed",
        id="initiate-text-html",
    ),
    pytest.param(v2_rest(content_type="image/png"), "content-type-not-allowed", id="type-on-part"),
    pytest.param(
        V2_COMPLETE.replace("application/xml", "text/plain"),
        "content-type-not-allowed",
        id="complete-text-plain",
    ),
    pytest.param(v2_rest(md5="zzz"), "content-md5-invalid", id="md5"),
    pytest.param(
        v2_rest(resource=V2_KEY_PATH + "?partNumber=0&uploadId=U"),
        "part-number-out-of-range",
        id="pn-0",
    ),
    pytest.param(
        v2_rest(resource=V2_KEY_PATH + "?partNumber=99999&uploadId=U"),
        "part-number-out-of-range",
        id="pn-99999",
    ),
    pytest.param(v2_rest("COPY"), "rest-method-not-allowed", id="method"),
    pytest.param(
        V2_PART.replace("\n\n\n\n", "\n\n\n", 1), "rest-presign-not-allowed", id="date-shifted"
    ),
    pytest.param("PUT\n\n\n" + V2_KEY_PATH, "rest-bad-format", id="too-few-lines"),
]


@pytest.mark.parametrize(("raw", "reason"), REST_V2_CASES)
def test_tampered_v2_rest_is_refused(raw: str, reason: str) -> None:
    """Each v2 REST string outside the four multipart calls is refused for its own reason."""
    assert reason_of(lambda: check_rest_v2(raw, CTX, now=NOW)) == reason


def test_part_number_cap_follows_max_size() -> None:
    """The highest part is ceil(max_size / part_size), never above S3's 10000."""
    assert CTX.max_part_number == 4
    assert replace(CTX, max_size=5 * 1024**4).max_part_number == 10_000
    big = replace(CTX, max_size=5 * 1024**4, part_size=600 * 1024**2)
    assert check_rest_v4(v4_rest(query="partNumber=8739&uploadId=U"), big, now=NOW)
    assert (
        reason_of(lambda: check_rest_v4(v4_rest(query="partNumber=8740&uploadId=U"), big, now=NOW))
        == "part-number-out-of-range"
    )


# --- shared value rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "patterns", "allowed"),
    [
        ("image/png", ["image/*"], True),
        ("IMAGE/PNG", ["image/*"], True),
        ("image/jpeg; charset=binary", ["image/*"], True),
        ('text/plain; charset="utf-8"', ["text/plain"], True),
        ("application/pdf", ["image/*", "application/pdf"], True),
        ("application/pdf", ["image/*"], False),
        ("video/mp4", ["*/*"], True),
        ("text/html", ["*/*"], False),
        ("text/html; charset=utf-8", ["text/*"], False),
        ("text/html", ["text/html"], True),
        ("image/svg+xml", ["image/*"], False),
        ("image/svg+xml", ["image/svg+xml"], True),
        ("application/xhtml+xml", ["*/*"], False),
        ("application/rss+xml", ["application/*"], False),
        ("text/xml", ["text/*"], False),
        ("application/javascript", ["*/*"], False),
        ("text/x-javascript", ["text/*"], False),
        ("application/x-httpd-html", ["application/*"], False),
        ("message/rfc822", ["*/*"], False),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ["*/*"], True),
        ("application/json", ["application/*"], True),
        ("image/*", ["image/*"], False),
        ("*/*", ["*/*"], False),
        ("image/png,text/html", ["image/*"], False),
        ("image/png;", ["image/*"], False),
        ("image/png\r\nX: y", ["image/*"], False),
        (" image/png", ["image/*"], False),
        ("imagepng", ["*/*"], False),
        ("", ["*/*"], False),
        # Types browsers sniff for HTML (issue 13): active, in any case and with parameters.
        ("application/unknown", ["*/*"], False),
        ("unknown/unknown", ["*/*"], False),
        ("Application/Unknown; charset=x", ["application/*"], False),
        ("application/x-unknown-content-type", ["application/*"], False),
        ("application/unknown", ["application/unknown"], True),
        ("html", ["*/*"], False),
        ("text/html,", ["*/*"], False),
        ("Text/HTML ; charset=x", ["text/*"], False),
        ("multipart/x-mixed-replace", ["*/*"], False),
        ("multipart/related", ["multipart/*"], False),
        ("text/css", ["text/*"], False),
        ("text/x-component", ["*/*"], False),
        ("text/vbscript", ["text/*"], False),
        ("application/wasm", ["*/*"], False),
        ("text/xsl", ["text/*"], False),
        ("application/atom+xml", ["*/*"], False),
        ("text/vtt", ["text/*"], True),
        ("application/manifest+json", ["*/*"], True),
        ("application/postscript", ["*/*"], True),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ["*/*"], True),
    ],
)
def test_content_type_allowed(content_type: str, patterns: list[str], allowed: bool) -> None:
    """Wildcards never reach active types (HTML, SVG, XML, JS, CSS, MHTML, types browsers sniff
    such as application/unknown); those need a literal entry."""
    assert content_type_allowed(content_type, patterns) is allowed


@pytest.mark.parametrize(
    ("essence", "expected"),
    [
        ("image/png", "inert"), ("image/x-icon", "inert"), ("image/avif", "inert"),
        ("audio/mpeg", "inert"), ("video/mp4", "inert"), ("font/woff2", "inert"),
        ("application/octet-stream", "other"), ("application/zip", "other"),
        ("image/svg+xml", "active"), ("image/svg", "active"), ("video/vnd.foo+xml", "active"),
        ("unknown/unknown", "active"), ("application/unknown", "active"),
        ("unknown/whatever", "active"), ("text/html", "active"),
        ("application/xhtml+xml", "active"),
        ("application/xml", "active"), ("text/xml", "active"), ("application/x-xml", "active"),
        ("text/javascript", "active"), ("application/x-ecmascript", "active"),
        ("text/css", "active"), ("multipart/x-mixed-replace", "active"),
        ("message/rfc822", "active"), ("application/x-shockwave-flash", "active"),
        ("application/pdf", "other"), ("text/plain", "other"), ("text/csv", "other"),
        ("text/vtt", "other"), ("application/json", "other"), ("application/ld+json", "other"),
        ("application/msword", "other"), ("application/postscript", "other"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "other"),
        ("application/x-foo", "other"), ("model/gltf-binary", "other"),
    ],
)  # fmt: skip
def test_types_are_active_inert_or_neither(essence: str, expected: str) -> None:
    """Inert is an explicit allow-list (images but SVG, audio, video, fonts), served inline;
    active types need a literal entry; anything else (PDF, text, JSON, octet-stream, archives,
    documents, types nobody listed) is admitted by wildcards but stored as an attachment."""
    for _ in range(2):  # the second answer is the remembered one
        found = "active" if is_active(essence) else "inert" if is_inert(essence) else "other"
        assert found == expected


def test_remembered_types_stay_within_their_bound() -> None:
    """Every signature checks its declared type, so the answers are remembered per value: at
    most TYPE_CACHE_SIZE of them however many distinct types arrive, and a value longer than any
    accepted type is answered without being remembered (still active when it names script)."""
    caches = (media._media_essence, media._cached_is_active)
    for cache in caches:
        cache.cache_clear()
    for i in range(media.TYPE_CACHE_SIZE * 3):
        assert media_essence(f"Image/X-{i}; q=1") == f"image/x-{i}"
        assert is_active(f"text/x-{i}-script") and not is_active(f"image/x-{i}")
        assert all(c.cache_info().currsize <= media.TYPE_CACHE_SIZE for c in caches)
    for cache in caches:
        cache.cache_clear()
    longest = "application/" + "x" * (255 - len("application/"))
    assert media_essence(longest) == longest and not is_active(longest)
    assert media_essence(longest + "x") is None
    assert is_active("text/" + "x" * 300 + "html")
    assert is_active("text/" + "x" * 10_000 + "html")
    assert [c.cache_info().currsize for c in caches] == [1, 1]


def test_check_key_requires_a_slash_terminated_prefix() -> None:
    """A prefix without its "/" would reopen the admin/admin2 hole, so it is a programming error."""
    with pytest.raises(ValueError):
        check_key("admin2/x", "admin")


def test_declared_file_rules() -> None:
    """API clients' declared files: size within max_size, type allowed, size a real count."""
    check_declared_file(size=MAX_SIZE, content_type="image/png", ctx=CTX)
    with pytest.raises(PayloadTooLarge) as too_large:
        check_declared_file(size=MAX_SIZE + 1, content_type="image/png", ctx=CTX)
    assert (too_large.value.status, too_large.value.reason) == (413, "too-large")
    with pytest.raises(UnsupportedMediaType) as bad_type:
        check_declared_file(size=1, content_type="text/html", ctx=CTX)
    assert (bad_type.value.status, bad_type.value.reason) == (415, "content-type-not-allowed")
    for size in (-1, True, 1.5, "10"):
        with pytest.raises(BadRequest) as bad_size:
            check_declared_file(size=size, content_type="image/png", ctx=CTX)  # type: ignore[arg-type]
        assert bad_size.value.reason == "size-invalid"


# --- property-based: mutations are accepted only when still within the rules ---------------------
# The oracles below restate the rules independently (whole-value regexes, no shared helpers), so a
# rule dropped from gateway/rules/ shows up as a signed input the oracle calls out of bounds.

_TCHAR = r"[A-Za-z0-9!#$%&'+.^_`|~-]"
_ORACLE_TYPE = re.compile(
    rf"image/({_TCHAR}+)(;[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+=[A-Za-z0-9!#$%&'*+.^_`|~-]+[ \t]*)*",
    re.IGNORECASE,
)


def oracle_key(key: str) -> bool:
    """Within the rules: under the prefix, <= 1024 bytes, plain segments, no control characters."""
    if len(key.encode("utf-8", "surrogatepass")) > 1024 or not key.startswith(PREFIX):
        return False
    bad = [c for c in key if c == "\\" or ord(c) < 32 or 127 <= ord(c) < 160]
    bad += [c for c in key if 0xD800 <= ord(c) <= 0xDFFF or c in "\u2028\u2029"]
    return not bad and all(s not in ("", ".", "..") for s in key[len(PREFIX) :].split("/"))


def oracle_content_type(value: str) -> bool:
    """Within the rules for image/*: a concrete image type that is not SVG or other XML."""
    match = _ORACLE_TYPE.fullmatch(value)
    if not match or len(value) > 255:
        return False
    subtype = match.group(1).lower()
    active = re.search("html|javascript|ecmascript|jscript", subtype)
    return not (active or subtype == "xml" or subtype.endswith("+xml"))


def _near(stamp: str, fmt: str, limit: timedelta) -> bool:
    try:
        moment = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs(moment - NOW) <= limit


def oracle_date(value: str) -> bool:
    """An amz-date within 15 minutes."""
    return bool(re.fullmatch(r"\d{8}T\d{6}Z", value)) and _near(
        value, "%Y%m%dT%H%M%SZ", timedelta(minutes=15)
    )


def oracle_credential(value: str) -> bool:
    """Our key, a date within a day, our region, s3."""
    match = re.fullmatch(r"AKIDEXAMPLE/(\d{8})/eu-west-1/s3/aws4_request", value)
    if not match:
        return False
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return False
    return abs((day - NOW.date()).days) <= 1


def _plain_header(value: str) -> bool:
    no_controls = not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    return no_controls and len(value.encode("utf-8", "surrogatepass")) <= 1024


def _meta_ok(name: str, value: str) -> bool:
    return bool(re.fullmatch(r"x-amz-meta-[a-z0-9_-]+", name)) and all(
        " " <= c <= "~" for c in value
    )


ORACLE_FIELD_RULES: dict[str, Callable[[str], bool]] = {
    "acl": lambda v: v == "private",
    "bucket": lambda v: v == BUCKET,
    "key": oracle_key,
    "content-type": oracle_content_type,
    "success_action_status": lambda v: v == "200",
    "success_action_redirect": lambda v: v == BLANK,
    "cache-control": _plain_header,
    "content-disposition": _plain_header,
    "content-encoding": _plain_header,
    "x-amz-storage-class": lambda v: v in ("STANDARD", "REDUCED_REDUNDANCY"),
    "x-amz-server-side-encryption": lambda v: v in ("AES256", "aws:kms"),
}
ORACLE_V4_RULES: dict[str, Callable[[str], bool]] = {
    "x-amz-algorithm": lambda v: v == "AWS4-HMAC-SHA256",
    "x-amz-credential": oracle_credential,
    "x-amz-date": oracle_date,
}


def _oracle_bound(value: Any) -> int | None:
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and re.fullmatch(r"[0-9]{1,20}", value):
        return int(value)
    return None


def policy_within_rules(doc: Any, version: int) -> bool:
    """An independent statement of issue 3's policy rules, for the property tests."""
    if type(doc) is not dict or sorted(doc) != ["conditions", "expiration"]:
        return False
    if type(doc["expiration"]) is not str or type(doc["conditions"]) is not list:
        return False
    values: dict[str, list[Any]] = {}
    for cond in doc["conditions"]:
        if type(cond) is list:
            if len(cond) != 3 or type(cond[0]) is not str:
                return False
            if cond[0].lower() != "content-length-range":
                return False
            low, high = _oracle_bound(cond[1]), _oracle_bound(cond[2])
            if low is None or high is None or low > high or low > MAX_SIZE:
                return False
            values.setdefault("content-length-range", []).append(cond)
        elif type(cond) is dict and len(cond) == 1:
            ((name, value),) = cond.items()
            if type(name) is not str or type(value) is not str:
                return False
            if name.lower() == "content-length-range":
                return False
            values.setdefault(name.lower(), []).append(value)
        else:
            return False
    if any(len(v) > 1 for v in values.values()):
        return False
    rules = {**ORACLE_FIELD_RULES, **(ORACLE_V4_RULES if version == 4 else {})}
    meta = 0
    for name, (value,) in values.items():
        if name == "content-length-range":
            continue
        if name.startswith("x-amz-meta-"):
            if not _meta_ok(name, value):
                return False
            meta += len(name) - 11 + len(value)
        elif name not in rules or not rules[name](value):
            return False
    required = ["acl", "bucket", "key"] + (list(ORACLE_V4_RULES) if version == 4 else [])
    if meta > 2048 or not all(name in values for name in required):
        return False
    if "success_action_status" in values and "success_action_redirect" in values:
        return False
    return version == 2 or values["x-amz-date"][0][:8] == values["x-amz-credential"][0][12:20]


NAMES = [
    "acl", "ACL", "bucket", "key", "Key", "Content-Type", "content-type", "success_action_status",
    "success_action_redirect", "x-amz-meta-dataset", "x-amz-meta-qqfilename", "X-Amz-Meta-New",
    "x-amz-meta-", "x-amz-meta-a.b", "Cache-Control", "Content-Disposition", "Content-Encoding",
    "x-amz-storage-class", "x-amz-server-side-encryption", "x-amz-algorithm", "x-amz-credential",
    "x-amz-date", "X-Amz-Date", "x-amz-security-token", "redirect", "content-length-range",
    "x-amz-website-redirect-location", "policy", "file", "$key", "x-ignore-me", "Content-MD5",
]  # fmt: skip
# Per field: the valid value first, then near misses an attacker would try.
FIELD_VALUES: dict[str, list[str]] = {
    "acl": ["private", "public-read", "Private", "bucket-owner-full-control", "authenticated-read"],
    "bucket": [BUCKET, "otherbucket", "MyBucket", BUCKET + " ", BUCKET + "/"],
    "key": [
        PREFIX + "a.jpg", PREFIX + "x/y z (1).png", "3f2a9c0d1e2b4a5c0/a", "other/a", "/" + PREFIX,
        "ffffffffffffffff/a.jpg", "admin2/ffffffffffffffffff.jpg",
        PREFIX + "../a", PREFIX + "a/./b", PREFIX, PREFIX + "a//b", PREFIX + "a\\b",
        PREFIX + "a\x7f", PREFIX + "a" * 1008, PREFIX + "a" * 1007, "3F2A9C0D1E2B4A5C/a",
        PREFIX[:-1],
    ],
    "content-type": [
        "image/jpeg", "image/png; charset=binary", "IMAGE/GIF", "text/html", "image/svg+xml",
        "image/*", "application/pdf", "image/jpeg\n", "image/x+xml", "image/png;", "text/html; x=1",
    ],
    "success_action_status": ["200", "201", "204", " 200", "200 "],
    "success_action_redirect": [BLANK, "https://evil.example/", BLANK + "?x", BLANK.upper(), ""],
    "x-amz-storage-class": ["REDUCED_REDUNDANCY", "STANDARD", "GLACIER", "DEEP_ARCHIVE", "ONEZONE"],
    "x-amz-server-side-encryption": ["AES256", "aws:kms", "aws:kms:dsse", "aes256"],
    "x-amz-algorithm": ["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1", "aws4-hmac-sha256"],
    "x-amz-credential": [
        CRED, CRED.replace("AKIDEXAMPLE", "AKIDOTHER"), CRED.replace("eu-west-1", "us-east-1"),
        "AKIDEXAMPLE/20261124/eu-west-1/s3/aws4_request", CRED.replace("20261125", "20261128"),
        CRED.replace("/s3/", "/sts/"), CRED + "/x", "AKIDEXAMPLE/20261125",
    ],
    "x-amz-date": ["20261125T031035Z", "20261125T050000Z", "20261124T235959Z", "20261125T031035"],
    "cache-control": ["max-age=60", "no-store\r\nX: 1", "a" * 1100, ""],
    "x-amz-meta-dataset": ["ds-1", "a" * 2100, "é", "a\tb", ""],
}  # fmt: skip
VALUES = [*sorted({v for pool in FIELD_VALUES.values() for v in pool}), "", "\x00", "é"]
any_value_st = st.one_of(
    st.sampled_from(VALUES),
    st.text(max_size=12),
    st.sampled_from([1, None, True, [], ["x"], {"a": "b"}, 0, -1]),
)
bound_st = st.one_of(
    st.integers(-2, MAX_SIZE + 2),
    st.sampled_from(["0", "15000000", "9007199254740992", "-1", "1e3", "", " 1", "²"]),
    st.sampled_from([True, None, 1.0, [1]]),
)
array_st = st.one_of(
    st.tuples(
        st.sampled_from(["content-length-range", "Content-Length-Range", "starts-with", "eq"]),
        bound_st,
        bound_st,
    ).map(list),
    st.sampled_from([[], ["content-length-range", 0], [["content-length-range", 0, 1]], ["x"]]),
    st.lists(bound_st, max_size=4).map(lambda b: ["content-length-range", *b]),
    st.sampled_from([["starts-with", "$key", PREFIX], ["eq", "$acl", "private"]]),
)


def value_for(name: str) -> st.SearchStrategy[Any]:
    """A value for the named condition: mostly from its field's pool, sometimes anything."""
    pool = FIELD_VALUES.get(name.lower(), FIELD_VALUES["x-amz-meta-dataset"])
    return st.one_of(st.sampled_from(pool), st.sampled_from(pool), any_value_st)


def mutate_policy(doc: dict[str, Any], data: st.DataObject) -> Any:
    """Apply 1-3 random edits (change, add, remove, duplicate, rename conditions) to a copy."""
    doc = copy.deepcopy(doc)

    def draw(strategy: st.SearchStrategy[Any], label: str) -> Any:
        # sampled_from hands out the same list/dict objects every time: edit copies only.
        return copy.deepcopy(data.draw(strategy, label=label))

    for _ in range(draw(st.integers(1, 3), "edits")):
        conds = doc.get("conditions")
        if not isinstance(conds, list) or not conds:
            break
        i = draw(st.integers(0, len(conds) - 1), "index")
        cond = conds[i]
        name = next(iter(cond)) if isinstance(cond, dict) and len(cond) == 1 else None
        kind = data.draw(st.sampled_from(["set", "set", "add", "remove", "dup", "array", "top"]))
        if kind == "set" and isinstance(name, str):
            conds[i] = {name: draw(value_for(name), "value")}
        elif kind == "add":
            new = draw(st.sampled_from(NAMES), "name")
            conds.insert(i, {new: draw(value_for(new), "value")})
        elif kind == "remove":
            del conds[i]
        elif kind == "dup":
            twin = copy.deepcopy(cond)
            if name is not None and draw(st.booleans(), "swapcase"):
                twin = {name.swapcase(): cond[name]}
            conds.append(twin)
        elif kind == "array":
            conds.insert(i, draw(array_st, "array"))
        elif kind == "top":
            field = draw(st.sampled_from(["expiration", "conditions", "extra"]), "top")
            doc = {**doc, field: draw(any_value_st, "top value")}
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from([2, 4]), data=st.data())
def test_mutated_policy_accepted_exactly_when_within_rules(version: int, data: Any) -> None:
    """Random edits of a valid policy pass exactly when the oracle says they are still allowed."""
    doc = mutate_policy(V4_POLICY if version == 4 else V2_POLICY, data)
    try:
        out = tighten_policy(doc, CTX, version=4 if version == 4 else 2, now=NOW)
    except PolicyRefused as refused:
        event(refused.reason)
        assert not policy_within_rules(doc, version)
        return
    event("accepted")
    assert policy_within_rules(doc, version)
    ranges = [c for c in out["conditions"] if isinstance(c, list)]
    assert len(ranges) == 1 and 0 <= ranges[0][1] <= ranges[0][2] <= MAX_SIZE
    assert out["expiration"] == EXPIRES
    assert [c for c in out["conditions"] if isinstance(c, dict)] == [
        c for c in doc["conditions"] if isinstance(c, dict)
    ]


# --- property-based: REST strings ----------------------------------------------------------------

_UPLOAD_ID = r"[A-Za-z0-9._~+/=%-]+"
_INITIATE_ONLY = {"x-amz-acl", "x-amz-storage-class", "x-amz-server-side-encryption"}


def _oracle_operation(method: str, query: str, uploads: str) -> str | None:
    if method == "POST" and query == uploads:
        return "initiate"
    if method == "PUT" and re.fullmatch(rf"partNumber=[1-4]&uploadId={_UPLOAD_ID}", query):
        return "part"
    if method in ("POST", "DELETE") and re.fullmatch(rf"uploadId={_UPLOAD_ID}", query):
        return "complete" if method == "POST" else "abort"
    return None


def _oracle_path(path: str) -> bool:
    try:
        key = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return False
    escaped = "/".join(quote(s, safe="") for s in key.split("/"))
    return escaped == path and oracle_key(key)


def _oracle_type(operation: str, value: str) -> bool:
    if value == "":
        return True
    if operation == "initiate":
        return oracle_content_type(value)
    return operation == "complete" and value.lower().startswith("application/xml")


def _oracle_headers(lines: list[str], operation: str, allowed: set[str]) -> dict[str, str] | None:
    pairs = [tuple(line.split(":", 1)) for line in lines]
    if any(len(p) != 2 for p in pairs):
        return None
    names = [p[0] for p in pairs]
    if names != sorted(set(names)):
        return None
    headers = {p[0]: p[1] for p in pairs}
    meta = 0
    for name, value in headers.items():
        initiate_only = name in _INITIATE_ONLY or name.startswith("x-amz-meta-")
        if name not in allowed and not (initiate_only and operation == "initiate"):
            return None
        if name.startswith("x-amz-meta-"):
            if not _meta_ok(name, value):
                return None
            meta += len(name) - 11 + len(value)
    checks: dict[str, Callable[[str], bool]] = {
        "x-amz-acl": lambda v: v == "private",
        "x-amz-storage-class": ORACLE_FIELD_RULES["x-amz-storage-class"],
        "x-amz-server-side-encryption": ORACLE_FIELD_RULES["x-amz-server-side-encryption"],
        "content-md5": lambda v: bool(re.fullmatch(r"[A-Za-z0-9+/]{22}==", v)),
        "content-type": lambda v: _oracle_type(operation, v),
    }
    if meta > 2048 or not all(check(headers[n]) for n, check in checks.items() if n in headers):
        return None
    return headers


def v4_within_rules(raw: str) -> bool:
    """An independent statement of the v4 REST rules (anchored, whole-string), for the tests."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256\n(\d{8})(T\d{6}Z)\n\1/eu-west-1/s3/aws4_request\n"
        r"(POST|PUT|DELETE)\n/([^\n]*)\n([^\n]*)\n((?:[^\n]+\n)+)\n([^\n]*)\n([0-9a-f]{64})",
        raw,
    )
    if not match or not oracle_date(match.group(1) + match.group(2)):
        return False
    method, path, query, block, signed, payload = match.groups()[2:]
    operation = _oracle_operation(method, query, "uploads=")
    if operation is None or not _oracle_path(path):
        return False
    allowed = {"host", "x-amz-date", "x-amz-content-sha256", "content-type", "content-md5"}
    headers = _oracle_headers(block.splitlines(), operation, allowed)
    return (
        headers is not None
        and headers.get("host") == HOST
        and headers.get("x-amz-date") == match.group(1) + match.group(2)
        and headers.get("x-amz-content-sha256") == payload
        and signed == ";".join(headers)
    )


def v2_within_rules(raw: str) -> bool:
    """An independent statement of the v2 REST rules (anchored, whole-string), for the tests."""
    match = re.fullmatch(
        rf"(POST|PUT|DELETE)\n((?:[A-Za-z0-9+/]{{22}}==)?)\n([^\n]*)\n\n((?:[^\n]+\n)+)"
        rf"/{BUCKET}/([^\n?]*)\?([^\n]*)",
        raw,
    )
    if not match:
        return False
    method, _, content_type, block, path, sub = match.groups()
    operation = _oracle_operation(method, sub, "uploads")
    if operation is None or not _oracle_path(path) or not _oracle_type(operation, content_type):
        return False
    headers = _oracle_headers(block.splitlines(), operation, {"x-amz-date"})
    return (
        headers is not None
        and "x-amz-date" in headers
        and _near(headers["x-amz-date"], "%a, %d %b %Y %H:%M:%S GMT", timedelta(minutes=15))
    )


def mostly(valid: Any, *others: Any) -> st.SearchStrategy[Any]:
    """The valid value seven times in eight, else one of the attacker's alternatives."""
    return st.integers(0, 7).flatmap(lambda n: st.just(valid) if n < 7 else st.sampled_from(others))


XML_SHA = hashlib.sha256(b"<CompleteMultipartUpload/>").hexdigest()
FORMS = {  # form -> method, v4 query, v2 subresource, payload hash
    "initiate": ("POST", "uploads=", "uploads", EMPTY_SHA),
    "part": ("PUT", "partNumber=1&uploadId=U", "partNumber=1&uploadId=U", PART_SHA),
    "complete": ("POST", "uploadId=U", "uploadId=U", XML_SHA),
    "abort": ("DELETE", "uploadId=U", "uploadId=U", EMPTY_SHA),
}
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "COPY")
QUERIES = (
    "", "uploads=", "uploads", "acl=", "acl", "policy=", "partNumber=0&uploadId=U",
    "partNumber=5&uploadId=U", "partNumber=4&uploadId=U", "uploadId=U", "uploadId=a/b+c%3D",
    PRESIGN_QUERY, "partNumber=1&uploadId=U&x-id=UploadPart", "list-type=2", "tagging=",
    "versionId=1", "uploadId=", "partNumber=1&uploadId=U&response-content-type=text%2Fhtml",
)  # fmt: skip
KEY_PATHS = (
    "", PREFIX[:-1], PREFIX, "other/a.jpg", "3f2a9c0d1e2b4a5c0/a", PREFIX + "../x",
    "ffffffffffffffff/a.jpg", "admin2/ffffffffffffffffff.jpg",
    PREFIX + "a%2Fb", PREFIX + "(1)", PREFIX + "a%5Cb", PREFIX + "%2e", PREFIX + "a//b",
)  # fmt: skip
EXTRA_HEADERS = (
    ("x-amz-copy-source", "/b/k"), ("x-amz-grant-read", "uri=AllUsers"), ("x-amz-acl", "private"),
    ("x-amz-acl", "public-read"), ("x-amz-meta-x", "host:" + HOST), ("x-amz-meta-big", "a" * 2100),
    ("content-type", "text/html"), ("content-type", "image/png"), ("content-type", "image/svg+xml"),
    ("content-type", "application/xml; charset=UTF-8"), ("x-amz-storage-class", "GLACIER"),
    ("x-amz-storage-class", "STANDARD"), ("x-amz-server-side-encryption", "AES256"),
    ("x-amz-server-side-encryption", "aws:kms:dsse"), ("x-amz-tagging", "a=b"),
    ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="), ("content-md5", "x"), ("expect", "100-continue"),
    ("x-amz-website-redirect-location", "/x"), ("x-amz-security-token", "t"), ("Host", HOST),
    ("x-amz-meta-A", "1"), ("x-amz-meta-é", "1"), ("x-amz-meta-v", "é"),
)  # fmt: skip


@st.composite
def v4_strings(draw: st.DrawFn) -> str:
    """Fine Uploader-shaped v4 strings where any part may be swapped for an attacker's choice."""
    form = draw(st.sampled_from(sorted(FORMS)))
    method, query, _, payload = FORMS[form]
    method = draw(mostly(method, *METHODS))
    query = draw(mostly(query, *QUERIES))
    key = draw(mostly(PREFIX + "a b.jpg", *(unquote(p) for p in KEY_PATHS)))
    path = draw(mostly("/" + escape_key(key), *("/" + p for p in KEY_PATHS), "x", "/"))
    payload = draw(mostly(payload, "UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                          PART_SHA.upper(), EMPTY_SHA))  # fmt: skip
    amz = draw(mostly(AMZ, "20261125T040000Z", "20261124T031043Z", "20261125T031043"))
    scope = draw(
        mostly(SCOPE, SCOPE.replace("25", "24", 1), SCOPE.replace("eu-", "us-"), SCOPE[:-8])
    )
    headers: dict[str, str | None] = {
        "host": draw(mostly(HOST, None, "evil.example", "other.s3-eu-west-1.amazonaws.com",
                            HOST + ":443", f"evil.example\nx-amz-meta-a:host:{HOST}")),
        "x-amz-date": draw(mostly(amz, None, AMZ, "20261125T031044Z")),
        "x-amz-content-sha256": draw(mostly(payload, None, EMPTY_SHA, PART_SHA)),
    }  # fmt: skip
    if form == "initiate":
        headers.update({"x-amz-acl": "private", "x-amz-meta-qqfilename": "a.jpg"})
    for name, value in draw(mostly((), *((h,) for h in EXTRA_HEADERS))):
        headers[name] = value
    signed = draw(mostly(None, "host;x-amz-date", "", "host;x-amz-content-sha256;x-amz-date"))
    return v4_rest(method, path, query, headers, payload, amz=amz, scope=scope, signed=signed)


@st.composite
def v2_strings(draw: st.DrawFn) -> str:
    """Fine Uploader-shaped v2 strings where any part may be swapped for an attacker's choice."""
    form = draw(st.sampled_from(sorted(FORMS)))
    method, _, sub, _ = FORMS[form]
    method = draw(mostly(method, *METHODS))
    sub = draw(mostly(sub, *QUERIES))
    content_type = {"initiate": "image/jpeg", "complete": "application/xml; charset=UTF-8"}
    ctype = draw(mostly(content_type.get(form, ""), "", "text/html", "image/png", "image/svg+xml",
                        "application/xml; charset=UTF-8", "text/plain"))  # fmt: skip
    md5 = draw(mostly("", "1B2M2Y8AsgTpgAmY7PhCfg==", "x", "2000000000"))
    date_line = draw(mostly("", "2000000000", HTTP_DATE))
    bucket = draw(mostly(BUCKET, "otherbucket", "", BUCKET + "2"))
    key_path = draw(mostly(PREFIX + "a%20b.jpg", *KEY_PATHS))
    lines = [f"x-amz-date:{draw(mostly(HTTP_DATE, 'Wed, 25 Nov 2026 04:10:38 GMT', 'x'))}"]
    if form == "initiate":
        lines = ["x-amz-acl:private", *lines, "x-amz-meta-qqfilename:a.jpg"]
    for name, value in draw(mostly((), *((h,) for h in EXTRA_HEADERS))):
        lines.insert(draw(st.integers(0, len(lines))), f"{name}:{value}")
    if draw(mostly(False, True)):
        lines = lines[1:]
    resource = f"/{bucket}/{key_path}" + draw(mostly("?", "", "?uploads&", "&")) + sub
    return "\n".join([method, md5, ctype, date_line, *lines, resource])


line_st = st.one_of(
    st.sampled_from(
        [
            "GET", "PUT", "POST", "DELETE", "", "/", f"/{KEY}", "/other/x", "uploads=", "uploads",
            "acl=", "partNumber=1&uploadId=U", "uploadId=U", PRESIGN_QUERY, f"host:{HOST}",
            f"x-amz-date:{AMZ}", f"x-amz-date:{HTTP_DATE}", "x-amz-acl:private",
            "x-amz-copy-source:/b/k", f"x-amz-meta-x:host:{HOST}", EMPTY_SHA, PART_SHA,
            "UNSIGNED-PAYLOAD", "host;x-amz-content-sha256;x-amz-date", "2000000000",
            f"/{BUCKET}/{PREFIX}x?uploads", f"/{BUCKET}/other?uploads", "AWS4-HMAC-SHA256", AMZ,
            "20261125/eu-west-1/s3/aws4_request",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
)  # fmt: skip
line_op_st = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 40), line_st),
    st.tuples(st.just("insert"), st.integers(0, 40), line_st),
    st.tuples(st.just("delete"), st.integers(0, 40)),
    st.tuples(st.just("swap"), st.integers(0, 40), st.integers(0, 40)),
)


# Most strings stay well-formed so the component swaps above get checked; some get line edits too.
rare_line_ops = st.integers(0, 7).flatmap(
    lambda n: st.just([]) if n < 7 else st.lists(line_op_st, min_size=1, max_size=2)
)


def mutate_lines(raw: str, ops: list[tuple[Any, ...]]) -> str:
    """Apply random line edits (replace, insert, delete, swap) to a string to sign."""
    lines = raw.split("\n")
    for op in ops:
        i = op[1] % max(len(lines), 1)
        if op[0] == "replace" and lines:
            lines[i] = op[2]
        elif op[0] == "insert":
            lines.insert(i, op[2])
        elif op[0] == "delete" and lines:
            del lines[i]
        elif op[0] == "swap" and lines:
            j = op[2] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=v4_strings(), ops=rare_line_ops)
def test_random_v4_rest_accepted_only_in_the_four_forms(raw: str, ops: list[Any]) -> None:
    """Attacker-edited v4 strings are signed only when the oracle finds one of the four calls."""
    raw = mutate_lines(raw, ops)
    try:
        out = check_rest_v4(raw, CTX, now=NOW)
    except PolicyRefused as refused:
        event(refused.reason)
        return
    event("accepted")
    assert v4_within_rules(raw), raw
    assert out == _sts(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=v2_strings(), ops=rare_line_ops)
def test_random_v2_rest_accepted_only_in_the_four_forms(raw: str, ops: list[Any]) -> None:
    """Attacker-edited v2 strings are signed only when the oracle finds one of the four calls."""
    raw = mutate_lines(raw, ops)
    try:
        out = check_rest_v2(raw, CTX, now=NOW)
    except PolicyRefused as refused:
        event(refused.reason)
        return
    event("accepted")
    assert v2_within_rules(raw), raw
    assert out == raw


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line_st, max_size=14))
def test_random_line_soup_is_never_signed_outside_the_forms(lines: list[str]) -> None:
    """Strings assembled from arbitrary lines are signed (v2 or v4) only in the four forms."""
    raw = "\n".join(lines)
    for check, oracle in ((check_rest_v4, v4_within_rules), (check_rest_v2, v2_within_rules)):
        try:
            check(raw, CTX, now=NOW)
        except PolicyRefused:
            continue
        assert oracle(raw), raw


def test_valid_forms_satisfy_the_oracles() -> None:
    """The oracles accept the captured forms, so the property tests are not vacuous."""
    v4_forms = [V4_PART, V4_INITIATE, v4_rest("DELETE", query="uploadId=U", payload=EMPTY_SHA)]
    assert all(v4_within_rules(raw) for raw in v4_forms)
    assert all(v2_within_rules(raw) for raw in [V2_INITIATE, V2_PART, V2_COMPLETE, V2_ABORT])
    assert policy_within_rules(V4_POLICY, 4) and policy_within_rules(V2_POLICY, 2)


def test_bad_key_characters_are_exactly_the_unicode_categories() -> None:
    """The key check's one regex refuses exactly a backslash and the characters of categories
    Cc, Cs, Zl and Zp, over every code point (what a per-character lookup would refuse)."""
    from gateway.rules.object_keys import _BAD_KEY_CHARS

    bad = {"Cc", "Cs", "Zl", "Zp"}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        expected = char == "\\" or unicodedata.category(char) in bad
        assert (_BAD_KEY_CHARS.search(char) is not None) is expected, hex(code)
