"""Host ranges in names and hosts from CSV, in provision's own inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.model.hostrange import HostRangeError, expand_host_range
from provision.project import select_targets
from provision.targets import load_inventory

from conftest import MakeProject, write


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ws-[01:03]", ["ws-01", "ws-02", "ws-03"]),
        ("ws-[1:3]", ["ws-1", "ws-2", "ws-3"]),
        ("ws-[8:11]", ["ws-8", "ws-9", "ws-10", "ws-11"]),
        ("ws-[001:010:4]", ["ws-001", "ws-005", "ws-009"]),
        ("ws-[:2]", ["ws-0", "ws-1", "ws-2"]),
        ("ws-[a:c]", ["ws-a", "ws-b", "ws-c"]),
        ("ws-[y:B]", ["ws-y", "ws-z", "ws-A", "ws-B"]),
        ("r[1:2]-ws[a:b].corp", ["r1-wsa.corp", "r1-wsb.corp", "r2-wsa.corp", "r2-wsb.corp"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges_follow_ansible(name: str, expected: list[str]) -> None:
    assert expand_host_range(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ws-[3:1]", "the begin is greater than the end"),
        ("ws-[01:5]", "begin and end must have the same number of digits"),
        ("ws-[1]", "is not a range"),
        ("ws-[1:]", "needs an end"),
        ("ws-[1:5:0]", "the step must be a whole number of at least 1"),
        ("ws-[a:5]", "a range is of numbers"),
        ("ws-[1:5", "unmatched"),
        ("ws-1:5]", "unmatched"),
        ("ws-[0:9999999]", "at most 100,000"),
        ("w[0:999]-[0:999]", "gives 1,000,000 names"),
    ],
)
def test_bad_ranges_say_why(name: str, message: str) -> None:
    with pytest.raises(HostRangeError, match=message):
        expand_host_range(name)


def test_a_range_in_the_inventory_is_that_many_hosts(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        inventory="""
            defaults: {profiles: [base]}
            groups: {sales: {}}
            hosts:
              ws-[01:03]:
                groups: [sales]
                users: [{name: jdoe, extension: "2101", password: env:PW_JDOE}]
              ws-09: {}
        """
    )
    inventory = load_inventory(tmp_path / "inventory.yaml")
    assert list(inventory.model.hosts) == ["ws-01", "ws-02", "ws-03", "ws-09"]
    assert inventory.model.hosts["ws-02"].groups == ["sales"]
    assert str(inventory.located.origin(("hosts", "ws-03", "users", 0, "extension"))) == "inventory.yaml:6"
    targets = select_targets(project, tmp_path / "inventory.yaml", limit="sales")[1]
    assert [t.id for t in targets] == ["ws-01/jdoe", "ws-02/jdoe", "ws-03/jdoe"]


def test_range_errors_and_duplicates_are_located(tmp_path: Path) -> None:
    write(tmp_path / "inv.yaml", "hosts:\n  ws-02: {}\n  ws-[01:03]: {}\n  ws-[9:1]: {}\n  ws-[x:1]: {}\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(tmp_path / "inv.yaml")
    assert [str(p) for p in info.value.problems] == [
        "inv.yaml:3: hosts.ws-[01:03]: host 'ws-02' is listed twice (also at inv.yaml:2)",
        "inv.yaml:4: hosts.ws-[9:1]: host 'ws-[9:1]': [9:1]: the begin is greater than the end",
        "inv.yaml:5: hosts.ws-[x:1]: host 'ws-[x:1]': [x:1]: a range is of numbers ([01:50]) or of single letters "
        "([a:f])",
    ]


HOSTS_CSV = (
    "host,groups,profiles,address,port,scheme,auth\n"
    "ws-10,sales;lyon,,10.0.0.10,5986,https,kerberos\n"
    '"ws-[11:12]",sales lyon,extra,,,,\n'
    "\n"
    "ws-13,,,,5985,http,\n"
)


def test_hosts_csv_adds_hosts_with_groups_profiles_and_connection(tmp_path: Path) -> None:
    write(tmp_path / "hosts.csv", HOSTS_CSV)
    write(tmp_path / "users.csv", "host,user,extension\nws-11,ann,2111\n")
    write(
        tmp_path / "inv.yaml",
        "groups: {sales: {}, lyon: {}}\nhosts_csv: [hosts.csv]\nusers_csv: [users.csv]\nhosts:\n  ws-01: {}\n",
    )
    model = load_inventory(tmp_path / "inv.yaml").model
    assert list(model.hosts) == ["ws-01", "ws-10", "ws-11", "ws-12", "ws-13"]
    ws10 = model.hosts["ws-10"]
    assert ws10.groups == ["sales", "lyon"]
    assert ws10.connection.model_dump(exclude_none=True) == {
        "address": "10.0.0.10",
        "port": 5986,
        "scheme": "https",
        "auth": "kerberos",
    }
    assert model.hosts["ws-12"].groups == ["sales", "lyon"] and model.hosts["ws-12"].profiles == ["extra"]
    assert model.hosts["ws-13"].connection.port == 5985 and model.hosts["ws-13"].groups == []
    assert [u.name for u in model.hosts["ws-11"].users] == ["ann"]


def test_hosts_csv_errors_name_the_csv_line_and_column(tmp_path: Path) -> None:
    write(tmp_path / "inv.yaml", "hosts_csv: [hosts.csv, missing.csv]\nhosts:\n  ws-01: {}\n")
    write(
        tmp_path / "hosts.csv",
        "host,groups,port,auth\nws-01,,,\nws-02,nope,99999,\n,,,\nws-03,,,credssp\nws-[2:1],,,\nbad host,,,\n",
    )
    with pytest.raises(ConfigError) as info:
        load_inventory(tmp_path / "inv.yaml")
    assert [str(p) for p in info.value.problems] == [
        "hosts.csv:2: host: 'ws-01' is already in the inventory (inv.yaml:3)",
        "hosts.csv:3: port: must be less than or equal to 65535 (got 99999)",
        "hosts.csv:5: auth: must be 'ntlm', 'kerberos' or 'basic' (got 'credssp')",
        "hosts.csv:6: host: 'ws-[2:1]': [2:1]: the begin is greater than the end",
        "hosts.csv:7: bad host: is not a valid host name (letters, digits, '.', '-', '_') (got 'bad host')",
        "inv.yaml:1: hosts_csv[1]: missing.csv: file not found",
    ]
    write(tmp_path / "hosts.csv", "host,group\nws-01,a\n")
    with pytest.raises(ConfigError, match=r"hosts\.csv:1: group: unknown column; columns are host, groups"):
        load_inventory(tmp_path / "inv.yaml")


def test_a_csv_cell_spanning_lines_keeps_the_line_numbers_right(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", 'host,user,display_name\nws-01,ann,"Ann\nLee"\nws-01,bob,Bob\nws-01,"a/b",x\n')
    write(tmp_path / "inv.yaml", "users_csv: [users.csv]\nhosts:\n  ws-01: {}\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(tmp_path / "inv.yaml")
    assert [(p.file, p.line, p.field) for p in info.value.problems] == [
        ("users.csv", 2, "display_name"),  # a line break in a cell: it would break the ini
        ("users.csv", 5, "name"),  # the row after the two-line cell and the next one
    ]
