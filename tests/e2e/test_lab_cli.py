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
