"""The scheduled tasks the agent registers: what the PowerShell asks for is what the lab applies.

The lab's twin registers tasks with TASK_SETTINGS; this reads the agent's
New-ScheduledTaskSettingsSet call with tree-sitter and holds the two together.
"""

from __future__ import annotations

import tree_sitter
import tree_sitter_powershell

from provision.lab.host import TaskDefinition, read_task, task_xml
from provision.lab.programs import GUARD_SETTINGS, TASK_SETTINGS
from provision.remote import agent_text

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def calls(name: str) -> list[dict[str, str]]:
    """Every call of a cmdlet in the agent: its parameters and their argument text ('' for a switch)."""
    found = []
    stack = [PARSER.parse(agent_text().encode()).root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type != "command" or (node.children[0].text or b"").decode().lower() != name.lower():
            continue
        elements = next((c for c in node.children if c.type == "command_elements"), None)
        parts = [c for c in (elements.children if elements else []) if c.type != "command_argument_sep"]
        bindings: dict[str, str] = {}
        current = None
        for part in parts:
            text = (part.text or b"").decode()
            if part.type == "command_parameter":
                current = text.lstrip("-").lower()
                bindings[current.split(":")[0]] = text.split(":", 1)[1] if ":" in text else ""
            elif current is not None:
                bindings[current] = text
                current = None
        found.append(bindings)
    return found


def test_the_task_settings_are_the_ones_the_lab_applies() -> None:
    (settings,) = calls("New-ScheduledTaskSettingsSet")  # one set, for every task the agent registers
    for lab in (TASK_SETTINGS, GUARD_SETTINGS):
        assert ("allowstartifonbatteries" in settings) == (lab.disallow_start_if_on_batteries is False)
        assert ("dontstopifgoingonbatteries" in settings) == (lab.stop_if_going_on_batteries is False)
        assert settings["executiontimelimit"] == "([TimeSpan]::Zero)" and lab.execution_time_limit == "PT0S"
        assert settings["priority"] == str(lab.priority)
    assert 4 <= int(settings["priority"]) <= 6  # Task Scheduler's normal-priority band; its default 7 is below
    # A missed trigger is made up for: on for the guard (a task with a trigger), off for the others.
    assert settings["startwhenavailable"] == "$timed"
    assert GUARD_SETTINGS.start_when_available and not TASK_SETTINGS.start_when_available


def test_tasks_start_in_the_exes_folder_as_the_logged_on_user_and_are_removed_without_a_prompt() -> None:
    (action,) = calls("New-ScheduledTaskAction")
    assert "workingdirectory" in action
    (principal,) = calls("New-ScheduledTaskPrincipal")
    assert principal["logontype"] == "Interactive"
    registers = calls("Register-ScheduledTask")
    assert sorted("trigger" in r for r in registers) == [False, True]  # the guard, and the others
    for register in registers:
        assert "settings" in register and "force" in register  # a task left by a run that died is replaced
    (trigger,) = calls("New-ScheduledTaskTrigger")
    assert "once" in trigger and "at" in trigger
    for unregister in calls("Unregister-ScheduledTask"):
        assert unregister.get("confirm") == "$false"  # it would otherwise prompt ($ConfirmPreference High)


def test_the_labs_task_file_is_what_task_scheduler_keeps() -> None:
    data = task_xml(
        "\\provision\\microsip-start-jdoe",
        TaskDefinition("jdoe", "InteractiveToken", "C:\\M\\microsip.exe", "/minimized", "C:\\M", TASK_SETTINGS),
    )
    assert data[:6] == b"\xff\xfe<\x00?\x00"
    task = read_task(data)
    assert (task.priority, task.execution_time_limit, task.working_directory) == (4, "PT0S", "C:\\M")
    bare = read_task(task_xml("\\x", TaskDefinition("jdoe", "InteractiveToken", "C:\\M\\m.exe", "", None, None)))
    assert (bare.priority, bare.disallow_start_if_on_batteries, bare.stop_if_going_on_batteries) == (7, True, True)
    assert bare.execution_time_limit == "PT72H" and bare.working_directory == ""
