"""JSON Schemas of profile and inventory files that agree with the tool.

pydantic's schema describes what its models accept in strict JSON. provision reads YAML
in pydantic's lax mode, and a profile is a layer, so the schema is corrected where the
two differ; a document `provision validate` accepts never fails the schema
(tests/property/test_prop_schema.py checks it):

- Text fields take numbers (`extension: 2101`): the models coerce numbers to text.
- Whole-number fields take the number as text ("5070", " 5070 ", "5_070", "5070.0") and,
  where 0 or 1 is allowed, false or true; true/false fields take 0, 1 and the words
  pydantic reads (yes/no, on/off, true/false, y/n, t/f, 1/0, any case); a list of
  allowed numbers takes true/false for 1/0, and a list with true/false takes 1/0.
- A profile is a layer: any key may be `null` (it removes what a parent set; the name of a
  key set to null is not checked either) and no key is required on its own (a hook's
  `program` may come from a parent).
- `extends` and an account's `proxy` take one name as well as a list, and a hook a program
  path as well as {program, args}: their before-validators in profile.py say so, the
  table _SHAPES here too (a test fails when a field it names is gone).
- YAML merge keys (`<<: *defaults`) are allowed in every mapping, for editors that show
  them as keys; an inventory host or group may be empty (`ws-01:`).

The schemas are plain JSON Schema (draft 2020-12), for editors such as VS Code's YAML
extension (`# yaml-language-server: $schema=...`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from provision.model.values import NAME_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: The strings pydantic reads as true or false, in any case.
BOOL_TEXT = (
    r"^(?:[01]|[Tt](?:[Rr][Uu][Ee])?|[Ff](?:[Aa][Ll][Ss][Ee])?|[Yy](?:[Ee][Ss])?|[Nn][Oo]?|[Oo](?:[Nn]|[Ff][Ff]))$"
)
#: A whole number written as text, as pydantic reads it ("5070", " +5070 ", "5_070", "5070.0").
INT_TEXT = r"^\s*[+-]?[0-9](?:_?[0-9])*(?:\.0*)?\s*$"
_MERGE_KEY: JsonSchemaValue = {
    "description": "A YAML merge key: the keys of the mapping(s) given are copied in.",
    "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
}


class LaxSchema(GenerateJsonSchema):
    """pydantic's schema, widened to what its lax validation accepts from YAML."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        # Every model here coerces numbers to text (StrictModel's coerce_numbers_to_str).
        return {"anyOf": [super().str_schema(schema), {"type": "number"}]}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        number = super().int_schema(schema)
        low, high = number.get("minimum"), number.get("maximum")
        flags = [
            flag
            for flag, value in ((False, 0), (True, 1))
            if (low is None or low <= value) and (high is None or value <= high)
        ]
        options: list[JsonSchemaValue] = [number, {"type": "string", "pattern": INT_TEXT}]
        if flags:
            options.append({"enum": flags})
        return {"anyOf": options}

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        keys = self.generate_inner(schema["keys_schema"]) if "keys_schema" in schema else {}
        text: dict[str, Any] = next((o for o in keys.get("anyOf", [keys]) if o.get("type") == "string"), {})
        if "pattern" in text:
            out["propertyNames"] = {"pattern": text["pattern"]}  # keys are names (accounts, groups)
        return out

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string", "pattern": BOOL_TEXT}]}

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        values = list(schema["expected"])
        extra: list[Any] = []
        for value in values:
            if isinstance(value, bool):
                extra.append(int(value))  # Literal[True] takes 1
            elif isinstance(value, int) and value in (0, 1):
                extra.append(bool(value))  # Literal[1] takes true
        if not extra:
            return super().literal_schema(schema)
        return {"enum": values + [e for e in extra if not any(e is v for v in values)]}


# Fields a before-validator lets take another shape: (model, field or "*") -> what else they take.
_SHAPES: dict[tuple[str, str], str] = {
    ("Profile", "extends"): "names",  # a name, as well as a list of names (strings: profile files are names)
    ("Account", "proxy"): "one",  # a proxy, as well as a list
    ("Hooks", "*"): "program",  # a program path, as well as {program, args}
    ("Inventory", "hosts"): "empty",  # `ws-01:` with nothing under it
    ("Inventory", "groups"): "empty",
}
_PROGRAM: JsonSchemaValue = {"type": "string", "minLength": 1, "maxLength": 255}


def profile_schema() -> dict[str, Any]:
    from provision.model.profile import Profile

    return _finish(Profile, "provision profile", layer=True)


def inventory_schema() -> dict[str, Any]:
    from provision.model.inventory import Inventory

    return _finish(Inventory, "provision inventory", layer=False)


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _finish(model: type[BaseModel], title: str, *, layer: bool) -> dict[str, Any]:
    schema = model.model_json_schema(schema_generator=LaxSchema)
    _shapes(schema, model.__name__)
    objects = _objects(schema)
    for node in objects:
        if layer:
            node.pop("required", None)
            if isinstance(node.get("additionalProperties"), dict):
                node["additionalProperties"] = _nullable(node["additionalProperties"])
                names = node.pop("propertyNames", None)
                if names is not None:
                    # A null removes what a parent set, and is never checked further: any key may be null.
                    node["patternProperties"] = {names["pattern"]: node["additionalProperties"]}
                    node["additionalProperties"] = {"type": "null"}
        if "properties" in node or isinstance(node.get("additionalProperties"), dict):
            node.setdefault("properties", {})["<<"] = _MERGE_KEY
            if "propertyNames" in node:
                node["propertyNames"] = {"anyOf": [{"const": "<<"}, node["propertyNames"]]}
    if layer:  # last: wrapping a property moves its schema into a new one
        for node in objects:
            for name, prop in list(node.get("properties", {}).items()):
                if name != "<<":
                    node["properties"][name] = _nullable(prop)
    _flatten(schema)
    return {"$schema": DRAFT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}


def _shapes(schema: dict[str, Any], root: str) -> None:
    defs = schema.get("$defs", {})
    for (model, name), shape in _SHAPES.items():
        node = schema if model == root else defs.get(model)
        if node is None:
            continue  # a model this schema does not use
        props = node["properties"]
        for field in props if name == "*" else [name]:
            if shape == "empty":
                props[field]["additionalProperties"] = _nullable(props[field]["additionalProperties"])
                continue
            options = props[field].setdefault("anyOf", [])
            if not options:  # a plain schema: make it the first option
                keep = ("description", "title", "default")
                inner = {k: props[field].pop(k) for k in list(props[field]) if k not in (*keep, "anyOf")}
                options.append(inner)
            if shape == "program":
                options.insert(0, dict(_PROGRAM))
            elif shape == "names":
                one = {"type": "string", "pattern": NAME_PATTERN}
                options[:] = [one, {"type": "array", "items": one}]
            else:
                array = next(o for o in options if o.get("type") == "array")
                options.insert(0, array["items"])


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema inside `schema` (models and mappings), $defs included."""
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object":
                found.append(node)
            stack.extend(v for k, v in node.items() if k != "<<")
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list):
        if not any(o == {"type": "null"} for o in options):
            options.append({"type": "null"})
        return schema
    kept = {k: v for k, v in schema.items() if k in ("description", "title", "default")}
    inner = {k: v for k, v in schema.items() if k not in kept}
    return {**kept, "anyOf": [inner, {"type": "null"}]}


def _flatten(schema: Any) -> None:
    """anyOf inside anyOf (a widened text field that may also be null) becomes one list."""
    if isinstance(schema, dict):
        for value in schema.values():
            _flatten(value)
        options = schema.get("anyOf")
        if isinstance(options, list):
            flat: list[Any] = []
            for option in options:
                if isinstance(option, dict) and set(option) == {"anyOf"}:
                    flat += option["anyOf"]
                else:
                    flat.append(option)
            schema["anyOf"] = flat
    elif isinstance(schema, list):
        for item in schema:
            _flatten(item)
