"""provision lab up / down: the lab in the background, as a newcomer starts it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES


def provision(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_lab_up_push_and_down(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "profiles")
    up = provision(tmp_path, "lab", "up", "--hosts", "2", "--dir", "lab")
    assert up.returncode == 0, up.stderr
    try:
        assert (tmp_path / "lab" / "lab.pid").exists()
        again = provision(tmp_path, "lab", "up", "--dir", "lab")
        assert again.returncode == 1 and "already up" in again.stderr
        push = provision(tmp_path, "--env-file", "lab/lab.env", "push", "-i", "lab/inventory.yaml")
        assert push.returncode == 0, push.stdout + push.stderr
        assert push.stdout.splitlines()[-1].startswith("2 hosts: 2 changed")
        assert "[2/2]" in push.stderr  # a line per host when not on a terminal
    finally:
        down = provision(tmp_path, "lab", "down", "--dir", "lab")
    assert down.returncode == 0 and "Lab down." in down.stdout
    assert not (tmp_path / "lab" / "lab.pid").exists()
    refused = provision(tmp_path, "--env-file", "lab/lab.env", "push", "-i", "lab/inventory.yaml", "--timeout", "5")
    assert refused.returncode == 1 and "2 hosts: 2 unreachable" in refused.stdout


def test_lab_faults_from_a_file_are_checked_and_applied(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "profiles")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        '"lab-002":\n  account: uac-filtered\n  acount: admin\n  users:\n    "*": {hive: false}\n', "utf-8"
    )
    refused = provision(tmp_path, "lab", "up", "--hosts", "2", "--dir", "lab", "--faults", "wrong.yaml")
    assert refused.returncode == 2
    assert "wrong.yaml:3: lab-002.acount: unknown fault 'acount'" in refused.stderr
    assert "wrong.yaml:5: lab-002.users.*.hive: unknown user setting 'hive'" in refused.stderr
    assert not (tmp_path / "lab" / "lab.pid").exists()
    faults = tmp_path / "faults.yaml"
    faults.write_text('"lab-002":\n  language_mode: ConstrainedLanguage\n', "utf-8")
    up = provision(tmp_path, "lab", "up", "--hosts", "2", "--dir", "lab", "--faults", "faults.yaml")
    assert up.returncode == 0, up.stderr
    try:
        doctor = provision(tmp_path, "--env-file", "lab/lab.env", "doctor", "-i", "lab/inventory.yaml")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        lab_002 = doctor.stdout[doctor.stdout.index("lab-002") :]
        assert "fail  language mode" in lab_002 and "FullLanguage" in lab_002
        assert "fail" not in doctor.stdout[: doctor.stdout.index("lab-002")]
    finally:
        provision(tmp_path, "lab", "down", "--dir", "lab")
