"""What a run over the fleet ended with, for every command: each host's result and how the
run went (finished, stopped, interrupted), as the report shows it and scripts read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from provision.errors import Problem, ProvisionError
from provision.fleet import FINISHED, INTERRUPTED, STOPPED, FleetRun, HostOutcome
from provision.jobs import HostJob
from provision.secrets import Redactor

H = TypeVar("H", bound=HostOutcome)


@dataclass
class RunOutcome(Generic[H]):
    command: str  # push, rollback, health, smoke, doctor
    hosts: list[H]  # in the order they were chosen
    started: str
    seconds: float
    warnings: list[Problem] = field(default_factory=list)
    redactor: Redactor = field(default_factory=Redactor, repr=False)
    status: str = FINISHED  # finished, stopped (the stop rule, a pause) or interrupted (Ctrl-C)
    stop_reason: str = ""
    not_started: list[str] = field(default_factory=list)
    run_id: str | None = None
    state_error: ProvisionError | None = None  # the state could not be written (the hosts are still reported)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # host -> inventory groups
    check: bool = False  # push --check: nothing was written
    verify_tls: bool = True  # False with --no-verify-tls

    @classmethod
    def of(
        cls,
        command: str,
        run: FleetRun[H],
        jobs: Sequence[HostJob],
        *,
        warnings: Sequence[Problem] = (),
        redactor: Redactor | None = None,
        run_id: str | None = None,
        state_error: ProvisionError | None = None,
        check: bool = False,
        verify_tls: bool = True,
    ) -> RunOutcome[H]:
        return cls(
            command,
            run.results,
            run.started,
            run.seconds,
            list(warnings),
            redactor or Redactor(),
            run.status,
            run.stop_reason,
            run.not_started,
            run_id,
            state_error,
            {job.host: job.groups for job in jobs},
            check,
            verify_tls,
        )

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts) and self.state_error is None

    @property
    def stopped(self) -> bool:
        return self.status == STOPPED

    @property
    def interrupted(self) -> bool:
        return self.status == INTERRUPTED

    @property
    def pending(self) -> bool:
        """push --check: some user would change."""
        return any(getattr(u, "changes", ()) for h in self.hosts for u in getattr(h, "users", ()))
