"""What every property test checks: bad input gives the project's own error, within bounds."""

from __future__ import annotations

import contextlib
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from provision.errors import ConfigError, ExitStatus, ProvisionError

T = TypeVar("T")

#: Peak memory one example may allocate (the inputs are a few KB).
MEMORY_LIMIT = 64 * 1024 * 1024
#: A marker placed in long values: an error message may quote at most ~60 characters of it.
LONG = "Q" * 300
#: A marker placed only in password fields: it must never appear in a message.
SECRET = "S3cret-marker"


def bounded(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `function` and fail if it allocated more than MEMORY_LIMIT at its peak."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        return function(*args, **kwargs)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        if started:
            tracemalloc.stop()
        assert peak < MEMORY_LIMIT, f"{getattr(function, '__name__', function)} allocated {peak:,} bytes"


def loads_or_refuses(function: Callable[..., T], *args: Any, **kwargs: Any) -> T | ProvisionError:
    """The result, or the ProvisionError a person gets (exit 2 for bad input); anything else fails."""
    try:
        return bounded(function, *args, **kwargs)
    except ProvisionError as exc:
        check_message(exc)
        return exc


def check_message(exc: ProvisionError) -> None:
    assert exc.exit_status in (ExitStatus.USAGE, ExitStatus.FAILED)
    text = exc.message
    assert "Q" * 61 not in text, "an error quoted more than 60 characters of a value"
    assert SECRET not in text, "an error showed a password"
    if isinstance(exc, ConfigError):
        assert exc.exit_status == ExitStatus.USAGE
        for problem in exc.problems:
            assert problem.line is None or problem.line >= 1
            assert len(str(problem)) < 1000, str(problem)[:200]


@contextlib.contextmanager
def written_folder(files: Mapping[str, str | bytes]) -> Iterator[Path]:
    """A fresh folder holding `files` (relative path, with `__` for `/` -> text or bytes)."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        for relative, content in files.items():
            path = root / relative.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", errors="surrogatepass")
        yield root
