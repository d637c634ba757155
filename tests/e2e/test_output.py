"""What the command prints in a terminal, a dumb terminal, a pipe and a log file."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import xmlschema

from provision.secrets import read_env_file

from conftest import FIXTURES
from labkit import Lab

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def command(lab: Lab, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "provision",
        "--profiles",
        str(lab.profiles),
        "--state",
        str(lab.root / "state.db"),
        "--env-file",
        str(lab.fleet.env_file),
        *args,
        "-i",
        str(lab.fleet.inventory),
    ]


def in_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run with standard output and error on a pseudo-terminal; what it showed."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")} | env
    child = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=environ)
    os.close(follower)
    shown = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        shown += data
    child.wait(timeout=60)
    os.close(leader)
    return shown.decode("utf-8", "replace")


def test_a_terminal_gets_colour_unless_no_color_and_a_dumb_one_gets_progress_lines(lab: Lab) -> None:
    coloured = in_terminal(command(lab, "validate"), {"TERM": "xterm-256color"})
    assert ANSI.search(coloured) and "OK" in coloured
    plain = in_terminal(command(lab, "validate"), {"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert not ANSI.search(plain) and "OK" in plain
    dumb = in_terminal(command(lab, "push", "--timeout", "20"), {"TERM": "dumb"})
    assert "[4/4]" in dumb and "4 hosts: 4 changed" in dumb


def test_piped_tables_are_not_wrapped_and_quiet_prints_the_summary_only(lab: Lab) -> None:
    lab.host("lab-002").faults.disk_full = True
    piped = subprocess.run(command(lab, "push", "--timeout", "20"), capture_output=True, text=True, timeout=120)
    (row,) = [line for line in piped.stdout.splitlines() if line.startswith("lab-002")]
    assert len(row) > 80 and "not enough space on the disk" in row  # one line, however long
    quiet = subprocess.run(command(lab, "-q", "push", "--timeout", "20"), capture_output=True, text=True, timeout=120)
    assert quiet.stdout.splitlines() == [quiet.stdout.splitlines()[-1]] and quiet.stdout.startswith("4 hosts:")
    assert "[1/4]" not in quiet.stderr


def test_the_log_file_tells_the_run_and_never_a_secret(lab: Lab, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lab.host("lab-003").faults.soap_fault = {"Send": "busy"}
    lab.host("lab-003").faults.fault_times = 1
    result = lab.run("--log-file", str(log), "push", "--timeout", "20")
    assert result.exit_code == 0, result.output
    text = log.read_text("utf-8")
    assert re.search(r"lab-001: changed \(\d+\.\d s\)", text)
    assert "lab-003: WinRM fault 170" in text and "again on a new shell (attempt 2 of 3)" in text
    for secret in read_env_file(lab.fleet.env_file).values():
        assert secret not in text


def test_json_on_standard_output_is_the_report_and_nothing_else(lab: Lab) -> None:
    as_json = subprocess.run(command(lab, "push", "--format", "json"), capture_output=True, text=True, timeout=120)
    data = json.loads(as_json.stdout)
    assert data["command"] == "push" and data["summary"]["by_status"] == {"changed": 4}
    assert set(data) >= {"run_id", "started", "seconds", "status", "ok", "options", "summary", "hosts", "not_started"}
    dash = subprocess.run(command(lab, "push", "--report", "-"), capture_output=True, text=True, timeout=120)
    assert json.loads(dash.stdout)["summary"]["by_status"] == {"unchanged": 4}
    assert "4 hosts: 4 unchanged" in dash.stderr  # the table moved out of the way
    device = subprocess.run(command(lab, "-q", "push", "--report", "/dev/stdout"), capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    summary, _, report = device.stdout.partition("\n")  # -q: the summary line, then the report
    assert summary.startswith("4 hosts: 4 unchanged") and json.loads(report)["command"] == "push"
    health = subprocess.run(command(lab, "health", "--format", "json"), capture_output=True, text=True, timeout=120)
    shape = json.loads(health.stdout)
    assert set(shape) == set(data) and set(shape["summary"]) == set(data["summary"])  # one shape for all


def test_junit_for_push_and_summaries_per_group(lab: Lab, tmp_path: Path) -> None:
    lab.host("lab-002").faults.disk_full = True
    lab.fleet.refuse("lab-004")
    junit = tmp_path / "push.xml"
    result = lab.run("push", "--timeout", "20", "--junit", str(junit), "--by-group")
    assert result.exit_code == 1
    table = [line.split() for line in result.output.splitlines() if line.startswith(("sales ", "support "))]
    assert table == [["sales", "2", "2", "changed"], ["support", "2", "1", "unreachable,", "1", "failed"]]
    xml = junit.read_text("utf-8")
    xmlschema.XMLSchema(FIXTURES / "junit.xsd").validate(xml)
    assert '<testsuite name="provision push: sales" tests="2" failures="0" errors="0"' in xml
    assert '<testsuite name="provision push: support" tests="2" failures="1" errors="1"' in xml
    assert "not enough space on the disk" in xml
