from __future__ import annotations

import pytest

from provision.errors import ConfigError
from provision.model.source import parse_yaml


def test_every_key_and_item_has_its_line() -> None:
    located = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert located.data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert str(located.origin(("a", "b"))) == "f.yaml:2"
    assert str(located.origin(("a", "c", 1))) == "f.yaml:5"


def test_origin_of_a_missing_path_is_its_closest_ancestor() -> None:
    located = parse_yaml("a:\n  b: 1\n", "f.yaml")
    assert str(located.origin(("a", "nope", "deeper"))) == "f.yaml:1"


def test_duplicate_keys_are_an_error_not_a_silent_overwrite() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert "f.yaml:3: a: duplicate key" in str(info.value)


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert info.value.problems[0].file == "f.yaml"
    assert info.value.problems[0].line == 2


@pytest.mark.parametrize("key", ["yes", "no", "on", "null", "~"])
def test_keys_that_yaml_turns_into_booleans_or_null_must_be_quoted(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(f"{key}: 1\n", "f.yaml")
    assert "quote it" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: !!int abc\n", 1),
        ("a: 1\nb: !!bool maybe\n", 2),
        ("a: !!timestamp x\n", 1),
        ("a: !foo x\n", 1),
        ("a: !!python/name:os.system\n", 1),
        ("a: !!python/object/apply:os.system [ls]\n", 1),
        ("a: !!binary aGVsbG8=\n", 1),
        ("a: !!set {x, y}\n", 1),
        ("a: !!omap [x: 1]\n", 1),
        ("a: !!float abc\n", 1),
        ("a: !!int '12'\n", 1),
        ("x: 1\n!foo a: 1\n", 2),
        ("!!int a: 1\n", 1),
        ("a: !foo {x: 1}\n", 1),
        ("a: !foo [x]\n", 1),
    ],
)
def test_tags_other_than_the_plain_core_ones_are_refused_with_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("f.yaml", line)
    assert "tag" in problem.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("a: !!int 12\n", 12), ("a: !!str 12\n", "12"), ("a: !!bool true\n", True), ("a: 2024-01-31\n", "2024-01-31")],
)
def test_core_tags_that_match_the_value_and_dates_as_text_are_fine(text: str, value: object) -> None:
    assert parse_yaml(text, "f.yaml").data == {"a": value}


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for index in range(1, levels):
        prev, name = chr(ord("a") + index - 1), chr(ord("a") + index)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_expansion_is_bounded_and_names_the_line() -> None:
    text = billion_laughs()
    assert len(text) < 400
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    (problem,) = info.value.problems
    assert problem.file == "f.yaml" and problem.line is not None and 2 <= problem.line <= 9
    assert "alias" in problem.message


@pytest.mark.parametrize("text", ["a: &r [x, *r]\n", "a: &r {x: 1, y: *r}\n", "a: &r {<<: *r}\n"])
def test_a_recursive_anchor_is_refused_with_its_line(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("f.yaml", 1)
    assert "contains itself" in problem.message


def test_nesting_deeper_than_any_profile_needs_is_refused() -> None:
    text = "a: " + "[" * 200 + "]" * 200 + "\n"
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    assert info.value.problems[0].line == 1
    assert "deep" in info.value.problems[0].message


def test_ordinary_anchors_and_aliases_keep_working() -> None:
    located = parse_yaml("base: &b {x: 1, y: [a, b]}\nother: *b\n", "f.yaml")
    assert located.data == {"base": {"x": 1, "y": ["a", "b"]}, "other": {"x": 1, "y": ["a", "b"]}}
    assert located.data["other"] is not located.data["base"]
    assert str(located.origin(("other",))) == "f.yaml:2"
    assert str(located.origin(("other", "x"))) == "f.yaml:1"


def test_merge_keys_work_with_their_own_values_winning_and_origins_kept() -> None:
    text = (
        "defaults: &d\n"
        "  server: pbx.example.com\n"
        "  domain: example.com\n"
        "site: &s {transport: tls}\n"
        "office:\n"
        "  label: Office\n"
        "  <<: [*d, *s]\n"
        "  domain: override.example.com\n"
    )
    located = parse_yaml(text, "f.yaml")
    assert located.data["office"] == {
        "server": "pbx.example.com",
        "domain": "override.example.com",
        "transport": "tls",
        "label": "Office",
    }
    assert str(located.origin(("office", "server"))) == "f.yaml:2"
    assert str(located.origin(("office", "transport"))) == "f.yaml:4"
    assert str(located.origin(("office", "domain"))) == "f.yaml:8"
    assert str(located.origin(("office", "label"))) == "f.yaml:6"


def test_the_first_merged_mapping_wins_over_later_ones() -> None:
    located = parse_yaml("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc: {<<: [*a, *b]}\n", "f.yaml")
    assert located.data["c"] == {"x": 1, "y": 2}
    assert str(located.origin(("c", "x"))) == "f.yaml:1"


@pytest.mark.parametrize("text", ["a: {<<: 1}\n", "a: {<<: [1]}\n", "b: &b [1]\na: {<<: *b}\n"])
def test_a_merge_key_must_merge_mappings(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    assert "<<" in str(info.value)


def test_a_huge_bad_value_is_quoted_short() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a: *" + "x" * 100_000 + "\n", "f.yaml")
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("text", ["0123", "1:30", "0x1F", "1_000", "0o17"])
def test_numbers_yaml_11_would_reinterpret_stay_as_written(text: str) -> None:
    assert parse_yaml(f"extension: {text}\n", "f.yaml").data == {"extension": text}


@pytest.mark.parametrize(("text", "value"), [("2101", 2101), ("0", 0), ("-5", -5), ("1.5", 1.5)])
def test_plain_numbers_are_numbers(text: str, value: float) -> None:
    assert parse_yaml(f"n: {text}\n", "f.yaml").data == {"n": value}
