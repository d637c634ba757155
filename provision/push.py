"""The push and the rollback of one host: one conversation with the agent.

    (recover: MicroSIP closed by a run that died is started first, in the same Send)
    discover (read every user's ini, see whose MicroSIP runs)
      -> plan each user (offline core)
      -> apply the users that changed (close MicroSIP, back up, write, verify, restart)
      -> apply again for users whose MicroSIP rewrote the ini while closing (and, for any
         user whose MicroSIP was closed, a restart even when nothing can be written)

A host's failure becomes its result; one user's failure is that user's. The transport is
made by a `connect` function the caller gives, so this module knows nothing of WinRM or
credentials; the fleet runner runs it for many hosts, and the state is recorded by the caller.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from provision.errors import IniError
from provision.fleet import HOST_KIND_STATUS
from provision.jobs import HostJob, UserJob
from provision.plan import KeyChange, TargetPlan, plan_target
from provision.remote.agent import Agent
from provision.remote.protocol import (
    MAX_INI_BYTES,
    ApplyRequest,
    ApplyUser,
    DiscoverRequest,
    Op,
    RollbackRequest,
    RollbackUser,
    UserName,
    UserStatus,
)
from provision.session import Connect, SessionOptions, converse, install_of, recovered_note
from provision.transport.base import TransportError

# Result of one (host, user), as the report shows it.
CHANGED = "changed"
UNCHANGED = "unchanged"
WOULD_CHANGE = "would change"
BUSY = "busy"
FAILED = "failed"
NO_PROFILE = "no profile"
RESTORED = "restored"
NO_BACKUP = "no backup"
# A host's result when it was not worked on: off the network, held by another run, stopped.
UNREACHABLE = "unreachable"
SKIPPED = "skipped"
ABORTED = "aborted"

# A host's result is the worst of its users'.
_SEVERITY = [
    SKIPPED,
    UNCHANGED,
    NO_BACKUP,
    NO_PROFILE,
    WOULD_CHANGE,
    CHANGED,
    RESTORED,
    ABORTED,
    UNREACHABLE,
    BUSY,
    FAILED,
]
PROBLEMS = frozenset({BUSY, FAILED, UNREACHABLE, ABORTED})

# The agent must answer before the controller gives up on it: it is given the time left,
# less this share (at least MARGIN_MIN seconds), so it always finishes restarting MicroSIP.
MARGIN_SHARE = 0.2
MARGIN_MIN = 1.0


@dataclass(frozen=True)
class PushOptions:
    check: bool = False
    timeout: float = 120.0  # the conversation with one host, before the per-user time below
    retries: int = 2  # extra attempts after a transient fault (busy, quota, shell gone, reset)
    backoff: float = 0.5  # first wait before a retry; doubles, with jitter
    backups: int = 5  # backups of each ini kept on the workstation
    exit_wait_ms: int = 10_000  # one wait for every user's MicroSIP to close after /exit
    start_wait_ms: int = 10_000  # one wait for every restarted MicroSIP to be seen running
    # Added to a host's time for every user whose ini is written: a shared host (RDS) with 20
    # users to change needs more than a workstation with one (a scheduled task each to close
    # MicroSIP and one to start it again, the file work, the checks).
    per_user_seconds: float = 2.0
    # An ini that cannot be read (parsed) is replaced by the rendered one, after a backup,
    # instead of being that user's failure.
    replace_unreadable: bool = False
    run_id: str = ""  # the run's id, carried in the names of the backups it makes

    @property
    def session(self) -> SessionOptions:
        return SessionOptions(self.timeout, self.retries, self.backoff, self.start_wait_ms)


@dataclass
class UserResult:
    host: str
    user: str
    status: str
    reason: str = ""
    changes: tuple[KeyChange, ...] = ()
    notes: tuple[str, ...] = ()
    backup: str | None = None
    restarted: bool = False
    plan: TargetPlan | None = field(default=None, repr=False)  # what to record, for pushed/unchanged users

    @property
    def target_id(self) -> str:
        return f"{self.host}/{self.user}"


@dataclass
class HostResult:
    host: str
    users: list[UserResult]
    reason: str = ""
    kind: str = ""  # the kind of transport failure, if the whole host failed
    seconds: float = 0.0
    attempts: int = 1

    @property
    def status(self) -> str:
        if self.kind:
            return HOST_KIND_STATUS.get(self.kind, FAILED)
        statuses = [u.status for u in self.users] or [UNCHANGED]
        return max(statuses, key=_SEVERITY.index)

    @property
    def ok(self) -> bool:
        return self.status not in PROBLEMS


def broken_host(job: HostJob, reason: str, kind: str) -> HostResult:
    return HostResult(job.host, [], reason=reason, kind=kind)


def _converse(job: HostJob, connect: Connect, options: PushOptions, talk: Callable[[Agent], HostResult]) -> HostResult:
    def failed(exc: TransportError) -> HostResult:
        return broken_host(job, str(exc), exc.kind)

    result, tries = converse(job, connect, options.session, talk, failed)
    result.attempts = tries
    return result


def budget_ms(agent: Agent) -> int:
    """The time the agent may take for a request that closes and restarts MicroSIP."""
    left = agent.remaining()
    return max(0, int((left - max(MARGIN_MIN, left * MARGIN_SHARE)) * 1000))


def recovered_notes(agent: Agent, results: dict[str, UserResult], host: str) -> None:
    """What the conversation's recover step did, said on each user it concerns."""
    for entry in agent.recovered:
        name = str(entry.get("name", ""))
        note = recovered_note(entry)
        found = next((r for key, r in results.items() if key.casefold() == name.casefold()), None)
        if found is not None:
            found.notes = (*found.notes, note)
        else:
            results[name] = UserResult(host, name, UNCHANGED if entry.get("restarted") else FAILED, note)


# push ------------------------------------------------------------------------------------


def push_host(job: HostJob, connect: Connect, options: PushOptions, fingerprint_key: bytes) -> HostResult:
    return _converse(job, connect, options, lambda agent: _push(agent, job, options, fingerprint_key))


def _push(agent: Agent, job: HostJob, options: PushOptions, fingerprint_key: bytes) -> HostResult:
    found = _discover(agent, job)
    results: dict[str, UserResult] = {}
    to_apply: list[tuple[UserJob, dict[str, Any], TargetPlan]] = []
    for user in job.users:
        entry = found[user.user.casefold()]
        result, plan = _plan_user(job.host, user, entry, fingerprint_key, replace=options.replace_unreadable)
        results[user.user] = result
        if plan is not None and plan.changed:
            if options.check:
                result.status = WOULD_CHANGE
            else:
                to_apply.append((user, entry, plan))
    if to_apply:
        _apply(agent, job, to_apply, results, options, fingerprint_key)
    recovered_notes(agent, results, job.host)
    return HostResult(job.host, list(results.values()))


def _discover(agent: Agent, job: HostJob) -> dict[str, dict[str, Any]]:
    """Each user's ini and whether their MicroSIP runs."""
    users: list[UserName] = [{"name": u.user} for u in job.users]
    request: DiscoverRequest = {
        "op": Op.DISCOVER,
        "install": install_of(job),
        "users": users,
        "max_ini_bytes": MAX_INI_BYTES,
    }
    reply = agent.request(request)
    return by_user(reply, [u.user for u in job.users])


def by_user(reply: dict[str, Any], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    users = reply.get("users")
    if isinstance(users, dict):  # a one-element array written as the element
        users = [users]
    if not isinstance(users, list):
        raise TransportError("protocol", "the workstation's answer has no users")
    found = {str(u.get("name", "")).casefold(): u for u in users if isinstance(u, dict)}
    missing = [name for name in names if name.casefold() not in found]
    if missing:
        raise TransportError("protocol", f"the workstation did not answer for {', '.join(missing)}")
    return found


def _content(entry: dict[str, Any]) -> bytes | None:
    data = entry.get("content_b64")
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise TransportError("protocol", "the workstation sent an ini that is not base64") from None


def unusable(host: str, user: str, entry: dict[str, Any]) -> UserResult | None:
    """The result of a user discover could not work with, or None."""
    status = entry.get("status")
    if status == UserStatus.NO_PROFILE:
        return UserResult(host, user, NO_PROFILE, "the user has never logged on to this host")
    if status == UserStatus.TOO_LARGE:
        size = int(entry.get("size") or 0) / 1024 / 1024
        cap = MAX_INI_BYTES / 1024 / 1024
        reason = f"ini too large: {size:.1f} MB, over the {cap:.0f} MB cap; not read (look at it by hand)"
        return UserResult(host, user, FAILED, reason)
    if status in (UserStatus.REDIRECTED, UserStatus.FAILED):
        return UserResult(host, user, FAILED, str(entry.get("reason") or "cannot read the ini"))
    if status != UserStatus.OK:
        raise TransportError("protocol", f"the workstation answered {status!r} for {user}")
    return None


def warnings_of(entry: dict[str, Any]) -> tuple[str, ...]:
    warning = entry.get("warning")
    return (str(warning),) if warning else ()


def unreadable(exc: IniError) -> str:
    """'unreadable ini: line N: ...' for an ini that cannot be parsed."""
    message = exc.message
    return message if message.startswith("unreadable ini") else f"unreadable ini: {message}"


def _plan_user(
    host: str, user: UserJob, entry: dict[str, Any], key: bytes, *, replace: bool = False
) -> tuple[UserResult, TargetPlan | None]:
    problem = unusable(host, user.user, entry)
    if problem is not None:
        return problem, None
    current = _content(entry)
    assert user.rendered is not None, "push needs rendered inis"
    notes: tuple[str, ...] = ()
    try:
        plan = plan_target(user.rendered, user.secrets, current, user.record, key)
    except IniError as exc:
        if not replace:
            reason = f"{unreadable(exc)} (left as it is; push --replace-unreadable replaces it after a backup)"
            return UserResult(host, user.user, FAILED, reason), None
        plan = plan_target(user.rendered, user.secrets, None, user.record, key)
        notes = (f"{unreadable(exc)}: replaced by the rendered ini (the old one is the backup)",)
    status = CHANGED if plan.changed else UNCHANGED
    notes = (*notes, *plan.notes, *warnings_of(entry))
    return UserResult(host, user.user, status, changes=plan.changes, notes=notes, plan=plan), plan


def _apply(
    agent: Agent,
    job: HostJob,
    to_apply: list[tuple[UserJob, dict[str, Any], TargetPlan]],
    results: dict[str, UserResult],
    options: PushOptions,
    key: bytes,
) -> None:
    def request(users: list[ApplyUser]) -> ApplyRequest:
        return {
            "op": Op.APPLY,
            "install": install_of(job),
            "backups": options.backups,
            "run": options.run_id,
            "exit_wait_ms": options.exit_wait_ms,
            "start_wait_ms": options.start_wait_ms,
            "budget_ms": budget_ms(agent),
            "users": users,
        }

    agent.extend(options.per_user_seconds * len(to_apply))
    users = [_apply_user(user, entry, plan, close=bool(entry.get("running"))) for user, entry, plan in to_apply]
    reply = by_user(agent.request(request(users)), [user.user for user, _, _ in to_apply])
    again: list[ApplyUser] = []
    for user, entry, _ in to_apply:
        answer = reply[user.user.casefold()]
        if answer.get("status") == UserStatus.REREAD:
            # MicroSIP saved its settings while closing: merge again on what it wrote.
            reread = {**entry, "sha256": answer.get("sha256"), "content_b64": answer.get("content_b64")}
            result, plan = _plan_user(job.host, user, reread, key, replace=options.replace_unreadable)
            results[user.user] = result
            closed = bool(answer.get("closed"))
            if plan is not None and (plan.content is not None or closed):
                # Write what changed, and start MicroSIP again if it was running.
                item = _apply_user(user, reread, plan, close=False)
                item["restart"] = closed
                again.append(item)
            elif closed:
                # Nothing can be written (the user's result says why), but MicroSIP was closed
                # for it: it is started again all the same.
                again.append(_restart_only(user, reread))
            continue
        _take_answer(results[user.user], answer)
    if again:
        # Finishing: MicroSIP was closed for these users; they are written and it is started again.
        reply = by_user(agent.request(request(again), finishing=True), [item["name"] for item in again])
        for item in again:
            name = item["name"]
            answer = reply[name.casefold()]
            result = results[name]
            if result.plan is None:  # a restart only: the user's result stands
                result.restarted = bool(answer.get("restarted"))
                if not result.restarted:
                    result.reason = f"{result.reason}; {answer.get('reason') or 'MicroSIP was not started again'}"
            elif answer.get("status") == UserStatus.REREAD:
                result.status, result.reason = FAILED, "the ini kept changing while MicroSIP was closing"
                result.plan = None
                result.restarted = bool(answer.get("restarted"))
            else:
                _take_answer(result, answer)


def _apply_user(user: UserJob, entry: dict[str, Any], plan: TargetPlan, *, close: bool) -> ApplyUser:
    content = plan.content if plan.content is not None else _content(entry) or b""
    return {
        "name": user.user,
        "ini_path": str(entry["ini_path"]),
        "close": close,
        "restart": False,
        "expected_sha256": entry.get("sha256"),
        "new_sha256": hashlib.sha256(content).hexdigest(),
        "content_b64": base64.b64encode(content).decode("ascii"),
    }


def _restart_only(user: UserJob, entry: dict[str, Any]) -> ApplyUser:
    """Start MicroSIP again, write nothing: the ini wanted is the one there (as the entry read it)."""
    digest = entry.get("sha256")
    return {
        "name": user.user,
        "ini_path": str(entry["ini_path"]),
        "close": False,
        "restart": True,
        "expected_sha256": digest,
        "new_sha256": digest,
        "content_b64": "",
    }


def _take_answer(result: UserResult, answer: dict[str, Any]) -> None:
    status = answer.get("status")
    result.backup = answer.get("backup")
    result.restarted = bool(answer.get("restarted"))
    if status == UserStatus.WRITTEN:
        return
    result.plan = None
    if status == UserStatus.BUSY:
        result.status, result.reason = BUSY, str(answer.get("reason") or "MicroSIP did not close")
    else:
        result.status, result.reason = FAILED, str(answer.get("reason") or "write failed: unknown reason")


# rollback --------------------------------------------------------------------------------


def rollback_host(job: HostJob, connect: Connect, options: PushOptions) -> HostResult:
    return _converse(job, connect, options, lambda agent: _rollback(agent, job, options))


def _rollback(agent: Agent, job: HostJob, options: PushOptions) -> HostResult:
    found = _discover(agent, job)
    results: dict[str, UserResult] = {}
    users: list[RollbackUser] = []
    for user in job.users:
        entry = found[user.user.casefold()]
        problem = unusable(job.host, user.user, entry)
        if problem is not None:
            results[user.user] = problem
        else:
            results[user.user] = UserResult(job.host, user.user, FAILED, notes=warnings_of(entry))
            users.append({"name": user.user, "ini_path": str(entry["ini_path"]), "backup": user.backup})
    if users:
        agent.extend(options.per_user_seconds * len(users))
        request: RollbackRequest = {
            "op": Op.ROLLBACK,
            "install": install_of(job),
            "exit_wait_ms": options.exit_wait_ms,
            "start_wait_ms": options.start_wait_ms,
            "budget_ms": budget_ms(agent),
            "users": users,
        }
        answers = by_user(agent.request(request), [item["name"] for item in users])
        for item in users:
            answer = answers[item["name"].casefold()]
            result = results[item["name"]]
            status = answer.get("status")
            result.backup = answer.get("backup")
            result.restarted = bool(answer.get("restarted"))
            if status == UserStatus.RESTORED:
                result.status = RESTORED
            elif status == UserStatus.NO_BACKUP:
                result.status, result.reason = NO_BACKUP, str(answer.get("reason") or "no backup to restore")
            elif status == UserStatus.BUSY:
                result.status, result.reason = BUSY, str(answer.get("reason") or "MicroSIP did not close")
            else:
                result.reason = str(answer.get("reason") or "restore failed: unknown reason")
    recovered_notes(agent, results, job.host)
    return HostResult(job.host, list(results.values()))


# summaries -------------------------------------------------------------------------------
