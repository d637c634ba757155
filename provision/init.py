"""`provision init`: a config directory to start from, made from files shipped in the package.

profiles/ (base, two departments, smoke), an inventory with groups, a `.env` for secrets
(readable by its owner only), provision.toml and a .gitignore. Nothing is overwritten:
if any of these files exists, nothing is written.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import provision
from provision.errors import ConfigError, Problem, ProvisionError, display_path

PROFILES = ("base", "sales", "support", "smoke")


@dataclass(frozen=True)
class SkeletonFile:
    target: str  # relative to the new config directory
    source: Path
    mode: int


def skeleton_folder() -> Path:
    return Path(provision.__file__).resolve().parent / "skeleton"


def _profiles_folder() -> Path:
    """The example profiles: inside the wheel, or profiles/ at the top of a checkout."""
    inside = skeleton_folder() / "profiles"
    return inside if inside.is_dir() else Path(provision.__file__).resolve().parent.parent / "profiles"


def skeleton_files() -> list[SkeletonFile]:
    skeleton, profiles = skeleton_folder(), _profiles_folder()
    files = [SkeletonFile(f"profiles/{name}.yaml", profiles / f"{name}.yaml", 0o644) for name in PROFILES]
    files += [
        SkeletonFile("inventory.yaml", skeleton / "inventory.yaml", 0o644),
        SkeletonFile("provision.toml", skeleton / "provision.toml", 0o644),
        SkeletonFile(".env", skeleton / "dot-env", 0o600),  # secrets: the owner only
        SkeletonFile(".gitignore", skeleton / "dot-gitignore", 0o644),
    ]
    return files


def init_project(folder: Path) -> list[str]:
    """Write the starting files into `folder` (made if missing); return their relative paths."""
    files = skeleton_files()
    existing = [f.target for f in files if (folder / f.target).exists()]
    if existing:
        raise ConfigError(
            [Problem(display_path(folder / name), None, "", "already exists") for name in existing],
            summary=f"{display_path(folder)} already has provision files; nothing was written",
        )
    created: list[Path] = []
    try:
        for item in files:
            path = folder / item.target
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    created.append(parent)
            content = item.source.read_bytes()
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.mode)
            created.append(path)
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.chmod(path, item.mode)  # whatever the umask
    except OSError as exc:
        for made in reversed(created):
            with contextlib.suppress(OSError):
                made.rmdir() if made.is_dir() else made.unlink()
        raise ProvisionError(
            f"cannot write {display_path(folder)}: {exc.strerror or exc}; nothing was written"
        ) from None
    return [f.target for f in files]
