"""POST P/signature fuzzed with hypothesis through the running gateway: never a 500, and never a
signature outside the rules.

Every 200 is checked by an oracle written here from the documented rules
(docs/protocols/fineuploader.md) and the route's config alone (not from gateway.rules): the
signature is recomputed with hmac over what the answer says was signed, and the signed policy
or REST request must name the uploads bucket, a key under the user's prefix, the route's acl, a
size range within max_size and an expiration signature_ttl from now.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.support.gateway import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    START,
    SettableClock,
    build_config,
    config_dict,
    gateway_app,
)
from tests.support.processes import served

P = "/uploads/photos"
BUCKET = "test-uploads"
BUCKET_HOST = "test-uploads.s3.test:9000"
MAX_SIZE = 20 * 1024 * 1024
TTL = 900
TODAY = START.strftime("%Y%m%d")
AMZ_NOW = START.strftime("%Y%m%dT%H%M%SZ")
HTTP_NOW = START.strftime("%a, %d %b %Y %H:%M:%S GMT")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CREDENTIAL = f"{ACCESS_KEY_ID}/{TODAY}/us-east-1/s3/aws4_request"
FUZZ = settings(
    max_examples=400,
    deadline=None,
    # One gateway serves every example: it keeps no state between requests.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Near-valid documents: about one in ten is signed, and each signed one is worth checking.
FUZZ_MORE = settings(FUZZ, max_examples=1000)


# --------------------------------------------------------------------------- the gateway


@dataclass
class Signer:
    """The gateway, a client, alice's session cookie and her key prefix."""

    url: str
    client: aiohttp.ClientSession
    cookie: str
    prefix: str

    async def post(self, body: bytes, content_type: str | None, *, v4: bool) -> tuple[int, Any]:
        headers = {"Cookie": self.cookie}
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = f"{self.url}{P}/signature" + ("?v4=true" if v4 else "")
        async with self.client.post(url, data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
        assert status < 500, raw[:500]
        return status, json.loads(raw)


@pytest.fixture
async def signer(upstream_url: str) -> AsyncIterator[Signer]:
    """A gateway at a fixed clock with virtual-host bucket URLs, alice logged in through it."""
    tree = config_dict(upstream_url, s3_endpoint="http://s3.test:9000", uploads_bucket=BUCKET)
    tree["s3"]["addressing_style"] = "virtual"
    config = build_config(tree)
    jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies of IP hosts
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(served(gateway_app(config, clock=SettableClock())))
        client = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar))
        async with client.get(f"{url}/login?user=alice") as resp:
            assert resp.status == 200
        async with client.get(f"{url}{P}/config") as resp:
            options = await resp.json()
        assert options["objectProperties"]["host"] == BUCKET_HOST
        cookie = f"gateway_session={jar.filter_cookies(URL(url))['gateway_session'].value}"
        # The client sends the cookie explicitly: no jar, so nothing changes between examples.
        plain = await stack.enter_async_context(
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        )
        yield Signer(url, plain, cookie, options["keyPrefix"])


# --------------------------------------------------------------------------- the oracle

POLICY_FIELDS = {
    "acl", "bucket", "key", "content-type", "success_action_status", "success_action_redirect",
    "cache-control", "content-disposition", "content-encoding", "x-amz-storage-class",
    "x-amz-server-side-encryption",
}  # fmt: skip
V4_FIELDS = {"x-amz-algorithm", "x-amz-credential", "x-amz-date"}
INERT_IMAGE = re.compile(r"image/(jpeg|png|gif|webp|bmp|tiff|heic|avif|x-icon|[a-z0-9.+-]+)")


def key_ok(key: str, prefix: str) -> bool:
    """A key under the user's prefix: no climbing out, no empty segment, no control bytes."""
    if not key.startswith(prefix) or len(key.encode()) > 1024:
        return False
    rest = key[len(prefix) :].split("/")
    if any(segment in ("", ".", "..") for segment in rest):
        return False
    return not any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in key)


def type_ok(value: str) -> bool:
    """Allowed by the route's ["image/*", "application/pdf", "application/octet-stream"], and
    never an active type (SVG and other XML, HTML, script)."""
    essence = value.split(";", 1)[0].strip().lower()
    if any(word in essence for word in ("xml", "html", "script", "svg")):
        return False
    return essence in ("application/pdf", "application/octet-stream") or bool(
        INERT_IMAGE.fullmatch(essence)
    )


def v4_key(date: str) -> bytes:
    key = ("AWS4" + SECRET_ACCESS_KEY).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def policy_violations(answer: dict[str, Any], *, v4: bool, prefix: str, origin: str) -> list[str]:
    """Everything wrong with a signed policy answer; [] when it is within the rules."""
    encoded = answer.get("policy")
    if set(answer) != {"policy", "signature"} or not isinstance(encoded, str):
        return [f"answer shape {sorted(answer)}"]
    document = json.loads(base64.b64decode(encoded))
    conditions = document["conditions"]
    fields: dict[str, str] = {}
    problems: list[str] = []
    ranges = []
    for condition in conditions:
        if isinstance(condition, list):
            if condition[0] != "content-length-range":
                problems.append(f"array condition {condition[0]!r}")
            ranges.append(condition)
            continue
        ((name, value),) = condition.items()
        lower = name.lower()
        if lower in fields:
            problems.append(f"{name} twice")
        fields[lower] = value
        if lower not in POLICY_FIELDS | (V4_FIELDS if v4 else set()) and not re.fullmatch(
            r"x-amz-meta-[a-z0-9_-]+", lower
        ):
            problems.append(f"field {name!r}")
    if fields.get("bucket") != BUCKET:
        problems.append(f"bucket {fields.get('bucket')!r}")
    if not key_ok(fields.get("key", ""), prefix):
        problems.append(f"key {fields.get('key')!r}")
    if fields.get("acl") != "private":
        problems.append(f"acl {fields.get('acl')!r}")
    if "content-type" in fields and not type_ok(fields["content-type"]):
        problems.append(f"content-type {fields['content-type']!r}")
    if fields.get("success_action_status", "200") != "200":
        problems.append("success_action_status")
    if fields.get("success_action_redirect", f"{origin}{P}/blank") != f"{origin}{P}/blank":
        problems.append("success_action_redirect")
    if fields.get("x-amz-storage-class", "STANDARD") not in ("STANDARD", "REDUCED_REDUNDANCY"):
        problems.append("storage class")
    if fields.get("x-amz-server-side-encryption", "AES256") not in ("AES256", "aws:kms"):
        problems.append("encryption")
    if len(ranges) != 1:
        problems.append(f"{len(ranges)} content-length-range conditions")
    else:
        low, high = int(ranges[0][1]), int(ranges[0][2])
        if not 0 <= low <= high <= MAX_SIZE:
            problems.append(f"content-length-range {low}..{high}")
    expiration = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
    if expiration.replace(tzinfo=START.tzinfo) != START + timedelta(seconds=TTL):
        problems.append(f"expiration {document['expiration']}")
    if v4:
        if fields.get("x-amz-credential") != CREDENTIAL:
            problems.append("credential")
        if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            problems.append("algorithm")
        if not fields.get("x-amz-date", "").startswith(TODAY):
            problems.append("x-amz-date")
        expected = hmac.new(v4_key(TODAY), encoded.encode(), hashlib.sha256).hexdigest()
    else:
        digest = hmac.new(SECRET_ACCESS_KEY.encode(), encoded.encode(), hashlib.sha1).digest()
        expected = base64.b64encode(digest).decode()
    if answer["signature"] != expected:
        problems.append("signature does not sign the policy")
    return problems


OPERATIONS = {
    ("POST", frozenset({"uploads"})),
    ("PUT", frozenset({"partNumber", "uploadId"})),
    ("POST", frozenset({"uploadId"})),
    ("DELETE", frozenset({"uploadId"})),
}


def _query_ok(method: str, query: str) -> bool:
    names = frozenset(part.split("=", 1)[0] for part in query.split("&") if part)
    return (method, names) in OPERATIONS


def rest_violations(answer: dict[str, Any], raw: str, *, v4: bool, prefix: str) -> list[str]:
    """Everything wrong with a signed REST string; [] when it is one multipart call of a key
    under the prefix, in the uploads bucket, and the signature signs exactly that string."""
    if set(answer) != {"signature"}:
        return [f"answer shape {sorted(answer)}"]
    problems = []
    if v4:
        algorithm, amz_date, scope, *canonical = raw.split("\n")
        method, uri, query = canonical[:3]
        if not key_ok(unquote(uri[1:]), prefix):
            problems.append(f"uri {uri!r}")
        if f"host:{BUCKET_HOST}" not in canonical:
            problems.append("host")
        if not _query_ok(method, query):
            problems.append(f"operation {method} {query!r}")
        if scope != f"{TODAY}/us-east-1/s3/aws4_request" or algorithm != "AWS4-HMAC-SHA256":
            problems.append("scope")
        hashed = hashlib.sha256("\n".join(canonical).encode()).hexdigest()
        string = f"{algorithm}\n{amz_date}\n{scope}\n{hashed}"
        expected = hmac.new(v4_key(TODAY), string.encode(), hashlib.sha256).hexdigest()
    else:
        lines = raw.split("\n")
        method, resource = lines[0], lines[-1]
        path, _, query = resource.partition("?")
        if not path.startswith(f"/{BUCKET}/") or not key_ok(
            unquote(path[len(BUCKET) + 2 :]), prefix
        ):
            problems.append(f"resource {resource!r}")
        if not _query_ok(method, query):
            problems.append(f"operation {method} {query!r}")
        digest = hmac.new(SECRET_ACCESS_KEY.encode(), raw.encode(), hashlib.sha1).digest()
        expected = base64.b64encode(digest).decode()
    if answer["signature"] != expected:
        problems.append("signature does not sign the string sent")
    return problems


async def check(
    signer: Signer, body: bytes, content_type: str | None, *, v4: bool, fuzzing: bool = True
) -> Any:
    """POST ``body``; assert no 500, no signature on a refusal, and the oracle on a 200."""
    status, answer = await signer.post(body, content_type, v4=v4)
    if fuzzing:
        event(f"{status} {answer.get('error', '')}")  # --hypothesis-show-statistics shows these
    if status != 200:
        assert answer.get("invalid") is True and "signature" not in answer, answer
        return answer
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and "headers" in document:
        problems = rest_violations(answer, document["headers"], v4=v4, prefix=signer.prefix)
    else:
        problems = policy_violations(answer, v4=v4, prefix=signer.prefix, origin=signer.url)
    assert problems == [], (problems, body[:2000])
    return answer


# --------------------------------------------------------------------------- strategies

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=40,
)
# "{P}" stands for the user's prefix, filled in per example.
KEYS = st.sampled_from(
    [
        "{P}cat.jpg", "{P}a/b/c.jpg", "{P}../bob/x.jpg", "{P}a/../../x.jpg", "{P}./x.jpg",
        "{P}a//x.jpg", "{P}", "{P}x\\..\\y", "{P}x\x00.jpg", "{P}x\n.jpg", "other/{P}x.jpg",
        "/{P}x.jpg", "{P}%2e%2e/x.jpg", "{P}" + "a" * 1100, "{P}\u202ex.jpg", "{P}ü/ä.jpg",
        "x.jpg", "",
    ]
) | st.text(max_size=40).map(lambda t: "{P}" + t)  # fmt: skip
VALUES = st.sampled_from(
    [
        BUCKET, "other-bucket", "private", "public-read", "bucket-owner-full-control",
        "image/jpeg", "image/svg+xml", "text/html", "IMAGE/PNG", "image/*", "application/pdf",
        "image/jpeg; charset=x", "200", "201", "", "AES256", "aws:kms", "GLACIER",
        "REDUCED_REDUNDANCY", "http://127.0.0.1/uploads/photos/blank", "https://evil.test/",
        CREDENTIAL, "AWS4-HMAC-SHA256", AMZ_NOW, "20000101T000000Z",
    ]
) | KEYS | st.text(max_size=20)  # fmt: skip
NAMES = st.sampled_from(
    [
        "acl", "ACL", "bucket", "Bucket", "key", "KEY", "Content-Type", "content-type",
        "success_action_status", "success_action_redirect", "redirect", "Cache-Control",
        "x-amz-storage-class", "x-amz-server-side-encryption", "x-amz-meta-qqfilename",
        "x-amz-meta-", "x-amz-meta-a b", "x-amz-acl", "x-amz-algorithm", "x-amz-credential",
        "x-amz-date", "x-amz-security-token", "policy", "file", "content-length-range",
    ]
) | st.text(max_size=12)  # fmt: skip
NUMBERS = st.integers(-(2**70), 2**70) | st.sampled_from(
    [0, 1, MAX_SIZE, MAX_SIZE + 1, "0", "20971520", "20971521", "-1", "1e3", "0x10", " 5", 1.5]
) | JSON_LEAVES  # fmt: skip
# Size bounds near the limits, as numbers and as the digit strings Fine Uploader sends.
BOUNDS = st.sampled_from(
    [0, 1, "0", "1", MAX_SIZE - 1, MAX_SIZE, MAX_SIZE + 1, str(MAX_SIZE + 1), 10**12,
     "99999999999999999999", 2**63, -1]
) | NUMBERS  # fmt: skip
ARRAYS = st.one_of(
    st.tuples(st.just("content-length-range"), NUMBERS, NUMBERS).map(list),
    st.tuples(st.sampled_from(["starts-with", "eq", "STARTS-WITH"]),
              st.sampled_from(["$key", "$bucket", "$acl", "$Content-Type"]), VALUES).map(list),
    st.lists(VALUES | NUMBERS, max_size=4),
)  # fmt: skip
CONDITIONS = st.dictionaries(NAMES, VALUES, min_size=1, max_size=1) | ARRAYS | JSON_VALUES


def _base_policy(v4: bool, high: int | str = "15000000") -> list[Any]:
    conditions: list[Any] = [
        {"acl": "private"},
        {"bucket": BUCKET},
        {"Content-Type": "image/jpeg"},
        {"success_action_status": "200"},
        {"key": "{P}cat.jpg"},
        {"x-amz-meta-qqfilename": "cat.jpg"},
        ["content-length-range", "0", high],
    ]
    if v4:
        conditions += [
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": CREDENTIAL},
            {"x-amz-date": AMZ_NOW},
        ]
    return conditions


# What each field of the page's policy may be replaced by: near misses of the right value.
FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    "acl": st.sampled_from(["public-read", "public-read-write", "authenticated-read",
                            "bucket-owner-full-control", "PRIVATE", "private ", ""]),
    "bucket": st.sampled_from(["other-bucket", BUCKET.upper(), BUCKET + " ", BUCKET + "/x",
                               "x" + BUCKET, ""]),
    "key": KEYS,
    "content-type": st.sampled_from(["image/svg+xml", "text/html", "application/xhtml+xml",
                                     "text/javascript", "image/svg+xml; q=1", "image/*",
                                     "image/png", "application/pdf", "video/mp4", "*/*",
                                     "image/jpeg\r\nX: y", "image"]),
    "success_action_status": st.sampled_from(["201", "204", "302", "200 ", ""]),
    "x-amz-credential": st.sampled_from([f"OTHERKEY/{TODAY}/us-east-1/s3/aws4_request",
                                         f"{ACCESS_KEY_ID}/20000101/us-east-1/s3/aws4_request",
                                         f"{ACCESS_KEY_ID}/{TODAY}/eu-west-1/s3/aws4_request"]),
    "x-amz-date": st.sampled_from(["20000101T000000Z", "20261125T130000Z", "x"]),
}  # fmt: skip


@st.composite
def policies(draw: st.DrawFn, v4: bool) -> Any:
    """A valid Fine Uploader policy with a few random edits (drop, replace, add, duplicate, a
    field's value or the size range changed), or now and then a document of another shape."""
    # The page's sizeLimit may be above the route's max_size: the gateway must lower it.
    high = draw(st.sampled_from(["15000000", str(MAX_SIZE), str(MAX_SIZE + 1), 10**12]))
    conditions = _base_policy(v4, high)
    edits = ["drop", "replace", "add", "duplicate", "value", "value", "value", "range", "case"]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]))):
        edit = draw(st.sampled_from(edits))
        index = draw(st.integers(0, len(conditions) - 1)) if conditions else 0
        target = conditions[index] if conditions else None
        if edit == "drop" and conditions:
            conditions.pop(index)
        elif edit == "replace" and conditions:
            conditions[index] = draw(CONDITIONS)
        elif edit == "add":
            conditions.insert(index, draw(CONDITIONS))
        elif edit == "duplicate" and conditions:
            conditions.append(conditions[index])
        elif edit == "range":
            ranges = [i for i, c in enumerate(conditions) if isinstance(c, list)]
            condition = ["content-length-range", draw(BOUNDS), draw(BOUNDS)]
            if ranges:
                conditions[ranges[0]] = condition
            else:
                conditions.append(condition)
        elif isinstance(target, dict) and len(target) == 1:
            ((name, value),) = target.items()
            if edit == "case":
                conditions[index] = {draw(st.sampled_from([name.upper(), name.title()])): value}
            else:
                conditions[index] = {name: draw(FIELD_VALUES.get(name.lower(), VALUES))}
    document: Any = {"expiration": draw(st.text(max_size=30) | st.just("2026-11-25T12:05:00Z")),
                     "conditions": conditions}  # fmt: skip
    shape = draw(st.sampled_from(["policy"] * 12 + ["extra", "not-list", "no-expiration"]))
    if shape == "extra":
        document[draw(st.text(max_size=10))] = draw(JSON_VALUES)
    elif shape == "not-list":
        document["conditions"] = draw(JSON_VALUES)
    elif shape == "no-expiration":
        del document["expiration"]
    return document


def _fill(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value.replace("{P}", prefix)
    if isinstance(value, list):
        return [_fill(v, prefix) for v in value]
    if isinstance(value, dict):
        return {_fill(k, prefix): _fill(v, prefix) for k, v in value.items()}
    return value


def _v4_rest(method: str, key: str, query: str, extra: list[str], host: str) -> str:
    payload = EMPTY_SHA256
    headers = sorted([f"x-amz-content-sha256:{payload}", f"x-amz-date:{AMZ_NOW}", *extra])
    headers.insert(0, f"host:{host}")
    names = ";".join(h.split(":", 1)[0] for h in headers)
    uri = "/" + quote(key, safe="/~")
    canonical = "\n".join([method, uri, query, *headers, "", names, payload])
    return f"AWS4-HMAC-SHA256\n{AMZ_NOW}\n{TODAY}/us-east-1/s3/aws4_request\n{canonical}"


def _v2_rest(method: str, key: str, query: str, extra: list[str], bucket: str) -> str:
    content_type = "image/jpeg" if query == "uploads" else ""
    amz = sorted([*extra, f"x-amz-date:{HTTP_NOW}"])
    resource = f"/{bucket}/{quote(key, safe='/~')}?{query}"
    return "\n".join([method, "", content_type, "", *amz, resource])


# (method, v4 query, v2 subresource): the four multipart calls, weighted, then wrong ones.
VALID_OPERATIONS = [
    ("POST", "uploads=", "uploads"),
    ("PUT", "partNumber=1&uploadId=UPLOAD", "partNumber=1&uploadId=UPLOAD"),
    ("POST", "uploadId=UPLOAD", "uploadId=UPLOAD"),
    ("DELETE", "uploadId=UPLOAD", "uploadId=UPLOAD"),
]
OPERATIONS_DRAWN = VALID_OPERATIONS * 4 + [
    ("GET", "", ""),
    ("PUT", "", ""),
    ("DELETE", "", ""),
    ("POST", "uploads=&uploadId=UPLOAD", "uploads&uploadId=UPLOAD"),
    ("PUT", "partNumber=99999&uploadId=UPLOAD", "partNumber=99999&uploadId=UPLOAD"),
    ("PUT", "acl=", "acl"),
    ("GET", "uploadId=UPLOAD", "uploadId=UPLOAD"),
]
EXTRA_HEADERS = [
    "x-amz-acl:private", "x-amz-acl:public-read", "x-amz-meta-qqfilename:cat.jpg",
    "x-amz-storage-class:GLACIER", "x-amz-copy-source:/other/secret", "content-md5:xx",
    "x-amz-grant-read:uri=everyone", "x-amz-website-redirect-location:/x",
]  # fmt: skip


@st.composite
def rest_strings(draw: st.DrawFn, v4: bool, prefix: str) -> str:
    """A Fine Uploader REST string of a multipart call, built from parts mostly right and
    sometimes wrong, then now and then damaged at one random spot."""
    method, v4_query, v2_query = draw(st.sampled_from(OPERATIONS_DRAWN))
    key = draw(st.just("{P}cat.jpg") | KEYS).replace("{P}", prefix)
    extra = []
    if method == "POST" and "uploads" in v2_query and draw(st.booleans()):
        extra = ["x-amz-acl:private", "x-amz-meta-qqfilename:cat.jpg"]
    if draw(st.integers(0, 3)) == 0:
        extra.append(draw(st.sampled_from(EXTRA_HEADERS)))
    extra = sorted(set(extra))
    if v4:
        host = draw(st.sampled_from([BUCKET_HOST] * 6 + ["other.s3.test:9000", "s3.test:9000"]))
        text = _v4_rest(method, key, v4_query, extra, host)
    else:
        bucket = draw(st.sampled_from([BUCKET] * 6 + ["other-bucket", BUCKET.upper()]))
        text = _v2_rest(method, key, v2_query, extra, bucket)
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 5))
        text = text[:at] + draw(st.text(max_size=8)) + text[at + cut :]
    return text


# --------------------------------------------------------------------------- the fuzz


@FUZZ
@given(document=JSON_VALUES, v4=st.booleans())
async def test_any_json_is_refused_cleanly_or_signed_within_the_rules(
    signer: Signer, document: Any, v4: bool
) -> None:
    """JSON of any shape: a 400 with ``invalid`` and no signature, never a 500."""
    body = json.dumps(_fill(document, signer.prefix)).encode()
    await check(signer, body, "application/json", v4=v4)


@FUZZ_MORE
@given(data=st.data(), v4=st.booleans())
async def test_policies_are_signed_only_within_the_rules(
    signer: Signer, data: st.DataObject, v4: bool
) -> None:
    """Near-valid POST policies (conditions dropped, replaced, added, duplicated): any 200 signs
    a policy the oracle accepts; the rest are clean 400s."""
    document = _fill(data.draw(policies(v4)), signer.prefix)
    await check(signer, json.dumps(document).encode(), "application/json", v4=v4)


@FUZZ_MORE
@given(data=st.data(), v4=st.booleans())
async def test_rest_strings_are_signed_only_within_the_rules(
    signer: Signer, data: st.DataObject, v4: bool
) -> None:
    """REST strings of chunked uploads with random operations, keys, hosts, buckets, headers
    and damage: any 200 signs one allowed multipart call of the user's own key."""
    text = data.draw(rest_strings(v4, signer.prefix))
    await check(signer, json.dumps({"headers": text}).encode(), "application/json", v4=v4)


@FUZZ
@given(
    fields=st.lists(st.tuples(st.text(max_size=15), st.text(max_size=30)), max_size=8),
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        [None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
         "application/json; charset=latin-1", "text/plain;charset=UTF-8"]
    ),
    form=st.booleans(),
)  # fmt: skip
async def test_form_text_and_binary_bodies_never_fail(
    signer: Signer,
    fields: list[tuple[str, str]],
    raw: bytes,
    content_type: str | None,
    form: bool,
) -> None:
    """Form-encoded fields, bytes of any kind, under any content type: a clean 400."""
    body = urlencode(fields).encode() if form else raw
    await check(signer, body, content_type, v4=False)


async def test_valid_policies_pass_the_oracle(signer: Signer) -> None:
    """The oracle is not vacuous: the page's own policies (v2, v4, and as text/plain the way
    IE's XDomainRequest sends them) are signed and pass it."""
    for v4 in (False, True):
        document = {"expiration": "x", "conditions": _fill(_base_policy(v4), signer.prefix)}
        for content_type in ("application/json", "text/plain", None):
            body = json.dumps(document).encode()
            answer = await check(signer, body, content_type, v4=v4, fuzzing=False)
            assert "policy" in answer, answer
        text = _v4_rest("PUT", f"{signer.prefix}x.jpg", "partNumber=1&uploadId=U", [],
                        BUCKET_HOST) if v4 else _v2_rest(
            "PUT", f"{signer.prefix}x.jpg", "partNumber=1&uploadId=U", [], BUCKET)  # fmt: skip
        body = json.dumps({"headers": text}).encode()
        answer = await check(signer, body, None, v4=v4, fuzzing=False)
        assert "signature" in answer, (answer, text)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body",
    [
        _nested(30_000),  # deeper than Python's recursion limit, within the 64 KiB body limit
        b'{"expiration": "x", "conditions": ' + _nested(20_000) + b"}",
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"expiration": "x", "conditions": [["content-length-range", 0, 1e999999]]}',
        b'{"expiration": "x", "conditions": [["content-length-range", NaN, Infinity]]}',
        b'{"expiration": "x", "conditions": [["content-length-range", 0, ' + b"9" * 5000 + b"]]}",
        b'{"expiration": "x", "conditions": [' + b'{"acl": "private"},' * 6000 + b"1]}",
        b"\xef\xbb\xbf{}",
        b'{"headers": "' + b"a" * 60_000 + b'"}',
        b" " * 70_000,  # past the 64 KiB limit: 413
    ],
    ids=["deep-array", "deep-conditions", "deep-object", "huge-float", "nan", "long-int",
         "many-conditions", "bom", "long-rest", "too-large"],
)  # fmt: skip
@pytest.mark.parametrize("v4", [False, True])
async def test_huge_and_deep_bodies_are_refused_cleanly(
    signer: Signer, body: bytes, v4: bool
) -> None:
    """Bodies built to break a parser (nesting past the recursion limit, numbers past float,
    NaN, thousands of conditions, past the size limit) get a 4xx, never a 500."""
    status, answer = await signer.post(body, "application/json", v4=v4)
    assert 400 <= status < 500 and "signature" not in answer
