"""The YAML config: pydantic models, ``${VAR}`` interpolation, sizes, errors with YAML paths.

``load(path, environ)`` is the only place that reads the environment; everything after it gets a
frozen, typed ``Config``. Interpolation runs on the parsed tree, inside string scalars only, so a
variable's value can never change the shape of the document.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
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
from pydantic_core import PydanticCustomError

MiB = 1024**2
GiB = 1024**3
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
    "mib": MiB,
    "gib": GiB,
    "tib": 1024**4,
}


def parse_size(value: Any) -> int:
    """Bytes from ``20MiB``, ``5GB``, ``1.5KiB``, ``1048576`` or an int; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _UNITS:
            # Decimal, not float: 123456789012345678901 and 1.1MB must come out exact.
            number = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
            if number == number.to_integral_value():
                return int(number)
    raise ValueError(f"{_show(value)} is not a size")


Size = Annotated[int, BeforeValidator(parse_size)]


def _rule(message: str, *at: str | int) -> PydanticCustomError:
    """A cross-field error pinned to the key ``at`` (below the model raising it) that breaks it."""
    return PydanticCustomError("config_rule", "{message}", {"message": message, "at": at})


def _token(what: str) -> AfterValidator:
    def check(value: str) -> str:
        # RFC 9110 token: what header and cookie names may contain.
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"is not a valid {what}")
        return value

    return AfterValidator(check)


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("is not a CIDR (e.g. 10.0.0.0/8)") from None
    return value


_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)$")


def _media_type(value: str) -> str:
    value = value.lower()
    if value != "*/*" and not _MEDIA_TYPE_RE.match(value):
        raise ValueError("is not a media type or type/*")
    return value


def _origin(value: AnyHttpUrl) -> AnyHttpUrl:
    # Browsers send Origin as scheme://host[:port]; anything more would never match it.
    if value.path not in (None, "", "/") or value.query or value.fragment or value.username:
        raise ValueError("is not an origin: write scheme://host[:port], without a path")
    return value


HeaderName = Annotated[str, _token("header name")]
CookieName = Annotated[str, _token("cookie name")]


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
                raise _rule(
                    "is not a Fernet key: 32 url-safe base64 bytes (44 characters) expected; "
                    "make one with `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`",
                    index,
                ) from None
        return keys

    @model_validator(mode="after")
    def _samesite_none_needs_secure(self) -> SessionConfig:
        if self.samesite == "None" and not self.secure:
            raise _rule("requires secure: true (browsers drop such cookies)", "samesite")
        return self


class AuthRequestConfig(_Model):
    path: str = Field(description="Upstream path asked who the caller is.")
    user_field: str = Field("username", description="JSON field (or header) naming the user.")
    cache_seconds: int = Field(60, ge=0, description="How long the answer is kept in the session.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        return path


class IdentityConfig(_Model):
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


class S3Config(_Model):
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
            raise _rule(
                "is also the uploads_bucket: the buckets must differ, browsers write to that one",
                "storage_bucket",
            )
        return self


class LimitsConfig(_Model):
    """What a client connection may cost the gateway: time to send a request, size of its head."""

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


class WebhookConfig(_Model):
    secret: SecretStr = Field(description="HMAC key of X-Upload-Signature.")
    timeout: float = Field(30, gt=0, description="Seconds the upstream has to answer.")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("is too short: use at least 16 characters")
        return value


_STORAGE_KEY_FIELDS = frozenset({"route", "user_hash", "uuid", "filename", "ext", "date"})


class RouteConfig(_Model):
    name: str = Field(description="Names the route in logs and metrics.")
    protocol: Literal["fineuploader", "uppy", "api"]
    path: str = Field(description="Where the route's endpoints live.")
    max_size: Size = Field(gt=0, description="Largest file accepted.")
    content_types: list[Annotated[str, AfterValidator(_media_type)]] = Field(
        default_factory=lambda: ["*/*"], description="Allowed types, e.g. image/*."
    )
    acl: Literal["private", "bucket-owner-full-control"] = Field("private")
    signature_ttl: int = Field(900, gt=0, le=7 * 86400, description="Seconds a signature lives.")
    storage_key: str = Field("{route}/{user_hash}/{uuid}/{filename}")
    forward: str = Field(description="Upstream path receiving the completion message.")
    multipart_threshold: Size = Field(64 * MiB, description="api: multipart above this.")
    part_size: Size = Field(8 * MiB, description="api: size of each part, 5MiB to 5GiB.")

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
        if not 5 * MiB <= value <= 5 * GiB:
            raise ValueError("must be between 5MiB and 5GiB (S3's part size limits)")
        return value

    @model_validator(mode="after")
    def _enough_parts(self) -> RouteConfig:
        if self.part_size * 10_000 < self.max_size:
            raise _rule(
                "is too small: max_size would need over 10000 parts (S3's limit)", "part_size"
            )
        return self


class Config(_Model):
    listen: ListenConfig = Field(default_factory=ListenConfig)  # type: ignore[arg-type]
    public_origins: list[Annotated[AnyHttpUrl, AfterValidator(_origin)]] = Field(
        default_factory=list, description="Origins allowed to call upload routes."
    )
    trusted_proxies: list[Annotated[str, AfterValidator(_cidr)]] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is kept."
    )
    ops_prefix: str = Field("/-", description="Where healthz, readyz, metrics live.")
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
            raise _rule(
                "is also session.cookie_name: one cookie would overwrite the other",
                "identity",
                "prefix_cookie",
            )
        return self

    @model_validator(mode="after")
    def _unique_routes(self) -> Config:
        for i, route in enumerate(self.routes):
            if _under(route.path, self.ops_prefix):
                raise _rule(f"lies under ops_prefix {self.ops_prefix}", "routes", i, "path")
            for j, earlier in enumerate(self.routes[:i]):
                if route.path == earlier.path:
                    raise _rule(
                        f"is also the path of routes[{j}] ({earlier.name}): "
                        "route paths must be unique",
                        "routes",
                        i,
                        "path",
                    )
                if _under(route.path, earlier.path) or _under(earlier.path, route.path):
                    raise _rule(
                        f"overlaps routes[{j}].path {earlier.path}: their endpoints would collide",
                        "routes",
                        i,
                        "path",
                    )
                if route.name == earlier.name:
                    raise _rule(
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


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigProblem:
    """One problem: the YAML path of the key (``routes[1].max_size``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a config, each with its YAML path."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# ${NAME}, ${NAME:-default}, $${ (a literal ${), or a ${ that is none of these (a mistake).
_VAR_RE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\})?", re.ASCII)


def interpolate(
    tree: Any, environ: Mapping[str, str], path: str = ""
) -> tuple[Any, list[ConfigProblem]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` inside string scalars of a parsed YAML tree.

    ``${VAR:-default}`` uses the default when VAR is unset or empty, as POSIX shells do.
    """
    problems: list[ConfigProblem] = []
    if isinstance(tree, str):

        def _sub(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if match.group(0) == "$${":
                return "${"
            if name is None:
                problems.append(
                    ConfigProblem(
                        path, "has a ${ that is not ${NAME} or ${NAME:-default} (write $${ for ${)"
                    )
                )
                return match.group(0)
            value = environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                problems.append(ConfigProblem(path, f"${{{name}}} is not set in the environment"))
                return ""
            return value

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    PyYAML keeps the last of two equal keys silently, so a second ``session:`` further down
    would quietly replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {_show(key)} (first at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, source: str) -> Any:
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        what = f"{source}: invalid YAML{_at(exc.problem_mark)}: {exc.problem or exc.context}"
        if exc.problem and exc.context and _at(exc.context_mark) != _at(exc.problem_mark):
            what += f" ({exc.context}{_at(exc.context_mark)})"
        raise ConfigError([ConfigProblem("", what)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem("", f"{source}: invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _at(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def _lookup(tree: Any, loc: tuple[int | str, ...]) -> tuple[bool, Any]:
    node = tree
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return False, None
    return True, node


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether ``loc`` names a SecretStr field (or an item of one), whose value is never shown."""
    model: Any = Config
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        annotation = fields[part].annotation
        model = next(
            (t for t in _types_in(annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
    return SecretStr in _types_in(annotation)


def _types_in(annotation: Any) -> list[Any]:
    return [annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))]


# pydantic's own messages start with the kind of thing that failed: replace it by the value.
_SUBJECT_RE = re.compile(r"^(Input|String|List|Value|Dictionary|URL input) should ")
_PYDANTIC_WORDS = (
    (re.compile(r"a valid dictionary( or instance of \w+)?"), "a mapping"),
    (re.compile(r"a valid list"), "a list"),
)


def _subject(found: bool, value: Any, secret: bool) -> str:
    if not found:
        return "the default"  # errors pinned to a key the YAML leaves out
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if secret and isinstance(value, str):
        return f"the secret ({len(value)} character{'' if len(value) == 1 else 's'})"
    return "the secret" if secret else _show(value)


def _problems_from(error: ValidationError, tree: Any) -> list[ConfigProblem]:
    problems = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        loc = tuple(item["loc"]) + tuple(ctx.get("at", ()))
        path = _loc_to_path(loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problems.append(ConfigProblem(path, "unknown key"))
            continue
        if item["type"] == "missing":
            problems.append(ConfigProblem(path, "is required"))
            continue
        found, value = _lookup(tree, loc)
        secret = _is_secret(loc)
        subject = _subject(found, value, secret)
        for pattern, words in _PYDANTIC_WORDS:
            message = pattern.sub(words, message)
        if _SUBJECT_RE.match(message):
            message = _SUBJECT_RE.sub(f"{subject} should ", message)
        elif not secret and found and message.startswith(_show(value)):
            pass  # parse_size and friends already name the value
        elif message[:1].islower():
            message = f"{subject} {message}"
        else:
            message = f"{message} (got {subject})"
        problems.append(ConfigProblem(path, message))
    return problems


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _under_any(path: str, prefixes: set[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in prefixes)


def parse(text: str, environ: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML text into a Config; raises ConfigError listing every problem."""
    tree = _read_yaml(text, source)
    if tree is None:
        raise ConfigError([ConfigProblem("", f"{source}: the config is empty")])
    if not isinstance(tree, dict):
        raise ConfigError([ConfigProblem("", f"{source}: the config must be a YAML mapping")])
    tree, problems = interpolate(tree, environ)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        # A key whose ${VAR} is unset was already reported; its emptiness would only add noise.
        unset = {p.path for p in problems}
        problems += [p for p in _problems_from(exc, tree) if not _under_any(p.path, unset)]
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("", f"{path}: no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem("", f"{path}: is a directory, not a file")]) from None
    except PermissionError:
        raise ConfigError([ConfigProblem("", f"{path}: permission denied")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", f"{path}: cannot read: {exc}")]) from None
    return parse(text, environ, str(path))
