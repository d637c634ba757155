"""The rules that turn what a workstation reports into pass, warn and fail."""

from __future__ import annotations

import time

import pytest
import xmlschema

from provision.checks import DAY, FAIL, PASS, WARN, CheckResult, _judge_exe, smoke_commands
from provision.inspection import CheckRun
from provision.report.data import summary_text
from provision.report.junit import junit_xml
from provision.secrets import Redactor, Secret

from conftest import FIXTURES


def test_smoke_sends_one_known_switch_per_launch_and_never_reset() -> None:
    arguments = [c["argument"] for c in smoke_commands("*43")]
    assert arguments == ["*43", "/answer", "/hangupall", "/exit"]
    assert [c["argument"] for c in smoke_commands(None)] == ["/answer", "/hangupall", "/exit"]
    for command in smoke_commands("*43"):
        assert " " not in command["argument"]
        assert command["argument"] not in ("/reset", "/resetnoask")


@pytest.mark.parametrize(
    ("days", "status"),
    [(30, PASS), (int(1.5 * 365) - 1, PASS), (int(1.5 * 365) + 1, WARN), (int(2.5 * 365) + 1, FAIL)],
)
def test_build_age_thresholds(days: int, status: str) -> None:
    now = time.time()
    result = CheckResult("h")
    _judge_exe(result, {"exists": True, "version": "3.22.3", "build_time": int(now - days * DAY)}, now)
    assert [(c.name, c.status) for c in result.checks] == [("microsip", PASS), ("build age", status)]


def test_a_missing_exe_fails_and_skips_the_age() -> None:
    result = CheckResult("h")
    _judge_exe(result, {"exists": False, "path": "C:\\MicroSIP\\microsip.exe"}, time.time())
    assert [(c.name, c.status) for c in result.checks] == [("microsip", FAIL)]


def test_host_status_and_summary() -> None:
    ok, warned, drifted, failed = (CheckResult(n) for n in "abcd")
    ok.add("winrm", PASS)
    warned.add("u: running", WARN)
    drifted.add("u: drift", FAIL, "1 key")
    failed.add("u: drift", FAIL)
    failed.add("winrm", FAIL, "refused: connection refused")
    assert [r.status for r in (ok, warned, drifted, failed)] == ["ok", "warning", "drifted", "failed"]
    run = CheckRun("health", [ok, warned, drifted, failed], "2026-11-24T10:00:00+00:00", 1.0)
    assert summary_text(run) == "1 ok, 1 with warnings, 1 drifted, 1 failed (1 warning)"
    assert not run.ok


def test_junit_is_valid_escaped_and_redacted() -> None:
    bad = CheckResult('ws-<1>&"x"')
    bad.add("hook C:\\a&b.exe", FAIL, "program not found; token s3cr3t <here>")
    down = CheckResult("ws-2", kind="refused")
    down.add("winrm", FAIL, "refused: connection refused")
    run = CheckRun("health", [bad, down], "2026-11-24T10:00:00+00:00", 2.5, redactor=Redactor([Secret("s3cr3t")]))
    xml = junit_xml(run)
    xmlschema.XMLSchema(FIXTURES / "junit.xsd").validate(xml)
    assert "s3cr3t" not in xml and "********" in xml
    assert '<testsuite name="provision health" tests="2" failures="1" errors="1"' in xml


def test_drift_and_pending_are_told_apart_key_by_key() -> None:
    from provision.checks import split_changes
    from provision.plan import KeyChange
    from provision.state import PushRecord

    pushed = {("settings", "autoanswer"): "button", ("settings", "denyincoming"): "button"}
    record = PushRecord("h", "u", "t", frozenset(pushed), "old", {"account1": "fp"}, "changed", pushed)
    changes = [
        KeyChange("Settings", "autoAnswer", "button", "all"),  # still as pushed: the profile changed
        KeyChange("Settings", "denyIncoming", "all", "button"),  # not as pushed: the workstation changed
        KeyChange("Settings", "callWaiting", None, "1"),  # newly managed
        KeyChange("Account1", "password", "********", "********", "secret changed"),
        KeyChange("Account1", "password", None, "********", "not set on the workstation"),
        KeyChange("", "(encoding)", "UTF-8 with BOM", "UTF-16LE with BOM"),
    ]
    drifted, pending = split_changes(changes, record, "new")
    assert [c.key for c in drifted] == ["denyIncoming", "password", "(encoding)"]
    assert [c.key for c in pending] == ["autoAnswer", "callWaiting", "password"]
    # A record from before the values were kept: the hashes decide, for every key at once.
    old = PushRecord("h", "u", "t", frozenset(pushed), "same", {}, "changed")
    assert split_changes(changes[:2], old, "same")[0] == changes[:2]  # profile unchanged: drift
    assert split_changes(changes[:2], old, "other")[1] == changes[:2]  # profile changed: pending
