"""A run as data: one JSON shape for the report of every command that works on hosts.

    {"provision": "0.2.0", "command": "push", "run_id": ..., "started": ..., "seconds": ...,
     "status": "finished", "stop_reason": "", "ok": true,
     "options": {"check": false, "verify_tls": true},
     "summary": {"hosts": 24, "by_status": {"changed": 20, ...}, "failed": 0, "unreachable": 1,
                 "skipped": 0, "not_started": 0, "text": "...", "by_group": {"sales": {...}}},
     "hosts": [{"host", "groups", "status", "reason", "kind", "seconds", "attempts",
                and "users" (push, rollback) or "checks" (health, smoke, doctor)}],
     "not_started": [...], "warnings": [...]}

Everything in it is redacted before it leaves: a secret never reaches a report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import provision
from provision.fleet import HostOutcome, outcome_class
from provision.outcome import RunOutcome

# The order statuses are shown in: the best first, the worst last.
STATUS_ORDER = [
    "ok",
    "unchanged",
    "skipped",
    "no backup",
    "no profile",
    "warning",
    "pending",
    "would change",
    "changed",
    "restored",
    "drifted",
    "aborted",
    "unreachable",
    "busy",
    "failed",
]


def status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def count_statuses(hosts: Iterable[HostOutcome]) -> dict[str, int]:
    return count_words(host.status for host in hosts)


def count_words(statuses: Iterable[str]) -> dict[str, int]:
    """Each status and how many times it comes, worst first."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: status_rank(item[0])))


def summary_text(run: RunOutcome[Any]) -> str:
    """'20 changed, 3 unchanged, 1 unreachable' (with ', 4 not started' when some were not)."""
    counts = count_statuses(run.hosts)
    words = {"warning": "with warnings"}
    parts = [f"{n} {words.get(status, status)}" for status, n in counts.items()]
    warnings = sum(1 for h in run.hosts for c in getattr(h, "checks", ()) if c.status == "warn")
    text = ", ".join(parts) or "nothing to do"
    if warnings:
        text += f" ({warnings} warning{'s' if warnings != 1 else ''})"
    return text


def summary_counts(hosts: Sequence[HostOutcome], not_started: Sequence[str]) -> dict[str, Any]:
    """A run's counts, as its summary shows them and as its record keeps them."""
    classes: dict[str, int] = {}
    for host in hosts:
        kind = outcome_class(host)
        classes[kind] = classes.get(kind, 0) + 1
    return {
        "hosts": len(hosts) + len(not_started),
        "by_status": count_statuses(hosts),
        "failed": classes.get("failed", 0),
        "unreachable": classes.get("unreachable", 0),
        "skipped": classes.get("skipped", 0),
        "not_started": len(not_started),
    }


def summary_data(run: RunOutcome[Any]) -> dict[str, Any]:
    by_group: dict[str, list[HostOutcome]] = {}
    for host in run.hosts:
        for group in run.groups.get(host.host) or ("(no group)",):
            by_group.setdefault(group, []).append(host)
    return {
        **summary_counts(run.hosts, run.not_started),
        "text": summary_text(run),
        "by_group": {
            group: {"hosts": len(hosts), "by_status": count_statuses(hosts)}
            for group, hosts in sorted(by_group.items())
        },
    }


def host_data(host: Any, groups: Sequence[str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": host.host,
        "groups": list(groups),
        "status": host.status,
        "reason": host.reason,
        "kind": getattr(host, "kind", ""),
        "seconds": round(host.seconds, 3),
        "attempts": getattr(host, "attempts", 1),
    }
    if hasattr(host, "users"):
        data["users"] = [
            {
                "user": u.user,
                "status": u.status,
                "reason": u.reason,
                "backup": u.backup,
                "restarted": u.restarted,
                "changes": [
                    {"section": c.section, "key": c.key, "old": c.old, "new": c.new, "note": c.note} for c in u.changes
                ],
                "notes": list(u.notes),
            }
            for u in host.users
        ]
    if hasattr(host, "steps"):
        data["endpoint"] = host.endpoint
        data["steps"] = [{"name": s.name, "status": s.status, "detail": s.detail, "fix": s.fix} for s in host.steps]
    if hasattr(host, "checks"):
        if getattr(host, "method", ""):
            data["method"] = host.method
        data["checks"] = [
            {
                "name": c.name,
                "status": c.status,
                "detail": c.detail,
                **({"seconds": round(c.seconds, 3)} if c.seconds is not None else {}),
            }
            for c in host.checks
        ]
    return data


def run_data(run: RunOutcome[Any]) -> dict[str, Any]:
    return {
        "provision": provision.__version__,
        "command": run.command,
        "run_id": run.run_id,
        "started": run.started,
        "seconds": round(run.seconds, 3),
        "status": run.status,
        "stop_reason": run.stop_reason,
        "ok": run.ok,
        "options": {"check": run.check, "verify_tls": run.verify_tls},
        "summary": summary_data(run),
        "hosts": [host_data(h, run.groups.get(h.host, ())) for h in run.hosts],
        "not_started": run.not_started,
        "warnings": [str(w) for w in run.warnings],
        **({"state_error": run.state_error.message} if run.state_error is not None else {}),
    }


def report_json(run: RunOutcome[Any]) -> str:
    return to_json(run_data(run), run.redactor)


def to_json(data: dict[str, Any], redact: Callable[[str], str]) -> str:
    """The JSON text, every string passed through `redact` first (before escaping could hide a secret)."""
    return json.dumps(_redacted(data, redact), indent=2, ensure_ascii=False) + "\n"


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    return value
