"""The PowerShell the tool sends: syntax, size limits, and a golden of a whole conversation.

The golden (tests/golden/remote/push-conversation.txt) is what a push of one example user
sends, line by line, with the agent and the ini content shown by digest. Refresh it after an
intended change with:  PROVISION_REFRESH_GOLDEN=1 pytest tests/unit/test_remote.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_powershell

from provision.jobs import HostJob, UserJob
from provision.lab.host import SimulatedHost, SimUser
from provision.lab.programs import AgentProgram, start_program
from provision.project import Project, prepare
from provision.push import PushOptions, push_host
from provision.remote import (
    AGENT_PARTS,
    CMD_LIMIT,
    SCRIPTS,
    CommandLineTooLongError,
    agent_text,
    bootstrap_command,
    bootstrap_text,
    check_command_line,
    script,
)
from provision.remote.agent import stderr_message

from conftest import EXAMPLE_INVENTORY
from labkit import DirectTransport
from powershell_tree import PARSER, nodes, text

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "remote" / "push-conversation.txt"
REFRESH = os.environ.get("PROVISION_REFRESH_GOLDEN") == "1"


def syntax_errors(source: bytes) -> list[str]:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    tree = parser.parse(source)
    errors: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {node.type} {node.text[:40]!r}")
        stack.extend(node.children)
    return errors


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.ps1")))
def test_every_script_parses_as_powershell(name: str) -> None:
    assert syntax_errors((SCRIPTS / name).read_bytes()) == []


def test_the_syntax_check_catches_a_broken_script() -> None:
    broken = script("apply.ps1").replace("    $Result.status = 'written'\n}", "    $Result.status = 'written'\n", 1)
    assert broken != script("apply.ps1")
    assert syntax_errors(broken.encode()) != []


# .NET calls whose result is a byte array; a function that returns one as it is hands it to the
# pipeline, which unrolls it: the caller gets object[], one boxed byte each (about_Return).
BYTE_ARRAY = re.compile(r"(ReadAllBytes|FromBase64String|ComputeHash|GetBytes)\([^()]*\)$")  # the value's last call


def unrolled_byte_arrays(source: bytes) -> list[str]:
    """`return <a call giving a byte array>` without the unary comma that keeps the array whole."""
    found = []
    for node in nodes(PARSER.parse(source).root_node):
        if node.type != "flow_control_statement" or not text(node).startswith("return"):
            continue
        value = text(node).removeprefix("return").strip()
        if BYTE_ARRAY.search(value) and not value.startswith(","):
            found.append(f"line {node.start_point[0] + 1}: {text(node)}")
    return found


def test_functions_return_byte_arrays_whole() -> None:
    """An 8 MB ini unrolled is 8 million objects in the shell's memory (MaxMemoryPerShellMB)."""
    assert unrolled_byte_arrays(agent_text().encode()) == []
    assert unrolled_byte_arrays(b"function F { return [IO.File]::ReadAllBytes($p) }") != []
    assert unrolled_byte_arrays(b"function F { return ,[IO.File]::ReadAllBytes($p) }") == []


def test_every_script_is_in_the_agent_and_marked() -> None:
    assert sorted((*AGENT_PARTS, "bootstrap.ps1")) == sorted(p.name for p in SCRIPTS.glob("*.ps1"))
    for name in AGENT_PARTS:
        assert script(name).startswith(f"# provision-op: {name.removesuffix('.ps1')} v1\n")
    assert syntax_errors(agent_text().encode()) == []


def test_the_command_line_is_the_bootstrap_only_and_well_under_cmds_limit() -> None:
    command, arguments = bootstrap_command()
    assert command == "powershell.exe"
    assert arguments[:-1] == (
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    )
    sent = base64.b64decode(arguments[-1]).decode("utf-16-le")
    assert sent == bootstrap_text()
    assert [line for line in script("bootstrap.ps1").splitlines() if not line.startswith("#")] == sent.splitlines()[1:]
    length = len(command) + sum(1 + len(a) for a in arguments)
    assert length < CMD_LIMIT // 3  # the agent and data go on stdin, never on the command line


def test_command_lines_over_windows_limits_are_refused_before_sending() -> None:
    check_command_line("cmd.exe", ["x" * (CMD_LIMIT - 8)])
    with pytest.raises(CommandLineTooLongError, match="8191"):
        check_command_line("cmd.exe", ["x" * (CMD_LIMIT - 7)])
    check_command_line("a.exe", ["x" * 20000], skip_cmd_shell=True)
    with pytest.raises(CommandLineTooLongError, match="32766"):
        check_command_line("a.exe", ["x" * 32761], skip_cmd_shell=True)


def test_the_lab_refuses_long_command_lines_and_unknown_programs(tmp_path: Path) -> None:
    host = SimulatedHost("h", tmp_path, [SimUser("u")])
    long = start_program(host, "cmd.exe", "/c echo " + "x" * CMD_LIMIT, skip_cmd_shell=False)
    assert long.done and long.exit_code == 1 and b"too long" in long.stderr
    other = start_program(host, "powershell.exe", "-Command Remove-Item C:\\ -Recurse", skip_cmd_shell=False)
    assert other.exit_code == 1 and "does not recognise" in stderr_message(bytes(other.stderr))
    command, arguments = bootstrap_command()
    tampered = start_program(host, command, " ".join(arguments[:-1]) + " " + arguments[-1][:-4] + "AAAA", False)
    assert "unrecognised PowerShell script" in stderr_message(bytes(tampered.stderr))
    agent = start_program(host, command, " ".join(arguments), False)
    assert isinstance(agent, AgentProgram)
    agent.feed(base64.b64encode((agent_text() + "\nRemove-Item C:\\").encode()) + b"\n", end=False)
    deadline = time.monotonic() + 5
    while not agent.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert agent.exit_code == 1 and "unrecognised agent" in stderr_message(bytes(agent.stderr))


def shown(message: Any) -> dict[str, Any]:
    """A request as the golden shows it: the agent and file contents by size and digest."""
    if isinstance(message, str):  # the agent's line
        text = base64.b64decode(message).decode("utf-8")
        return {"agent": f"<{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}>"}
    if "budget_ms" in message:
        message["budget_ms"] = "<time left>"  # depends on the clock
    for user in message.get("users", []):
        if "content_b64" in user:
            user["content_b64"] = f"<{len(base64.b64decode(user['content_b64']))} bytes>"
    return message


def test_golden_push_conversation(examples: Project, tmp_path: Path) -> None:
    prepared = prepare(examples, EXAMPLE_INVENTORY, hosts=["ws-sales-02"])
    (rendered,) = prepared.rendered
    target = rendered.target
    host = SimulatedHost("ws-sales-02", tmp_path, [SimUser(target.user)])
    host.write_ini(target.user, "[Settings]\r\nmainX=10\r\n".encode("utf-16"))
    host.start_microsip(target.user)
    transport = DirectTransport(host)
    job = HostJob(
        target.host, target.connection, target.install, (UserJob(target, rendered, prepared.secrets[target.id]),)
    )
    result = push_host(job, lambda _: transport, PushOptions(), fingerprint_key=b"k" * 32)
    assert result.status == "changed", result
    assert result.users[0].restarted
    lines = [*transport.command_lines]
    for chunk in transport.sent:
        for line in chunk.decode().splitlines():
            message = line if not line.startswith("{") else json.loads(line)
            lines.append(json.dumps(shown(message), ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    password = prepared.secrets[target.id]["account1"].reveal()
    assert password not in text
    assert '"op": "discover"' in text and text.count('"op": "apply"') == 2  # once more after MicroSIP saved
    if REFRESH:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, "utf-8")
    assert text == GOLDEN.read_text("utf-8")


def test_the_lab_refuses_envelopes_over_the_size_limit(tmp_path: Path) -> None:
    import asyncio

    from provision.lab.faults import WINRM_DEFAULTS
    from provision.lab.wsman import WSManService

    host = SimulatedHost("h", tmp_path, [SimUser("u")])
    service = WSManService(host)
    status, body = asyncio.run(service.handle(b"<x>" + b"a" * WINRM_DEFAULTS["MaxEnvelopeSizekb"] * 1024 + b"</x>"))
    assert (status, body) == (413, b"")  # HTTP 413, not a WS-Management fault
    host.faults.winrm_config = {"MaxEnvelopeSizekb": 150}
    status, _ = asyncio.run(service.handle(b"<x>" + b"a" * 150 * 1024 + b"</x>"))
    assert status == 413


def test_requests_go_in_sends_that_fit_the_hosts_envelope(tmp_path: Path) -> None:
    from provision.remote.agent import Agent, send_limit

    host = SimulatedHost("h", tmp_path, [SimUser("u")])
    transport = DirectTransport(host)
    limit = send_limit(150)
    agent = Agent(transport, deadline=time.monotonic() + 30, max_send=limit)
    big = {"op": "discover", "install": {"mode": "installed", "exe": None}, "users": [{"name": "u" * 400_000}]}
    agent.request({**big, "max_ini_bytes": 1})
    assert max(len(chunk) for chunk in transport.sent) <= limit
    assert len(transport.sent) > 3
    # What WinRS puts in the envelope: the chunk in base64, plus the SOAP around it.
    assert 4 * -(-limit // 3) + 2048 < 150 * 1000
    assert send_limit(None) == send_limit(500) > 300_000


def test_a_transcript_line_shows_inis_by_digest_and_masks_passwords() -> None:
    from provision.remote.agent import masked

    content = base64.b64encode("[Account1]\r\npassword=hunter2\r\n".encode("utf-16")).decode()
    line = json.dumps({"op": "apply", "users": [{"name": "u", "content_b64": content, "password": "hunter2"}]})
    shown = masked(line)
    assert "hunter2" not in shown and content not in shown
    assert '"content_b64": "<' in shown and '"password": "********"' in shown
    assert masked("not json") == "not json"


def test_a_request_line_the_agent_cannot_read_is_answered_and_the_next_one_still_served(tmp_path: Path) -> None:
    host = SimulatedHost("h", tmp_path, [SimUser("u")])
    command, arguments = bootstrap_command()
    agent = start_program(host, command, " ".join(arguments), False)
    discover = {"op": "discover", "install": {"mode": "installed", "exe": None}, "users": [{"name": "u"}]}
    discover["max_ini_bytes"] = 1 << 20
    lines = [base64.b64encode(agent_text().encode()).decode(), "{not json", "", "[1, 2]", json.dumps(discover)]
    agent.feed(("\n".join(lines) + "\n").encode(), end=False)
    deadline = time.monotonic() + 5
    while agent.stdout.count(b"\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    replies = [json.loads(line) for line in agent.stdout.decode().splitlines()]
    assert [r["ok"] for r in replies] == [False, False, True]  # the empty line is no request
    assert replies[0]["error"].startswith("the request is not JSON")
    assert replies[1]["error"] == "the request is not a JSON object"
    assert replies[2]["users"][0]["name"] == "u" and not agent.done
