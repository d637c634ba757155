"""One conversation with one host: connect, start the agent, ask, close; again on a new shell.

Every command talks to a host through `converse`: it gives the questions (`talk`, which uses
the Agent) and what a host that could not be worked on becomes (`failed`). Deadlines,
retries on transient faults with jittered backoff, and closing the shell live here only.
Every conversation first starts MicroSIP for users an earlier run closed and never started
again (the `recover` request, in the same Send as the first question).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from provision.interrupt import current_abort
from provision.jobs import HostJob
from provision.remote.agent import Agent, Recorder, send_limit
from provision.remote.protocol import Install, InstallMode, Op, RecoverRequest
from provision.transport.base import Transport, TransportError

R = TypeVar("R")
log = logging.getLogger(__name__)

Connect = Callable[[HostJob], Transport]


@dataclass(frozen=True)
class SessionOptions:
    timeout: float = 120.0  # the whole conversation with one host, per attempt
    retries: int = 2  # extra attempts after a transient fault (busy, quota, shell gone, reset)
    backoff: float = 0.5  # first wait before a retry; doubles, with jitter
    start_wait_ms: int = 10_000  # how long a MicroSIP started again gets to be seen running


def install_of(job: HostJob) -> Install:
    """The MicroSIP install the inventory declares for the host, as the agent takes it."""
    return {"mode": job.install.mode or InstallMode.INSTALLED, "exe": job.install.exe}


def recover_request(job: HostJob, options: SessionOptions) -> RecoverRequest:
    """First in every conversation: start MicroSIP for users a run that died left closed."""
    return {"op": Op.RECOVER, "install": install_of(job), "start_wait_ms": options.start_wait_ms}


def recovered_note(entry: dict[str, Any]) -> str:
    """What the recover step did for one user, said to the admin."""
    if entry.get("restarted"):
        return "MicroSIP started again: an earlier run had closed it and not started it again"
    return f"MicroSIP closed by an earlier run is still not running: {entry.get('reason') or 'unknown'}"


def converse(
    job: HostJob,
    connect: Connect,
    options: SessionOptions,
    talk: Callable[[Agent], R],
    failed: Callable[[TransportError], R],
    *,
    recorder: Recorder | None = None,
) -> tuple[R, int]:
    """Run `talk` in one conversation with the host; start over on a new shell after a
    transient fault, a bounded number of times. Returns the result and the attempts made.

    No new step once the fleet runner's abort is set (provision.interrupt).
    recorder: hears every request and reply line (masked), for a transcript."""
    abort = current_abort()
    tries = 0
    while True:
        tries += 1
        try:
            transport = connect(job)
            try:
                agent = Agent(
                    transport,
                    deadline=time.monotonic() + options.timeout,
                    abort=abort,
                    recover=recover_request(job, options),
                    max_send=send_limit(job.connection.max_envelope_kb),
                    recorder=recorder,
                )
                result = talk(agent)
                agent.close()
                return result, tries
            finally:
                transport.close()
        except TransportError as exc:
            if not exc.transient or tries > options.retries or (abort is not None and abort.is_set()):
                return failed(exc), tries
            delay = options.backoff * 2 ** (tries - 1)
            log.info("%s: %s; again on a new shell (attempt %d of %d)", job.host, exc, tries + 1, options.retries + 1)
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
