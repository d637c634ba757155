"""--limit with Ansible's patterns, on the shipped example inventory (10 hosts, groups sales, support, lyon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.model.inventory import Inventory
from provision.model.patterns import split_pattern
from provision.targets import load_inventory, select_hosts

from conftest import EXAMPLE_INVENTORY, write

SALES = ["ws-sales-01", "ws-sales-02", "ws-sales-03", "ws-sales-04"]
SUPPORT = ["ws-support-01", "ws-support-02", "ws-support-03"]
LYON = ["ws-lyon-01", "ws-lyon-02", "ws-lyon-03"]
ALL = [*SALES, *SUPPORT, *LYON]


@pytest.fixture(scope="module")
def example() -> Inventory:
    return load_inventory(EXAMPLE_INVENTORY).model


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("all", ALL),
        ("*", ALL),
        ("sales", [*SALES, "ws-lyon-01", "ws-lyon-02"]),
        ("sales:support", [*SALES, *SUPPORT, *LYON]),
        ("sales,support", [*SALES, *SUPPORT, *LYON]),
        ("support:ws-sales-01", ["ws-sales-01", *SUPPORT, "ws-lyon-03"]),
        ("sales:&lyon", ["ws-lyon-01", "ws-lyon-02"]),
        ("&lyon:sales", ["ws-lyon-01", "ws-lyon-02"]),  # '&' applies after the plain terms, wherever written
        ("sales:!lyon", SALES),
        ("!lyon:sales", SALES),
        ("!sales", [*SUPPORT, "ws-lyon-03"]),  # no plain term: start from every host
        ("&lyon", LYON),
        ("all:!support:!ws-sales-0[34]", ["ws-sales-01", "ws-sales-02", "ws-lyon-01", "ws-lyon-02"]),
        ("ws-support-*", SUPPORT),
        ("WS-LYON-0[12]", ["ws-lyon-01", "ws-lyon-02"]),  # a glob, not a subscript: nothing is named WS-LYON-0
        ("su*", [*SUPPORT, "ws-lyon-03"]),  # a glob matches group names too
        ("~ws-(sales|lyon)-0[13]", ["ws-sales-01", "ws-sales-03", "ws-lyon-01", "ws-lyon-03"]),
        ("~WS-SUP", SUPPORT),  # from the start of the name, ignoring case
        ("~lyo", LYON),  # a regular expression matches group names too
        ("sales[0]", ["ws-sales-01"]),
        ("sales[-1]", ["ws-lyon-02"]),
        ("sales[1:2]", ["ws-sales-02", "ws-sales-03"]),
        ("sales[4:]", ["ws-lyon-01", "ws-lyon-02"]),
        ("sales[:1]", ["ws-sales-01", "ws-sales-02"]),
        ("ws-sales-*[1]", ["ws-sales-02"]),
        ("ws-sales-[02:03]", ["ws-sales-02", "ws-sales-03"]),  # a host range
        ("ws-sales-[02:03]:lyon[0]", ["ws-sales-02", "ws-sales-03", "ws-lyon-01"]),
        ("Ws-Sales-01", ["ws-sales-01"]),
        (" sales , !lyon ", SALES),
    ],
)
def test_patterns(example: Inventory, limit: str, expected: list[str]) -> None:
    assert select_hosts(example, limit) == expected


def test_results_keep_inventory_order(example: Inventory) -> None:
    assert select_hosts(example, "ws-lyon-01:ws-sales-01") == ["ws-sales-01", "ws-lyon-01"]


def test_host_option_and_limit_intersect(example: Inventory) -> None:
    assert select_hosts(example, "lyon", ["ws-sales-01", "ws-lyon-02"]) == ["ws-lyon-02"]
    assert select_hosts(example, None, ["ws-lyon-03"]) == ["ws-lyon-03"]
    with pytest.raises(ConfigError, match="'lyon' selects no host among the --host names"):
        select_hosts(example, "lyon", ["ws-sales-01"])


@pytest.mark.parametrize(
    ("limit", "messages"),
    [
        ("salse", ["--limit: 'salse' matches no host or group"]),
        ("sales:!nope:&nix", ["--limit: '!nope' matches no host or group", "--limit: '&nix' matches no host or group"]),
        ("~ws-[", ["--limit: '~ws-[': not a regular expression: unterminated character set at position 3"]),
        ("sales[9]", ["--limit: 'sales[9]': 'sales' matches 6 host(s); no index 9"]),
        ("sales[7:9]", ["--limit: 'sales[7:9]': 'sales' matches 6 host(s); none from 7"]),
        ("sales:&support", ["--limit: 'sales:&support' selects no host"]),
        ("!", ["--limit: '!': '!' must be followed by a host or group"]),
        ("!@f.txt", ["--limit: '!@f.txt': '@FILE' cannot be negated or nested"]),
    ],
)
def test_bad_patterns_are_errors_naming_the_term(example: Inventory, limit: str, messages: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        select_hosts(example, limit)
    assert [str(p) for p in info.value.problems] == messages


def test_at_file_reads_one_pattern_per_line_and_names_its_lines(
    example: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "site.retry", "ws-sales-02\n\n# failed last time\nws-lyon-01\n!ws-lyon-01\n")
    assert select_hosts(example, "@site.retry") == ["ws-sales-02"]
    assert select_hosts(example, "@site.retry:support[0]") == ["ws-sales-02", "ws-support-01"]
    write(tmp_path / "old.retry", "ws-sales-02\nws-gone-07\nsales,@other\n")
    with pytest.raises(ConfigError) as info:
        select_hosts(example, "@old.retry:@missing.retry")
    assert [str(p) for p in info.value.problems] == [
        "missing.retry: --limit @FILE: file not found",
        "old.retry:2: 'ws-gone-07' matches no host or group",
        "old.retry:3: '@other' is not a host or group pattern",
    ]
    with pytest.raises(ConfigError) as info:
        select_hosts(example, "@old.retry")
    assert [str(p) for p in info.value.problems] == [
        "old.retry:2: 'ws-gone-07' matches no host or group",
        "old.retry:3: '@other' is not a host or group pattern",
    ]


def test_ungrouped_names_the_hosts_of_no_group(tmp_path: Path) -> None:
    path = write(tmp_path / "inv.yaml", "groups: {g: {}}\nhosts:\n  a: {groups: [g]}\n  b: {}\n  c: {}\n")
    assert select_hosts(load_inventory(path).model, "ungrouped") == ["b", "c"]


def test_ansible_groups_include_their_children(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts", "[win:children]\nsales\n[sales]\nws-[1:3]\n[other]\nws-9\n")
    model = load_inventory(path).model
    assert select_hosts(model, "win") == ["ws-1", "ws-2", "ws-3"]
    assert select_hosts(model, "win[-1]:other") == ["ws-3", "ws-9"]


def test_splitting_keeps_brackets_together() -> None:
    assert split_pattern("a:b[0:2],c[1:],ws-[01:09]:!d") == ["a", "b[0:2]", "c[1:]", "ws-[01:09]", "!d"]


def test_large_inventories_select_quickly_enough_to_be_usable(tmp_path: Path) -> None:
    # Not a timing test: a retry file of 5,000 hosts on a 20,000-host inventory must simply work.
    lines = ["[sales]", "ws-[00000:19999]"]
    path = write(tmp_path / "hosts", "\n".join(lines) + "\n")
    model = load_inventory(path).model
    write(tmp_path / "big.retry", "\n".join(f"ws-{n:05d}" for n in range(0, 20000, 4)) + "\n")
    chosen = select_hosts(model, f"@{tmp_path / 'big.retry'}:!ws-00000")
    assert len(chosen) == 4999 and chosen[0] == "ws-00004"
