"""gateway.signing against AWS's published examples and against botocore's own signer."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import botocore.auth
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signing import (
    SigningKeys,
    amz_date,
    derive_signing_key,
    encode_policy,
    format_expiration,
    presign_v4,
    scope,
    sign_v2,
    sign_v4,
    string_to_sign_v4,
    uri_escape_path,
)

EXAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "aws_examples.json").read_text(encoding="utf-8")
)

ACCESS_KEY_ID = "AKIDSIGNINGTEST"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

# No deadline: the first example for a region and endpoint builds a botocore client.
COMPARE = settings(max_examples=300, deadline=None)


def _parse_amz_date(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


# --- AWS's published examples --------------------------------------------------------------------


def test_signing_key_matches_aws_derivation_example() -> None:
    """The HMAC chain gives AWS's published kSigning, the root of every v4 signature."""
    ex = EXAMPLES["signing_key"]
    key = derive_signing_key(ex["secret"], ex["date"], ex["region"], ex["service"])
    assert key.hex() == ex["signing_key_hex"]
    assert SigningKeys(ex["secret"]).get(ex["date"], ex["region"], ex["service"]) == key


def test_post_policy_signature_matches_aws_example() -> None:
    """Signing AWS's base64 POST policy gives AWS's v4 signature (Fine Uploader's v4 path)."""
    ex = EXAMPLES["post_policy_v4"]
    key = SigningKeys(ex["secret"]).get(ex["date"], ex["region"])
    assert sign_v4(key, ex["policy_base64"]) == ex["signature"]
    policy = json.loads(base64.b64decode(ex["policy_base64"]))
    credential = {
        k: v for cond in policy["conditions"] if isinstance(cond, dict) for k, v in cond.items()
    }
    assert (
        credential["x-amz-credential"] == f"{ex['access_key_id']}/{scope(ex['date'], ex['region'])}"
    )


def test_presigned_url_matches_aws_query_auth_example() -> None:
    """presign_v4 reproduces AWS's published presigned GET URL, string to sign and signature."""
    ex = EXAMPLES["presigned_url_v4"]
    keys = SigningKeys(ex["secret"])
    date = ex["amz_date"][:8]
    sts = string_to_sign_v4(
        ex["amz_date"], scope(date, ex["region"]), "\n".join(ex["canonical_request"])
    )
    assert sts == "\n".join(ex["string_to_sign"])
    assert sign_v4(keys.get(date, ex["region"]), sts) == ex["signature"]
    url = presign_v4(
        method=ex["method"],
        endpoint=ex["endpoint"],
        path=ex["path"],
        access_key_id=ex["access_key_id"],
        keys=keys,
        region=ex["region"],
        now=_parse_amz_date(ex["amz_date"]),
        expires=ex["expires"],
    )
    assert url == ex["url"]


def test_header_auth_signature_matches_aws_get_object_example() -> None:
    """AWS's ranged GET Object example: its string to sign and signature (REST v4 chunk path)."""
    ex = EXAMPLES["header_auth_get_object_v4"]
    date = ex["amz_date"][:8]
    sts = string_to_sign_v4(
        ex["amz_date"], scope(date, ex["region"]), "\n".join(ex["canonical_request"])
    )
    assert sts == "\n".join(ex["string_to_sign"])
    assert sign_v4(derive_signing_key(ex["secret"], date, ex["region"]), sts) == ex["signature"]


@pytest.mark.parametrize("example", EXAMPLES["rest_v2"]["examples"], ids=lambda e: str(e["name"]))
def test_sign_v2_matches_aws_rest_examples(example: dict[str, Any]) -> None:
    """SigV2 over AWS's REST strings to sign gives AWS's signatures (v2 chunk path)."""
    secret = EXAMPLES["rest_v2"]["secret"]
    assert sign_v2(secret, "\n".join(example["string_to_sign"])) == example["signature"]


# --- small pure helpers ---------------------------------------------------------------------


def test_amz_date_and_scope_are_utc_and_well_formed() -> None:
    """Timestamps are UTC whatever the zone of ``now``, so the scope date is S3's date."""
    plus_two = timezone(timedelta(hours=2))
    assert amz_date(datetime(2026, 1, 1, 1, 2, 3, tzinfo=plus_two)) == "20251231T230203Z"
    assert amz_date(datetime(2026, 1, 1, 1, 2, 3, 999_999)) == "20260101T010203Z"
    assert scope("20260101", "eu-west-1") == "20260101/eu-west-1/s3/aws4_request"
    assert scope("20260101", "eu-west-1", "iam") == "20260101/eu-west-1/iam/aws4_request"


def test_format_expiration_is_utc_with_milliseconds() -> None:
    """POST policy expirations are UTC with three fractional digits, the form S3's examples use."""
    assert (
        format_expiration(datetime(2015, 12, 30, 12, 0, tzinfo=UTC)) == "2015-12-30T12:00:00.000Z"
    )
    minus_five = timezone(timedelta(hours=-5))
    moment = datetime(2015, 12, 30, 20, 0, 1, 987_654, tzinfo=minus_five)
    assert format_expiration(moment) == "2015-12-31T01:00:01.987Z"


def test_encode_policy_is_compact_ascii_json() -> None:
    """The signed policy is compact ASCII JSON of the document; NaN (not JSON) is refused."""
    document = {
        "expiration": "2026-01-01T00:00:00.000Z",
        "conditions": [{"key": "ünï/코드"}, ["content-length-range", 0, 10]],
    }
    raw = base64.b64decode(encode_policy(document), validate=True)
    assert raw == (
        b'{"expiration":"2026-01-01T00:00:00.000Z",'
        b'"conditions":[{"key":"\\u00fcn\\u00ef/\\ucf54\\ub4dc"},["content-length-range",0,10]]}'
    )
    assert json.loads(raw) == document
    with pytest.raises(ValueError):
        encode_policy({"conditions": [["content-length-range", 0, float("nan")]]})


def test_signing_keys_cache_is_reused_and_bounded() -> None:
    """Keys are derived once per scope; old dates are dropped so the cache stays small."""
    keys = SigningKeys(SECRET)
    first = keys.get("20260101", "eu-west-1")
    assert keys.get("20260101", "eu-west-1") is first
    assert keys.get("20260101", "us-east-1") != first
    for day in range(2, 30):
        keys.get(f"202601{day:02d}", "eu-west-1")
    again = keys.get("20260101", "eu-west-1")
    assert again == first
    assert again is not first, "an old date was kept although the cache was full"
    latest = keys.get("20260129", "eu-west-1")
    assert keys.get("20260129", "eu-west-1") is latest


def test_signing_keys_repr_hides_the_secret() -> None:
    """A logged or printed key cache never shows the secret access key."""
    keys = SigningKeys(SECRET)
    keys.get("20260101", "eu-west-1")
    assert SECRET not in repr(keys)
    assert "SigningKeys" in repr(keys)


@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_uri_escape_path_keeps_only_unreserved_and_slash(key: str) -> None:
    """Escaped paths hold only unreserved characters, ``/`` and %XX, and decode back to the key."""
    escaped = uri_escape_path(key)
    assert re.fullmatch(r"(?:[A-Za-z0-9._~/-]|%[0-9A-F]{2})*", escaped)
    assert escaped.count("/") == key.count("/")
    assert unquote(escaped) == key


def _presign(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "method": "GET",
        "endpoint": "http://127.0.0.1:9000",
        "path": "/bucket/key",
        "access_key_id": ACCESS_KEY_ID,
        "keys": SigningKeys(SECRET),
        "region": "us-east-1",
        "now": datetime(2026, 1, 1, tzinfo=UTC),
        "expires": 900,
    }
    args.update(overrides)
    return presign_v4(**args)


@pytest.mark.parametrize(
    "overrides",
    [
        {"expires": 0},
        {"expires": 7 * 24 * 3600 + 1},
        {"path": "bucket/key"},
        {"endpoint": "http://127.0.0.1:9000/prefix"},
        {"endpoint": "http://user:pw@127.0.0.1:9000"},
        {"endpoint": "ftp://127.0.0.1"},
        {"endpoint": "http://127.0.0.1:9000?x=1"},
        {"query": {"X-Amz-Expires": "604800"}},
        {"query": {"x-amz-signature": "forged"}},
        {"query": {"X-Amz-Security-Token": "t"}},
    ],
    ids=repr,
)
def test_presign_v4_refuses_malformed_requests(overrides: dict[str, Any]) -> None:
    """Bad expiry, relative paths, odd endpoints and smuggled auth parameters are errors."""
    with pytest.raises(ValueError):
        _presign(**overrides)


def test_presign_v4_signs_the_extra_headers() -> None:
    """Extra headers are part of the signature: a different content type gives a different URL."""
    png = _presign(method="PUT", headers={"Content-Type": "image/png"})
    jpeg = _presign(method="PUT", headers={"content-type": "image/jpeg"})
    assert "X-Amz-SignedHeaders=content-type%3Bhost&" in png
    assert png.split("X-Amz-Signature=")[1] != jpeg.split("X-Amz-Signature=")[1]


# --- byte for byte against botocore ---------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _aws_env_isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No AWS_* variable, config file or instance metadata can reach the botocore clients here."""
    empty = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        yield


class _Clients:
    """Botocore S3 clients built on demand, one per (region, endpoint, addressing style)."""

    def __init__(self) -> None:
        self._session = botocore.session.Session()
        self._clients: dict[tuple[str, str, str], Any] = {}

    def get(self, region: str, endpoint_url: str, style: str) -> Any:
        found = self._clients.get((region, endpoint_url, style))
        if found is None:
            found = self._session.create_client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET,
                config=Config(signature_version="s3v4", s3={"addressing_style": style}),
            )
            self._clients[(region, endpoint_url, style)] = found
        return found


@pytest.fixture(scope="module")
def clients(_aws_env_isolated: None) -> _Clients:
    """Shared botocore clients for the comparisons (building one takes tens of milliseconds)."""
    return _Clients()


class _FrozenClock:
    """Freezes botocore's signing clock (its only time source) at one naive-UTC instant."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment
        self._patch = pytest.MonkeyPatch()

    def __enter__(self) -> None:
        moment = self._moment
        self._patch.setattr(
            botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: moment
        )

    def __exit__(self, *exc: object) -> None:
        self._patch.undo()


REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1", "eu-central-2"]

# (botocore endpoint_url, addressing style, our endpoint given the bucket)
ADDRESSING = [
    ("http://127.0.0.1:9000", "path", lambda b: "http://127.0.0.1:9000"),
    ("http://localhost:9000", "path", lambda b: "http://localhost:9000"),
    ("http://[::1]:9000", "path", lambda b: "http://[::1]:9000"),
    ("https://s3.example.test:443", "path", lambda b: "https://s3.example.test:443"),
    ("http://s3.example.test:9000", "virtual", lambda b: f"http://{b}.s3.example.test:9000"),
    ("https://S3.Example.Test", "virtual", lambda b: f"https://{b}.S3.Example.Test"),
]

SPECIALS = " +()!'*~/%?#&=;:@$,[]\"<>\\^`{|}"
object_keys = st.text(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIALS)), min_size=1, max_size=60
)
buckets = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
moments = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31))
header_values = st.text(
    st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E), st.just("\t")),
    min_size=1,
    max_size=30,
).filter(lambda v: v.strip() != "")
query_values = st.text(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIALS)), min_size=1, max_size=30
)
meta_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,9}", fullmatch=True)
checksums = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
md5s = st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())


class _Call:
    """One S3 call as botocore takes it and as presign_v4 takes it."""

    def __init__(self, operation: str, http_method: str) -> None:
        self.operation = operation
        self.http_method = http_method
        self.params: dict[str, Any] = {}
        self.query: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"_Call({self.operation}, params={self.params!r})"


@st.composite
def s3_calls(draw: st.DrawFn) -> _Call:
    """An S3 operation with the parameters that become signed query strings or signed headers."""
    operation, method = draw(
        st.sampled_from(
            [
                ("get_object", "GET"),
                ("head_object", "HEAD"),
                ("delete_object", "DELETE"),
                ("put_object", "PUT"),
                ("upload_part", "PUT"),
                ("create_multipart_upload", "POST"),
                ("complete_multipart_upload", "POST"),
                ("abort_multipart_upload", "DELETE"),
            ]
        )
    )
    call = _Call(operation, method)

    # Query parameters go into the URL in the operation model's member order, as botocore does.
    def query(param: str, name: str, value: str, wire: str | None = None) -> None:
        call.params[param] = value
        call.query[name] = wire if wire is not None else value

    def header(param: str, name: str, value: str) -> None:
        call.params[param] = value
        call.headers[name] = value

    if operation == "get_object":
        if draw(st.booleans()):
            query("ResponseContentDisposition", "response-content-disposition", draw(query_values))
        if draw(st.booleans()):
            query("ResponseContentType", "response-content-type", draw(query_values))
        if draw(st.booleans()):
            part = draw(st.integers(1, 10_000))
            call.params["PartNumber"] = part
            call.query["partNumber"] = str(part)
    elif operation == "create_multipart_upload":
        call.query["uploads"] = ""
    elif operation in ("upload_part", "complete_multipart_upload", "abort_multipart_upload"):
        if operation == "upload_part":
            part = draw(st.integers(1, 10_000))
            call.params["PartNumber"] = part
            call.query["partNumber"] = str(part)
        query("UploadId", "uploadId", draw(query_values))

    if operation in ("put_object", "create_multipart_upload") and draw(st.booleans()):
        header(
            "ContentType",
            draw(st.sampled_from(["Content-Type", "content-type"])),
            draw(header_values),
        )
    if operation in ("put_object", "upload_part"):
        if draw(st.booleans()):
            header("ChecksumSHA256", "x-amz-checksum-sha256", draw(checksums))
        if draw(st.booleans()):
            header("ContentMD5", "Content-MD5", draw(md5s))
    if operation in ("put_object", "create_multipart_upload"):
        metadata = draw(st.dictionaries(meta_names, header_values, max_size=3))
        if metadata:
            call.params["Metadata"] = metadata
            call.headers.update({f"x-amz-meta-{k}": v for k, v in metadata.items()})
    return call


@COMPARE
@given(
    call=s3_calls(),
    key=object_keys,
    bucket=buckets,
    region=st.sampled_from(REGIONS),
    addressing=st.sampled_from(ADDRESSING),
    moment=moments,
    zone=st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30))]),
    expires=st.integers(1, 7 * 24 * 3600),
)
def test_presign_v4_equals_botocore_generate_presigned_url(
    clients: _Clients,
    call: _Call,
    key: str,
    bucket: str,
    region: str,
    addressing: tuple[str, str, Any],
    moment: datetime,
    zone: timezone | None,
    expires: int,
) -> None:
    """Our presigned URL is byte-identical to botocore's for the same call and the same clock."""
    endpoint_url, style, our_endpoint = addressing
    client = clients.get(region, endpoint_url, style)
    with _FrozenClock(moment):
        expected = client.generate_presigned_url(
            call.operation,
            Params={"Bucket": bucket, "Key": key, **call.params},
            ExpiresIn=expires,
        )
    now = moment if zone is None else moment.replace(tzinfo=UTC).astimezone(zone)
    path = f"/{key}" if style == "virtual" else f"/{bucket}/{key}"
    ours = presign_v4(
        method=call.http_method,
        endpoint=our_endpoint(bucket),
        path=path,
        access_key_id=ACCESS_KEY_ID,
        keys=SigningKeys(SECRET),
        region=region,
        now=now,
        expires=expires,
        query=call.query,
        headers=call.headers,
    )
    assert ours == expected


HEADER_NAMES = [
    "Range",
    "Content-Type",
    "Content-MD5",
    "x-amz-acl",
    "X-Amz-Meta-Tag",
    "Cache-Control",
]


@COMPARE
@given(
    key=object_keys,
    region=st.sampled_from(REGIONS),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
    extra=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=4),
    body=st.binary(max_size=64),
    moment=moments,
)
def test_string_to_sign_and_sign_v4_equal_botocore_header_signing(
    key: str,
    region: str,
    method: str,
    extra: dict[str, str],
    body: bytes,
    moment: datetime,
) -> None:
    """A canonical request signed with our string to sign and key equals botocore's S3SigV4Auth."""
    path = uri_escape_path(f"/bucket/{key}")
    request = AWSRequest(
        method=method, url=f"http://127.0.0.1:9000{path}", headers=extra, data=body
    )
    with _FrozenClock(moment):
        botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET), "s3", region).add_auth(
            request
        )

    stamp = amz_date(moment)
    date = stamp[:8]
    payload = hashlib.sha256(body).hexdigest()
    headers = {name.lower(): " ".join(value.split()) for name, value in extra.items()}
    headers |= {"host": "127.0.0.1:9000", "x-amz-content-sha256": payload, "x-amz-date": stamp}
    names = sorted(headers)
    canonical = "\n".join(
        [method, path, "", *(f"{n}:{headers[n]}" for n in names), "", ";".join(names), payload]
    )
    signature = sign_v4(
        SigningKeys(SECRET).get(date, region),
        string_to_sign_v4(stamp, scope(date, region), canonical),
    )
    assert request.headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope(date, region)}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
