"""The YAML config: pydantic models, ``${VAR}`` interpolation, sizes, errors with YAML paths.

``load(path, environ)`` is the only place that reads the environment; everything after it gets a
frozen, typed ``Config``. Interpolation runs on the parsed tree, inside string scalars only, so a
variable's value can never change the shape of the document.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from cryptography.fernet import Fernet
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: Any) -> int:
    """A byte count from ``20MiB``, ``5GB``, ``1048576`` or an int; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is not a size (negative)")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _UNITS:
            number = float(match.group(1)) * _UNITS[match.group(2).lower()]
            if number == int(number):
                return int(number)
    raise ValueError(f"{_show(value)} is not a size (use a byte count, or 10MiB, 5GB, ...)")


Size = Annotated[int, BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Model):
    host: str = Field("127.0.0.1", description="Address to bind. Default 127.0.0.1.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port. Default 8080.")


class UpstreamConfig(_Model):
    url: AnyHttpUrl = Field(description="Base URL of the upstream app every request is sent to.")
    connect_timeout: float = Field(5, gt=0, description="Seconds to connect. Default 5.")
    read_timeout: float = Field(60, gt=0, description="Seconds between bytes. Default 60.")
    max_connections: int = Field(100, ge=1, description="Pooled connections. Default 100.")

    @property
    def base(self) -> str:
        """The URL without a trailing slash, ready to have a raw path appended."""
        return str(self.url).rstrip("/")


class SessionConfig(_Model):
    keys: list[SecretStr] = Field(
        min_length=1, description="Fernet keys: the first encrypts, all decrypt (rotation)."
    )
    cookie_name: str = Field("gateway_session", description="Default gateway_session.")
    secure: bool = Field(True, description="Secure cookie attribute. Default true.")
    samesite: Literal["Lax", "Strict", "None"] = Field("Lax", description="Default Lax.")
    max_age: int = Field(86400, gt=0, description="Cookie and session lifetime, seconds.")

    @field_validator("keys")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError(
                    "is not a Fernet key: 32 url-safe base64 bytes expected "
                    "(make one with `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return keys

    @model_validator(mode="after")
    def _samesite_none_needs_secure(self) -> SessionConfig:
        if self.samesite == "None" and not self.secure:
            raise ValueError("samesite (None) requires secure: true: browsers drop such cookies")
        return self


class AuthRequestConfig(_Model):
    path: str = Field(description="Upstream path asked who the caller is.")
    user_field: str = Field("username", description="JSON field (or header) naming the user.")
    cache_seconds: int = Field(60, ge=0, description="How long the answer is kept in the session.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"{_show(path)} must start with /")
        return path


class IdentityConfig(_Model):
    login_header: str = Field("X-Upload-User", description="Upstream header that logs in.")
    logout_header: str = Field("X-Upload-Logout", description="Upstream header that logs out.")
    auth_request: AuthRequestConfig | None = Field(None, description="Ask the upstream.")
    key_prefix: str = Field("{user_hash}/", description="Per-user key prefix; ends in /.")
    prefix_cookie: str = Field("upload_prefix", description="Cookie the page reads.")
    anonymous: bool = Field(False, description="Give users without identity a random id.")

    @field_validator("key_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if "{user_hash}" not in value:
            raise ValueError(f"{_show(value)} must contain {{user_hash}}: users would share keys")
        if not value.endswith("/"):
            raise ValueError(f"{_show(value)} must end with /: user admin would own admin2/")
        if value.startswith("/"):
            raise ValueError(f"{_show(value)} must not start with /")
        return value


class S3Config(_Model):
    region: str = Field("us-east-1", description="Region for signatures. Default us-east-1.")
    endpoint_url: AnyHttpUrl | None = Field(None, description="S3 API URL; null for AWS.")
    public_endpoint_url: AnyHttpUrl | None = Field(
        None, description="Bucket URL browsers use, when it differs from endpoint_url."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field("auto", description="auto.")
    access_key_id: str = Field(min_length=1, description="Long-lived key id the pages name.")
    secret_access_key: SecretStr = Field(description="Its secret; never logged.")
    uploads_bucket: str = Field(min_length=3, max_length=63, description="Private uploads.")
    storage_bucket: str = Field(min_length=3, max_length=63, description="Where files end up.")

    @field_validator("uploads_bucket", "storage_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value) or ".." in value:
            raise ValueError(f"{_show(value)} is not an S3 bucket name")
        return value

    @model_validator(mode="after")
    def _two_buckets(self) -> S3Config:
        if self.uploads_bucket == self.storage_bucket:
            raise ValueError(
                "uploads_bucket and storage_bucket must differ: browsers write to the first"
            )
        return self


class WebhookConfig(_Model):
    secret: SecretStr = Field(description="HMAC key of X-Upload-Signature.")
    timeout: float = Field(30, gt=0, description="Seconds the upstream has to answer.")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("is too short: use at least 16 characters")
        return value


_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)$")


class RouteConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Names the route in logs.")
    protocol: Literal["fineuploader", "uppy", "api"]
    path: str = Field(description="Where the route's endpoints live.")
    max_size: Size = Field(description="Largest file accepted.")
    content_types: list[str] = Field(
        default_factory=lambda: ["*/*"], description="Allowed types, e.g. image/*."
    )
    acl: Literal["private", "bucket-owner-full-control"] = Field("private")
    signature_ttl: int = Field(900, gt=0, le=7 * 86400, description="Seconds a signature lives.")
    storage_key: str = Field("{route}/{user_hash}/{uuid}/{filename}")
    forward: str = Field(description="Upstream path receiving the completion message.")
    multipart_threshold: Size = Field(64 * 1024**2, description="api: multipart above this.")
    part_size: Size = Field(8 * 1024**2, description="api: size of each part, >= 5MiB.")

    @field_validator("path", "forward")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "?" in value or "//" in value:
            raise ValueError(f"{_show(value)} must start with / and not end with /")
        return value

    @field_validator("content_types")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        for value in values:
            if value != "*/*" and not _CONTENT_TYPE_RE.match(value.lower()):
                raise ValueError(f"{_show(value)} is not a media type or type/*")
        return [v.lower() for v in values]

    @field_validator("storage_key")
    @classmethod
    def _storage_key(cls, value: str) -> str:
        known = {"route", "user_hash", "uuid", "filename", "ext", "date"}
        for name in re.findall(r"{([^}]*)}", value):
            if name not in known:
                raise ValueError(
                    f"{_show(value)} uses {{{name}}}; known: " + ", ".join(sorted(known))
                )
        if "{uuid}" not in value:
            raise ValueError(f"{_show(value)} must contain {{uuid}} so uploads never collide")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> RouteConfig:
        if self.part_size < 5 * 1024**2:
            raise ValueError("part_size must be at least 5MiB (S3's smallest part)")
        if self.part_size * 10_000 < self.max_size:
            raise ValueError("part_size * 10000 parts must reach max_size")
        return self


class Config(_Model):
    listen: ListenConfig = Field(default_factory=ListenConfig)  # type: ignore[arg-type]
    public_origins: list[AnyHttpUrl] = Field(
        default_factory=list, description="Origins allowed to call upload routes."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is kept."
    )
    ops_prefix: str = Field("/-", description="Where healthz, readyz, metrics live.")
    upstream: UpstreamConfig
    session: SessionConfig
    identity: IdentityConfig = Field(default_factory=IdentityConfig)  # type: ignore[arg-type]
    s3: S3Config
    webhook: WebhookConfig
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{_show(value)} is not a CIDR (e.g. 10.0.0.0/8)") from None
        return values

    @field_validator("ops_prefix")
    @classmethod
    def _ops_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~-]+", value):
            raise ValueError(f"{_show(value)} must be one path segment like /-")
        return value

    @model_validator(mode="after")
    def _unique_routes(self) -> Config:
        seen_paths: dict[str, str] = {}
        seen_names: set[str] = set()
        for route in self.routes:
            if route.path in seen_paths:
                raise ValueError(
                    f"multiple routes found with path {route.path!r} "
                    f"({seen_paths[route.path]}, {route.name}): route paths must be unique"
                )
            if route.name in seen_names:
                raise ValueError(f"multiple routes named {route.name!r}: names must be unique")
            if route.path == self.ops_prefix or route.path.startswith(self.ops_prefix + "/"):
                raise ValueError(f"route {route.name!r} lies under ops_prefix {self.ops_prefix}")
            seen_paths[route.path] = route.name
            seen_names.add(route.name)
        return self

    @property
    def origins(self) -> frozenset[str]:
        """``public_origins`` as ``scheme://host[:port]`` strings, for Origin comparison."""
        return frozenset(str(o).rstrip("/") for o in self.public_origins)


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a config, each with its YAML path."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(
    tree: Any, environ: Mapping[str, str], path: str = ""
) -> tuple[Any, list[ConfigProblem]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` inside string scalars of a parsed YAML tree."""
    problems: list[ConfigProblem] = []
    if isinstance(tree, str):

        def _sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(ConfigProblem(path, f"${{{name}}} is not set in the environment"))
            return ""

        return _VAR_RE.sub(_sub, tree), problems
    if isinstance(tree, dict):
        out: dict[Any, Any] = {}
        for key, value in tree.items():
            out[key], sub = interpolate(value, environ, _join(path, key))
            problems += sub
        return out, problems
    if isinstance(tree, list):
        items = []
        for index, value in enumerate(tree):
            item, sub = interpolate(value, environ, f"{path}[{index}]")
            items.append(item)
            problems += sub
        return items, problems
    return tree, problems


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in part:
            continue  # pydantic's names for validator wrappers, not YAML keys
        else:
            path = _join(path, part)
    return path


def _lookup(tree: Any, loc: tuple[int | str, ...]) -> tuple[bool, Any]:
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False, None
    return True, node


_SECRET_NAMES = ("keys", "secret", "secret_access_key")


def _problems_from(error: ValidationError, tree: Any) -> list[ConfigProblem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = _loc_to_path(loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        found, value = _lookup(tree, loc)
        secret = any(name in path.split(".")[-1] for name in _SECRET_NAMES) or ".keys[" in path
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "is required"
        elif found and not secret and not message.startswith(_show(value)):
            message = f"{_show(value)} {message[0].lower()}{message[1:]}"
        problems.append(ConfigProblem(path, message))
    return problems


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def parse(text: str, environ: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML text into a Config; raises ConfigError listing every problem."""
    try:
        tree = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError(
            [ConfigProblem("", f"{source}: YAML syntax error at {where}: {exc.problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem("", f"{source}: YAML error: {exc}")]) from None
    if not isinstance(tree, dict):
        raise ConfigError([ConfigProblem("", f"{source}: the config must be a YAML mapping")])
    tree, problems = interpolate(tree, environ)
    if problems:
        raise ConfigError(problems)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, tree)) from None


def load(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("", f"{path}: no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", f"{path}: cannot read: {exc}")]) from None
    return parse(text, environ, str(path))
