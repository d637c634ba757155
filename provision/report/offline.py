"""render, diff and validate as data: `--format json`, with the envelope of the fleet reports.

    {"provision": "0.1.0", "command": "diff", "ok": true,
     "summary": {"hosts": 2, "targets": 3, "by_status": {"unchanged": 1, "would change": 2}, ..., "text": "..."},
     "hosts": [{"host", "groups", "status", "users": [{"user", "status", ...}]}],
     "warnings": ["file:line: field: message", ...],
     "problems": [{"file", "line", "field", "message"}]}

`ok` is false when a target failed or the input was refused; `problems` then says why (bad
input: the command's exit status is 2, as without --format json). Everything passes the
run's redactor before it leaves: a secret never reaches the JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

import provision
from provision.errors import ConfigError, Problem, ProvisionError
from provision.offline import DiffResult, RenderResult, ValidationResult
from provision.report.data import count_words, status_rank, to_json
from provision.report.files import STDOUT, write_text
from provision.targets import HostList

if TYPE_CHECKING:
    from provision.report import Reporter

RENDERED = "rendered"
WOULD_CHANGE = "would change"
UNCHANGED = "unchanged"
FAILED = "failed"


def _envelope(command: str, ok: bool, summary: dict[str, Any], warnings: Sequence[Problem]) -> dict[str, Any]:
    return {
        "provision": provision.__version__,
        "command": command,
        "ok": ok,
        "summary": summary,
        "hosts": [],
        "warnings": [str(w) for w in warnings],
        "problems": [],
    }


def _by_host(users: Iterable[tuple[str, dict[str, Any]]], groups: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per-user entries gathered under their hosts, in the order given; a host's status is its users' worst."""
    hosts: dict[str, dict[str, Any]] = {}
    for host, user in users:
        entry = hosts.setdefault(host, {"host": host, "groups": groups.get(host, []), "status": "", "users": []})
        entry["users"].append(user)
    for entry in hosts.values():
        entry["status"] = max((u["status"] for u in entry["users"]), key=status_rank)
    return list(hosts.values())


def render_data(result: RenderResult, text: str) -> dict[str, Any]:
    users: list[tuple[str, dict[str, Any]]] = [
        (host, {"user": user, "status": RENDERED, "accounts": accounts, "file": str(result.file(host, user))})
        for host, user, accounts in result.rows
    ]
    hosts = _by_host(users, result.groups)
    summary: dict[str, Any] = {
        "hosts": len(hosts),
        "targets": len(users),
        "by_status": count_words(u["status"] for _, u in users),
    }
    data = _envelope("render", True, {**summary, "text": text}, result.warnings)
    data.update(out=str(result.out), encoding=result.encoding, secrets=result.secrets, hosts=hosts)
    return data


def diff_data(result: DiffResult, text: str) -> dict[str, Any]:
    entries: dict[str, tuple[str, dict[str, Any]]] = {}
    for plan in result.plans:
        host, _, user = plan.target_id.partition("/")
        entries[plan.target_id] = (
            host,
            {
                "user": user,
                "status": WOULD_CHANGE if plan.changed else UNCHANGED,
                "reason": "",
                "new_file": plan.target_id in result.new,
                "changes": [
                    {"section": c.section, "key": c.key, "old": c.old, "new": c.new, "note": c.note}
                    for c in plan.changes
                ],
                "notes": list(plan.notes),
            },
        )
    for target_id, reason in result.failed:
        host, _, user = target_id.partition("/")
        failed = {"user": user, "status": FAILED, "reason": reason, "new_file": False, "changes": [], "notes": []}
        entries[target_id] = (host, failed)
    order = [t for t in result.order if t in entries] + [t for t in entries if t not in result.order]
    users = [entries[t] for t in order]
    hosts = _by_host(users, result.groups)
    by_status = count_words(u["status"] for _, u in users)
    summary = {
        "hosts": len(hosts),
        "targets": len(users),
        "by_status": by_status,
        "failed": by_status.get(FAILED, 0),
        "text": text,
    }
    data = _envelope("diff", not result.failed, summary, result.warnings)
    data.update(against=str(result.against), changed=result.changed, hosts=hosts)
    return data


def validate_data(result: ValidationResult, text: str) -> dict[str, Any]:
    users: list[tuple[str, dict[str, Any]]] = [
        (t.host, {"user": t.user, "status": "ok", "profiles": list(t.resolved.chain), "accounts": len(t.accounts)})
        for t in result.targets
    ]
    data = _envelope("validate", True, {**result.counts, "text": text}, result.warnings)
    data["hosts"] = _by_host(users, result.groups)
    return data


def host_list_data(listed: HostList, text: str) -> dict[str, Any]:
    model = listed.inventory.model
    data = _envelope("list-hosts", True, {"hosts": len(listed.chosen), "text": text}, listed.warnings)
    data["format"] = listed.inventory.kind
    data["hosts"] = [
        {
            "host": name,
            "groups": list(model.hosts[name].groups),
            "connection": model.hosts[name].connection.model_dump(exclude_none=True),
            "users": [u.name for u in model.hosts[name].users],
        }
        for name in listed.chosen
    ]
    return data


def print_host_list(reporter: Reporter, listed: HostList, *, json_out: bool) -> None:
    """The chosen hosts: a table (host, groups, address, users), or the JSON of them."""
    model = listed.inventory.model
    text = f"{len(listed.chosen)} of {len(model.hosts)} hosts"
    if json_out:
        write_text(STDOUT, to_json(host_list_data(listed, text), _same))
        return
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("host", "groups", "address", "users"):
        table.add_column(column, overflow="fold")
    for name in listed.chosen:
        host = model.hosts[name]
        connection = host.connection
        address = connection.address or name
        if connection.port:
            address += f":{connection.port}"
        extras = ", ".join(x for x in (connection.scheme, connection.auth) if x)
        table.add_row(
            escape(name),
            escape(",".join(host.groups)),
            escape(address + (f" ({extras})" if extras else "")),
            str(len(host.users)),
        )
    reporter._table(table)  # the package's own helper: no padding at line ends in a pipe
    reporter.line(text)


def error_data(command: str, exc: ProvisionError) -> dict[str, Any]:
    """The JSON of a command that refused its input (or could not write): ok false, and why."""
    problems = exc.problems if isinstance(exc, ConfigError) else []
    text = exc.message.split("\n")[0]
    data = _envelope(command, False, {"text": text}, [])
    data["problems"] = [{"file": p.file, "line": p.line, "field": p.field, "message": p.message} for p in problems]
    if not problems:
        data["error"] = exc.message
    return data


def write_error_json(command: str, exc: ProvisionError) -> None:
    """On standard output, for `--format json`: the command refused its input (exit status unchanged)."""
    write_text(STDOUT, to_json(error_data(command, exc), _same))


def _same(text: str) -> str:
    return text
