"""The JSON Schemas agree with the tool: a profile or inventory the tool accepts never fails them.

Documents are generated from the models themselves, with the values people write and the
ones pydantic's lax mode also takes (numbers as text, "yes" for true, "5070" for 5070,
one name where a list is expected, null to remove a parent's key, empty hosts), some of
them wrong. Each is written as YAML and read back by provision's loader; when the tool
accepts it (a profile resolves with its parent; an inventory loads), jsonschema must too,
also with some of its keys moved under a YAML merge key (`<<`), as an editor may show them.
"""

from __future__ import annotations

import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from provision.errors import ConfigError
from provision.model.inventory import Inventory
from provision.model.profile import Profile
from provision.model.schema import inventory_schema, profile_schema
from provision.model.source import Located, load_yaml
from provision.model.store import ProfileStore
from provision.targets import load_inventory

PROFILE = jsonschema.Draft202012Validator(profile_schema())
INVENTORY = jsonschema.Draft202012Validator(inventory_schema())

BASE = "accounts:\n  office: {server: pbx.example.com, domain: example.com}\nsettings: {enableLog: false}\n"

NAMES = ["base", "office", "queue", "sales", "ws-01", "a_b", "2024", "../x", "bad name", ""]
TEXTS = ["", "x", "Zoë Müller", "C:\\x.exe", "0123", "a\nb", " pad", '"q"', "env:PW", "file:pw.txt", "T" * 300]
GOOD_TEXTS = ["x", "Zoë Müller", "office", "2024", "C:\\x.exe", "0123", "pbx.example.com", "env:PW", "3.21.6"]
BOOL_WORDS = ["yes", "No", "ON", "off", "t", "F", "y", "n", "1", "0", "true", "FALSE", "maybe", " true", "2"]


def _constraints(items: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        if isinstance(item, FieldInfo):
            found.update(_constraints(list(item.metadata)))
        for name in ("ge", "le", "max_length"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found


def _ints(low: int, high: int) -> st.SearchStrategy[Any]:
    near = st.integers(low - 2, high + 2) if high - low < 10_000 else st.integers(low - 2, low + 100) | st.just(high)
    as_text = near.flatmap(lambda n: st.sampled_from([str(n), f" {n} ", f"{n}.0", f"+{n}", f"{n}_0", f"{n}x"]))
    return st.one_of(near, near.map(float), as_text, st.booleans(), st.just(0.5))


def strategy(annotation: Any, extra: list[Any] | None = None, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a field of this type: mostly valid, some in pydantic's lax forms, some wrong."""
    metadata = list(extra or [])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return strategy(args[0], [*metadata, *annotation.__metadata__], depth)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy(a, metadata, depth) for a in args))
    if annotation is type(None):
        return st.none()
    if origin is typing.Literal:
        values = list(args)
        lax = [int(v) for v in values if isinstance(v, bool)] + [float(v) for v in values if type(v) is int]
        lax += [bool(v) for v in values if type(v) is int and v in (0, 1)]
        return st.sampled_from([*values, *lax, "nope", 7])
    if origin is list:
        item = strategy(args[0], None, depth + 1)
        return st.lists(item, max_size=3) | item
    if origin is dict:
        keys = st.sampled_from(NAMES) if args[0] is not str else st.sampled_from(["someKey", "x", "a b", ""])
        return st.dictionaries(keys, strategy(args[1], None, depth + 1), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if depth > 4:
            return st.just({})
        fields = {
            name: strategy(info.annotation, list(info.metadata), depth + 1)
            for name, info in annotation.model_fields.items()
        }
        required = [n for n, i in annotation.model_fields.items() if i.is_required()]
        # A few keys each time (a model of 70 keys all set at once would nearly always hold a bad one).
        chosen = st.lists(st.sampled_from(sorted(fields)), max_size=5, unique=True)
        return chosen.flatmap(lambda names: st.fixed_dictionaries({n: fields[n] for n in [*required, *names]}))
    limits = _constraints(metadata)
    if annotation is bool:
        return st.one_of(st.booleans(), st.sampled_from([0, 1, 0.0, 1.0, 2, *BOOL_WORDS]))
    if annotation is int:
        return _ints(int(limits.get("ge", 0)), int(limits.get("le", 100_000)))
    if annotation is str:
        return st.one_of(
            st.sampled_from(GOOD_TEXTS),
            st.integers(-5, 10**6),
            st.sampled_from(NAMES + TEXTS + [1.5, 3.22, 2.0, True]),
            st.text(max_size=8),
        )
    return st.recursive(
        st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(NAMES),
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=2),
        max_leaves=6,
    )


def nulls(value: Any) -> st.SearchStrategy[Any]:
    """A layer may write null to take a parent's key away: some keys become null."""
    if not isinstance(value, dict):
        return st.just(value)
    items = [st.tuples(st.just(k), st.just(None) | nulls(v)) for k, v in value.items()]
    return st.tuples(*items).map(dict) if items else st.just(value)


def with_merge_keys(value: Any, moved: list[bool]) -> Any:
    """The same document as an editor may show it: some keys of each mapping under `<<`."""
    if isinstance(value, list):
        return [with_merge_keys(v, moved) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: with_merge_keys(v, moved) for k, v in value.items()}
    if out and moved and moved.pop():
        first = next(iter(out))
        out = {"<<": {first: out.pop(first)}, **out}
    return out


def read_back(path: Path, data: Any) -> Any:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_yaml(path).data


def accepted_profile(folder: Path, data: Any) -> Located | None:
    (folder / "base.yaml").write_text(BASE, encoding="utf-8")
    read_back(folder / "p.yaml", data)
    store = ProfileStore(folder)
    try:
        store.resolve(store.chain([("p", None)]))
    except ConfigError:
        return None
    return store.load("p")


profiles = strategy(Profile).map(lambda d: d if "extends" in d or not d else {"extends": "base", **d}).flatmap(nulls)


@given(profiles, st.lists(st.booleans(), max_size=12))
def test_every_profile_the_tool_accepts_passes_the_profile_schema(data: Any, moved: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as name:
        located = accepted_profile(Path(name), data)
    event("accepted" if located is not None else "refused")
    if located is None:
        return
    errors = [e.message for e in PROFILE.iter_errors(located.data)]
    assert not errors, (located.data, errors)
    raw = with_merge_keys(located.data, moved)
    assert not [e.message for e in PROFILE.iter_errors(raw)], raw


def inventory_strategy() -> st.SearchStrategy[Any]:
    hosts = st.dictionaries(
        st.sampled_from(["ws-01", "ws-02", "ws-[03:04]", "10.0.0.5", "bad host"]),
        st.none() | strategy(Inventory.model_fields["hosts"].annotation.__args__[1]),
        max_size=3,
    )
    base = strategy(Inventory)
    return st.tuples(base, hosts).map(lambda pair: {**pair[0], "hosts": pair[1]} if pair[1] else pair[0])


@given(inventory_strategy(), st.lists(st.booleans(), max_size=12))
def test_every_inventory_the_tool_accepts_passes_the_inventory_schema(data: Any, moved: list[bool]) -> None:
    data = {k: v for k, v in data.items() if k not in ("users_csv", "hosts_csv")}  # no files to read here
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "inventory.yaml"
        document = read_back(path, data)
        try:
            load_inventory(path)
        except ConfigError:
            event("refused")
            return
    event("accepted")
    errors = [e.message for e in INVENTORY.iter_errors(document)]
    assert not errors, (document, errors)
    raw = with_merge_keys(document, moved)
    assert not [e.message for e in INVENTORY.iter_errors(raw)], raw


# The shipped files and the schemas' own promises --------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_profiles_and_inventories_pass_their_schemas() -> None:
    profiles = sorted((ROOT / "profiles").glob("*.yaml"))
    assert len(profiles) >= 5
    for path in profiles:
        assert not list(PROFILE.iter_errors(load_yaml(path).data)), path
    for path in (ROOT / "profiles" / "inventory" / "example.yaml", ROOT / "provision" / "skeleton" / "inventory.yaml"):
        assert not list(INVENTORY.iter_errors(load_yaml(path).data)), path


def test_the_schemas_are_valid_json_schemas_and_catch_what_the_tool_refuses() -> None:
    jsonschema.Draft202012Validator.check_schema(PROFILE.schema)
    jsonschema.Draft202012Validator.check_schema(INVENTORY.schema)
    # Not an anything-goes schema: the mistakes an editor should underline are underlined.
    assert list(PROFILE.iter_errors({"settings": {"autoAnswr": "all"}}))
    assert list(PROFILE.iter_errors({"settings": {"autoAnswer": "always"}}))
    assert list(PROFILE.iter_errors({"settings": {"sourcePort": 70000}}))
    assert list(PROFILE.iter_errors({"settings": {"enableLog": "maybe"}}))
    assert list(PROFILE.iter_errors({"extends": "../shared"}))
    assert list(INVENTORY.iter_errors({"hosts": {"ws-01": {"users": [{"name": "a", "password": "hunter2"}]}}}))
    assert list(INVENTORY.iter_errors({"hosts": {"ws-01": {"users": [{"extension": "2101"}]}}}))  # no name
    assert list(INVENTORY.iter_errors({"groups": {"bad name": {}}}))


def test_merge_keys_in_a_file_pass_as_an_editor_shows_them() -> None:
    text = """
        accounts:
          office: &office {server: pbx.example.com, domain: example.com, transport: tls}
          queue:
            <<: *office
            label: Queue
        settings:
          <<: [{autoAnswer: button}, {enableLog: true}]
    """
    node = yaml.compose(text.replace("\n        ", "\n"))
    raw = _as_written(node)
    assert raw["accounts"]["queue"]["<<"] == {"server": "pbx.example.com", "domain": "example.com", "transport": "tls"}
    assert not list(PROFILE.iter_errors(raw))


def _as_written(node: yaml.Node) -> Any:
    """A YAML node as data with merge keys kept as `<<` keys (aliases followed)."""
    if isinstance(node, yaml.MappingNode):
        return {key.value: _as_written(value) for key, value in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_as_written(item) for item in node.value]
    return yaml.safe_load(yaml.serialize(node))


def test_every_model_coerces_numbers_to_text_as_the_schema_says() -> None:
    seen: set[type[BaseModel]] = set()
    stack: list[type[BaseModel]] = [Profile, Inventory]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        assert model.model_config.get("coerce_numbers_to_str") is True, model
        for info in model.model_fields.values():
            stack += [t for t in _types(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    assert len(seen) > 10


def _types(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation, *(t for a in args for t in _types(a))]
