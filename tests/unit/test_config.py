"""The YAML config: sizes, ``${VAR}``, unknown keys, every rule, messages with YAML paths."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import BaseModel, ValidationError

from gateway.config import (
    ApiRouteConfig,
    Config,
    ConfigError,
    FineUploaderRouteConfig,
    RouteConfig,
    UppyRouteConfig,
    interpolate,
    load,
    parse,
    parse_size,
)
from gateway.config.errors import problems_from

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
SESSION_KEY = Fernet.generate_key().decode()
WEBHOOK_SECRET = "webhook-secret-0123456789"
ENV = {
    "GATEWAY_SESSION_KEY": SESSION_KEY,
    "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key-example",
}

BASE: dict[str, Any] = {
    "upstream": {"url": "http://127.0.0.1:8000"},
    "session": {"keys": [SESSION_KEY]},
    "s3": {
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "aws-secret-access-key-example",
        "uploads_bucket": "test-uploads",
        "storage_bucket": "test-storage",
    },
    "webhook": {"secret": WEBHOOK_SECRET},
    "routes": [
        {
            "name": "photos",
            "protocol": "fineuploader",
            "path": "/uploads/photos",
            "max_size": "20MiB",
            "forward": "/internal/photos",
        },
        {
            "name": "api",
            "protocol": "api",
            "path": "/api/uploads",
            "max_size": "5GB",
            "forward": "/internal/api",
        },
    ],
}


def tree_with(*edits: tuple[str, Any]) -> dict[str, Any]:
    """BASE with each dotted key set (``routes.1.max_size``); a value of ... deletes the key."""
    tree = copy.deepcopy(BASE)
    for dotted, value in edits:
        node: Any = tree
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return tree


def problems(source: dict[str, Any] | str, environ: Mapping[str, str] = ENV) -> list[str]:
    """The problem lines ``parse`` reports for a tree (dumped as YAML) or a YAML text."""
    text = source if isinstance(source, str) else yaml.safe_dump(source, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return [str(p) for p in info.value.problems]


def valid(source: dict[str, Any] | str, environ: Mapping[str, str] = ENV) -> Config:
    text = source if isinstance(source, str) else yaml.safe_dump(source, sort_keys=False)
    return parse(text, environ)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10MiB", 10 * 1024**2),
        ("5GB", 5 * 1000**3),
        ("1048576", 1048576),
        (1048576, 1048576),
        ("1.5KiB", 1536),
        ("20 mib", 20 * 1024**2),
        ("1.1MB", 1_100_000),
        ("0", 0),
        ("123456789012345678901", 123456789012345678901),
        ("5TiB", 5 * 1024**4),
    ],
)
def test_parse_size_accepts_counts_and_units(text: str | int, expected: int) -> None:
    """Byte counts, decimal and binary units, case-insensitive, exact even past float precision."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "20 potatoes",
        "",
        "MiB",
        "-5",
        "1.5B",
        "1.0005KB",
        "1e6",
        "0x10",
        "5 G B",
        True,
        1.5,
        None,
        -1,
    ],
)
def test_parse_size_refuses_everything_else(text: Any) -> None:
    """Anything that is not a whole, non-negative number of bytes is an error naming the value."""
    with pytest.raises(ValueError, match=r"is not a size$"):
        parse_size(text)


def test_parse_size_message_quotes_the_value() -> None:
    """The message is the one check-config prints after the YAML path."""
    with pytest.raises(ValueError) as info:
        parse_size("20 potatoes")
    assert str(info.value) == '"20 potatoes" is not a size'


def test_route_sizes_are_parsed_into_bytes() -> None:
    """A route's max_size, multipart_threshold and part_size come out as ints."""
    config = valid(
        tree_with(("routes.1.multipart_threshold", "100MB"), ("routes.1.part_size", "16MiB"))
    )
    api = config.routes[1]
    assert (api.max_size, api.multipart_threshold, api.part_size) == (
        5 * 1000**3,
        100 * 1000**2,
        16 * 1024**2,
    )


def test_part_size_floor_is_8mib() -> None:
    """Issue 4: parts of at least 8 MiB, so 8MiB passes and a byte less is refused."""
    assert valid(tree_with(("routes.1.part_size", "8MiB"))).routes[1].part_size == 8 * 1024**2
    refused = problems(tree_with(("routes.1.part_size", 8 * 1024**2 - 1)))
    assert refused == ["routes[1].part_size: 8388607 must be between 8MiB and 5GiB"]


# ----------------------------------------------------------------------------- interpolation


def test_variables_are_replaced_in_string_values() -> None:
    """${VAR} takes the environment's value, also inside a longer string and in list items."""
    config = valid(
        tree_with(
            ("session.keys", ["${GATEWAY_SESSION_KEY}"]),
            ("upstream.url", "http://${UPSTREAM_HOST}:8000"),
        ),
        {**ENV, "UPSTREAM_HOST": "10.1.2.3"},
    )
    assert config.session.keys[0].get_secret_value() == SESSION_KEY
    assert config.upstream.base == "http://10.1.2.3:8000"


def test_default_applies_when_unset_or_empty() -> None:
    """${VAR:-default} uses the default when VAR is unset or empty (as POSIX shells do)."""
    tree = tree_with(("s3.region", "${REGION:-eu-west-1}"))
    assert valid(tree).s3.region == "eu-west-1"
    assert valid(tree, {**ENV, "REGION": ""}).s3.region == "eu-west-1"
    assert valid(tree, {**ENV, "REGION": "ap-south-1"}).s3.region == "ap-south-1"


def test_interpolated_text_is_converted_to_the_field_type() -> None:
    """A number or boolean may come from a variable: the text is validated after substitution."""
    tree = tree_with(("listen.port", "${PORT:-8081}"), ("session.secure", "${SECURE}"))
    config = valid(tree, {**ENV, "SECURE": "false"})
    assert config.listen.port == 8081
    assert config.session.secure is False


def test_unset_variable_is_one_problem_with_its_path() -> None:
    """An unset ${VAR} names VAR and the key; the empty value it left causes no second line."""
    tree = tree_with(("s3.uploads_bucket", "${UPLOADS_BUCKET}"))
    assert problems(tree) == ["s3.uploads_bucket: ${UPLOADS_BUCKET} is not set in the environment"]


def test_every_unset_variable_is_reported() -> None:
    """Each unset variable gets its own line, list items with their index."""
    tree = tree_with(("session.keys", [SESSION_KEY, "${OLD_KEY}"]), ("webhook.secret", "${WH}"))
    assert problems(tree) == [
        "session.keys[1]: ${OLD_KEY} is not set in the environment",
        "webhook.secret: ${WH} is not set in the environment",
    ]


def test_lone_dollars_are_left_alone_and_double_dollar_escapes() -> None:
    """Only ${...} is special: "$", "$$", "$HOME" stay as written; "$${" writes a literal "${"."""
    secret = "pa$$word-$HOME-$-{x}-$${NOT_A_VAR}"
    config = valid(tree_with(("webhook.secret", secret)))
    assert config.webhook.secret.get_secret_value() == "pa$$word-$HOME-$-{x}-${NOT_A_VAR}"


def test_malformed_reference_is_an_error() -> None:
    """A ${ that is not ${NAME} or ${NAME:-default} is a typo, reported rather than kept."""
    assert problems(tree_with(("s3.region", "${AWS_REGION"))) == [
        "s3.region: has a ${ that is not ${NAME} or ${NAME:-default} (write $${ for ${)"
    ]


def test_value_with_yaml_syntax_stays_one_literal_string() -> None:
    """Interpolation runs after parsing: a value holding #, ": ", quotes and newlines is data.

    Substituted into the raw text, it would end the scalar, set webhook.timeout, or start a comment.
    """
    tricky = 'abc # not a comment\ntimeout: 1\n"quoted": x\n- item\n  secret: ]}'
    text = yaml.safe_dump(tree_with(("webhook.secret", "${WEBHOOK_SECRET}")), sort_keys=False)
    config = parse(text, {**ENV, "WEBHOOK_SECRET": tricky})
    assert config.webhook.secret.get_secret_value() == tricky
    assert config.webhook.timeout == 30


def test_interpolate_leaves_non_strings_and_keys_alone() -> None:
    """Only string scalars are rewritten; numbers, booleans, nulls and mapping keys are not."""
    tree = {"${K}": [1, True, None, 2.5, "${V}"], "n": {"m": "${V:-d}"}}
    out, found = interpolate(tree, {"V": "v", "K": "k"})
    assert out == {"${K}": [1, True, None, 2.5, "v"], "n": {"m": "v"}}
    assert found == []


# ----------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("dotted", "path"),
    [
        ("colour", "colour"),
        ("session.colour", "session.colour"),
        ("identity.auth_request.colour", "identity.auth_request.colour"),
        ("routes.0.colour", "routes[0].colour"),
        ("routes.1.maxsize", "routes[1].maxsize"),
    ],
)
def test_unknown_keys_are_errors_with_their_path(dotted: str, path: str) -> None:
    """A misspelt key is never silently ignored: it is named with its full YAML path."""
    tree = tree_with(("identity.auth_request", {"path": "/api/me"}), (dotted, "red"))
    assert problems(tree) == [f"{path}: unknown key"]


def test_missing_required_section_is_named() -> None:
    """A config without a required section says which one."""
    assert problems(tree_with(("webhook", ...))) == ["webhook: is required"]


# ----------------------------------------------------------------------------- rules

RULES: list[tuple[str, tuple[tuple[str, Any], ...], str]] = [
    (
        "samesite None needs secure",
        (("session.samesite", "None"), ("session.secure", False)),
        'session.samesite: "None" requires secure: true (browsers drop such cookies)',
    ),
    (
        "key_prefix without {user_hash}",
        (("identity.key_prefix", "uploads/"),),
        'identity.key_prefix: "uploads/" must contain {user_hash}: users would share keys',
    ),
    (
        "key_prefix without trailing /",
        (("identity.key_prefix", "u/{user_hash}"),),
        'identity.key_prefix: "u/{user_hash}" must end with /: user admin would own admin2/',
    ),
    (
        "bucket with capitals",
        (("s3.uploads_bucket", "Test-Uploads"),),
        's3.uploads_bucket: "Test-Uploads" is not an S3 bucket name',
    ),
    (
        "bucket too short",
        (("s3.storage_bucket", "ab"),),
        's3.storage_bucket: "ab" is not an S3 bucket name',
    ),
    (
        "bucket with ..",
        (("s3.storage_bucket", "a..b"),),
        's3.storage_bucket: "a..b" is not an S3 bucket name',
    ),
    (
        "bucket too long",
        (("s3.uploads_bucket", "b" * 64),),
        f's3.uploads_bucket: "{"b" * 64}" is not an S3 bucket name',
    ),
    (
        "same bucket twice",
        (("s3.storage_bucket", "test-uploads"),),
        's3.storage_bucket: "test-uploads" is also the uploads_bucket: '
        "the buckets must differ, browsers write to that one",
    ),
    (
        "bad CIDR",
        (("trusted_proxies", ["10.0.0.0/8", "10.0.0.0/33"]),),
        'trusted_proxies[1]: "10.0.0.0/33" is not a CIDR (e.g. 10.0.0.0/8)',
    ),
    (
        "bad content type",
        (("routes.0.content_types", ["image/*", "images"]),),
        'routes[0].content_types[1]: "images" is not a media type or type/*',
    ),
    (
        "storage_key with an unknown placeholder",
        (("routes.0.storage_key", "{route}/{colour}/{uuid}"),),
        'routes[0].storage_key: "{route}/{colour}/{uuid}" uses {colour}; '
        "known: {date}, {ext}, {filename}, {route}, {user_hash}, {uuid}",
    ),
    (
        "storage_key without {uuid}",
        (("routes.0.storage_key", "{route}/{filename}"),),
        'routes[0].storage_key: "{route}/{filename}" must contain {uuid} so uploads never collide',
    ),
    (
        "storage_key with {filename} before {uuid}",
        (("routes.0.storage_key", "{route}/{filename}/{uuid}"),),
        'routes[0].storage_key: "{route}/{filename}/{uuid}" must put {filename} after {uuid}',
    ),
    (
        "storage_key with {date} before {uuid}",
        (("routes.0.storage_key", "{route}/{date}/{uuid}/{filename}"),),
        'routes[0].storage_key: "{route}/{date}/{uuid}/{filename}" must put {date} after {uuid}',
    ),
    (
        "duplicate route path",
        (("routes.1.path", "/uploads/photos"),),
        'routes[1].path: "/uploads/photos" is also the path of routes[0] (photos): '
        "route paths must be unique",
    ),
    (
        "nested route paths",
        (("routes.1.path", "/uploads/photos/api"),),
        'routes[1].path: "/uploads/photos/api" overlaps routes[0].path /uploads/photos: '
        "their endpoints would collide",
    ),
    (
        "duplicate route name",
        (("routes.1.name", "photos"),),
        'routes[1].name: "photos" is also the name of routes[0]: route names must be unique',
    ),
    (
        "route under ops_prefix",
        (("routes.1.path", "/-/uploads"),),
        'routes[1].path: "/-/uploads" lies under ops_prefix /-',
    ),
    (
        "route under a custom ops_prefix",
        (("ops_prefix", "/_gw"), ("routes.0.path", "/_gw")),
        'routes[0].path: "/_gw" lies under ops_prefix /_gw',
    ),
    (
        "endpoint not absolute",
        (("routes.0.endpoints", {"signature": "s3/sign"}),),
        'routes[0].endpoints.signature: "s3/sign" must be an absolute path like '
        "/s3/signature/: segments of letters, digits and -._~!$&'()*+,;=:@, an optional "
        "trailing /, no %, ? or {}",
    ),
    (
        "endpoint with an escape",
        (("routes.0.endpoints", {"blank": "/s3/%62lank"}),),
        'routes[0].endpoints.blank: "/s3/%62lank" must be an absolute path like '
        "/s3/signature/: segments of letters, digits and -._~!$&'()*+,;=:@, an optional "
        "trailing /, no %, ? or {}",
    ),
    (
        "endpoint in aiohttp's route syntax",
        (("routes.0.endpoints", {"delete": "/s3/{uuid}"}),),
        'routes[0].endpoints.delete: "/s3/{uuid}" must be an absolute path like '
        "/s3/signature/: segments of letters, digits and -._~!$&'()*+,;=:@, an optional "
        "trailing /, no %, ? or {}",
    ),
    (
        "endpoint with a dot segment",
        (("routes.0.endpoints", {"success": "/s3/../x"}),),
        "routes[0].endpoints.success: \"/s3/../x\" must not have a '.' or '..' segment",
    ),
    (
        "endpoints on an api route",
        (("routes.1.endpoints", {"signature": "/s3/sign"}),),
        "routes[1].endpoints: is for fineuploader routes only; this one's protocol is api",
    ),
    (
        "endpoint under its own route's path",
        (("routes.0.endpoints", {"signature": "/uploads/photos/sign"}),),
        'routes[0].endpoints.signature: "/uploads/photos/sign" overlaps routes[0].path '
        "/uploads/photos: each endpoint must be a path of its own",
    ),
    (
        "endpoint under another route's path, in another case",
        (("routes.0.endpoints", {"signature": "/API/Uploads/x"}),),
        'routes[0].endpoints.signature: "/API/Uploads/x" overlaps routes[1].path /api/uploads: '
        "each endpoint must be a path of its own",
    ),
    (
        "endpoint at a forward path",
        (("routes.0.endpoints", {"success": "/internal/api/"}),),
        'routes[0].endpoints.success: "/internal/api/" overlaps routes[1].forward /internal/api: '
        "each endpoint must be a path of its own",
    ),
    (
        "endpoint under ops_prefix",
        (("routes.0.endpoints", {"blank": "/-/blank"}),),
        'routes[0].endpoints.blank: "/-/blank" overlaps ops_prefix /-: '
        "each endpoint must be a path of its own",
    ),
    (
        "endpoint under another endpoint",
        (("routes.0.endpoints", {"signature": "/s3", "success": "/s3/success/"}),),
        'routes[0].endpoints.success: "/s3/success/" overlaps routes[0].endpoints.signature '
        "/s3: each endpoint must be a path of its own",
    ),
    (
        "part_size below 8MiB",
        (("routes.1.part_size", "5MiB"),),
        'routes[1].part_size: "5MiB" must be between 8MiB and 5GiB',
    ),
    (
        "part_size too small for max_size",
        (("routes.1.max_size", "100GiB"),),
        "routes[1].part_size: the default is too small: "
        "max_size would need over 10000 parts (S3's limit)",
    ),
    (
        "multipart_threshold above a single PUT",
        (("routes.1.multipart_threshold", "6GiB"),),
        'routes[1].multipart_threshold: "6GiB" is above 5GiB, the largest single PUT S3 accepts',
    ),
    (
        "max_size not a size",
        (("routes.1.max_size", "20 potatoes"),),
        'routes[1].max_size: "20 potatoes" is not a size',
    ),
    (
        "max_size zero",
        (("routes.0.max_size", 0),),
        "routes[0].max_size: 0 should be greater than 0",
    ),
    (
        "route path with trailing /",
        (("routes.0.path", "/uploads/"),),
        'routes[0].path: "/uploads/" must start with / and not end with /',
    ),
    (
        "route name with a space",
        (("routes.0.name", "my photos"),),
        'routes[0].name: "my photos" must be letters, digits, _ or - (it names metrics and keys)',
    ),
    (
        "unknown protocol",
        (("routes.0.protocol", "tus"),),
        "routes[0].protocol: \"tus\" should be 'fineuploader', 'uppy' or 'api'",
    ),
    (
        "origin with a path",
        (("public_origins", ["https://app.example.com/app"]),),
        'public_origins[0]: "https://app.example.com/app" is not an origin: '
        "write scheme://host[:port], without a path",
    ),
    (
        "ops_prefix of two segments",
        (("ops_prefix", "/a/b"),),
        'ops_prefix: "/a/b" must be one path segment like /-',
    ),
    (
        "ops_listen on the public address",
        (("ops_listen", {"port": 8080}),),
        "ops_listen.port: 8080 is also listen's, on the same host: "
        "the ops listener needs an address of its own",
    ),
    (
        "ops_listen without a port",
        (("ops_listen", {"host": "10.0.0.5"}),),
        "ops_listen.port: is required",
    ),
    (
        "header name with a space",
        (("identity.login_header", "X Upload User"),),
        'identity.login_header: "X Upload User" is not a valid header name',
    ),
    (
        "prefix cookie named like the session cookie",
        (("identity.prefix_cookie", "gateway_session"),),
        'identity.prefix_cookie: "gateway_session" is also session.cookie_name: '
        "one cookie would overwrite the other",
    ),
    (
        "relative auth_request path",
        (("identity.auth_request", {"path": "api/me"}),),
        'identity.auth_request.path: "api/me" must start with /',
    ),
    (
        "upstream URL not http",
        (("upstream.url", "ftp://files.example.com"),),
        "upstream.url: URL scheme should be 'http' or 'https' (got \"ftp://files.example.com\")",
    ),
    (
        "port out of range",
        (("listen.port", 70000),),
        "listen.port: 70000 should be less than or equal to 65535",
    ),
    (
        "section of the wrong type",
        (("session", 5),),
        "session: 5 should be a mapping",
    ),
]


@pytest.mark.parametrize(
    ("edits", "line"), [pytest.param(e, line, id=name) for name, e, line in RULES]
)
def test_each_rule_is_one_line_with_path_and_value(
    edits: tuple[tuple[str, Any], ...], line: str
) -> None:
    """Each rule refuses its config with exactly one line: YAML path, offending value, the rule."""
    assert problems(tree_with(*edits)) == [line]


def test_samesite_none_with_secure_is_accepted() -> None:
    """The samesite rule refuses only the combination browsers drop, not SameSite=None itself."""
    config = valid(tree_with(("session.samesite", "None"), ("session.secure", True)))
    assert config.session.samesite == "None"


def test_fineuploader_endpoints_may_be_named_one_by_one() -> None:
    """A route may place some endpoints elsewhere and keep the rest under its path."""
    route = valid(tree_with(("routes.0.endpoints", {"signature": "/s3/signature/"}))).routes[0]
    assert route.explicit_endpoints == {"signature": "/s3/signature/"}
    assert route.own_paths == ("/uploads/photos", "/s3/signature")


def test_content_types_are_lower_cased() -> None:
    """Media types compare case-insensitively, so the config stores them lower-cased."""
    config = valid(tree_with(("routes.0.content_types", ["Image/PNG", "*/*"])))
    assert config.routes[0].content_types == ["image/png", "*/*"]


# ----------------------------------------------------------------------------- route protocols

PROTOCOLS = "'fineuploader', 'uppy' or 'api'"
UPPY_ROUTE = {
    "name": "docs",
    "protocol": "uppy",
    "path": "/uploads/docs",
    "max_size": "1MiB",
    "forward": "/internal/docs",
}


def test_each_route_is_read_as_its_protocols_model() -> None:
    """A route becomes the model its protocol names, each a RouteConfig: only the api route has
    part_size and multipart_threshold, only the fineuploader route endpoints."""
    tree = tree_with(("routes.0.endpoints", {"signature": "/s3/sign"}))
    tree["routes"].append(UPPY_ROUTE)
    routes = valid(tree).routes
    assert [type(r) for r in routes] == [FineUploaderRouteConfig, ApiRouteConfig, UppyRouteConfig]
    assert all(isinstance(r, RouteConfig) for r in routes)
    assert isinstance(routes[1], ApiRouteConfig)
    assert (routes[1].multipart_threshold, routes[1].part_size) == (64 * 1024**2, 8 * 1024**2)
    for route in (routes[0], routes[2]):
        assert not hasattr(route, "part_size") and not hasattr(route, "multipart_threshold")
    assert not hasattr(routes[1], "endpoints") and not hasattr(routes[2], "endpoints")
    assert routes[0].explicit_endpoints == {"signature": "/s3/sign"}
    assert routes[1].explicit_endpoints == {} == routes[2].explicit_endpoints


def test_every_protocol_has_a_model_and_an_adapter() -> None:
    """The protocols the config accepts, the models it reads them as, and the adapters that
    serve them are the same list: a protocol added to one and not the others fails here."""
    from gateway.config.variants import variants
    from gateway.protocols import ADAPTERS

    models = variants(Config.model_fields["routes"].annotation)
    assert models == ROUTE_MODELS
    assert list(models) == list(ADAPTERS)
    assert get_args(RouteConfig.model_fields["protocol"].annotation) == tuple(models)


ROUTE_RULES: list[tuple[str, tuple[tuple[str, Any], ...], str]] = [
    (
        "protocol missing",
        (("routes.0.protocol", ...),),
        f"routes[0].protocol: is required, one of {PROTOCOLS}",
    ),
    (
        "protocol a list",
        (("routes.0.protocol", ["api"]),),
        f"routes[0].protocol: a list should be {PROTOCOLS}",
    ),
    (
        "protocol a number",
        (("routes.0.protocol", 5),),
        f"routes[0].protocol: 5 should be {PROTOCOLS}",
    ),
    (
        "protocol a boolean",
        (("routes.0.protocol", True),),
        f"routes[0].protocol: true should be {PROTOCOLS}",
    ),
    (
        "protocol null",
        (("routes.0.protocol", None),),
        f"routes[0].protocol: null should be {PROTOCOLS}",
    ),
    (
        "protocol a mapping",
        (("routes.0.protocol", {"api": True}),),
        f"routes[0].protocol: a mapping should be {PROTOCOLS}",
    ),
    (
        "protocol in capitals",
        (("routes.1.protocol", "API"),),
        f'routes[1].protocol: "API" should be {PROTOCOLS}',
    ),
    (
        "protocol with a trailing space",
        (("routes.1.protocol", "api "),),
        f'routes[1].protocol: "api " should be {PROTOCOLS}',
    ),
    ("route null", (("routes.0", None),), "routes[0]: null should be a mapping"),
    ("route a string", (("routes.0", "photos"),), 'routes[0]: "photos" should be a mapping'),
    ("route a list", (("routes.1", [BASE["routes"][1]]),), "routes[1]: a list should be a mapping"),
    (
        "part_size on a fineuploader route",
        (("routes.0.part_size", "16MiB"),),
        "routes[0].part_size: is for api routes only; this one's protocol is fineuploader",
    ),
    (
        "multipart_threshold on a fineuploader route, null",
        (("routes.0.multipart_threshold", None),),
        "routes[0].multipart_threshold: is for api routes only; this one's protocol is "
        "fineuploader",
    ),
    (
        "api keys on a route made uppy",
        (("routes.1.protocol", "uppy"), ("routes.1.part_size", "16MiB")),
        "routes[1].part_size: is for api routes only; this one's protocol is uppy",
    ),
    (
        "endpoints on an uppy route",
        (("routes.1.protocol", "uppy"), ("routes.1.endpoints", None)),
        "routes[1].endpoints: is for fineuploader routes only; this one's protocol is uppy",
    ),
    (
        "a key no protocol has",
        (("routes.1.parts", 5),),
        "routes[1].parts: unknown key",
    ),
]


@pytest.mark.parametrize(
    ("edits", "line"), [pytest.param(e, line, id=name) for name, e, line in ROUTE_RULES]
)
def test_a_routes_protocol_and_its_keys_are_checked_in_one_line(
    edits: tuple[tuple[str, Any], ...], line: str
) -> None:
    """A protocol missing, of the wrong type or unknown, a route that is no mapping, a key of
    another protocol: one line each, at the key's YAML path, saying what it should be."""
    assert problems(tree_with(*edits)) == [line]


def test_a_problem_inside_a_protocols_model_keeps_its_yaml_path() -> None:
    """pydantic puts the protocol in the location of what fails inside a route (routes.1.api.
    part_size); the lines name the YAML path only, for rules of one key and across keys."""
    found = problems(
        tree_with(
            ("routes.0.endpoints", {"blank": "blank"}),
            ("routes.1.multipart_threshold", "6GiB"),
            ("routes.1.max_size", "100GiB"),
        )
    )
    assert found == [
        'routes[0].endpoints.blank: "blank" must be an absolute path like /s3/signature/: '
        "segments of letters, digits and -._~!$&'()*+,;=:@, an optional trailing /, no %, ? or {}",
        'routes[1].multipart_threshold: "6GiB" is above 5GiB, the largest single PUT S3 accepts',
    ]
    assert problems(tree_with(("routes.1.max_size", "100GiB"))) == [
        "routes[1].part_size: the default is too small: "
        "max_size would need over 10000 parts (S3's limit)"
    ]


# Values no key of a route takes, or only some: the wrong type, nothing, text of every kind.
HOSTILE: list[Any] = [
    None, True, 0, -1, 1e400, "", " ", "x" * 300, "${UNSET}", "20 potatoes", "api", "/", [],
    ["api"], {}, {"protocol": "api"}, [[None]],
]  # fmt: skip


def _lines_after_yaml(tree: dict[str, Any]) -> list[str]:
    """What ``parse`` reports once the YAML is read (${VAR}s, the models, the lines); the YAML
    round trip, hundreds of times, would only cost."""
    replaced, unset = interpolate(tree, ENV)
    paths = {p.path for p in unset}
    try:
        Config.model_validate(replaced)
    except ValidationError as exc:
        # As parse: a key whose ${VAR} is unset is reported for that alone.
        found = [p for p in problems_from(exc, replaced, Config) if p.path not in paths]
        return [str(p) for p in [*unset, *found]]
    return [str(p) for p in unset]


def test_no_value_anywhere_in_a_route_gives_a_traceback_or_a_models_name() -> None:
    """Each of those values at each key of each protocol's route (its own keys and the other
    protocols'), and as the route itself: problem lines at YAML paths of the routes (a
    cross-route rule may name the other route), never an exception other than pydantic's
    (whose errors become the lines), never a protocol's name as a path segment."""
    tree = copy.deepcopy(BASE)
    tree["routes"].append(UPPY_ROUTE)
    every_key = set().union(*(model.model_fields for model in ROUTE_MODELS.values()))
    tried = 0
    for index in range(3):
        for key in [None, *sorted(every_key)]:
            for value in HOSTILE:
                edited = copy.deepcopy(tree)
                if key is None:
                    edited["routes"][index] = value
                else:
                    edited["routes"][index][key] = value
                lines = _lines_after_yaml(edited)
                tried += 1
                if tried % 40 == 0:  # the shortcut reports what check-config reports
                    assert lines == (problems(edited) if lines else []), (index, key, value)
                for line in lines:
                    path = line.split(": ", 1)[0]
                    assert re.fullmatch(r"routes\[\d\](\.\w+(\[\d+\])?)*", path), line
                    assert not set(path.split(".")) & set(ROUTE_MODELS), line
    assert tried > 600


def test_a_key_given_twice_in_a_route_is_refused_with_both_lines() -> None:
    """A route naming its protocol twice (the YAML loader would keep the last) is an error with
    the line of each."""
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "routes"}) + (
        "routes:\n"
        "  - name: a\n"
        "    protocol: api\n"
        "    path: /a\n"
        "    max_size: 1MiB\n"
        "    forward: /f\n"
        "    protocol: fineuploader\n"
    )
    line = text.splitlines().index("    protocol: fineuploader") + 1
    assert problems(text) == [
        f"<config>: invalid YAML at line {line}, column 5: "
        f'duplicate key "protocol" (first at line {line - 4})'
    ]


def test_a_merged_route_of_another_protocol_refuses_the_keys_it_merged() -> None:
    """A route merging an api route's settings (<<) but naming another protocol gets the api
    keys refused, at its own path: a merge cannot smuggle a key past its protocol."""
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "routes"}) + (
        "routes:\n"
        "  - &api {name: a, protocol: api, path: /a, max_size: 1MiB, forward: /f, "
        "part_size: 16MiB}\n"
        "  - {<<: *api, name: b, path: /b, forward: /g, protocol: uppy}\n"
    )
    assert problems(text) == [
        "routes[1].part_size: is for api routes only; this one's protocol is uppy"
    ]


def test_a_protocol_may_come_from_the_environment() -> None:
    """${VAR} works for protocol as for any string: the variable's value picks the model; unset,
    it is the one line about the variable."""
    tree = tree_with(("routes.1.protocol", "${PROTOCOL}"), ("routes.1.part_size", "16MiB"))
    assert type(valid(tree, {**ENV, "PROTOCOL": "api"}).routes[1]) is ApiRouteConfig
    assert problems(tree) == ["routes[1].protocol: ${PROTOCOL} is not set in the environment"]
    assert problems(tree, {**ENV, "PROTOCOL": "uppy"}) == [
        "routes[1].part_size: is for api routes only; this one's protocol is uppy"
    ]


def test_the_part_count_rule_is_the_api_routes_alone() -> None:
    """part_size * 10000 >= max_size binds the route whose parts part_size sizes: an api route
    of 100GiB is refused, a fineuploader or uppy route of 100GiB (whose clients size their own
    parts) is not refused for a part_size it does not have."""
    assert problems(tree_with(("routes.1.max_size", "100GiB")))
    tree = tree_with(("routes.0.max_size", "100GiB"))
    tree["routes"].append({**UPPY_ROUTE, "max_size": "100GiB"})
    routes = valid(tree).routes
    assert routes[0].max_size == routes[2].max_size == 100 * 1024**3


# ----------------------------------------------------------------------------- secrets


def test_bad_fernet_key_is_refused_without_showing_it() -> None:
    """A key that is not Fernet is refused; its value never appears, only its length."""
    wrong = "my-session-key-that-is-wrong"
    found = problems(tree_with(("session.keys", [SESSION_KEY, wrong])))
    assert len(found) == 1
    assert found[0].startswith(
        "session.keys[1]: the secret (28 characters) is not a Fernet key: "
        "32 url-safe base64 bytes (44 characters) expected"
    )
    assert wrong not in found[0]


@pytest.mark.parametrize(
    "edits",
    [
        (("session.keys", ["my-session-key-that-is-wrong"]),),
        # A model-level rule on session must not print the whole section, keys included.
        (("session.samesite", "None"), ("session.secure", False)),
        (("webhook.secret", "short-wh-secret"),),
        (("s3.secret_access_key", ["aws-secret-access-key-example"]),),
        (("s3.storage_bucket", "test-uploads"),),
    ],
)
def test_secrets_never_appear_in_messages(edits: tuple[tuple[str, Any], ...]) -> None:
    """No problem line, nor the exception's text, contains a secret of the config."""
    tree = tree_with(*edits)
    with pytest.raises(ConfigError) as info:
        parse(yaml.safe_dump(tree), ENV)
    text = str(info.value) + "\n".join(p.message for p in info.value.problems)
    for secret in (
        SESSION_KEY,
        "my-session-key-that-is-wrong",
        WEBHOOK_SECRET,
        "short-wh-secret",
        "aws-secret-access-key-example",
    ):
        assert secret not in text


def test_interpolated_secret_is_not_shown_either() -> None:
    """A secret taken from the environment is hidden the same way when it is refused."""
    tree = tree_with(("webhook.secret", "${GATEWAY_WEBHOOK_SECRET}"))
    found = problems(tree, {**ENV, "GATEWAY_WEBHOOK_SECRET": "tiny-secret"})
    assert found == [
        "webhook.secret: the secret (11 characters) is too short: use at least 16 characters"
    ]


def test_a_whsec_webhook_secret_is_accepted() -> None:
    """The Standard Webhooks form of the secret (whsec_ + base64 of 24 or more bytes) is taken."""
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    assert valid(tree_with(("webhook.secret", secret))).webhook.secret.get_secret_value() == secret


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (
            "whsec_" + base64.urlsafe_b64encode(b"\xff" * 30).decode(),
            "webhook.secret: the secret (46 characters) starts with whsec_ but what follows is not "
            "standard base64 (A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4 characters)",
        ),
        (
            "whsec_" + base64.b64encode(b"0123456789abcdef").decode(),
            "webhook.secret: the secret (30 characters) starts with whsec_ but decodes to 16 "
            "bytes: Standard Webhooks secrets are at least 24 bytes",
        ),
    ],
    ids=["not-standard-base64", "too-short"],
)
def test_a_whsec_webhook_secret_no_library_can_use_is_refused(secret: str, expected: str) -> None:
    """A whsec_ secret that is not padded standard base64, or under the spec's 24 bytes, is
    refused at load time with what is wrong, and neither it nor its base64 part is shown."""
    found = problems(tree_with(("webhook.secret", secret)))
    assert found == [expected]
    assert secret.removeprefix("whsec_") not in found[0]


# ----------------------------------------------------------------------------- all together


def test_every_problem_is_reported_together() -> None:
    """One run lists every problem (like oauth2-proxy), not just the first one found."""
    tree = tree_with(
        ("s3.region", "${REGION}"),
        ("trusted_proxies", ["300.0.0.0/8"]),
        ("routes.1.max_size", "20 potatoes"),
        ("routes.0.colour", "red"),
        ("webhook.secret", "short"),
        ("upstream", ...),
    )
    assert problems(tree) == [
        "s3.region: ${REGION} is not set in the environment",
        'trusted_proxies[0]: "300.0.0.0/8" is not a CIDR (e.g. 10.0.0.0/8)',
        "upstream: is required",
        "webhook.secret: the secret (5 characters) is too short: use at least 16 characters",
        "routes[0].colour: unknown key",
        'routes[1].max_size: "20 potatoes" is not a size',
    ]


# ----------------------------------------------------------------------------- YAML and files


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "upstream:\n  url: [http://a\n",
            "<config>: invalid YAML at line 3, column 1: "
            "expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence at line 2, column 8)",
        ),
        (
            "upstream: {url: http://a}\nsession:\n keys: x\n  max_age: 5\n",
            "<config>: invalid YAML at line 4, column 10: mapping values are not allowed here",
        ),
        (
            "session: {}\nupstream: {}\nsession: {secure: false}\n",
            '<config>: invalid YAML at line 3, column 1: duplicate key "session" (first at line 1)',
        ),
        ("", "<config>: the config is empty"),
        ("- upstream\n", "<config>: the config must be a YAML mapping"),
        (
            "a: !!python/object/apply:os.system [id]\n",
            "<config>: invalid YAML at line 1, column 4: could not determine a constructor "
            "for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
    ],
)
def test_yaml_problems_are_one_line_with_position(text: str, line: str) -> None:
    """Syntax errors, duplicate keys and non-mappings give one line with line and column."""
    assert problems(text) == [line]


def test_merge_keys_still_work() -> None:
    """The duplicate-key check leaves YAML merge keys (<<) usable for shared route settings."""
    text = yaml.safe_dump({k: v for k, v in BASE.items() if k != "routes"}) + (
        "routes:\n"
        "  - &route {name: a, protocol: api, path: /a, max_size: 1MiB, forward: /f}\n"
        "  - {<<: *route, name: b, path: /b}\n"
    )
    config = valid(text)
    assert [(r.name, r.path, r.max_size) for r in config.routes] == [
        ("a", "/a", 1024**2),
        ("b", "/b", 1024**2),
    ]


def test_load_reports_missing_and_unreadable_files(tmp_path: Path) -> None:
    """A missing file, a directory and a non-UTF-8 file each give one line naming the path."""
    missing = tmp_path / "missing.yaml"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"upstream: \xff\xfe\n")
    messages = []
    for path in (missing, tmp_path, binary):
        with pytest.raises(ConfigError) as info:
            load(path, ENV)
        messages.append([str(p) for p in info.value.problems])
    assert messages[0] == [f"{missing}: no such file"]
    assert messages[1] == [f"{tmp_path}: is a directory, not a file"]
    assert len(messages[2]) == 1
    assert messages[2][0].startswith(f"{binary}: cannot read: 'utf-8' codec can't decode")


# ----------------------------------------------------------------------------- example.yaml


def test_example_config_is_valid() -> None:
    """config/example.yaml validates with its four secrets set, and says what it shows."""
    config = load(EXAMPLE, ENV)
    assert [(r.name, r.protocol, r.path) for r in config.routes] == [
        ("photos", "fineuploader", "/uploads/photos"),
        ("legacy", "fineuploader", "/uploads/legacy"),
        ("documents", "uppy", "/uploads/uppy"),
        ("api", "api", "/api/uploads"),
    ]
    assert config.upstream.base == "http://127.0.0.1:8000"
    assert config.session.keys[0].get_secret_value() == SESSION_KEY
    assert config.webhook.secret.get_secret_value() == WEBHOOK_SECRET
    assert config.s3.access_key_id == "AKIDEXAMPLE"
    assert config.s3.secret_access_key.get_secret_value() == "aws-secret-access-key-example"
    assert config.routes[0].max_size == 20 * 1024**2


def test_example_config_needs_its_secrets_from_the_environment() -> None:
    """The example holds no secret itself: without the variables each one is named."""
    with pytest.raises(ConfigError) as info:
        load(EXAMPLE, {})
    assert [str(p) for p in info.value.problems] == [
        "session.keys[0]: ${GATEWAY_SESSION_KEY} is not set in the environment",
        "s3.access_key_id: ${AWS_ACCESS_KEY_ID} is not set in the environment",
        "s3.secret_access_key: ${AWS_SECRET_ACCESS_KEY} is not set in the environment",
        "webhook.secret: ${GATEWAY_WEBHOOK_SECRET} is not set in the environment",
    ]


def _keys_of(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        annotation: Any = field.annotation
        for sub in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                keys |= _keys_of(sub, f"{prefix}{name}.")
    return keys


ROUTE_MODELS = {
    "fineuploader": FineUploaderRouteConfig,
    "uppy": UppyRouteConfig,
    "api": ApiRouteConfig,
}


def _keys_in(tree: Any, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            keys.add(prefix + key)
            keys |= _keys_in(value, f"{prefix}{key}.")
    return keys


def test_example_config_shows_every_key() -> None:
    """Every key the models define appears in example.yaml, each protocol's route keys in some
    route of that protocol."""
    tree = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert _keys_in(tree) >= _keys_of(Config)
    for protocol, model in ROUTE_MODELS.items():
        routes = [route for route in tree["routes"] if route["protocol"] == protocol]
        route_keys: set[str] = set().union(*(_keys_in(route) for route in routes))
        assert route_keys >= _keys_of(model), protocol


def test_example_config_explains_every_key() -> None:
    """Each key is commented (on its line or just above) where example.yaml first shows it."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    first: dict[str, bool] = {}
    for i, line in enumerate(lines):
        match = re.match(r"\s*(?:- )?(\w+):", line)
        if match and match.group(1) not in first:
            first[match.group(1)] = "#" in line or lines[i - 1].lstrip().startswith("#")
    every = _keys_of(Config).union(*(_keys_of(model) for model in ROUTE_MODELS.values()))
    names = {key.rsplit(".", 1)[-1] for key in every}
    assert sorted(name for name in names if not first.get(name)) == []
