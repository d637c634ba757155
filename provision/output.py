"""Writing rendered inis to a local tree, DIR/<host>/<user>/microsip.ini, and reading one back.

Every file is written whole under a temporary name first; only when all are complete are
they renamed into place, each rename atomic. A failure leaves DIR as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from provision.errors import IniError, ProvisionError, display_path
from provision.ini import MAX_INI_BYTES, check_ini_size, encode_ini
from provision.render import RenderedIni
from provision.secrets import MASK, Secret

INI_NAME = "microsip.ini"

#: "utf-16": the real file, UTF-16LE with BOM and CRLF, as MicroSIP writes it. "utf-8": a copy
#: for review and git, UTF-8 without BOM with LF line ends; MicroSIP would read it as ANSI, so
#: it is never a file to copy to a workstation.
Encoding = Literal["utf-16", "utf-8"]


@dataclass(frozen=True)
class OutputFile:
    relative: Path
    content: bytes = field(repr=False)


def ini_path(root: Path, host: str, user: str) -> Path:
    return root / host / user / INI_NAME


def render_file(rendered: RenderedIni, secrets: dict[str, Secret] | None, encoding: Encoding = "utf-16") -> OutputFile:
    """The ini as the workstation would get it; with `secrets` None, passwords are masked."""
    text = rendered.text
    for token, section in rendered.tokens.items():
        text = text.replace(token, secrets[section].reveal() if secrets is not None else MASK)
    target = rendered.target
    content = encode_ini(text) if encoding == "utf-16" else text.replace("\r\n", "\n").encode("utf-8")
    return OutputFile(Path(target.host) / target.user / INI_NAME, content)


def write_tree(root: Path, files: Sequence[OutputFile], *, private: bool) -> None:
    """Write all files under root, or none; `private` files (with secrets) are for the owner only.

    Each file is first written whole beside its final name, then all are renamed into place.
    A failure while writing removes what this call created and leaves the tree as it was.
    Paths are plain strings here: with 10,000 files, pathlib's overhead doubled the time.
    """
    file_mode, dir_mode = (0o600, 0o700) if private else (0o644, 0o755)
    suffix = f".provision-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    base = os.fspath(root)
    created: list[str] = []
    staged: list[tuple[str, str]] = []
    ready: set[str] = set()
    try:
        _ensure_dir(base, dir_mode, created)
        for item in files:
            final = os.path.join(base, item.relative)
            folder = os.path.dirname(final)
            if folder not in ready:
                _ensure_dir(folder, dir_mode, created)
                ready.add(folder)
            temp = final + suffix
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
            staged.append((temp, final))
            with os.fdopen(fd, "wb") as handle:
                handle.write(item.content)
    except OSError as exc:
        for temp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        for made in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise ProvisionError(f"cannot write {display_path(root)}: {exc.strerror or exc}; nothing was changed") from None
    for moved, (temp, final) in enumerate(staged):
        try:
            os.replace(temp, final)
        except OSError as exc:
            for left, _ in staged[moved:]:
                with contextlib.suppress(OSError):
                    os.unlink(left)
            raise ProvisionError(
                f"writing {display_path(root)} failed after {moved} of {len(staged)} files: {exc.strerror or exc}"
            ) from None


def _ensure_dir(folder: str, mode: int, created: list[str]) -> None:
    """mkdir -p that records the folders it made, outermost first (plain strings: this is hot)."""
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        return
    except FileNotFoundError:
        _ensure_dir(os.path.dirname(folder), mode, created)
        os.mkdir(folder, mode)
    created.append(folder)


def read_current(root: Path, host: str, user: str) -> bytes | None:
    """DIR/<host>/<user>/microsip.ini, or None if there is none.

    A file over MAX_INI_BYTES, or one that is not a regular file (a FIFO would block, a
    device never end), is refused by its size before a byte of it is read."""
    path = ini_path(root, host, user)
    name = display_path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise IniError(f"{name} is not a regular file")
        check_ini_size(info.st_size)
        with path.open("rb") as handle:
            data = handle.read(MAX_INI_BYTES + 1)
        check_ini_size(len(data))  # it grew since
        return data
    except FileNotFoundError:
        return None
    except IniError as exc:
        raise IniError(exc.message if exc.message.startswith(name) else f"{name}: {exc.message}") from None
    except OSError as exc:
        raise ProvisionError(f"cannot read {name}: {exc.strerror or exc}") from None
