"""Every reason the gateway gives for refusing or failing a request: status, title, meaning.

The reason is the problem's ``type`` suffix, its log field and its metric label, so a client, a
dashboard and an operator all key on it. RFC 9457 (3.1.3) wants one title per problem type, and
this catalogue is where that title lives: ``GatewayError.to_problem`` takes it from here. A
reason keeps one status, except the few whose ``also`` names a second one and says when.

``tests/unit/test_reasons.py`` fails on a reason raised anywhere in ``gateway/`` that is missing
here, or raised with a status the entry does not give; docs/errors.md prints the table
(``python -m gateway.docgen`` writes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Reason:
    """One refusal or failure: its HTTP status, the problem's title, what it means."""

    status: int
    title: str
    meaning: str
    also: tuple[int, ...] = ()  # other statuses it is given with; ``meaning`` says when


def _catalogue(*entries: tuple[str, Reason]) -> Mapping[str, Reason]:
    codes = [code for code, _ in entries]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise ValueError(f"reasons listed twice: {duplicates}")
    return MappingProxyType(dict(entries))


# Grouped as docs/errors.md prints them; each group's order is the order a request meets them.
GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Any request": (
            "line-too-long",
            "too-many-headers",
            "bad-method",
            "bad-request-line",
            "bad-header",
            "duplicate-header",
            "no-host",
            "bad-host",
            "bad-framing",
            "fragment-in-target",
            "nul-in-path",
            "overlong-utf8",
            "bad-target",
            "not-found",
            "method-not-allowed",
            "body-timeout",
            "client-went-away",
            "internal-error",
        ),
        "Who is calling": (
            "origin-refused",
            "no-identity",
            "auth-request-failed",
            "forbidden",
        ),
        "Request bodies and fields": (
            "body-too-large",
            "not-json",
            "json-too-deep",
            "invalid-field",
            "missing-field",
            "form-invalid",
            "bad-request",
            "malformed-request",
            "filename-invalid",
            "size-invalid",
            "metadata-invalid",
            "params-too-deep",
            "params-too-large",
        ),
        "Declared files": (
            "too-large",
            "content-type-not-allowed",
        ),
        "Upload ids and parts (Uppy, API)": (
            "token-invalid",
            "token-other-user",
            "token-other-route",
            "token-expired",
            "expired",
            "key-missing",
            "key-mismatch",
            "part-number-invalid",
            "part-number-out-of-range",
            "parts-invalid",
            "part-mismatch",
            "part-size-mismatch",
            "no-parts",
            "part-invalid",
            "part-order-invalid",
            "part-too-small",
            "checksum-mismatch",
        ),
        "Object keys": (
            "key-bad-character",
            "key-too-long",
            "key-outside-prefix",
            "key-empty-segment",
            "key-dot-segment",
        ),
        "POST policies (Fine Uploader, Uppy's form uploads)": (
            "policy-refused",
            "not-a-policy",
            "policy-extra-field",
            "expiration-invalid",
            "conditions-invalid",
            "condition-malformed",
            "condition-value-not-string",
            "starts-with-not-allowed",
            "eq-array-not-allowed",
            "length-range-invalid",
            "length-range-above-max",
            "duplicate-condition",
            "v4-condition-in-v2",
            "unknown-condition",
            "missing-condition",
            "success-action-conflict",
            "success-status-not-allowed",
            "redirect-not-allowed",
            "header-value-invalid",
            "header-value-too-long",
            "credential-missing",
            "credential-mismatch",
            "credential-date-skewed",
            "date-credential-mismatch",
        ),
        "Values of policies and REST strings": (
            "bucket-mismatch",
            "acl-not-allowed",
            "storage-class-not-allowed",
            "encryption-not-allowed",
            "meta-name-invalid",
            "meta-value-invalid",
            "meta-too-large",
            "algorithm-not-allowed",
            "date-invalid",
            "date-skewed",
        ),
        "REST strings of chunked uploads (Fine Uploader)": (
            "rest-too-long",
            "rest-bad-format",
            "rest-presign-not-allowed",
            "rest-method-not-allowed",
            "rest-query-not-allowed",
            "rest-uri-invalid",
            "rest-scope-mismatch",
            "rest-payload-hash-invalid",
            "rest-header-malformed",
            "rest-header-duplicate",
            "rest-header-order",
            "rest-header-not-allowed",
            "rest-header-missing",
            "rest-host-mismatch",
            "rest-date-mismatch",
            "rest-payload-hash-mismatch",
            "rest-signed-headers-mismatch",
            "content-md5-invalid",
        ),
        "Completion and deletion": (
            "key-not-yours",
            "no-such-upload",
            "etag-mismatch",
            "size-mismatch",
            "sniffed-type-not-allowed",
            "copy-mismatch",
            "copy-check-failed",
            "storage-key-taken",
            "upstream-failed",
            "delete-refused",
        ),
        "S3": (
            "no-such-object",
            "no-such-bucket",
            "storage-denied",
            "storage-failed",
            "storage-unreachable",
            "storage-unavailable",
            "record-conflict",
            "setup-incomplete",
        ),
        "The upstream app": (
            "upstream-refused",
            "upstream-broken",
            "upstream-answer-too-large",
            "upstream-busy",
            "upstream-unavailable",
            "upstream-timeout",
        ),
    }
)

_POLICY = "Signature refused"

REASONS: Mapping[str, Reason] = _catalogue(
    # ------------------------------------------------------------------ any request
    ("line-too-long", Reason(400, "Line too long",
        "The request line or a header line is longer than `limits.max_line_size` or "
        "`limits.max_field_size`; the connection is closed after the answer.")),
    ("too-many-headers", Reason(400, "Too many headers",
        "More header lines than `limits.max_headers`.")),
    ("bad-method", Reason(400, "Bad method",
        "The request line's method is not an HTTP method.")),
    ("bad-request-line", Reason(400, "Bad request line",
        "The request line is not `METHOD TARGET HTTP/1.x`.")),
    ("bad-header", Reason(400, "Bad header",
        "A header line is malformed or holds a character HTTP does not allow.")),
    ("duplicate-header", Reason(400, "Duplicate header",
        "A header that may appear once (`Host`, `Content-Length`, ...) appears twice.")),
    ("no-host", Reason(400, "No Host",
        "An HTTP/1.1 request without a `Host` header.")),
    ("bad-host", Reason(400, "Bad Host",
        "The `Host` header is not `host[:port]` (it would reach the app as "
        "`X-Forwarded-Host`, and name the page's origin for Fine Uploader's blank page).")),
    ("bad-framing", Reason(400, "Bad framing",
        "The body's framing is invalid (`Content-Length`, `Transfer-Encoding`, chunks), or an "
        "HTTP/1.0 request has `Transfer-Encoding` (RFC 9112 6.1); the connection is closed "
        "after the answer.")),
    ("fragment-in-target", Reason(400, "Fragment in target",
        "The request target holds a `#` fragment, which HTTP/1.1 never sends.")),
    ("nul-in-path", Reason(400, "NUL in path",
        "The path holds a NUL byte, raw or as %00.")),
    ("overlong-utf8", Reason(400, "Overlong UTF-8 in path",
        "The path holds an overlong UTF-8 escape (%c0%ae and the like), which old decoders "
        "turn into '.' or '/'.")),
    ("bad-target", Reason(400, "Bad request target",
        "The request target is neither a path nor an http(s) URL (an authority, as CONNECT "
        "sends, or *), or holds a character HTTP does not allow. Of an absolute URL only the "
        "path and query are used.")),
    ("not-found", Reason(404, "Not found",
        "No such endpoint under a route's path or under ops_prefix, or a client asked for a "
        "route's forward path, which only the gateway may call.")),
    ("method-not-allowed", Reason(405, "Method not allowed",
        "aiohttp's router refused the method.")),
    ("body-timeout", Reason(408, "Request timeout",
        "The body arrived slower than limits.body_timeout and limits.body_min_rate allow; the "
        "connection is closed without an answer, so only the log shows this reason.")),
    ("client-went-away", Reason(499, "Client closed request",
        "The client hung up before its answer; only the log shows this reason.")),
    ("internal-error", Reason(500, "Internal gateway error",
        "A bug in the gateway: the log line with this request id holds the traceback.")),
    # ------------------------------------------------------------------ who is calling
    ("origin-refused", Reason(403, "Origin not allowed",
        "A state-changing request to an upload route whose Origin (or, lacking one, Referer) "
        "is not in public_origins (by default, not the gateway's own origin).")),
    ("no-identity", Reason(401, "Not authenticated",
        "The request carries no identity: the app has not logged the user in "
        "(`identity.login_header`), `auth_request` said nobody, and `identity.anonymous` is off.")),
    ("auth-request-failed", Reason(502, "Upstream unavailable",
        "The app's `identity.auth_request.path` answered neither 2xx nor 401, 403 or 404.")),
    ("forbidden", Reason(403, "Forbidden",
        "A refusal with no more specific reason.")),
    # ------------------------------------------------------------------ bodies and fields
    ("body-too-large", Reason(413, "Body too large",
        "A request body to an upload endpoint is larger than that endpoint takes (64 KiB for "
        "signing and completion requests, 16 KiB for an API grant, 1 MiB for a part list).")),
    ("not-json", Reason(400, "Not JSON",
        "The body is not JSON (`NaN` and `Infinity` included), or not a JSON object.")),
    ("json-too-deep", Reason(400, "JSON too deep",
        "The JSON body nests deeper than the endpoint allows (6 levels); the problem's `limit` "
        "member says how deep.")),
    ("invalid-field", Reason(400, "Invalid field",
        "A field of a JSON body is missing, of the wrong type or out of range; the problem's "
        "`field` member names it.")),
    ("missing-field", Reason(400, "Missing field",
        "Fine Uploader's success or delete request lacks `key`, `name` or `bucket`.")),
    ("form-invalid", Reason(400, "Invalid form",
        "A form body cannot be parsed, or breaks the form limits (200 fields, 5 bracket "
        "levels, list indices up to 1000, a field sent twice), or a POST to `P/files` is not "
        "`_method=DELETE`.")),
    ("bad-request", Reason(400, "Bad request",
        "A bad request with no more specific reason.")),
    ("malformed-request", Reason(400, _POLICY,
        "A Fine Uploader signing body is neither a POST policy nor exactly "
        '`{"headers": "<string>"}`.')),
    ("filename-invalid", Reason(400, "Invalid file name",
        "Uppy's `filename` is empty or longer than 255 characters.")),
    ("size-invalid", Reason(400, "Invalid size",
        "A declared size is not a non-negative whole number of bytes.")),
    ("metadata-invalid", Reason(400, "Invalid metadata",
        "Uppy's file metadata has a value that is not a string, number or boolean, or more "
        "than 32 entries.")),
    ("params-too-deep", Reason(400, "Params too deep",
        "The page's parameters for the completion message nest deeper than 6 levels "
        "(`limit`).")),
    ("params-too-large", Reason(400, "Params too large",
        "The page's parameters for the completion message hold more than 1200 values or 64 "
        "KiB of text (`limit`).")),
    # ------------------------------------------------------------------ declared files
    ("too-large", Reason(413, "Payload too large",
        "The file is larger than the route's `max_size`: as declared, as its parts add up, or "
        "as stored.")),
    ("content-type-not-allowed", Reason(415, "Unsupported media type",
        "The file's declared or stored content type is not in the route's `content_types` "
        "(wildcards never admit active types: HTML, SVG, XML, JavaScript, CSS...). 400 when a "
        "signing request names it (a policy's `Content-Type` condition, a REST string's "
        "`content-type`).",
        also=(400,))),
    # ------------------------------------------------------------------ upload ids and parts
    ("token-invalid", Reason(403, "Invalid upload id",
        "The upload id was not issued by a gateway holding these `session.keys`, or was "
        "altered.")),
    ("token-other-user", Reason(403, "Another user's upload",
        "The upload id belongs to another user.")),
    ("token-other-route", Reason(403, "Another route's upload",
        "The upload id belongs to another route.")),
    ("token-expired", Reason(410, "Upload expired",
        "The upload id is more than a day old: start a new upload.")),
    ("expired", Reason(410, "Gone",
        "Something has expired, with no more specific reason.")),
    ("key-missing", Reason(400, "Key missing",
        "An Uppy multipart call without its `?key=`.")),
    ("key-mismatch", Reason(403, "Key not this upload's",
        "The `?key=` of an Uppy multipart call is not the key its upload id was granted.")),
    ("part-number-invalid", Reason(400, "Invalid part number",
        "A part number is not a whole number from 1 to 10000.")),
    ("part-number-out-of-range", Reason(400, "Part number out of range",
        "A part number above what `max_size` (or the declared size) needs, in 5 MiB parts.")),
    ("parts-invalid", Reason(400, "Invalid part list",
        "The parts of a completion are not numbered 1 to N without gaps.")),
    ("part-mismatch", Reason(400, "Part mismatch",
        "A listed part is not in S3 with that ETag.")),
    ("part-size-mismatch", Reason(400, "Part size mismatch",
        "An API multipart part other than the last does not hold `part_size` bytes.")),
    ("no-parts", Reason(400, "No parts",
        "A multipart completion with no part.")),
    ("part-invalid", Reason(400, "Invalid part",
        "S3 refused a part of the completion (InvalidPart).")),
    ("part-order-invalid", Reason(400, "Part order invalid",
        "S3 refused the order of the parts (InvalidPartOrder).")),
    ("part-too-small", Reason(400, "Part too small",
        "S3 refused a part other than the last below 5 MiB (EntityTooSmall).")),
    ("checksum-mismatch", Reason(400, "Checksum mismatch",
        "The uploaded bytes do not match the `sha256` the API client declared; the upload is "
        "removed.")),
    # ------------------------------------------------------------------ object keys
    ("key-bad-character", Reason(400, "Bad character in key",
        "The key holds a control character, a line separator or a backslash.")),
    ("key-too-long", Reason(400, "Key too long",
        "The key is longer than 1024 bytes in UTF-8 (S3's limit).")),
    ("key-outside-prefix", Reason(400, "Key outside your prefix",
        "The key is not under this user's key prefix.")),
    ("key-empty-segment", Reason(400, "Empty segment in key",
        "The key has an empty path segment (//, or a trailing /).")),
    ("key-dot-segment", Reason(400, "Dot segment in key",
        "The key has a '.' or '..' segment.")),
    # ------------------------------------------------------------------ POST policies
    ("policy-refused", Reason(400, _POLICY,
        "A signing request outside the rules, with no more specific reason.")),
    ("not-a-policy", Reason(400, _POLICY,
        "The body lacks `expiration` or `conditions`.")),
    ("policy-extra-field", Reason(400, _POLICY,
        "The policy has members besides `expiration` and `conditions`.")),
    ("expiration-invalid", Reason(400, _POLICY,
        "The policy's `expiration` is not a string (the gateway replaces it anyway).")),
    ("conditions-invalid", Reason(400, _POLICY,
        "The policy's `conditions` are not a list.")),
    ("condition-malformed", Reason(400, _POLICY,
        "A condition is neither `{name: value}` nor a `content-length-range` array.")),
    ("condition-value-not-string", Reason(400, _POLICY,
        "A `{name: value}` condition's value is not a string.")),
    ("starts-with-not-allowed", Reason(400, _POLICY,
        "A `starts-with` condition: it would let the browser choose any value.")),
    ("eq-array-not-allowed", Reason(400, _POLICY,
        'An `["eq", ...]` condition: write equality as `{name: value}`.')),
    ("length-range-invalid", Reason(400, _POLICY,
        "`content-length-range` is not `[name, min, max]` of non-negative integers with "
        "min <= max.")),
    ("length-range-above-max", Reason(400, _POLICY,
        "`content-length-range`'s minimum is above the route's `max_size`.")),
    ("duplicate-condition", Reason(400, _POLICY,
        "A condition appears twice.")),
    ("v4-condition-in-v2", Reason(400, _POLICY,
        "`x-amz-algorithm`, `x-amz-credential` or `x-amz-date` in a version 2 policy.")),
    ("unknown-condition", Reason(400, _POLICY,
        "A condition the gateway never signs (the allowed ones: "
        "[protocols/fineuploader.md](protocols/fineuploader.md)).")),
    ("missing-condition", Reason(400, _POLICY,
        "A required condition is missing: `acl`, `bucket` and `key`; in version 4 also "
        "`x-amz-algorithm`, `x-amz-credential` and `x-amz-date`.")),
    ("success-action-conflict", Reason(400, _POLICY,
        "Both `success_action_status` and `success_action_redirect`.")),
    ("success-status-not-allowed", Reason(400, _POLICY,
        '`success_action_status` is not `"200"`.')),
    ("redirect-not-allowed", Reason(400, _POLICY,
        "`success_action_redirect` is not the route's own `P/blank` page.")),
    ("header-value-invalid", Reason(400, _POLICY,
        "A `Cache-Control`, `Content-Disposition` or `Content-Encoding` value holds a "
        "control character.")),
    ("header-value-too-long", Reason(400, _POLICY,
        "A `Cache-Control`, `Content-Disposition` or `Content-Encoding` value is over 1024 "
        "bytes.")),
    ("credential-missing", Reason(400, _POLICY,
        "A version 4 policy without a well-formed `x-amz-credential`.")),
    ("credential-mismatch", Reason(400, _POLICY,
        "`x-amz-credential` is not `<s3.access_key_id>/<YYYYMMDD>/<s3.region>/s3/aws4_request`.")),
    ("credential-date-skewed", Reason(400, _POLICY,
        "The credential's date is more than a day from the gateway's.")),
    ("date-credential-mismatch", Reason(400, _POLICY,
        "`x-amz-date` is not on the credential's date.")),
    # ------------------------------------------------------------------ values
    ("bucket-mismatch", Reason(400, "Not the uploads bucket",
        "The bucket named is not `s3.uploads_bucket`.")),
    ("acl-not-allowed", Reason(400, _POLICY,
        "The acl is not the route's `acl`.")),
    ("storage-class-not-allowed", Reason(400, _POLICY,
        "A storage class other than `STANDARD` or `REDUCED_REDUNDANCY`.")),
    ("encryption-not-allowed", Reason(400, _POLICY,
        "Server-side encryption other than `AES256` or `aws:kms`.")),
    ("meta-name-invalid", Reason(400, _POLICY,
        "An `x-amz-meta-` name with characters outside a-z, 0-9, _ and -.")),
    ("meta-value-invalid", Reason(400, _POLICY,
        "An `x-amz-meta-` value that is not printable ASCII.")),
    ("meta-too-large", Reason(400, "Metadata too large",
        "The metadata's names and values add up to more than 2048 bytes (S3's limit).")),
    ("algorithm-not-allowed", Reason(400, _POLICY,
        "The algorithm is not `AWS4-HMAC-SHA256`.")),
    ("date-invalid", Reason(400, _POLICY,
        "`x-amz-date` is not `YYYYMMDDTHHMMSSZ` (version 4) or an RFC 1123 GMT date with the "
        "right weekday (version 2).")),
    ("date-skewed", Reason(400, _POLICY,
        "The request's date is more than 15 minutes from the gateway's clock, as S3 would "
        "refuse it.")),
    # ------------------------------------------------------------------ REST strings
    ("rest-too-long", Reason(400, _POLICY,
        "The string to sign is longer than 16 KiB.")),
    ("rest-bad-format", Reason(400, _POLICY,
        "The string to sign has characters outside printable ASCII, or too few lines for its "
        "version.")),
    ("rest-presign-not-allowed", Reason(400, _POLICY,
        "A version 2 string with a Date line: the signature would be a presigned URL of the "
        "client's chosen expiry.")),
    ("rest-method-not-allowed", Reason(400, _POLICY,
        "A method other than the four multipart calls use (a GET is never signed), or one "
        "that does not fit the query.")),
    ("rest-query-not-allowed", Reason(400, _POLICY,
        "A query other than `?uploads`, `?partNumber=N&uploadId=X` or `?uploadId=X`, or a "
        "malformed `partNumber` or `uploadId`.")),
    ("rest-uri-invalid", Reason(400, _POLICY,
        "The object path is not the key escaped exactly as Fine Uploader escapes it.")),
    ("rest-scope-mismatch", Reason(400, _POLICY,
        "The scope is not `<date>/<s3.region>/s3/aws4_request` for the string's date.")),
    ("rest-payload-hash-invalid", Reason(400, _POLICY,
        "The payload hash is not 64 lower-case hex digits (no `UNSIGNED-PAYLOAD`).")),
    ("rest-header-malformed", Reason(400, _POLICY,
        "A header line is not lower-case `name:value`.")),
    ("rest-header-duplicate", Reason(400, _POLICY,
        "A header line appears twice.")),
    ("rest-header-order", Reason(400, _POLICY,
        "The header lines are not sorted by name.")),
    ("rest-header-not-allowed", Reason(400, _POLICY,
        "A header this call may not carry (object settings and metadata only on initiate).")),
    ("rest-header-missing", Reason(400, _POLICY,
        "`x-amz-date` is missing; in version 4, `host` or `x-amz-content-sha256` too.")),
    ("rest-host-mismatch", Reason(400, _POLICY,
        "The `host` header is not the uploads bucket's host as browsers reach it.")),
    ("rest-date-mismatch", Reason(400, _POLICY,
        "The `x-amz-date` header differs from the string's date line.")),
    ("rest-payload-hash-mismatch", Reason(400, _POLICY,
        "`x-amz-content-sha256` differs from the payload hash line.")),
    ("rest-signed-headers-mismatch", Reason(400, _POLICY,
        "The signed headers line does not list exactly the header lines given.")),
    ("content-md5-invalid", Reason(400, _POLICY,
        "`Content-MD5` is not the base64 of 16 bytes.")),
    # ------------------------------------------------------------------ completion and deletion
    ("key-not-yours", Reason(403, "Not your object",
        "The key to complete or delete is not under this user's prefix; nothing was read or "
        "touched.")),
    ("no-such-upload", Reason(404, "No such upload",
        "Nothing to complete: the object was never uploaded, or expired from the uploads "
        "bucket, and no stored copy exists; or S3 no longer knows the multipart upload.")),
    ("etag-mismatch", Reason(400, "Upload changed",
        "The object changed since the client uploaded it, or while the gateway copied it.")),
    ("size-mismatch", Reason(400, "Size mismatch",
        "The object's size is not the size the API client declared.")),
    ("sniffed-type-not-allowed", Reason(415, "Content not allowed",
        "The file's first bytes show a type the route does not accept; the upload is "
        "removed.")),
    ("copy-mismatch", Reason(503, "Storage unavailable",
        "The copy in the storage bucket does not match the upload; the upload is kept for a "
        "retry.")),
    ("copy-check-failed", Reason(503, "Storage unavailable",
        "The stored copy's size or id is not the upload's; the upload is kept for a retry.")),
    ("storage-key-taken", Reason(503, "Storage unavailable",
        "The stored copy's key already holds an object; the completion checks whether it is "
        "this upload's and goes on, so clients see `copy-check-failed` when it is not.")),
    ("upstream-failed", Reason(502, "Upstream unavailable",
        "The app answered a completion or deletion message with 5xx; the file is kept and a "
        "retry sends the same message again.")),
    ("delete-refused", Reason(403, "Deletion refused",
        "The app answered a deletion message with a 4xx other than 404; the file is kept.")),
    # ------------------------------------------------------------------ S3
    ("no-such-object", Reason(404, "No such object",
        "S3 has no object at that key.")),
    ("no-such-bucket", Reason(503, "Storage unavailable",
        "A bucket the config names does not exist (a deployment fault: run "
        "`upload-gateway s3 setup`). 404 from `s3 setup` when it may not create buckets.",
        also=(404,))),
    ("storage-denied", Reason(503, "Storage unavailable",
        "S3 refused the gateway's credentials or an action (AccessDenied and the like): "
        "check the IAM policy (`upload-gateway s3 iam-policy`).")),
    ("storage-failed", Reason(503, "Storage unavailable",
        "S3 answered with an error.")),
    ("storage-unreachable", Reason(503, "Storage unavailable",
        "S3 could not be reached or did not answer in time.")),
    ("storage-unavailable", Reason(503, "Storage unavailable",
        "S3 failed, with no more specific reason.")),
    ("record-conflict", Reason(503, "Storage unavailable",
        "A conditional write of one of the gateway's own records (an owner record, a sweep "
        "lease) found it written or changed first by another instance; handled inside the "
        "gateway (that instance has it), never a client's answer.")),
    ("setup-incomplete", Reason(503, "Storage unavailable",
        "`upload-gateway s3 setup` made every correction S3 accepted but S3 refused some (an "
        "S3 without a feature, such as radosgw 16 without default encryption); it prints "
        "which.")),
    # ------------------------------------------------------------------ the upstream app
    ("upstream-refused", Reason(502, "Upstream unavailable",
        "Nothing accepts connections at `upstream.url`.")),
    ("upstream-broken", Reason(502, "Upstream unavailable",
        "The app closed the connection or sent a malformed answer.")),
    ("upstream-answer-too-large", Reason(502, "Upstream unavailable",
        "The app's answer to a completion, deletion or `auth_request` is larger than the "
        "gateway reads.")),
    ("upstream-busy", Reason(503, "Upstream busy",
        "Every connection to the app (`upstream.max_connections`) stayed busy for "
        "`upstream.pool_timeout`; the request was not sent, and `Retry-After` says when to try "
        "again.")),
    ("upstream-unavailable", Reason(502, "Upstream unavailable",
        "The app failed, with no more specific reason.")),
    ("upstream-timeout", Reason(504, "Upstream timeout",
        "The app did not answer in time: `upstream.connect_timeout` or "
        "`upstream.read_timeout` for proxied requests, `webhook.timeout` for messages.")),
)  # fmt: skip


def title_of(reason: str) -> str | None:
    """The problem title of a catalogued reason, or None."""
    entry = REASONS.get(reason)
    return entry.title if entry is not None else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The catalogue as docs/errors.md prints it: one table per group, then any reason no group
    lists yet (tests/unit/test_reasons.py asks for it to be grouped)."""
    listed = {code for codes in GROUPS.values() for code in codes}
    groups = {**GROUPS, "Other": tuple(code for code in REASONS if code not in listed)}
    parts = []
    for group, codes in groups.items():
        codes = tuple(code for code in codes if code in REASONS)
        if not codes:
            continue
        rows = ["| reason | status | title | meaning |", "| --- | --- | --- | --- |"]
        for code in codes:
            entry = REASONS[code]
            status = " or ".join(str(s) for s in (entry.status, *entry.also))
            rows.append(
                f"| `{code}` | {status} | {_cell(entry.title)} | {_cell(entry.meaning)} |"
            )
        parts.append(f"### {group}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)
