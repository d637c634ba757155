"""The lab's faults: a faults file is checked, and every fault is documented."""

from __future__ import annotations

from dataclasses import fields

from provision.lab.faults import USER_SETTINGS, Faults, problems

from conftest import ROOT


def test_every_fault_and_user_setting_is_documented() -> None:
    text = (ROOT / "docs" / "commands" / "lab.md").read_text("utf-8")
    missing = [f.name for f in fields(Faults) if f"`{f.name}`" not in text]
    missing += [name for name in USER_SETTINGS if f"`{name}`" not in text]
    assert missing == []


def test_a_faults_spec_is_checked_name_by_name_and_value_by_value() -> None:
    spec = {
        "lab-00[12]": {"account": "uac-filtered", "latency_ms": 30, "winrm_config": {"MaxEnvelopeSizekb": 150}},
        "lab-003": {"users": {"*b": {"hive_loaded": False, "appdata": "\\\\fs01\\x"}}, "task_fails": "/minimized"},
    }
    assert list(problems(spec)) == []
    wrong = {
        "a": {"acount": "admin", "account": "root", "refuse": "yes", "winrm_config": {"MaxEnvelope": 1}},
        "b": {"users": {"*": {"hive": False, "logged_on": "no"}}, "soap_fault": {"Send": "late"}},
        "c": "refuse",
    }
    found = {".".join(path): message for path, message in problems(wrong)}
    assert set(found) == {
        "a.acount", "a.account", "a.refuse", "a.winrm_config", "b.users.*.hive", "b.users.*.logged_on",
        "b.soap_fault", "c",
    }  # fmt: skip
    assert "unknown fault 'acount'" in found["a.acount"] and "uac-filtered" in found["a.account"]
