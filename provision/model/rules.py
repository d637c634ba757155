"""Rules that span fields or depend on the MicroSIP version: problems and warnings with paths.

Types, enums and lengths are checked by the pydantic models; what needs the whole profile
(the target version, two fields at once) is checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticCustomError

from provision.errors import Problem
from provision.model import microsip
from provision.model.microsip import Version
from provision.model.profile import Account, Hook, Profile, Settings
from provision.model.source import FieldPath, Located
from provision.model.validation import unknown_key_message
from provision.model.values import check_ini_text

_EXTRA_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_PERCENT_PLACEHOLDER = re.compile(r"%(?:\d|callerid|number|caller|name)%?", re.IGNORECASE)
_BRACE_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@dataclass
class Findings:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def check_profile(profile: Profile, located: Located) -> Findings:
    found = Findings()

    def problem(path: FieldPath, message: str) -> None:
        found.problems.append(located.problem(path, message))

    def warning(path: FieldPath, message: str) -> None:
        found.warnings.append(located.problem(path, message))

    version = profile.version
    if version < microsip.OLDEST_SUPPORTED:
        problem(
            ("microsip_version",),
            f"MicroSIP {version} is older than the oldest supported, "
            f"{microsip.OLDEST_SUPPORTED} (ini location and hooks work differently)",
        )
        return found

    _check_versions(profile.settings, ("settings",), version, problem)
    _check_versions(profile.hooks, ("hooks",), version, problem)
    s = profile.settings
    if s.rtpPortMin and s.rtpPortMax and s.rtpPortMin > s.rtpPortMax:
        problem(("settings", "rtpPortMax"), f"is below rtpPortMin ({s.rtpPortMin})")
    if s.enableSTUN and not s.STUN:
        warning(("settings", "enableSTUN"), "STUN is on but no STUN servers are given")

    for hook_key in microsip.HOOK_KEYS:
        hook = getattr(profile.hooks, hook_key)
        if hook is not None:
            _check_hook(hook_key, hook, version, problem, warning)

    for name, account in profile.accounts.items():
        _check_account(name, account, version, problem)
    if profile.active_account and profile.active_account not in profile.accounts:
        known = ", ".join(profile.accounts) or "none"
        problem(("active_account",), f"names no account of this profile (accounts: {known})")

    _check_extra(profile, problem)
    return found


def _check_versions(model: BaseModel, path: FieldPath, version: Version, problem: Any) -> None:
    for name in model.model_fields_set:
        if getattr(model, name) is None:
            continue
        extra = type(model).model_fields[name].json_schema_extra
        if not isinstance(extra, dict):
            continue
        since, until = extra.get("since"), extra.get("until")
        if isinstance(since, str) and version < Version(since):
            problem((*path, name), f"is read by MicroSIP {since} and later, not by {version}")
        if isinstance(until, str) and version > Version(until):
            problem((*path, name), f"was removed after MicroSIP {until}; {version} ignores it")


def _check_hook(key: str, hook: Hook, version: Version, problem: Any, warning: Any) -> None:
    path: FieldPath = ("hooks", key)
    if hook.program.lower().endswith((".bat", ".cmd")):
        warning(
            (*path, "program"),
            "a .bat/.cmd hook receives the caller's number unescaped and can be "
            "made to run commands by a crafted number; prefer an .exe or powershell.exe -File",
        )
    if len(hook_command(hook)) > microsip.SETTINGS_STRING_MAX:
        problem(
            path,
            f"the command is longer than MicroSIP's {microsip.SETTINGS_STRING_MAX}-character buffer",
        )
    for index, arg in enumerate(hook.args):
        if _PERCENT_PLACEHOLDER.search(arg):
            problem(
                (*path, "args", index),
                "MicroSIP substitutes no %placeholders%; it appends the caller's number as the last argument",
            )
        elif _BRACE_PLACEHOLDER.search(arg):
            if key != "cmdOutgoingCall":
                problem(
                    (*path, "args", index),
                    "only cmdOutgoingCall expands {placeholders}; this hook would receive the text as it is",
                )
            elif version < Version("3.21.3"):
                problem(
                    (*path, "args", index),
                    f"{{placeholders}} need MicroSIP 3.21.3 or later, not {version}",
                )
            if "{password}" in arg or "{md5_password}" in arg:
                warning((*path, "args", index), "hands the SIP password to the hook program")


def hook_command(hook: Hook) -> str:
    """The command line MicroSIP reads back: quoted program path, then the fixed arguments."""
    program = f'"{hook.program}"' if " " in hook.program else hook.program
    return " ".join([program, *hook.args])


def _check_account(name: str, account: Account, version: Version, problem: Any) -> None:
    path: FieldPath = ("accounts", name)
    if account.hideCID is not None:
        if version < Version("3.22") and account.hideCID in ("", "hard"):
            problem(
                (*path, "hideCID"),
                f"MicroSIP {version} takes true or false here; '' and 'hard' are 3.22",
            )
        if version >= Version("3.22") and isinstance(account.hideCID, bool):
            hint = "'hard'" if account.hideCID else "''"
            problem((*path, "hideCID"), f"from MicroSIP 3.22 this is '' or 'hard'; did you mean {hint}?")
    if account.SRTP in ("dtls", "dtls-sdes") and version < Version("3.22"):
        problem((*path, "SRTP"), f"{account.SRTP!r} needs MicroSIP 3.22 or later, not {version}")
    if version < Version("3.21.6"):
        limit = microsip.ACCOUNT_STRING_MAX_OLD
        for field_name, value in account:
            if isinstance(value, str) and len(value) > limit:
                problem(
                    (*path, field_name),
                    f"is longer than the {limit} characters MicroSIP {version} reads",
                )


def _check_extra(profile: Profile, problem: Any) -> None:
    typed = {n.lower(): n for n in Settings.model_fields}
    special = {k.lower(): f"hooks.{k}" for k in microsip.HOOK_KEYS}
    special.update({v.lower(): f"audio.{k}" for k, v in microsip.AUDIO_KEYS.items()})
    special["accountid"] = "active_account"
    for key, value in profile.extra_settings.items():
        path: FieldPath = ("extra_settings", key)
        lower = key.lower()
        if not _EXTRA_KEY_RE.match(key):
            problem(path, "is not a valid ini key name (letters, digits, '_', '.', '-')")
        elif lower in typed:
            problem(path, f"has a typed field: use settings.{typed[lower]}")
        elif lower in special:
            problem(path, f"is managed through {special[lower]}")
        elif lower in microsip.USER_STATE_KEYS:
            problem(
                path,
                "is user state that MicroSIP rewrites on every save; provision leaves it to the user",
            )
        elif lower in microsip.NOT_MICROSIP_KEYS:
            problem(path, unknown_key_message(key, []))
        text = ini_value(value)
        try:
            check_ini_text(text)
        except PydanticCustomError as exc:
            problem(path, str(exc))
        if len(text) > microsip.SETTINGS_STRING_MAX:
            problem(path, f"is longer than MicroSIP's {microsip.SETTINGS_STRING_MAX}-character buffer")


def ini_value(value: object) -> str:
    """How a profile value is spelled in the ini: booleans as 1/0, lists space-separated."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return " ".join(ini_value(v) for v in value)
    return str(value)
