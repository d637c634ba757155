"""The plan for one target: what would change, key by key, and the file to write.

The password is never compared by content: MicroSIP encrypts it at start, so the file
never equals what was pushed. The plan compares the fingerprint of the secret recorded
at the last push with the current one, and keeps the encrypted value when they match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from provision.ini import Key, decode_ini, encode_ini, merge_ini, read_ini, win32_value
from provision.render import RenderedIni
from provision.secrets import MASK, Secret, fingerprint, same_text
from provision.state import PushRecord


@dataclass(frozen=True)
class KeyChange:
    section: str
    key: str
    old: str | None
    new: str | None
    note: str = ""

    def describe(self) -> str:
        old = "(unset)" if self.old is None else repr(self.old)
        new = "(removed)" if self.new is None else repr(self.new)
        note = f"  ({self.note})" if self.note else ""
        return f"[{self.section}] {self.key}: {old} -> {new}{note}"


@dataclass(frozen=True)
class TargetPlan:
    target_id: str
    changes: tuple[KeyChange, ...]
    managed_keys: frozenset[Key]
    managed_hash: str
    fingerprints: dict[str, str]
    notes: tuple[str, ...] = ()
    # The whole new file, secrets included: only for writing, never for showing.
    content: bytes | None = field(default=None, repr=False)
    # The raw values the profile wants, passwords left out (recorded with a push, so health can
    # tell a workstation that changed from a profile that did).
    managed_values: dict[Key, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def plan_target(
    rendered: RenderedIni,
    secrets: Mapping[str, Secret],
    current: bytes | None,
    record: PushRecord | None,
    fingerprint_key: bytes,
) -> TargetPlan:
    """Compare the rendered ini with the workstation's current one (None: there is none).

    `secrets` maps each account section (lower case) to its resolved password.
    Raises IniError when the current file cannot be merged safely (UnreadableIniError when
    it cannot be read safely at all: it must then be left as it is).
    """
    target = rendered.target
    desired = rendered.desired
    wanted = desired.keys()
    text = decode_ini(current, strict=True) if current else ""
    doc = read_ini(text)
    names = {s.lower(): s for s, _ in desired.sections}
    fps = {
        section: fingerprint(fingerprint_key, f"{target.id}/{section}", secret) for section, secret in secrets.items()
    }
    password_keys = {(section, "password") for section in rendered.tokens.values()}
    changes: list[KeyChange] = []
    keep: set[Key] = set()
    for (section, key), raw in wanted.items():
        display = names[section]
        spelled = next(k for k, _ in dict(desired.sections)[display] if k.lower() == key)
        old = doc.get(section, key)
        if (section, key) in password_keys:
            note = _password_change(old, secrets[section], fps[section], record, section)
            if note:
                changes.append(KeyChange(display, spelled, None if old is None else MASK, MASK, note))
            else:
                keep.add((section, key))
        elif old is None or win32_value(old) != win32_value(raw):
            changes.append(KeyChange(display, spelled, old, raw))
    dropped = (record.managed_keys if record else frozenset()) - wanted.keys()
    for section, key in sorted(dropped):
        old = doc.get(section, key)
        if old is not None:
            sec = doc.sections[section]
            shown = MASK if key == "password" else old
            changes.append(KeyChange(sec.name, sec.names[key], shown, None, "no longer managed"))
    notes = []
    if current and current.startswith(b"\xef\xbb\xbf"):
        changes.append(
            KeyChange(
                "",
                "(encoding)",
                "UTF-8 with BOM",
                "UTF-16LE with BOM",
                "MicroSIP cannot read the first section of a UTF-8 file with BOM",
            )
        )
    if doc.duplicate_keys:
        notes.append(
            f"{len(doc.duplicate_keys)} duplicate key(s) in the current file, ignored by MicroSIP, are dropped"
        )
    content = None
    if changes:
        values = {(section, "password"): secrets[section].reveal() for section in rendered.tokens.values()}
        if text.strip():
            merged = merge_ini(text, desired, values, remove=dropped, keep=keep)
        else:
            merged = rendered.text
            for token, section in rendered.tokens.items():
                merged = merged.replace(token, values[(section, "password")])
        content = encode_ini(merged)
    return TargetPlan(
        target_id=target.id,
        changes=tuple(changes),
        managed_keys=frozenset(wanted),
        managed_hash=managed_hash(wanted, fps),
        fingerprints=fps,
        notes=tuple(notes),
        content=content,
        managed_values={k: v for k, v in wanted.items() if k not in password_keys},
    )


def _password_change(old: str | None, secret: Secret, fp: str, record: PushRecord | None, section: str) -> str:
    """Why the password must be written, or '' if the workstation already has this secret."""
    if not old:
        return "not set on the workstation"
    if same_text(win32_value(old), secret.reveal()):
        return ""  # pushed, and MicroSIP has not started since to encrypt it
    recorded = record.fingerprints.get(section) if record else None
    if recorded is None:
        return "no record of the secret pushed; it is written again"
    return "" if same_text(recorded, fp) else "secret changed"


def managed_hash(wanted: Mapping[Key, str], fingerprints: Mapping[str, str]) -> str:
    """A digest of everything managed, passwords by fingerprint: equal hashes, nothing to do."""
    items = {
        f"{s}/{k}": (fingerprints.get(s, "") if k == "password" else win32_value(v)) for (s, k), v in wanted.items()
    }
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
