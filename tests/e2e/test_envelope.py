"""Requests within the host's MaxEnvelopeSizekb, however many users and however long their call
history; inis too large to handle are reported, never read. Through real pywinrm, against the lab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.ini import encode_ini

from conftest import EXAMPLES
from labkit import Lab, running_lab

CALLS = 1000  # a real call history: MicroSIP keeps it in the ini


def history_ini(entries: int = CALLS) -> bytes:
    calls = "".join(f"{n}=2{n:04d};Caller Number {n:04d};1;17324{n:05d};42;\n" for n in range(entries))
    return encode_ini("[Settings]\nmainX=412\nupdatesInterval=\n[Calls]\n" + calls)


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[Lab]:
    """One host, nine users, each with a 1000-call history (about 90 KB of ini)."""
    with running_lab(tmp_path, EXAMPLES, hosts=1, users=9) as lab:
        host = lab.host("lab-001")
        for name in host.users:
            host.write_ini(name, history_ini())
        yield lab


def test_nine_users_with_long_call_histories_are_pushed_within_the_envelope_limit(crowded: Lab) -> None:
    host = crowded.host("lab-001")
    assert len(history_ini()) > 85_000
    crowded.reset_counts()
    report = crowded.report()
    assert report["exit_code"] == 0, report["output"]
    assert {u["status"] for u in report["hosts"][0]["users"]} == {"changed"}
    assert host.stats["too_large"] == 0
    for name in host.users:
        assert "999=20999;" in (host.read_ini(name) or b"").decode("utf-16")  # the history kept
    assert crowded.ops()["lab-001"] <= 60


def test_a_host_with_a_smaller_limit_gets_smaller_sends(crowded: Lab) -> None:
    host = crowded.host("lab-001")
    host.faults.winrm_config = {"MaxEnvelopeSizekb": 150}  # older Windows
    inventory = crowded.fleet.inventory
    text = inventory.read_text("utf-8").replace("auth: ntlm", "auth: ntlm\n    max_envelope_kb: 150")
    inventory.write_text(text, "utf-8")
    report = crowded.report()
    assert report["exit_code"] == 0, report["output"]
    assert host.stats["too_large"] == 0


def test_an_inventory_that_claims_a_larger_limit_than_the_host_has_is_told_so(crowded: Lab) -> None:
    inventory = crowded.fleet.inventory
    text = inventory.read_text("utf-8").replace("auth: ntlm", "auth: ntlm\n    max_envelope_kb: 4000")
    inventory.write_text(text, "utf-8")
    report = crowded.report()
    assert report["exit_code"] == 1
    reason = report["hosts"][0]["reason"]
    assert "413" in reason and "max_envelope_kb" in reason


def test_an_ini_over_the_cap_is_reported_and_never_read(lab: Lab) -> None:
    host = lab.host("lab-002")
    user = lab.user("lab-002", 1)
    host.write_ini(user, history_ini(100_000))  # about 9 MB
    before = host.read_ini(user)
    lab.reset_counts()
    report = lab.report("--limit", "lab-002")
    assert report["exit_code"] == 1
    (entry,) = report["hosts"]
    users = {u["user"]: u for u in entry["users"]}
    assert users[user]["status"] == "failed" and "ini too large" in users[user]["reason"]
    assert users[lab.user("lab-002")]["status"] == "changed"
    assert host.read_ini(user) == before
    assert lab.ops()["lab-002"] <= 9  # its content never crossed the wire
    assert json.dumps(report).count("Caller Number") == 0
