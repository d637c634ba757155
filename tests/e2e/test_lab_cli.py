"""provision lab up / down: the lab in the background, as a newcomer starts it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
        assert again.returncode == 2 and "already up" in again.stderr  # a usage error
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


def test_a_newcomers_own_config_on_the_lab(tmp_path: Path) -> None:
    """init, then the lab built from the new inventory, then push, health, smoke and runs with
    the admin's own profiles, groups, users and secrets, as the quickstart says."""
    assert provision(tmp_path, "init", "phones").returncode == 0
    here = tmp_path / "phones"
    up = provision(here, "lab", "up", "-i", "inventory.yaml", "--dir", "lab")
    assert up.returncode == 0, up.stderr
    try:
        assert "provision push -i lab/inventory.yaml --env-file lab/lab.env" in up.stdout
        lab_inventory = (here / "lab" / "inventory.yaml").read_text("utf-8")
        assert "ws-sales-01:" in lab_inventory and "jdoe" in lab_inventory and "env:SIP_PW_2101" in lab_inventory
        assert "SIP_PW" not in (here / "lab" / "lab.env").read_text("utf-8")  # their secrets stay theirs
        push = provision(here, "push", "-i", "lab/inventory.yaml", "--env-file", "lab/lab.env")
        assert push.returncode == 0, push.stdout + push.stderr
        assert push.stdout.splitlines()[-1].startswith("3 hosts: 3 changed")
        health = provision(here, "health", "-i", "lab/inventory.yaml", "--env-file", "lab/lab.env")
        assert health.returncode == 0 and "3 hosts:" in health.stdout, health.stdout + health.stderr
        smoke = provision(here, "smoke", "-i", "lab/inventory.yaml", "--env-file", "lab/lab.env")
        assert smoke.returncode == 0 and "3 hosts: 3 ok" in smoke.stdout, smoke.stdout + smoke.stderr
        runs = provision(here, "runs")
        assert [line.split()[1] for line in runs.stdout.splitlines()[1:]] == ["smoke", "health", "push"]
    finally:
        provision(here, "lab", "down", "--dir", "lab")


def test_a_lab_served_from_several_processes_answers_every_host_once(tmp_path: Path) -> None:
    """lab up --processes: each host in one process, counters gathered from all, all stopped by down."""
    shutil.copytree(EXAMPLES, tmp_path / "profiles")
    folder = tmp_path / "lab"
    up = provision(tmp_path, "lab", "up", "--hosts", "5", "--processes", "2", "--dir", "lab")
    assert up.returncode == 0, up.stderr
    try:
        daemon = int((folder / "lab.pid").read_text("utf-8"))
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == daemon]
        assert len(children) == 2
        push = provision(tmp_path, "--env-file", "lab/lab.env", "push", "-i", "lab/inventory.yaml")
        assert push.returncode == 0, push.stdout + push.stderr
        assert push.stdout.splitlines()[-1].startswith("5 hosts: 5 changed")
        again = provision(tmp_path, "--env-file", "lab/lab.env", "push", "-i", "lab/inventory.yaml")
        assert again.stdout.splitlines()[-1].startswith("5 hosts: 5 unchanged")  # state kept in each process
        os.kill(daemon, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not (folder / "stats.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stats = json.loads((folder / "stats.json").read_text("utf-8"))
        assert sorted(stats) == [f"lab-00{i}" for i in range(1, 6)]
        assert all(counts["requests"] > 0 for counts in stats.values())
    finally:
        down = provision(tmp_path, "lab", "down", "--dir", "lab")
    assert down.returncode == 0 and not (folder / "lab.pid").exists()
    assert not any(_alive(child) for child in children)


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def _alive(proc: Path) -> bool:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
