"""What the command prints in a terminal, a dumb terminal, a pipe and a log file."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from provision.secrets import read_env_file

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
