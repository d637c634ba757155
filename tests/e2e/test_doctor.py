"""provision doctor against the lab: every failure the lab can inject is named, with its fix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from provision.secrets import read_env_file

from labkit import Lab


def doctor(lab: Lab, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Exit code, lab-002's steps by name (a step that repeats keeps its last), and the output."""
    path = lab.root / "doctor.json"
    result = lab.run("doctor", "--host", "lab-002", "--timeout", "20", "--report", str(path), *args)
    data = json.loads(path.read_text("utf-8"))
    (host,) = data["hosts"]
    return result.exit_code, {s["name"]: s for s in host["steps"]}, result.output


def test_a_healthy_host_is_ok_at_every_step(lab: Lab) -> None:
    code, steps, output = doctor(lab)
    assert code == 0, output
    assert {s["status"] for s in steps.values()} == {"ok"}, output
    user = lab.user("lab-002")
    names = ["dns", "tcp", "tls", "authentication", "login", "language mode", "powershell", "administrator"]
    names += [".net", "task scheduler", "MaxEnvelopeSizekb", "MaxMemoryPerShellMB", "MaxShellsPerUser"]
    names += ["MaxConcurrentOperationsPerUser", "IdleTimeout", "microsip", f"{user}: profile", f"{user}: ini"]
    assert set(names) <= set(steps)
    assert "offers Basic, Negotiate" in steps["authentication"]["detail"]
    assert "3.22.3" in steps["microsip"]["detail"]
    assert steps[f"{lab.user('lab-002')}: microsip"]["detail"] == "not running"


def host_fault(name: str, value: Any) -> Callable[[Lab], None]:
    def inject(lab: Lab) -> None:
        setattr(lab.host("lab-002").faults, name, value)

    return inject


def inventory_edit(old: str, new: str) -> Callable[[Lab], None]:
    def inject(lab: Lab) -> None:
        path = lab.fleet.inventory
        text = path.read_text("utf-8")
        assert old in text
        path.write_text(text.replace(old, new), "utf-8")

    return inject


def user_edit(**values: Any) -> Callable[[Lab], None]:
    def inject(lab: Lab) -> None:
        user = lab.host("lab-002").users[lab.user("lab-002").casefold()]
        for name, value in values.items():
            setattr(user, name, value)

    return inject


def remove(path: str) -> Callable[[Lab], None]:
    def inject(lab: Lab) -> None:
        lab.host("lab-002").remove_item(path.format(user=lab.user("lab-002")))

    return inject


USER = "{user}"
FAILURES: dict[str, tuple[Callable[[Lab], None], str, str, str, str]] = {
    # failure: (inject, step, status, words in the detail, words in the fix)
    "dns": (
        inventory_edit("address: 127.", "address: no-such-host.invalid\n    #"),
        "dns",
        "fail",
        "cannot resolve",
        "DNS",
    ),
    "no listener": (lambda lab: lab.fleet.refuse("lab-002"), "tcp", "fail", "connection refused", "listener"),
    "untrusted certificate": (inventory_edit("ca_bundle: tls/ca.pem", ""), "tls", "fail", "not trusted", "ca_bundle"),
    "credentials rejected": (
        host_fault("reject_auth", True),
        "login",
        "fail",
        "credentials rejected",
        "LocalAccountTokenFilterPolicy",
    ),
    "constrained language": (
        host_fault("language_mode", "ConstrainedLanguage"),
        "language mode",
        "fail",
        "ConstrainedLanguage",
        "FullLanguage",
    ),
    "old powershell": (host_fault("powershell_version", "4.0"), "powershell", "fail", "4.0", "5.1"),
    "not an administrator": (
        host_fault("account", "non-admin"),
        "administrator",
        "fail",
        "not an administrator",
        "Administrators",
    ),
    "uac filtered": (
        host_fault("account", "uac-filtered"),
        "administrator",
        "fail",
        "UAC",
        "LocalAccountTokenFilterPolicy",
    ),
    "task scheduler": (host_fault("task_scheduler", "Stopped"), "task scheduler", "fail", "Stopped", "Start-Service"),
    "old .net": (host_fault("dotnet_release", 0), ".net", "fail", "not found", "4.8"),
    "small envelope": (
        host_fault("winrm_config", {"MaxEnvelopeSizekb": 150}),
        "MaxEnvelopeSizekb",
        "fail",
        "150 KB",
        "max_envelope_kb: 150",
    ),
    "little shell memory": (
        host_fault("winrm_config", {"MaxMemoryPerShellMB": 100}),
        "MaxMemoryPerShellMB",
        "warn",
        "100 MB",
        "1024",
    ),
    "one shell": (host_fault("winrm_config", {"MaxShellsPerUser": 1}), "MaxShellsPerUser", "warn", "1", "30"),
    "few operations": (
        host_fault("winrm_config", {"MaxConcurrentOperationsPerUser": 20}),
        "MaxConcurrentOperationsPerUser",
        "warn",
        "20",
        "1500",
    ),
    "short idle timeout": (
        host_fault("winrm_config", {"IdleTimeout": 10000}),
        "IdleTimeout",
        "warn",
        "10 s",
        "7200000",
    ),
    "no microsip": (
        remove("C:\\Program Files\\MicroSIP\\microsip.exe"),
        "microsip",
        "fail",
        "not there",
        "microsip.exe",
    ),
    "appdata on a share": (
        user_edit(appdata="\\\\fs01\\redirect$\\x\\AppData\\Roaming"),
        f"{USER}: ini",
        "fail",
        "\\\\fs01",
        "file server",
    ),
    "hive not loaded": (user_edit(hive_loaded=False), f"{USER}: ini", "warn", "hive is not loaded", ""),
    "profile folder gone": (remove("C:\\Users\\{user}"), f"{USER}: profile", "fail", "does not exist", ""),
    "never logged on": (user_edit(has_profile=False), f"{USER}: profile", "warn", "never logged on", ""),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_each_injected_failure_is_named_with_its_fix(lab: Lab, failure: str) -> None:
    inject, step, status, words, fix = FAILURES[failure]
    inject(lab)
    code, steps, output = doctor(lab)
    step = step.format(user=lab.user("lab-002"))
    assert step in steps, output
    got = steps[step]
    assert got["status"] == status, output
    assert words in got["detail"] and fix in got["fix"], got
    assert code == (1 if status == "fail" else 0), output


def test_microsip_running_is_shown_with_its_session(lab: Lab) -> None:
    host = lab.host("lab-002")
    user = lab.user("lab-002")
    host.start_microsip(user)
    _, steps, _ = doctor(lab)
    assert steps[f"{user}: microsip"]["detail"] == f"running in session {host.users[user].session}"


def test_the_transcript_has_the_conversation_and_no_secret(lab: Lab) -> None:
    path = lab.root / "transcript.txt"
    code, _, output = doctor(lab, "--transcript", str(path))
    assert code == 0, output
    text = path.read_text("utf-8")
    assert '"op": "recover"' in text and '"op": "inspect"' in text and '"facts"' in text
    assert "<the agent:" in text
    # The WS-Management envelopes around them, their payload by size.
    for action in ("transfer/Create", "shell/Command", "shell/Send", "shell/Receive", "transfer/Delete"):
        assert f"{action}</a:Action>" in text or f"{action}</wsa:Action>" in text, action
    assert re.search(r"<(rsp:)?Stream [^>]*><\d+ base64 characters></(rsp:)?Stream>", text)
    assert "ShellId" in text and "CommandState/Running" in text
    env = read_env_file(lab.fleet.env_file)
    for secret in (env["PROVISION_WINRM_PASSWORD"], env["PROVISION_LAB_SIP_PASSWORD"]):
        assert secret not in text and secret not in output


def test_the_winrm_password_is_never_shown_even_where_it_matches_other_text(lab: Lab) -> None:
    """A (wrong) WinRM password equal to the host's name: wherever the name would be printed,
    the password would be too, so it is masked there, in the report and in the transcript."""
    env = lab.root / "wrong.env"
    env.write_text(lab.fleet.env_file.read_text("utf-8") + "PROVISION_WINRM_PASSWORD=lab-002\n", "utf-8")
    path, transcript = lab.root / "doctor.json", lab.root / "transcript.txt"
    args = ("--host", "lab-002", "--timeout", "20", "--report", str(path), "--transcript", str(transcript))
    result = lab.run("doctor", *args, env_file=env)
    assert result.exit_code != 0
    for text in (result.output, path.read_text("utf-8"), transcript.read_text("utf-8")):
        assert "lab-002" not in text and "********" in text, text
