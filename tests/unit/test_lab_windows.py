"""The lab's Windows where the agent's safety depends on it: time triggers of scheduled tasks,
who may create what in C:\\ProgramData, and cmdlets that throw. Each is Windows as it is, not
as the agent would like it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from provision.lab.host import (
    ADMIN_ACCOUNT,
    ADMINISTRATORS,
    FULL_CONTROL,
    LOCAL_SYSTEM,
    USERS,
    Ace,
    FolderSecurity,
    PSError,
    SimulatedHost,
    SimUser,
    TaskDefinition,
    TaskSettings,
    read_task,
)

TASKS = "\\provision\\"
EXE = "C:\\Program Files\\MicroSIP\\microsip.exe"
SETTINGS = TaskSettings(False, False, "PT0S", 4, True)
TRUSTED = FolderSecurity(
    ADMINISTRATORS, (Ace(ADMINISTRATORS, FULL_CONTROL), Ace(LOCAL_SYSTEM, FULL_CONTROL)), protected=True
)


@pytest.fixture
def host(tmp_path: Path) -> SimulatedHost:
    return SimulatedHost("ws-01", tmp_path, [SimUser("alice"), SimUser("bob")])


def timed(host: SimulatedHost, user: str, seconds: float) -> TaskDefinition:
    at = (host.now() + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return TaskDefinition(user, "InteractiveToken", EXE, "/minimized", "C:\\Program Files\\MicroSIP", SETTINGS, at)


# Paths -----------------------------------------------------------------------------------------


def test_paths_resolve_without_regard_to_case_and_refuse_dot_dot(host: SimulatedHost) -> None:
    made = host.path("C:\\Users\\alice\\AppData\\Roaming\\MicroSIP")
    made.mkdir(parents=True, exist_ok=True)
    assert host.path("c:\\USERS\\Alice\\appdata\\roaming\\microsip") == made
    assert host.path("C:\\Users\\alice\\AppData\\Roaming\\MicroSIP\\new.ini") == made / "new.ini"
    assert host.path("C:\\USERS\\ALICE\\NEW") == made.parents[2] / "NEW"  # a new name keeps its case
    with pytest.raises(OSError, match="syntax is incorrect"):
        host.path("C:\\Users\\..\\Windows")


# Time triggers ---------------------------------------------------------------------------------


def test_a_time_trigger_fires_once_at_its_time_in_the_users_session(host: SimulatedHost) -> None:
    host.register_task(TASKS, "guard-alice", timed(host, "alice", 60), force=True)
    stored = read_task(host.path("C:\\Windows\\System32\\Tasks\\provision\\guard-alice").read_bytes())
    assert stored.start_when_available and stored.start_boundary
    host.advance(30)
    assert host.user_microsips("alice") == []  # not yet
    host.advance(31)
    (process,) = host.user_microsips("alice")
    assert process.session == host.users["alice"].session and process.priority == 4
    assert process.time_limit == "PT0S"  # a trigger-started run is held to ExecutionTimeLimit
    host.run_in_session("alice", EXE, "/exit")
    host.advance(3600)
    assert host.user_microsips("alice") == []  # once only
    assert host.tasks() == ["guard-alice"]  # a task that has run stays registered


def test_a_time_trigger_of_a_task_that_is_gone_never_fires(host: SimulatedHost) -> None:
    host.register_task(TASKS, "guard-alice", timed(host, "alice", 5), force=True)
    host.unregister_task(TASKS, "guard-alice")
    host.advance(10)
    assert host.user_microsips("alice") == [] and host.stats["tasks_triggered"] == 0


def test_a_time_trigger_honours_the_tasks_conditions(host: SimulatedHost) -> None:
    host.users["bob"].logged_on = False
    host.register_task(TASKS, "guard-bob", timed(host, "bob", 5), force=True)
    default = TaskDefinition("alice", "InteractiveToken", EXE, "/minimized", None, None, None)
    host.register_task(TASKS, "bare", default, force=True)
    battery = TaskDefinition(
        "alice", "InteractiveToken", EXE, "/minimized", None, None, timed(host, "alice", 5).start_boundary
    )
    host.register_task(TASKS, "guard-alice", battery, force=True)
    host.on_battery = True
    host.advance(10)
    assert host.user_microsips("bob") == []  # InteractiveToken: not logged on, no run
    assert host.user_microsips("alice") == []  # the default DisallowStartIfOnBatteries
    assert host.stats["tasks_triggered"] == 2


def test_a_trigger_for_a_running_microsip_forwards_its_argument_and_is_counted(host: SimulatedHost) -> None:
    running = host.start_microsip("alice")
    host.register_task(TASKS, "guard-alice", timed(host, "alice", 5), force=True)
    host.advance(10)
    assert host.user_microsips("alice") == [running]
    assert host.stats["minimized_forwarded"] == 1  # what MicroSIP does with it is not known


def test_a_cmdlet_can_be_made_to_throw(host: SimulatedHost) -> None:
    host.break_cmdlet("Start-ScheduledTask", "Access is denied.", when=lambda b: b.get("TaskName") == "x")
    host.register_task(TASKS, "y", timed(host, "alice", 60), force=True)
    host.start_task(TASKS, "y")  # another task: not this one
    host.register_task(TASKS, "x", timed(host, "alice", 60), force=True)
    with pytest.raises(PSError, match="Access is denied"):
        host.start_task(TASKS, "x")
    host.start_task(TASKS, "x")  # once only


# C:\ProgramData -------------------------------------------------------------------------------


def test_any_user_may_make_a_folder_in_programdata_and_owns_it(host: SimulatedHost) -> None:
    host.user_creates_folder("alice", "C:\\ProgramData\\provision")
    made = host.get_access_control("C:\\ProgramData\\provision")
    assert made.owner == host.users["alice"].sid
    host.user_writes_file("alice", "C:\\ProgramData\\provision\\version.dll", b"MZ")
    with pytest.raises(PermissionError):
        host.user_writes_file("alice", "C:\\Program Files\\MicroSIP\\version.dll", b"MZ")


def test_a_folder_an_administrator_makes_in_programdata_lets_users_add_files(host: SimulatedHost) -> None:
    """Inherited from ProgramData: BUILTIN\\Users may create files and folders in it."""
    host.create_directory("C:\\ProgramData\\provision\\smoke-1")
    made = host.get_access_control("C:\\ProgramData\\provision\\smoke-1")
    assert made.owner == ADMIN_ACCOUNT  # the creator, not the Administrators group
    assert any(a.sid == USERS and a.rights & 0x2 for a in made.aces)
    host.user_writes_file("bob", "C:\\ProgramData\\provision\\smoke-1\\version.dll", b"MZ")


def test_a_folder_made_for_administrators_only_keeps_users_out(host: SimulatedHost) -> None:
    host.create_directory("C:\\ProgramData\\provision", TRUSTED)
    host.create_directory("C:\\ProgramData\\provision\\closed", TRUSTED)
    assert host.get_access_control("C:\\ProgramData\\provision").owner == ADMINISTRATORS
    for folder in ("C:\\ProgramData\\provision", "C:\\ProgramData\\provision\\closed"):
        with pytest.raises(PermissionError):
            host.user_writes_file("alice", folder + "\\x.json", b"{}")
        with pytest.raises(PermissionError):
            host.user_creates_folder("alice", folder + "\\sub")


def test_creating_a_folder_that_is_there_changes_nothing_of_it(host: SimulatedHost) -> None:
    host.user_creates_folder("alice", "C:\\ProgramData\\provision")
    host.create_directory("C:\\ProgramData\\provision", TRUSTED)  # no error, and no effect
    assert host.get_access_control("C:\\ProgramData\\provision").owner == host.users["alice"].sid


def test_a_folder_can_only_be_given_an_owner_the_token_holds(host: SimulatedHost) -> None:
    with pytest.raises(PSError, match="not allowed to be the owner"):
        host.create_directory("C:\\ProgramData\\x", FolderSecurity(USERS, TRUSTED.aces, protected=True))
    assert not host.path("C:\\ProgramData\\x").exists()


def test_a_folder_whose_rules_leave_administrators_out_cannot_be_read(host: SimulatedHost) -> None:
    host.user_creates_folder("alice", "C:\\ProgramData\\provision")
    host.security["c:\\programdata\\provision"] = FolderSecurity(
        host.users["alice"].sid, (Ace(host.users["alice"].sid, FULL_CONTROL),), protected=True
    )
    with pytest.raises(PSError, match="unauthorized"):
        host.get_access_control("C:\\ProgramData\\provision")
    with pytest.raises(PSError, match="denied"):
        host.create_directory("C:\\ProgramData\\provision\\closed")
