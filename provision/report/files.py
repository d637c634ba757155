"""Writing a report: whole or not at all to a file, or straight to standard output (`-`,
/dev/stdout, a pipe), where a temporary file beside it cannot be made."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from provision.errors import ProvisionError, display_path

STDOUT = "-"


def is_stdout(path: Path | str) -> bool:
    return str(path) == STDOUT


def write_text(path: Path | str, text: str) -> None:
    """Write `text` to `path`: '-' is standard output; a device or pipe (/dev/stdout) is
    written directly; a file is written to a temporary name beside it and renamed, so a
    failure leaves the old file as it was. A failure is a ProvisionError naming the file."""
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    try:
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            with open(target, "w", encoding="utf-8") as out:
                out.write(text)
            return
        folder = target.resolve().parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProvisionError(f"cannot write {display_path(target)}: {exc.strerror or exc}") from None
