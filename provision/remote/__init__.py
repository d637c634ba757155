"""The PowerShell the tool runs on workstations, and the thin Python side that talks to it.

The scripts live in remote/scripts/*.ps1 (Windows PowerShell 5.1). One powershell.exe per
host is started with the small bootstrap as -EncodedCommand; the agent (the other files,
joined) arrives as the first line of standard input, then one JSON request per line.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

from provision.errors import ProvisionError

SCRIPTS = Path(__file__).resolve().parent / "scripts"
AGENT_PARTS = (
    "common.ps1",
    "recover.ps1",
    "discover.ps1",
    "apply.ps1",
    "rollback.ps1",
    "health.ps1",
    "smoke.ps1",
    "inspect.ps1",
    "loop.ps1",
)
POWERSHELL = "powershell.exe"
INSTALLED_EXE = "C:\\Program Files\\MicroSIP\\microsip.exe"  # where the installer puts it by default
POWERSHELL_FLAGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

# Windows limits on the command line a WinRM command may have: through cmd.exe (WinRM's
# default) 8191 characters; straight to CreateProcess 32767 including the final NUL.
CMD_LIMIT = 8191
CREATE_PROCESS_LIMIT = 32766


@cache
def script(name: str) -> str:
    return (SCRIPTS / name).read_text(encoding="utf-8")


@cache
def agent_text() -> str:
    return "\n".join(script(name) for name in AGENT_PARTS)


def encode_command(text: str) -> str:
    """PowerShell's -EncodedCommand: base64 of the UTF-16LE text."""
    return base64.b64encode(text.encode("utf-16-le")).decode("ascii")


@cache
def bootstrap_text() -> str:
    """The bootstrap as sent: its marker line and code, without the comment lines, which
    would only lengthen the command line."""
    lines = script("bootstrap.ps1").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if not line.lstrip().startswith("#"))]
    return "\n".join(kept) + "\n"


@cache
def bootstrap_command() -> tuple[str, tuple[str, ...]]:
    arguments = (*POWERSHELL_FLAGS, "-EncodedCommand", encode_command(bootstrap_text()))
    check_command_line(POWERSHELL, arguments)
    return POWERSHELL, arguments


class CommandLineTooLongError(ProvisionError):
    pass


def check_command_line(command: str, arguments: tuple[str, ...] | list[str], *, skip_cmd_shell: bool = False) -> None:
    """Refuse a command line Windows would refuse, before it is sent."""
    length = len(command) + sum(1 + len(a) for a in arguments)
    limit = CREATE_PROCESS_LIMIT if skip_cmd_shell else CMD_LIMIT
    if length > limit:
        raise CommandLineTooLongError(f"command line of {length} characters is over Windows' limit of {limit}")
