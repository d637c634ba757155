"""Writing rendered inis to a local tree, DIR/<host>/<user>/microsip.ini, and reading one back.

Everything is written to a staging folder first; only when every file is complete are they
moved into place, each with an atomic rename. A failure leaves DIR as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import ProvisionError, display_path
from provision.ini import encode_ini
from provision.render import RenderedIni
from provision.secrets import MASK, Secret

INI_NAME = "microsip.ini"


@dataclass(frozen=True)
class OutputFile:
    relative: Path
    content: bytes = field(repr=False)


def ini_path(root: Path, host: str, user: str) -> Path:
    return root / host / user / INI_NAME


def render_file(rendered: RenderedIni, secrets: dict[str, Secret] | None) -> OutputFile:
    """The ini as the workstation would get it; with `secrets` None, passwords are masked."""
    text = rendered.text
    for token, section in rendered.tokens.items():
        text = text.replace(token, secrets[section].reveal() if secrets is not None else MASK)
    target = rendered.target
    return OutputFile(Path(target.host) / target.user / INI_NAME, encode_ini(text))


def write_tree(root: Path, files: Sequence[OutputFile], *, private: bool) -> None:
    """Write all files under root, or none. `private` files (with secrets) are readable by the owner only."""
    file_mode = 0o600 if private else 0o644
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".provision-staging-", dir=root))
    except OSError as exc:
        raise ProvisionError(f"cannot write to {display_path(root)}: {exc.strerror or exc}") from None
    moved = 0
    try:
        for item in files:
            path = staging / item.relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(item.content)
            os.chmod(path, file_mode)
        for item in files:
            final = root / item.relative
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)
            os.replace(staging / item.relative, final)
            moved += 1
    except OSError as exc:
        outcome = "nothing was changed" if moved == 0 else f"{moved} of {len(files)} files were replaced"
        raise ProvisionError(f"cannot write {display_path(root)}: {exc.strerror or exc}; {outcome}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_current(root: Path, host: str, user: str) -> bytes | None:
    path = ini_path(root, host, user)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProvisionError(f"cannot read {display_path(path)}: {exc.strerror or exc}") from None
