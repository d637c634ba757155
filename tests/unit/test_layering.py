"""Layers merge key by key, later wins, null removes, and every value remembers its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.model.layering import Layer, merge_layers
from provision.model.source import parse_yaml
from provision.model.store import ProfileStore

from conftest import write


def layer(text: str, name: str) -> Layer:
    return Layer(parse_yaml(text, name))


def test_later_layers_win_key_by_key_and_lists_are_replaced_whole() -> None:
    merged = merge_layers(
        [
            layer("settings: {autoAnswer: button, enableLog: true}\ncodecs: [a, b]\n", "base.yaml"),
            layer("settings: {autoAnswer: ''}\ncodecs: [c]\n", "sales.yaml"),
        ]
    )
    assert merged.data == {"settings": {"autoAnswer": "", "enableLog": True}, "codecs": ["c"]}
    assert str(merged.origin(("settings", "autoAnswer"))) == "sales.yaml:1"
    assert str(merged.origin(("settings", "enableLog"))) == "base.yaml:1"
    assert str(merged.origin(("codecs", 0))) == "sales.yaml:2"


def test_null_removes_a_key_set_by_an_earlier_layer() -> None:
    merged = merge_layers(
        [
            layer("audio: {ring: Speakers, input: Mic}\n", "base.yaml"),
            layer("audio: {ring: null}\n", "site.yaml"),
        ]
    )
    assert merged.data == {"audio": {"input": "Mic"}}
    assert merged.origins.get(("audio", "ring")) is None


def test_merging_does_not_change_the_layers() -> None:
    base = layer("a: {b: 1}\n", "base.yaml")
    merge_layers([base, layer("a: {b: 2}\n", "x.yaml")])
    assert base.data == {"a": {"b": 1}}


def test_a_fragment_inside_a_bigger_file_keeps_its_own_lines() -> None:
    inventory = parse_yaml("hosts:\n  ws1:\n    overrides:\n      settings:\n        enableLog: true\n", "inv.yaml")
    merged = merge_layers(
        [layer("settings: {enableLog: false}\n", "base.yaml"), Layer(inventory, ("hosts", "ws1", "overrides"))]
    )
    assert merged.data == {"settings": {"enableLog": True}}
    assert str(merged.origin(("settings", "enableLog"))) == "inv.yaml:5"


def make_store(tmp_path: Path, **profiles: str) -> ProfileStore:
    for name, text in profiles.items():
        write(tmp_path / f"{name}.yaml", text)
    return ProfileStore(tmp_path)


def test_extends_applies_parents_first_each_once(tmp_path: Path) -> None:
    store = make_store(
        tmp_path,
        base="settings: {enableLog: false}\n",
        sales="extends: base\nsettings: {enableLog: true}\n",
        site="extends: [base]\nsettings: {sourcePort: 5070}\n",
    )
    chain = store.chain([("sales", None), ("site", None)])
    assert chain == ["base", "sales", "site"]
    resolved = store.resolve(chain)
    assert resolved.profile.settings.enableLog is True
    assert resolved.profile.settings.sourcePort == 5070


def test_an_extends_cycle_is_a_clear_error(tmp_path: Path) -> None:
    store = make_store(tmp_path, a="extends: b\n", b="extends: c\n", c="extends: a\n")
    with pytest.raises(ConfigError) as info:
        store.chain([("a", None)])
    assert "profiles extend each other in a cycle: a -> b -> c -> a" in str(info.value)
    assert info.value.problems[0].line == 1


def test_a_missing_parent_names_the_file_and_line_that_asked_for_it(tmp_path: Path) -> None:
    store = make_store(tmp_path, sales="description: x\nextends: [base, missing]\n", base="{}\n")
    with pytest.raises(ConfigError) as info:
        store.chain([("sales", None)])
    problem = info.value.problems[0]
    assert (problem.file.endswith("sales.yaml"), problem.line, problem.field) == (True, 2, "extends[1]")
    assert "no profile 'missing'" in problem.message and "(profiles: base, sales)" in problem.message


def test_a_validation_error_points_at_the_layer_that_wrote_the_bad_value(tmp_path: Path) -> None:
    store = make_store(
        tmp_path, base="settings:\n  autoAnswer: button\n", bad="extends: base\nsettings:\n  autoAnswer: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        store.resolve(store.chain([("bad", None)]))
    problem = info.value.problems[0]
    assert problem.file.endswith("bad.yaml") and problem.line == 3 and problem.field == "settings.autoAnswer"


@pytest.mark.parametrize("parent", ["../../evil", "/etc/evil", "sub/dir", "..", "base\n", "with space", ""])
def test_extends_takes_profile_names_not_paths(tmp_path: Path, parent: str) -> None:
    write(tmp_path / "evil.yaml", "settings: {enableLog: true}\n")
    write(tmp_path / "profiles" / "sub" / "dir.yaml", "settings: {enableLog: true}\n")
    store = make_store(tmp_path / "profiles", base="{}\n", sales=f"description: x\nextends: [base, {parent!r}]\n")
    with pytest.raises(ConfigError) as info:
        store.chain([("sales", None)])
    (problem,) = info.value.problems
    assert (problem.file.endswith("sales.yaml"), problem.line, problem.field) == (True, 2, "extends[1]")
    assert "not a profile name" in problem.message


def test_a_profile_asked_for_by_a_path_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "evil.yaml", "settings: {enableLog: true}\n")
    store = make_store(tmp_path / "profiles", base="{}\n")
    with pytest.raises(ConfigError, match="not a profile name"):
        store.load("../evil")


def test_a_profile_file_whose_name_is_not_a_name_is_reported(tmp_path: Path) -> None:
    store = make_store(tmp_path, **{"base": "{}\n", "two words": "{}\n"})
    with pytest.raises(ConfigError, match="not a profile name"):
        store.chain([("two words", None)])
