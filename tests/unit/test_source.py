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


def test_merge_keys_are_refused_in_favour_of_extends() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n", "f.yaml")
    assert "use extends" in str(info.value)


@pytest.mark.parametrize("text", ["0123", "1:30", "0x1F", "1_000", "0o17"])
def test_numbers_yaml_11_would_reinterpret_stay_as_written(text: str) -> None:
    assert parse_yaml(f"extension: {text}\n", "f.yaml").data == {"extension": text}


@pytest.mark.parametrize(("text", "value"), [("2101", 2101), ("0", 0), ("-5", -5), ("1.5", 1.5)])
def test_plain_numbers_are_numbers(text: str, value: float) -> None:
    assert parse_yaml(f"n: {text}\n", "f.yaml").data == {"n": value}
