"""The pydantic models of the YAML config: each section, the routes, the rules across them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from .. import webhook
from .fields import CookieName, HeaderName, StrictModel, cidr, media_type, origin, rule
from .sizes import GiB, MiB, Size


class ListenConfig(StrictModel):
    """Where the gateway listens. `serve --host` and `--port` override these."""

    host: str = Field(
        "127.0.0.1",
        description="Address to bind: loopback by default, behind your TLS terminator; "
        "0.0.0.0 for every IPv4 interface (as in a container).",
    )
    port: int = Field(
        8080, ge=0, le=65535, description="TCP port; 0 lets the system choose a free one."
    )


class OpsListenConfig(StrictModel):
    """Where readyz and metrics are served apart from the public port."""

    host: str = Field("127.0.0.1", description="Address to bind, as listen.host.")
    port: int = Field(ge=0, le=65535, description="TCP port of readyz and metrics, e.g. 9090.")


class UpstreamConfig(StrictModel):
    """The existing web app every request that is not an upload route is streamed to."""

    url: AnyHttpUrl = Field(
        description="Base URL of the app (http or https). A path here is prefixed to every "
        "proxied path."
    )
    connect_timeout: float = Field(
        5,
        gt=0,
        description="Seconds to open a connection to the app; past it the client gets 504 "
        "(502 when the app refuses the connection).",
    )
    read_timeout: float = Field(
        60, gt=0, description="Seconds the app may stay silent while answering; past it the "
        "client gets 504."
    )
    max_connections: int = Field(
        100, ge=1, description="Connections to the app kept open and reused, at most."
    )
    pool_timeout: float = Field(
        5,
        gt=0,
        description="Seconds a request waits for one of max_connections to be free; then 503 "
        "upstream-busy with Retry-After, and the request is not sent.",
    )
    reserved_connections: int = Field(
        10,
        ge=1,
        description="Connections of their own for auth_request lookups and completion "
        "messages, so clients holding the proxy's connections never delay them (readyz's ping "
        "has one more of its own).",
    )
    forwarder: Literal["fast", "standard"] = Field(
        "fast",
        description=(
            "The client the pools use: fast (the gateway's own, on aiohttp internals) or "
            "standard (aiohttp's ClientSession: slower, public API only). Default fast."
        ),
    )

    @property
    def base(self) -> str:
        """The URL without a trailing slash, ready to have a raw path appended."""
        return str(self.url).rstrip("/")


class SessionConfig(StrictModel):
    """The gateway's own cookie session: who the user is, encrypted so only the gateway reads it."""

    keys: list[SecretStr] = Field(
        min_length=1,
        description="Fernet keys (32 url-safe base64 bytes, 44 characters). The first "
        "encrypts, every key decrypts: to rotate, put the new key first and drop the old one "
        "after max_age. The first also keys {user_hash} and the messages' ids, so replacing it "
        "renames users' prefixes. Give them as ${NAME}, never in the file.",
    )
    cookie_name: CookieName = Field(
        "gateway_session", description="Name of the session cookie (an RFC 9110 token)."
    )
    secure: bool = Field(
        True,
        description="The cookie's Secure attribute: sent over HTTPS only. Keep true behind a "
        "TLS terminator; false only for plain-HTTP development.",
    )
    samesite: Literal["Lax", "Strict", "None"] = Field(
        "Lax", description="The cookie's SameSite attribute; None requires secure: true."
    )
    max_age: int = Field(
        86400, gt=0, description="Seconds a session lives, in the cookie and in its sealed "
        "content."
    )

    @field_validator("keys")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for index, key in enumerate(keys):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise rule(
                    "is not a Fernet key: 32 url-safe base64 bytes (44 characters) expected; "
                    # Fernet.generate_key() in the standard library: stock python3 runs it.
                    "make one with `python3 -c 'import base64, os; "
                    "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`",
                    index,
                ) from None
        return keys

    @model_validator(mode="after")
    def _samesite_none_needs_secure(self) -> SessionConfig:
        if self.samesite == "None" and not self.secure:
            raise rule("requires secure: true (browsers drop such cookies)", "samesite")
        return self


class AuthRequestConfig(StrictModel):
    """Asking the app who the caller is, for users the login header has not named: users
    logged in before the gateway was deployed, API clients with an Authorization header.
    Without it the gateway relies on login_header alone."""

    path: str = Field(
        description="Path on the app called with GET and the client's Cookie and Authorization "
        "(the gateway's own cookie removed); starts with /. 2xx names the user, 401, 403 and "
        "404 mean nobody, anything else is a 502 (auth-request-failed)."
    )
    user_field: str = Field(
        "username",
        description="Field of the JSON answer naming the user; the answer's login_header, if "
        "present, wins.",
    )
    cache_seconds: int = Field(
        60,
        ge=0,
        description="Seconds the answer is trusted, kept in the session (for the same "
        "Authorization header); 0 asks on every request.",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        return path


class IdentityConfig(StrictModel):
    """How the gateway learns who the user is; the app stays the authority."""

    login_header: HeaderName = Field(
        "X-Upload-User",
        description="Response header by which the app logs a user in (its value is the user "
        "id). The gateway stores the user in its session and removes the header; clients "
        "cannot send it to the app.",
    )
    logout_header: HeaderName = Field(
        "X-Upload-Logout",
        description="Response header by which the app logs the user out; removed too.",
    )
    auth_request: AuthRequestConfig | None = Field(
        None,
        description="Optional: ask the app who the caller is (users logged in before the "
        "gateway was deployed, API clients with an Authorization header). null: rely on "
        "login_header alone.",
    )
    key_prefix: str = Field(
        "{user_hash}/",
        description="Prefix of every object key a user may write. {user_hash} is 16 hex "
        "digits of HMAC-SHA256 of the user under a key derived from session.keys, so users "
        "cannot guess each other's. Must contain {user_hash}, end with / and not start with /.",
    )
    prefix_cookie: CookieName = Field(
        "upload_prefix",
        description="Cookie holding the user's key prefix for the page's JavaScript (not "
        "HttpOnly, percent-encoded). Must differ from session.cookie_name.",
    )
    anonymous: bool = Field(
        False,
        description="true: callers with no identity get a random per-session id instead of 401.",
    )

    @field_validator("key_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if "{user_hash}" not in value:
            raise ValueError("must contain {user_hash}: users would share keys")
        if not value.endswith("/"):
            raise ValueError("must end with /: user admin would own admin2/")
        if value.startswith("/"):
            raise ValueError("must not start with /")
        if value.startswith(RESERVED_PREFIX.rstrip("/")):
            # The gateway's own records live there; no user may ever be signed a write to it.
            raise ValueError(f"must not start with {RESERVED_PREFIX}: the gateway's records")
        return value


class S3Config(StrictModel):
    """The two buckets and the credentials the gateway signs with."""

    region: str = Field("us-east-1", description="The region the signatures name.")
    endpoint_url: AnyHttpUrl | None = Field(
        None,
        description="URL of the S3 API the gateway calls; null for AWS. E.g. "
        "http://127.0.0.1:9000 for MinIO.",
    )
    public_endpoint_url: AnyHttpUrl | None = Field(
        None,
        description="URL browsers reach S3 at, when it is not endpoint_url (the gateway may "
        "reach S3 by another name); null: endpoint_url's.",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto",
        description="Bucket in the host name (virtual) or in the path (path) of the URLs "
        "browsers use; auto picks virtual unless the host is an IP address or a dotted bucket "
        "would break https.",
    )
    access_key_id: str = Field(
        min_length=1,
        description="Access key id of the long-lived credentials the gateway signs with. "
        "Public: pages see it.",
    )
    secret_access_key: SecretStr = Field(
        description="Its secret. Never logged, never shown by check-config."
    )
    uploads_bucket: str = Field(
        description="Private bucket browsers and API clients write to; objects expire after a "
        "day (`upload-gateway s3 setup`)."
    )
    storage_bucket: str = Field(
        description="Bucket completed files are copied to; must differ from uploads_bucket."
    )

    @field_validator("uploads_bucket", "storage_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        # S3's bucket naming rules: 3-63 chars of a-z 0-9 . -, alphanumeric at both ends.
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value) or ".." in value:
            raise ValueError("is not an S3 bucket name")
        return value

    @model_validator(mode="after")
    def _two_buckets(self) -> S3Config:
        if self.uploads_bucket == self.storage_bucket:
            raise rule(
                "is also the uploads_bucket: the buckets must differ, browsers write to that one",
                "storage_bucket",
            )
        return self


class LimitsConfig(StrictModel):
    """What a client connection may cost the gateway: time to send a request, size of its head,
    time to take its answer, size of a WebSocket message.

    A client past a timeout is disconnected without an answer; a head past a size limit is
    refused with 400 before anything is forwarded.
    """

    header_timeout: float = Field(
        75,
        gt=0,
        description="Seconds a client has to send a complete request head, counted from "
        "connecting or from the previous answer; also closes idle keep-alive connections.",
    )
    body_timeout: float = Field(
        60,
        gt=0,
        description="Seconds a request body may take beyond what it earns at body_min_rate "
        "(as Apache's mod_reqtimeout body=60,MinRate=500). Time the gateway spends not reading "
        "(the app busy) does not count.",
    )
    body_min_rate: Size = Field(
        500, gt=0, description="Bytes a second of body that extend body_timeout by one second."
    )
    max_line_size: int = Field(
        8190, ge=256, description="Longest request line (method, URL, version), in bytes."
    )
    max_field_size: int = Field(8190, ge=256, description="Longest header line, in bytes.")
    max_headers: int = Field(128, ge=16, description="Most header lines in one request.")
    send_timeout: float = Field(
        60,
        gt=0,
        description="Seconds a client may take none of the bytes waiting for it (nginx's "
        "send_timeout); then its connection is closed and what its answer held (an upstream "
        "connection) let go.",
    )
    websocket_max_message: Size = Field(
        4 * MiB,
        gt=0,
        description="Largest WebSocket message relayed, either way; a larger one (in one frame "
        "or many, or once inflated) closes that side with 1009, message too big.",
    )


class WebhookConfig(StrictModel):
    """The signed messages (upload completed, upload deleted) sent to the app: docs/webhooks.md."""

    secret: SecretStr = Field(
        description="Key of both signatures on every message (the Standard Webhooks headers "
        "and X-Upload-Signature): whsec_ followed by padded standard base64 of at least 24 "
        "bytes, whose key is the decoded bytes; or a plain secret of at least 16 characters, "
        "whose key is its UTF-8."
    )
    timeout: float = Field(
        30,
        gt=0,
        description="Seconds the app has to answer a message; past it the client gets 504 "
        "and the file is kept for a retry.",
    )

    @field_validator("secret")
    @classmethod
    def _usable(cls, value: SecretStr) -> SecretStr:
        webhook.check_secret(value.get_secret_value())  # says what is wrong, never the secret
        return value


# Where the gateway keeps its own records in both buckets (owner records, leases, dead letters):
# outside every user's key prefix and every storage key, so nothing signed can write there.
RESERVED_PREFIX = ".gateway/"
DAY = 86400  # seconds; an int, so the reference prints whole numbers


class CompletionConfig(StrictModel):
    """The sweep that completes uploads no client completed, and its retries (at-least-once)."""

    sweep: bool = Field(
        True, description="Run the sweep in serve: complete uploads no client completed."
    )
    sweep_after: float = Field(
        300,
        ge=0.1,
        le=DAY // 2,
        description="Seconds an upload may wait for its client's completion before the sweep "
        "completes it.",
    )
    interval: float = Field(
        30, ge=0.1, le=3600, description="Seconds between two sweeps of one process."
    )
    give_up_after: float = Field(
        3 * DAY,
        ge=1,
        le=30 * DAY,
        description="Seconds from the upload after which a delivery the app keeps failing "
        "becomes a dead letter; the uploads bucket's lifecycle (s3 setup) is a day longer.",
    )
    retry_base: float = Field(
        60, ge=0.05, le=3600, description="First retry delay in seconds; doubles."
    )
    retry_max: float = Field(3600, ge=0.05, le=DAY, description="Longest retry delay in seconds.")
    lease: float = Field(
        120,
        ge=0.5,
        le=3600,
        description="Seconds one instance holds an upload it delivers; longer than "
        "webhook.timeout.",
    )
    batch: int = Field(100, ge=1, le=10_000, description="Most uploads one sweep delivers.")

    @model_validator(mode="after")
    def _ordered(self) -> CompletionConfig:
        if self.sweep_after >= self.give_up_after:
            raise rule("must be below give_up_after", "sweep_after")
        if self.retry_base > self.retry_max:
            raise rule("must not exceed retry_max", "retry_base")
        return self


# An explicit endpoint path: segments of RFC 3986 pchar, no percent-escapes (the router matches
# the decoded path), no braces (aiohttp's route syntax), an optional trailing / (Django's style).
_ENDPOINT_RE = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+/?")


def _endpoint_path(value: str | None) -> str | None:
    if value is None:
        return None
    if not _ENDPOINT_RE.fullmatch(value):
        raise ValueError(
            "must be an absolute path like /s3/signature/: segments of letters, digits and "
            "-._~!$&'()*+,;=:@, an optional trailing /, no %, ? or {}"
        )
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError("must not have a '.' or '..' segment")
    return value


EndpointPath = Annotated[str | None, AfterValidator(_endpoint_path)]


class FineUploaderEndpoints(StrictModel):
    """Paths a page already written for another server (drf-to-s3, Fine Uploader's server
    examples) sends Fine Uploader's requests to, in place of the defaults under the route's
    path: docs/migrating.md."""

    signature: EndpointPath = Field(
        None,
        description="Fine Uploader's signature.endpoint: POST here (?v4=true for version 4). "
        "null: {path}/signature.",
    )
    success: EndpointPath = Field(
        None, description="uploadSuccess.endpoint: POST here. null: {path}/success."
    )
    delete: EndpointPath = Field(
        None,
        description="deleteFile.endpoint: DELETE to this path followed by / and the file's "
        "uuid, or POST to it with _method=DELETE. null: {path}/files.",
    )
    blank: EndpointPath = Field(
        None,
        description="iframeSupport.localBlankPagePath: GET here; the only success_action_redirect "
        "signed. null: {path}/blank.",
    )


_STORAGE_KEY_FIELDS = frozenset({"route", "user_hash", "uuid", "filename", "ext", "date"})


# What the route's `protocol` says, the same on the common model and on each protocol's own.
_PROTOCOL = (
    "The client it speaks to: Fine Uploader's S3 mode, Uppy's @uppy/aws-s3 (Companion's S3 API), "
    "or programs (presigned PUT and multipart). It decides which other keys the route takes."
)


class RouteConfig(StrictModel):
    """One upload route the gateway answers itself, at its `path`; docs/protocols/ has each
    protocol's endpoints."""

    name: str = Field(
        description="Names the route in logs, metrics and messages: letters, digits, _ and -; "
        "unique."
    )
    protocol: Literal["fineuploader", "uppy", "api"] = Field(description=_PROTOCOL)
    path: str = Field(
        description="Where the route's endpoints live: starts with /, no trailing /, unique, "
        "not inside another route's path nor under ops_prefix."
    )
    max_size: Size = Field(
        gt=0,
        description="Largest file accepted: put in every signed policy, bounds the part "
        "numbers, checked on the stored object.",
    )
    content_types: list[Annotated[str, AfterValidator(media_type)]] = Field(
        default_factory=lambda: ["*/*"],
        description="Allow-list of media types (type/subtype, type/* or */*), checked on the "
        "declared type and on the type sniffed from the file's first bytes. Wildcards never "
        "admit active types (HTML, SVG, XML, JavaScript, CSS, application/unknown and the "
        "other types browsers sniff): list one literally to accept it.",
    )
    acl: Literal["private", "bucket-owner-full-control"] = Field(
        "private", description="The canned ACL every upload must carry; nothing public."
    )
    signature_ttl: int = Field(
        900,
        gt=0,
        le=7 * 86400,
        description="Seconds every signature lives, and the expiration put in POST policies "
        "(at most 604800, SigV4's limit).",
    )
    storage_key: str = Field(
        "{route}/{user_hash}/{uuid}/{filename}",
        description="Key of the stored copy in storage_bucket. Placeholders: {route} "
        "{user_hash} {uuid} {filename} {ext} {date}; {uuid} is required, and {filename}, "
        "{ext} and {date} must come after it.",
    )
    forward: str = Field(
        description="Path on the app that receives this route's completion and deletion "
        "messages: starts with /, no trailing /. Clients asking for it get 404."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            raise ValueError("must be letters, digits, _ or - (it names metrics and keys)")
        return value

    @field_validator("path", "forward")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "?" in value or "//" in value:
            raise ValueError("must start with / and not end with /")
        return value

    @field_validator("storage_key")
    @classmethod
    def _storage_key(cls, value: str) -> str:
        for name in re.findall(r"{([^}]*)}", value):
            if name not in _STORAGE_KEY_FIELDS:
                known = ", ".join(f"{{{k}}}" for k in sorted(_STORAGE_KEY_FIELDS))
                raise ValueError(f"uses {{{name}}}; known: {known}")
        if "{uuid}" not in value:
            raise ValueError("must contain {uuid} so uploads never collide")
        if value.startswith(RESERVED_PREFIX.rstrip("/")):
            raise ValueError(f"must not start with {RESERVED_PREFIX}: the gateway's records")
        before_uuid = value.split("{uuid}", 1)[0]
        for late in ("{filename}", "{ext}", "{date}"):
            if late in before_uuid:
                # A retried completion finds its stored copy by listing the prefix up to {uuid};
                # what may differ between attempts must come after it.
                raise ValueError(f"must put {late} after {{uuid}}")
        return value

    @property
    def explicit_endpoints(self) -> dict[str, str]:
        """The endpoints named outside ``path``, by name: only a fineuploader route has any."""
        return {}

    @property
    def own_paths(self) -> tuple[str, ...]:
        """Every path the route answers below: ``path`` and its explicit endpoints (the delete
        endpoint without a trailing / so that <endpoint>/<uuid> is below it too)."""
        return (self.path, *(p.rstrip("/") or p for p in self.explicit_endpoints.values()))


class FineUploaderRouteConfig(RouteConfig):
    """A route for Fine Uploader in S3 mode (docs/protocols/fineuploader.md)."""

    protocol: Literal["fineuploader"] = Field(description=_PROTOCOL)
    endpoints: FineUploaderEndpoints | None = Field(
        None,
        description="Absolute paths for some or all of Fine Uploader's endpoints, for pages that "
        "cannot move them under path (keys signature, success, delete, blank). Each is the "
        "gateway's own in every spelling, is refused to clients on the app, and must not "
        "overlap any route's path or forward, another endpoint or ops_prefix. null: all under "
        "path.",
    )

    @property
    def explicit_endpoints(self) -> dict[str, str]:
        """The endpoints named outside ``path`` (``endpoints``), by name."""
        if self.endpoints is None:
            return {}
        named = self.endpoints.model_dump()
        return {name: value for name, value in named.items() if value is not None}


class UppyRouteConfig(RouteConfig):
    """A route for Uppy's @uppy/aws-s3 with companionEndpoint (docs/protocols/uppy.md)."""

    protocol: Literal["uppy"] = Field(description=_PROTOCOL)


class ApiRouteConfig(RouteConfig):
    """A route for programs and `upload-gateway upload`: presigned PUT and multipart
    (docs/protocols/api.md)."""

    protocol: Literal["api"] = Field(description=_PROTOCOL)
    multipart_threshold: Size = Field(
        64 * MiB,
        description="Files above this size are uploaded in parts; at most 5GiB (S3's largest "
        "single PUT).",
    )
    part_size: Size = Field(
        8 * MiB,
        description="Size of each part, 8MiB to 5GiB, with part_size * 10000 >= max_size (S3 "
        "allows 10000 parts).",
    )

    @field_validator("multipart_threshold")
    @classmethod
    def _threshold(cls, value: int) -> int:
        if value > 5 * GiB:
            raise ValueError("is above 5GiB, the largest single PUT S3 accepts")
        return value

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, value: int) -> int:
        # S3 allows 5MiB; issue 4 asks for parts of at least 8MiB.
        if not 8 * MiB <= value <= 5 * GiB:
            raise ValueError("must be between 8MiB and 5GiB")
        return value

    @model_validator(mode="after")
    def _enough_parts(self) -> ApiRouteConfig:
        if self.part_size * 10_000 < self.max_size:
            raise rule(
                "is too small: max_size would need over 10000 parts (S3's limit)", "part_size"
            )
        return self


def _protocol_of(route: Any) -> str | None:
    """The tag that picks a route's model: its ``protocol`` when that is text (anything else
    matches no model, and errors.py words the problem from the YAML)."""
    tag = route.get("protocol") if isinstance(route, dict) else getattr(route, "protocol", None)
    return tag if isinstance(tag, str) else None


# A route as the config holds it: the model of its protocol, chosen by the `protocol` key, so a
# key of one protocol is an unknown key on a route of another. A function picks the model, not
# pydantic's discriminator="protocol", which refuses the before-validator every StrictModel
# field has.
AnyRouteConfig = Annotated[
    Annotated[FineUploaderRouteConfig, Tag("fineuploader")]
    | Annotated[UppyRouteConfig, Tag("uppy")]
    | Annotated[ApiRouteConfig, Tag("api")],
    Discriminator(_protocol_of),
]


class Config(StrictModel):
    """The whole config file (`upload-gateway check-config` validates one)."""

    listen: ListenConfig = Field(
        default_factory=ListenConfig,  # type: ignore[arg-type]
        description="Where the gateway listens.",
    )
    public_origins: list[Annotated[AnyHttpUrl, AfterValidator(origin)]] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], no path) allowed to make state-changing "
        "calls to the upload routes: the CSRF check on Origin, or on Referer when a browser "
        "sends no Origin. Also the uploads bucket's CORS rule. []: only the gateway's own "
        "origin.",
    )
    trusted_proxies: list[Annotated[str, AfterValidator(cidr)]] = Field(
        default_factory=list,
        description="CIDRs of the proxies in front of the gateway. From them X-Forwarded-For "
        "is kept and extended and X-Forwarded-Proto and -Host passed on; from anyone else they "
        "are replaced by what the gateway saw. []: trust no one.",
    )
    ops_prefix: str = Field(
        "/-",
        description="Path segment of the gateway's own endpoints (healthz, readyz, metrics), "
        "never proxied; no route may lie under it.",
    )
    ops_listen: OpsListenConfig | None = Field(
        None,
        description="A second address for the ops endpoints, on a network clients cannot "
        "reach: readyz and metrics answer only there (404 on listen), healthz on both. null: "
        "all three on listen.",
    )
    upstream: UpstreamConfig = Field(description="The app behind the gateway.")
    session: SessionConfig = Field(description="The gateway's cookie session.")
    identity: IdentityConfig = Field(
        default_factory=IdentityConfig,  # type: ignore[arg-type]
        description="How the gateway learns who the user is.",
    )
    s3: S3Config = Field(description="The buckets and the signing credentials.")
    webhook: WebhookConfig = Field(description="The messages to the app.")
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,  # type: ignore[arg-type]
        description="What one client connection may cost.",
    )
    routes: list[AnyRouteConfig] = Field(
        default_factory=list,
        description="The upload routes; every other path goes to the app.",
    )
    completion: CompletionConfig = Field(
        default_factory=CompletionConfig,  # type: ignore[arg-type]
        description="The sweep: at-least-once completion driven by the gateway.",
    )

    @field_validator("ops_prefix")
    @classmethod
    def _ops_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~-]+", value):
            raise ValueError("must be one path segment like /-")
        return value

    @model_validator(mode="after")
    def _cookies_differ(self) -> Config:
        if self.identity.prefix_cookie == self.session.cookie_name:
            raise rule(
                "is also session.cookie_name: one cookie would overwrite the other",
                "identity",
                "prefix_cookie",
            )
        return self

    @model_validator(mode="after")
    def _ops_listen_apart(self) -> Config:
        ops = self.ops_listen
        same = ops is not None and (ops.host, ops.port) == (self.listen.host, self.listen.port)
        if same and self.listen.port != 0:
            raise rule(
                "is also listen's, on the same host: the ops listener needs an address of its own",
                "ops_listen",
                "port",
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_delivery(self) -> Config:
        if self.completion.lease <= self.webhook.timeout:
            raise rule(
                "must be longer than webhook.timeout: another instance would deliver the "
                "upload again while the app is still answering",
                "completion",
                "lease",
            )
        return self

    @model_validator(mode="after")
    def _unique_routes(self) -> Config:
        for i, route in enumerate(self.routes):
            if _under(route.path, self.ops_prefix):
                raise rule(f"lies under ops_prefix {self.ops_prefix}", "routes", i, "path")
            for j, earlier in enumerate(self.routes[:i]):
                if route.path == earlier.path:
                    raise rule(
                        f"is also the path of routes[{j}] ({earlier.name}): "
                        "route paths must be unique",
                        "routes",
                        i,
                        "path",
                    )
                if _under(route.path, earlier.path) or _under(earlier.path, route.path):
                    raise rule(
                        f"overlaps routes[{j}].path {earlier.path}: their endpoints would collide",
                        "routes",
                        i,
                        "path",
                    )
                if route.name == earlier.name:
                    raise rule(
                        f"is also the name of routes[{j}]: route names must be unique",
                        "routes",
                        i,
                        "name",
                    )
        return self

    @model_validator(mode="after")
    def _endpoints_apart(self) -> Config:
        # Compared as the proxy compares reserved paths (lower-case, no trailing /): an endpoint
        # must be nobody else's in any reading.
        taken: list[tuple[str, str]] = [(self.ops_prefix, "ops_prefix")]
        for j, route in enumerate(self.routes):
            taken.append((route.path, f"routes[{j}].path"))
            taken.append((route.forward, f"routes[{j}].forward"))
        for i, route in enumerate(self.routes):
            for name, path in route.explicit_endpoints.items():
                mine = path.lower().rstrip("/")
                for other, what in taken:
                    theirs = other.lower().rstrip("/")
                    if _under(mine, theirs) or _under(theirs, mine):
                        raise rule(
                            f"overlaps {what} {other}: each endpoint must be a path of its own",
                            "routes",
                            i,
                            "endpoints",
                            name,
                        )
                taken.append((path, f"routes[{i}].endpoints.{name}"))
        return self

    @property
    def origins(self) -> frozenset[str]:
        """``public_origins`` as ``scheme://host[:port]`` strings, for Origin comparison."""
        return frozenset(str(o).rstrip("/") for o in self.public_origins)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
