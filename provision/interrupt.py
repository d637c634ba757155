"""How a run is stopped: the flag the fleet runner raises on a second Ctrl-C.

The runner sets it for the thread that works on a host; every conversation with a host
reads it, so no new step starts once it is raised (a step already asked is finished).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ABORT: ContextVar[threading.Event | None] = ContextVar("provision_abort", default=None)


def current_abort() -> threading.Event | None:
    return _ABORT.get()


@contextmanager
def aborting_on(event: threading.Event) -> Iterator[None]:
    token = _ABORT.set(event)
    try:
        yield
    finally:
        _ABORT.reset(token)
