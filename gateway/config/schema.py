"""The config's JSON Schema: what ``upload-gateway config-schema`` prints.

Draft-07, not pydantic's 2020-12: yaml-language-server, behind most editors' YAML support
(VS Code's YAML extension, Neovim's yamlls), knows no newer draft before its 2.0, which editors
still bundle, and 2.0 validates draft-07 as well. The document is
pydantic's with its ``$defs`` under draft-07's ``definitions`` and each ``$ref`` that has
sibling keywords (a description, a default) wrapped in ``allOf``, since draft-07 ignores a
``$ref``'s siblings.

Editors (yaml-language-server) and CI validators check the YAML as written, before ``${VAR}``
is replaced and before pydantic converts text to numbers, so the schema takes what ``parse``
takes at every key: a ``${...}`` string wherever a number, boolean, choice or URL goes, numbers
and booleans written as text (``port: "8080"``, what a ``${VAR}`` turns into), and sizes as
``20MiB``. It checks the shape (keys, types, choices, ranges); ``check-config`` also checks what a
schema cannot (Fernet keys, paths, cross-key rules), and is the authority.
"""

from __future__ import annotations

import json
from typing import Any, cast

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .models import Config
from .sizes import _UNITS, parse_size

DIALECT = "http://json-schema.org/draft-07/schema#"

# Patterns are ECMA-262 and Python alike: no inline flags, so letters are spelt [aA].
_INTERPOLATED = r"\$\{"
_INT_TEXT = r"\s*[+-]?[0-9](_?[0-9])*(\.0*)?\s*"
_DIGITS = r"[0-9](_?[0-9])*"
_FLOAT_TEXT = (
    rf"\s*[+-]?(({_DIGITS}(\.({_DIGITS})?)?|\.{_DIGITS})([eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])\s*"
)
_BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0")


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_BOOL_TEXT = r"\s*(" + "|".join(_any_case(w) for w in _BOOL_WORDS) + r")\s*"
# Longest units first, so "kib" is not read as "k" followed by junk.
_SIZE_UNITS = "|".join(_any_case(u) for u in sorted(_UNITS, key=len, reverse=True) if u)
_SIZE_TEXT = rf"\s*[0-9]+(\.[0-9]+)?\s*({_SIZE_UNITS})?\s*"


# The alternatives carry no description: an editor shows the matching one's on hover, and the
# key's own meaning is what the reader wants there.
def _text(pattern: str) -> JsonSchemaValue:
    """A string alternative: ``pattern`` in whole, or anything holding a ``${``."""
    return {"type": "string", "pattern": f"^({pattern})$|{_INTERPOLATED}"}


_INTERPOLATION_ONLY: JsonSchemaValue = {"type": "string", "pattern": _INTERPOLATED}


class _Generator(GenerateJsonSchema):
    """pydantic's generator, with the text every non-string value may also be written as."""

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return {"anyOf": [super().int_schema(schema), _text(_INT_TEXT)]}

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return {"anyOf": [super().float_schema(schema), _text(_FLOAT_TEXT)]}

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return {"anyOf": [super().bool_schema(schema), _text(_BOOL_TEXT)]}

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        return {"anyOf": [super().literal_schema(schema), _INTERPOLATION_ONLY]}

    def url_schema(self, schema: core_schema.UrlSchema) -> JsonSchemaValue:
        # An editor checks format: uri, which "${UPSTREAM_URL}" is not.
        return {"anyOf": [super().url_schema(schema), _INTERPOLATION_ONLY]}

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        # A route's model is the one its protocol names. Draft-07 has no discriminator, and
        # oneOf would refuse a protocol written as ${VAR}, which every model's protocol admits;
        # the protocols' consts keep the models apart anyway.
        return {"anyOf": super().tagged_union_schema(schema)["oneOf"]}

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        if schema["function"].get("function") is parse_size:
            inner = schema["schema"]
            if inner["type"] != "int":
                raise TypeError("a size is an int")
            inner = cast(core_schema.IntSchema, inner)
            # The byte count, constraints included, without the int's own text form: parse_size
            # reads "1048576" as a size already.
            count = GenerateJsonSchema.int_schema(self, inner)
            return {"anyOf": [count, _text(_SIZE_TEXT)]}
        return super().function_before_schema(schema)


def _draft7(node: Any) -> Any:
    """``node`` with every ``$ref`` that has siblings moved into an ``allOf``, and without
    pydantic's titles (``Max Size``, ``RouteConfig``)."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _draft7(value) for key, value in node.items() if key != "title"}
    if "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, as a dict."""
    body = Config.model_json_schema(
        mode="validation", schema_generator=_Generator, ref_template="#/definitions/{model}"
    )
    definitions = body.pop("$defs")
    body.pop("title")
    schema: dict[str, Any] = _draft7({**body, "definitions": definitions})
    # Each key's title is its name in the YAML, which editors show above its meaning.
    for model in [schema, *schema["definitions"].values()]:
        for name, prop in model.get("properties", {}).items():
            prop["title"] = name
    return {"$schema": DIALECT, "title": "upload-gateway config", **schema}


def schema_text() -> str:
    """The schema as ``config-schema`` prints it and docs/config.schema.json holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
