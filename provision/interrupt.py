"""How a run is stopped: Ctrl-C (SIGINT) or SIGTERM, in two stages.

The first signal starts no new host and lets those in flight finish; the second raises the
abort flag, which every conversation with a host reads, so no host begins a new step (a
step already asked is finished: nothing is cut between a backup and a write). Signals
after that are only noted: the run still records what was done and writes its report.

Signals belong to the process, so one handler is installed at a time, from the main
thread; nested users (the command, then the fleet runner) share it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ABORT: ContextVar[threading.Event | None] = ContextVar("provision_abort", default=None)


def current_abort() -> threading.Event | None:
    """The abort flag of the run this thread works for, if any."""
    return _ABORT.get()


@contextmanager
def aborting_on(event: threading.Event) -> Iterator[None]:
    """Make `event` the abort flag of the work done in this block (in this thread)."""
    token = _ABORT.set(event)
    try:
        yield
    finally:
        _ABORT.reset(token)


class Interrupt:
    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify
        self.stopping = False
        self.abort = threading.Event()
        self.reason = ""
        self.count = 0

    def signalled(self, signum: int, _frame: Any = None) -> None:
        self.count += 1
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        if self.count == 1:
            self.stopping = True
            self.reason = f"interrupted ({name}): hosts in progress were finished, none started after"
            self.notify(f"{name}: starting no more hosts; finishing those in progress (again to stop them sooner)")
        elif self.count == 2:
            self.abort.set()
            self.reason = f"interrupted twice ({name}): hosts in progress stopped before their next step"
            self.notify(f"{name} again: hosts in progress stop before their next step")
        else:
            self.notify(f"{name}: still finishing; the report of what was done comes next")


_ACTIVE: list[Interrupt] = []


@contextmanager
def handling_interrupts(notify: Callable[[str], None] | None = None) -> Iterator[Interrupt]:
    """SIGINT and SIGTERM stop the run in two stages while this lasts.

    Nested: the inner block shares the outer one's state (and, for its duration, says what
    happens through its own `notify`). Outside the main thread no handler can be set; the
    Interrupt is then only ever raised by nobody."""
    if _ACTIVE:
        active = _ACTIVE[-1]
        previous = active.notify
        if notify is not None:
            active.notify = notify
        try:
            yield active
        finally:
            active.notify = previous
        return
    interrupt = Interrupt(notify or (lambda _: None))
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    handlers = {sig: signal.signal(sig, interrupt.signalled) for sig in (signal.SIGINT, signal.SIGTERM)}
    _ACTIVE.append(interrupt)
    try:
        yield interrupt
    finally:
        _ACTIVE.pop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
