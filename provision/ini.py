"""microsip.ini as MicroSIP reads and writes it, and merging managed keys into one.

MicroSIP goes through the Win32 profile API: section and key names ignore case, the
first of two equal keys wins, one pair of quotes around a value is stripped, and lines
that are neither a section, a key nor a comment are ignored. Reading here follows the
same rules; editing goes through configupdater so comments and order survive.
"""

from __future__ import annotations

import codecs
import configparser
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from configupdater import ConfigUpdater
from configupdater.block import Space
from configupdater.option import Option

from provision.errors import IniError, UnreadableIniError

# UTF-16LE with BOM: MicroSIP reads a file without it in the ANSI code page, which garbles
# every non-ASCII name (docs/microsip.md).
BOM = codecs.BOM_UTF16_LE

Key = tuple[str, str]  # (section, key), both lower-case

#: The largest ini read or merged. MicroSIP's own are a few KB (a long call history adds
#: some); a bigger file is not one to parse: 20 MB took two minutes and 2.6 GB.
MAX_INI_BYTES = 8 * 1024 * 1024


def check_ini_size(size: int) -> None:
    """Refuse an ini of `size` bytes if it is over MAX_INI_BYTES (call before reading it)."""
    if size > MAX_INI_BYTES:
        raise IniError(f"the ini is {size:,} bytes; an ini over {MAX_INI_BYTES:,} bytes is refused")


def decode_ini(data: bytes, *, strict: bool = False) -> str:
    """Text of an ini as MicroSIP would understand it, with \\n line ends.

    With `strict`, bytes that are not valid in the file's encoding, and NUL characters
    (a UTF-16 file that lost its BOM), are an UnreadableIniError naming the line, instead
    of being replaced: a file about to be merged and written back must not change under
    the keys provision does not manage.
    """
    check_ini_size(len(data))
    errors = "strict" if strict else "replace"
    if data.startswith(codecs.BOM_UTF16_LE):
        text = _decode(data, 2, "utf-16-le", errors)
    elif data.startswith(codecs.BOM_UTF8):
        text = _decode(data, 3, "utf-8", errors)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # ANSI, as MicroSIP reads a BOM-less file; cp1252 is the Western default.
            text = _decode(data, 0, "cp1252", errors)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strict:
        _refuse_nul(text)
    return text


def _refuse_nul(text: str) -> None:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UnreadableIniError(line, "NUL characters (a UTF-16 file without its byte order mark?)")


def _decode(data: bytes, skip: int, encoding: str, errors: str) -> str:
    try:
        return data[skip:].decode(encoding, errors=errors)
    except UnicodeDecodeError as exc:
        before = data[skip : skip + exc.start].decode(encoding, errors="replace").replace("\r\n", "\n")
        line = before.count("\n") + before.count("\r") + 1
        raise UnreadableIniError(line, f"bytes that are not {encoding} text (a wrong encoding?)") from None


def encode_ini(text: str) -> bytes:
    """UTF-16LE with BOM and CRLF line ends: what MicroSIP itself writes."""
    lines = text.replace("\r\n", "\n").split("\n")
    return BOM + "\r\n".join(lines).encode("utf-16-le")


def win32_value(raw: str) -> str:
    """A value as GetPrivateProfileString returns it: trimmed, one pair of quotes removed."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


@dataclass
class Section:
    name: str
    line: int
    values: dict[str, str] = field(default_factory=dict)  # lower-case key -> raw value
    names: dict[str, str] = field(default_factory=dict)  # lower-case key -> spelling
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class IniDoc:
    """An ini read with Win32 semantics, plus what Win32 would silently ignore."""

    sections: dict[str, Section] = field(default_factory=dict)  # lower-case name -> section
    duplicate_sections: list[tuple[str, int]] = field(default_factory=list)
    duplicate_keys: list[tuple[str, str, int]] = field(default_factory=list)
    ignored_lines: list[int] = field(default_factory=list)

    def get(self, section: str, key: str) -> str | None:
        found = self.sections.get(section.lower())
        return None if found is None else found.values.get(key.lower())

    def keys(self) -> dict[Key, str]:
        return {(s, k): v for s, sec in self.sections.items() for k, v in sec.values.items()}


def read_ini(text: str) -> IniDoc:
    doc = IniDoc()
    current: Section | None = None
    seen_twice = False
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith("[") and "]" in stripped:
            name = stripped[1 : stripped.index("]")].strip()
            existing = doc.sections.get(name.lower())
            if existing is not None:
                doc.duplicate_sections.append((name, number))
                current, seen_twice = existing, True
            else:
                current, seen_twice = Section(name, number), False
                doc.sections[name.lower()] = current
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key or current is None:
            doc.ignored_lines.append(number)
            continue
        lower = key.lower()
        if lower in current.values:
            doc.duplicate_keys.append((current.name, key, number))
            continue
        if seen_twice:
            # Win32 reads only the first of two equal sections; a key in the second is unseen.
            doc.duplicate_keys.append((current.name, key, number))
            continue
        current.values[lower] = value.strip()
        current.names[lower] = key
        current.lines[lower] = number
    return doc


@dataclass(frozen=True)
class Desired:
    """The managed content of an ini: sections in order, keys in order, raw values."""

    sections: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]

    def keys(self) -> dict[Key, str]:
        return {(s.lower(), k.lower()): v for s, items in self.sections for k, v in items}

    @classmethod
    def from_doc(cls, doc: IniDoc) -> Desired:
        return cls(
            tuple((sec.name, tuple((sec.names[k], v) for k, v in sec.values.items())) for sec in doc.sections.values())
        )

    def text(self, values: Mapping[Key, str] | None = None) -> str:
        """The managed keys alone as ini text (used when the workstation has no ini yet)."""
        out: list[str] = []
        for name, items in self.sections:
            if out:
                out.append("")
            out.append(f"[{name}]")
            for key, value in items:
                raw = values.get((name.lower(), key.lower()), value) if values else value
                out.append(f"{key}={raw}")
        return "\n".join(out) + "\n"


def _updater() -> ConfigUpdater:
    return ConfigUpdater(
        delimiters=("=",),
        comment_prefixes=(";",),
        inline_comment_prefixes=None,
        allow_no_value=False,
        empty_lines_in_values=False,
        strict=True,
        space_around_delimiters=False,
    )


def _editable(text: str) -> tuple[str, list[int]]:
    """Text configupdater can load without changing what Win32 would read, and for each of
    its lines the line of `text` it comes from.

    Lines Win32 ignores become comments, later duplicates of a key are dropped (the
    first wins anyway), section names lose the blanks Win32 trims and indentation goes
    (configupdater would take an indented line as the continuation of a value). A section
    that appears twice, or one with an empty name, cannot be merged safely: that is an
    error for this target.
    """
    _refuse_nul(text)
    doc = read_ini(text)
    empty = doc.sections.get("")
    if empty is not None:
        raise UnreadableIniError(empty.line, "an empty section name ([])")
    if doc.duplicate_sections:
        name, where = doc.duplicate_sections[0]
        raise IniError(
            f"the existing ini has section [{name}] twice (line {where}); MicroSIP reads only "
            "the first. Fix the file by hand, then push again"
        )
    drop = {number for _, _, number in doc.duplicate_keys}
    ignored = set(doc.ignored_lines)
    lines = []
    origin = []
    for number, line in enumerate(text.split("\n"), start=1):
        if number in drop:
            continue
        origin.append(number)
        stripped = line.strip()
        if number in ignored:
            lines.append(f";{stripped}")
        elif stripped.startswith("[") and "]" in stripped:
            lines.append(f"[{stripped[1 : stripped.index(']')].strip()}]")
        else:
            lines.append(line.lstrip())
    return "\n".join(lines), origin


def merge_ini(
    existing: str,
    desired: Desired,
    values: Mapping[Key, str],
    remove: Iterable[Key] = (),
    keep: Iterable[Key] = (),
) -> str:
    """Set the desired keys in `existing`, keep everything else.

    `values` overrides desired raw values (secrets are substituted here, at the last step);
    `keep` lists desired keys whose current value must stay (a password MicroSIP has
    already encrypted); `remove` lists keys a previous push managed and the profile no
    longer does. Sections that end up empty because of `remove` are dropped.
    """
    if not existing.strip():
        return desired.text(values)
    text, origin = _editable(existing)
    updater = _updater()
    try:
        updater.read_string(text)
    except configparser.Error as exc:
        # _editable leaves nothing configupdater should refuse; if it still does, the file
        # is not one to edit.
        line = _error_line(exc)
        raise UnreadableIniError(
            origin[line - 1] if line and 0 < line <= len(origin) else None,
            " ".join(str(exc).split())[:200],
        ) from None
    by_lower = {name.lower(): name for name in updater.sections()}
    keep = set(keep)
    previous_section: str | None = None
    for section_name, items in desired.sections:
        lower = section_name.lower()
        if lower not in by_lower:
            _add_section(updater, section_name, previous_section)
            by_lower[lower] = section_name
        section = updater[by_lower[lower]]
        previous_section = by_lower[lower]
        for key, raw in items:
            k = (lower, key.lower())
            if k in keep and section.get(key) is not None:
                continue
            value = values.get(k, raw)
            option = section.get(key)
            if option is not None:
                option.value = value
            else:
                _append_option(section, key, value)
    for section_lower, key_lower in sorted(set(remove) - set(desired.keys())):
        name = by_lower.get(section_lower)
        if name is None:
            continue
        section = updater[name]
        if section.get(key_lower) is not None:
            del section[key_lower]
            if not any(isinstance(b, Option) for b in section.iter_blocks()):
                updater.remove_section(name)
                del by_lower[section_lower]  # a later key of the same section finds it gone
    return str(updater)


def _error_line(exc: configparser.Error) -> int | None:
    line = getattr(exc, "lineno", None)
    if line is None and getattr(exc, "errors", None):
        line = exc.errors[0][0]  # type: ignore[attr-defined]
    return line if isinstance(line, int) else None


def _add_section(updater: ConfigUpdater, name: str, after: str | None) -> None:
    """Add [name] after section `after` (or first), with blank lines around it as MicroSIP does."""
    sections = updater.sections()
    if not sections:
        updater.add_section(name)
        return
    if after is None or after not in updater:
        updater[sections[0]].add_before.section(name).space()
        return
    anchor = updater[after]
    if not isinstance(anchor.last_block, Space):
        anchor.add_after.space()
        anchor = updater[after]
    added = anchor.add_after.section(name)
    if sections[-1] != after:
        added.space()


def _append_option(section: object, key: str, value: str) -> None:
    options = [b for b in section.iter_blocks() if isinstance(b, Option)]  # type: ignore[attr-defined]
    if options:
        options[-1].add_after.option(key, value)
    else:
        section.set(key, value)  # type: ignore[attr-defined]
