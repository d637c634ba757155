"""Value types shared by profiles and inventory: ini-safe text, names, secret references.

Anything that ends up in microsip.ini is checked here before it reaches a template:
a line break or NUL would let a value write lines of its own into the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

#: The most characters of a bad value an error message quotes.
QUOTE_MAX = 60


def cut(text: str, limit: int = QUOTE_MAX) -> str:
    """`text` as a message quotes a name: at most `limit` characters, then '...'."""
    return text if len(text) <= limit else text[:limit] + "..."


def one_line(text: str, limit: int = 200) -> str:
    """Another program's message quoted in ours: on one line, and short (it may quote a huge value)."""
    return cut(" ".join(text.split()), limit)


def shown(value: object, limit: int = QUOTE_MAX) -> str:
    """A value as an error message quotes it: short, on one line, and never huge.

    Error messages go to a screen: a 1 MB value must not make a 1 MB message, and a
    line break in a value must not start a line of its own.
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        if value.bit_length() > 128:
            return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# C0 and C1 control characters (Unicode category Cc), Unicode line breaks, lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def unsafe_character(text: str) -> str | None:
    """Describe the first character that may not go into an ini value, if any."""
    match = _UNSAFE.search(text)
    if match is None:
        return None
    char = match.group()
    if char in "\r\n\x85\u2028\u2029":
        return "a line break"
    if char == "\x00":
        return "a NUL character"
    if "\ud800" <= char <= "\udfff":
        return "an unpaired surrogate"
    return f"a control character (U+{ord(char):04X})"


def check_ini_text(text: str) -> str:
    bad = unsafe_character(text)
    if bad:
        raise PydanticCustomError("ini_text", "contains {bad}, which would break the ini file", {"bad": bad})
    if text != text.strip(" \t"):
        raise PydanticCustomError(
            "ini_text", "starts or ends with a space; Windows drops it when MicroSIP reads the file"
        )
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        raise PydanticCustomError("ini_text", "is wrapped in quotes; Windows strips one pair of quotes when reading")
    return text


#: Text for a [Settings] value: one line, at most 255 characters (MicroSIP's buffer).
SettingText = Annotated[str, StringConstraints(max_length=255), AfterValidator(check_ini_text)]
#: Text for an account value; the per-version limit is checked in rules.py.
AccountText = Annotated[str, StringConstraints(max_length=1040), AfterValidator(check_ini_text)]
#: Free text that never reaches the ini (descriptions).
Description = Annotated[str, StringConstraints(max_length=2000)]


@dataclass(frozen=True)
class TextPattern:
    """What a text value looks like, for the JSON Schema (editors); the validator is the rule.

    `numbers`: a number is read as its text and may match (a name such as 2024)."""

    pattern: str
    numbers: bool = True

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core)
        options = schema.get("anyOf")
        text = next((o for o in options if o.get("type") == "string"), None) if options else schema
        if text is None:
            return schema
        text["pattern"] = self.pattern
        return schema if self.numbers else text


# fullmatch, not match with $: "$" also matches before a final line break.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})")
NAME_RULE = "letters, digits, '_' or '-' (at most 64), starting with a letter or digit"


def is_name(text: str) -> bool:
    """A name of a profile, group or account: it names a file, so it is never a path."""
    return _NAME_RE.fullmatch(text) is not None


_USER_FORBIDDEN = set('/\\[]:;|=,+*?<>"@%')


def check_name(text: str) -> str:
    if not is_name(text):
        raise PydanticCustomError("name", f"must be {NAME_RULE}")
    return text


def check_host_name(text: str) -> str:
    if not _HOST_RE.fullmatch(text) or ".." in text:
        raise PydanticCustomError("host_name", "is not a valid host name (letters, digits, '.', '-', '_')")
    return text


def check_user_name(text: str) -> str:
    """A Windows logon name: it names a profile folder and an output folder, so no separators."""
    bad = unsafe_character(text)
    if bad or not text or len(text) > 64 or text != text.strip(" .") or set(text) & _USER_FORBIDDEN:
        raise PydanticCustomError(
            "user_name",
            'is not a valid Windows user name (no \\ / [ ] : ; | = , + * ? < > " @ %, '
            "no leading or trailing dot or space, at most 64 characters)",
        )
    return text


#: A name as the JSON Schema says it (is_name is the rule).
NAME_PATTERN = f"^{_NAME_RE.pattern}$"
Name = Annotated[str, AfterValidator(check_name), TextPattern(NAME_PATTERN)]
HostName = Annotated[str, AfterValidator(check_host_name)]
UserName = Annotated[str, AfterValidator(check_user_name)]

_SECRET_RE = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*|file:.+|keyring:[^/\s]+/.+")


def check_secret_ref(text: str) -> str:
    # The value may be a plaintext password typed by mistake: never echo it.
    if not _SECRET_RE.fullmatch(text):
        raise PydanticCustomError(
            "secret_ref",
            "must be a secret reference (env:NAME, file:PATH or keyring:SERVICE/USER); "
            "plaintext passwords are not allowed in profiles or inventory",
        )
    return text


#: A reference to a secret, resolved only at render or push time (see provision/secrets.py).
SecretRef = Annotated[
    str,
    AfterValidator(check_secret_ref),
    TextPattern(r"^(?:env:[A-Za-z_][A-Za-z0-9_]*|file:.+|keyring:[^/\s]+/.+)$", numbers=False),
]
