"""Shell completion of hosts, groups and --limit patterns reads Ansible inventories too, and never fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from provision.cli.main import cli

from conftest import write


def complete(words: str) -> list[str]:
    cword = str(len(words.split(" ")) - 1)  # a trailing space starts an empty word
    env = {"_PROVISION_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    result = CliRunner().invoke(cli, [], env=env, prog_name="provision")
    assert result.exit_code == 0, result.output
    return [line.partition(",")[2] for line in result.output.splitlines() if line]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_INVENTORY", raising=False)


def test_an_ansible_ini_inventory_completes_hosts_ranges_and_groups(tmp_path: Path) -> None:
    write(tmp_path / "hosts", "[win:children]\nsales\n[sales]\nws-[01:03]\n[support]\nws-support-1\n")
    assert complete("provision render -i hosts --host ws-0") == ["ws-01", "ws-02", "ws-03"]
    assert complete("provision render -i hosts --limit win:&s") == ["win:&sales", "win:&support"]
    assert complete("provision render -i hosts --limit !w") == ["!win", "!ws-01", "!ws-02", "!ws-03", "!ws-support-1"]


def test_an_ansible_yaml_inventory_completes(tmp_path: Path) -> None:
    write(tmp_path / "inv.yml", "all:\n  children:\n    lyon:\n      hosts:\n        ws-lyon-[a:b]:\n")
    assert complete("provision render -i inv.yml --limit ly") == ["lyon"]
    assert complete("provision render -i inv.yml --host ws-") == ["ws-lyon-a", "ws-lyon-b"]


def test_provision_inventories_complete_ranges_and_csv_hosts(tmp_path: Path) -> None:
    write(tmp_path / "hosts.csv", "host,groups\nws-csv-1,sales\n")
    write(tmp_path / "inv.yaml", "hosts_csv: [hosts.csv]\nhosts:\n  ws-[1:2]: {groups: [g]}\n")
    assert complete("provision render -i inv.yaml --host ws-") == ["ws-1", "ws-2", "ws-csv-1"]
    assert complete("provision render -i inv.yaml --limit ") == ["all", "g", "sales", "ws-1", "ws-2", "ws-csv-1"]


def test_at_completes_files(tmp_path: Path) -> None:
    write(tmp_path / "inv.yaml", "hosts: {}\n")
    write(tmp_path / "retry" / "site.retry", "ws-1\n")
    assert complete("provision render -i inv.yaml --limit sales:@re") == ["sales:@retry/"]
    assert complete("provision render -i inv.yaml --limit @retry/s") == ["@retry/site.retry"]


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\x00garbage", b"[sales\nws-1 a='", b"all: [1, 2", b"hosts:\n  ws-[9:1]: {}\n", b"- a\n- b\n"]
)
def test_an_unreadable_inventory_completes_nothing_and_does_not_fail(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "inv").write_bytes(content)
    assert complete("provision render -i inv --host ws") == []
