"""Every conversation first checks what the agent needs: an elevated administrator, PowerShell
in FullLanguage mode, PowerShell 5.1 or later, Task Scheduler. Each failure is its own kind
with a one-line fix, never a wrong answer. Through real pywinrm, against the lab."""

from __future__ import annotations

import pytest

from labkit import Lab

CASES = {
    "ConstrainedLanguage": ("language_mode", "ConstrainedLanguage", "language-mode", "FullLanguage"),
    "non-admin": ("account", "non-admin", "not-admin", "Administrators"),
    "uac-filtered": ("account", "uac-filtered", "uac-filtered", "LocalAccountTokenFilterPolicy"),
    "PowerShell 4.0": ("powershell_version", "4.0", "powershell-version", "5.1"),
    "Task Scheduler stopped": ("task_scheduler", "Stopped", "task-scheduler", "Schedule"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_host_the_agent_cannot_work_on_fails_with_its_own_kind_and_fix(lab: Lab, case: str) -> None:
    fault, value, kind, fix = CASES[case]
    host = lab.host("lab-001")
    setattr(host.faults, fault, value)
    before = {p: p.read_bytes() for p in host.root.rglob("*") if p.is_file()}
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    (entry,) = report["hosts"]
    assert entry["kind"] == kind, entry
    assert fix in entry["reason"] and "\n" not in entry["reason"]
    assert {p: p.read_bytes() for p in host.root.rglob("*") if p.is_file()} == before  # nothing touched
    assert entry["attempts"] == 1  # not retried: it will not go away by itself
