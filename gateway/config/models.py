"""The pydantic models of the YAML config: each section, the routes, the rules across them."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from .. import webhook
from .fields import CookieName, HeaderName, StrictModel, cidr, media_type, origin, rule
from .sizes import GiB, MiB, Size


class ListenConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to bind. Default 127.0.0.1.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port. Default 8080.")


class OpsListenConfig(StrictModel):
    host: str = Field("127.0.0.1", description="Address to bind. Default 127.0.0.1.")
    port: int = Field(ge=0, le=65535, description="TCP port of readyz and metrics, e.g. 9090.")


class UpstreamConfig(StrictModel):
    url: AnyHttpUrl = Field(description="Base URL of the upstream app every request is sent to.")
    connect_timeout: float = Field(5, gt=0, description="Seconds to connect. Default 5.")
    read_timeout: float = Field(60, gt=0, description="Seconds between bytes. Default 60.")
    max_connections: int = Field(100, ge=1, description="Pooled connections. Default 100.")
    pool_timeout: float = Field(
        5, gt=0, description="Seconds a request waits for a pooled connection; then 503."
    )
    reserved_connections: int = Field(
        10, ge=1, description="Connections for auth_request and completion messages only."
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
    keys: list[SecretStr] = Field(
        min_length=1, description="Fernet keys: the first encrypts, all decrypt (rotation)."
    )
    cookie_name: CookieName = Field("gateway_session", description="Default gateway_session.")
    secure: bool = Field(True, description="Secure cookie attribute. Default true.")
    samesite: Literal["Lax", "Strict", "None"] = Field("Lax", description="Default Lax.")
    max_age: int = Field(86400, gt=0, description="Cookie and session lifetime, seconds.")

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
    path: str = Field(description="Upstream path asked who the caller is.")
    user_field: str = Field("username", description="JSON field (or header) naming the user.")
    cache_seconds: int = Field(60, ge=0, description="How long the answer is kept in the session.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        return path


class IdentityConfig(StrictModel):
    login_header: HeaderName = Field("X-Upload-User", description="Upstream header that logs in.")
    logout_header: HeaderName = Field("X-Upload-Logout", description="Header that logs out.")
    auth_request: AuthRequestConfig | None = Field(None, description="Ask the upstream.")
    key_prefix: str = Field("{user_hash}/", description="Per-user key prefix; ends in /.")
    prefix_cookie: CookieName = Field("upload_prefix", description="Cookie the page reads.")
    anonymous: bool = Field(False, description="Give users without identity a random id.")

    @field_validator("key_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if "{user_hash}" not in value:
            raise ValueError("must contain {user_hash}: users would share keys")
        if not value.endswith("/"):
            raise ValueError("must end with /: user admin would own admin2/")
        if value.startswith("/"):
            raise ValueError("must not start with /")
        return value


class S3Config(StrictModel):
    region: str = Field("us-east-1", description="Region for signatures. Default us-east-1.")
    endpoint_url: AnyHttpUrl | None = Field(None, description="S3 API URL; null for AWS.")
    public_endpoint_url: AnyHttpUrl | None = Field(
        None, description="Bucket URL browsers use, when it differs from endpoint_url."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field("auto", description="auto.")
    access_key_id: str = Field(min_length=1, description="Long-lived key id the pages name.")
    secret_access_key: SecretStr = Field(description="Its secret; never logged.")
    uploads_bucket: str = Field(description="Private bucket the browsers write to.")
    storage_bucket: str = Field(description="Where files end up.")

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
    time to take its answer, size of a WebSocket message."""

    header_timeout: float = Field(
        75, gt=0, description="Seconds from connect (or the last answer) to a complete head."
    )
    body_timeout: float = Field(60, gt=0, description="Seconds a body may take, plus its rate.")
    body_min_rate: Size = Field(
        500, gt=0, description="Bytes a second that extend body_timeout by one second."
    )
    max_line_size: int = Field(8190, ge=256, description="Longest request line (the URL).")
    max_field_size: int = Field(8190, ge=256, description="Longest header line.")
    max_headers: int = Field(128, ge=16, description="Most header lines in one request.")
    send_timeout: float = Field(
        60, gt=0, description="Seconds a client may take no byte of its answer; then closed."
    )
    websocket_max_message: Size = Field(
        4 * MiB, gt=0, description="Largest WebSocket message relayed; larger ones close 1009."
    )


class WebhookConfig(StrictModel):
    secret: SecretStr = Field(
        description="Key of both message signatures: whsec_<base64> (Standard Webhooks) or plain."
    )
    timeout: float = Field(30, gt=0, description="Seconds the upstream has to answer.")

    @field_validator("secret")
    @classmethod
    def _usable(cls, value: SecretStr) -> SecretStr:
        webhook.check_secret(value.get_secret_value())  # says what is wrong, never the secret
        return value


_STORAGE_KEY_FIELDS = frozenset({"route", "user_hash", "uuid", "filename", "ext", "date"})


class RouteConfig(StrictModel):
    name: str = Field(description="Names the route in logs and metrics.")
    protocol: Literal["fineuploader", "uppy", "api"]
    path: str = Field(description="Where the route's endpoints live.")
    max_size: Size = Field(gt=0, description="Largest file accepted.")
    content_types: list[Annotated[str, AfterValidator(media_type)]] = Field(
        default_factory=lambda: ["*/*"], description="Allowed types, e.g. image/*."
    )
    acl: Literal["private", "bucket-owner-full-control"] = Field("private")
    signature_ttl: int = Field(900, gt=0, le=7 * 86400, description="Seconds a signature lives.")
    storage_key: str = Field("{route}/{user_hash}/{uuid}/{filename}")
    forward: str = Field(description="Upstream path receiving the completion message.")
    multipart_threshold: Size = Field(64 * MiB, description="api: multipart above this.")
    part_size: Size = Field(8 * MiB, description="api: size of each part, 8MiB to 5GiB.")

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
        before_uuid = value.split("{uuid}", 1)[0]
        for late in ("{filename}", "{ext}", "{date}"):
            if late in before_uuid:
                # A retried completion finds its stored copy by listing the prefix up to {uuid};
                # what may differ between attempts must come after it.
                raise ValueError(f"must put {late} after {{uuid}}")
        return value

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
    def _enough_parts(self) -> RouteConfig:
        if self.part_size * 10_000 < self.max_size:
            raise rule(
                "is too small: max_size would need over 10000 parts (S3's limit)", "part_size"
            )
        return self


class Config(StrictModel):
    listen: ListenConfig = Field(default_factory=ListenConfig)  # type: ignore[arg-type]
    public_origins: list[Annotated[AnyHttpUrl, AfterValidator(origin)]] = Field(
        default_factory=list, description="Origins allowed to call upload routes."
    )
    trusted_proxies: list[Annotated[str, AfterValidator(cidr)]] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is kept."
    )
    ops_prefix: str = Field("/-", description="Where healthz, readyz, metrics live.")
    ops_listen: OpsListenConfig | None = Field(
        None, description="Serve readyz and metrics only here; null: on listen, like healthz."
    )
    upstream: UpstreamConfig
    session: SessionConfig
    identity: IdentityConfig = Field(default_factory=IdentityConfig)  # type: ignore[arg-type]
    s3: S3Config
    webhook: WebhookConfig
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]
    routes: list[RouteConfig] = Field(default_factory=list)

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

    @property
    def origins(self) -> frozenset[str]:
        """``public_origins`` as ``scheme://host[:port]`` strings, for Origin comparison."""
        return frozenset(str(o).rstrip("/") for o in self.public_origins)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
