"""Everything provision prints: problems, summaries, diffs, resolved profiles.

Output goes through a rich Console: tables and colour on a terminal, plain lines in a
pipe or a log. Every string that may hold user data passes the Redactor first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from provision.errors import ConfigError, Problem, ProvisionError, display_path
from provision.model.source import Located
from provision.report.files import STDOUT, write_text
from provision.secrets import MASK

if TYPE_CHECKING:
    from provision.fleet import HostOutcome
    from provision.offline import DiffResult, RenderResult, ValidationResult
    from provision.outcome import RunOutcome
    from provision.push import HostResult
    from provision.runs import RunDetail
    from provision.state import RunInfo

_RUN_STYLE = {"finished": "green", "running": "cyan", "stopped": "yellow", "interrupted": "yellow", "failed": "red"}
_CHECK_STYLE = {"ok": "green", "warning": "yellow", "pending": "cyan", "drifted": "bold yellow", "failed": "bold red"}
_STYLE = {
    "changed": "green",
    "restored": "green",
    "would change": "yellow",
    "unchanged": "dim",
    "no profile": "yellow",
    "no backup": "yellow",
    "busy": "bold yellow",
    "failed": "bold red",
}


def _identity(text: str) -> str:
    return text


class _RedactingFilter(logging.Filter):
    """Log records pass the run's redactor like every printed line (defence in depth)."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.reporter.redact(record.getMessage())
        record.args = None
        return True


class FleetProgress:
    """The fleet runner's listener: a progress bar on a terminal, a line per host otherwise;
    notes (batches, stops, interruptions) above it; a question between batches (--pause)."""

    def __init__(self, reporter: Reporter, verb: str) -> None:
        self.reporter = reporter
        self.verb = verb
        self.total = 0
        self.count = 0
        self.bar: Progress | None = None
        if reporter.err.is_terminal and not reporter.err.is_dumb_terminal and not reporter.quiet:
            self.bar = Progress(
                TextColumn(verb),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[last]}"),
                TimeElapsedColumn(),
                console=reporter.err,
                transient=True,
            )
            self._task = self.bar.add_task(verb, total=None, last="")

    def on_start(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.update(self._task, total=total)

    def on_done(self, result: HostOutcome) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(self._task, advance=1, last=escape(f"{result.host}: {result.status}"))
            return
        if self.reporter.quiet:
            return
        reason = f": {result.reason}" if result.reason else ""
        line = f"[{self.count}/{self.total}] {result.host} {result.status}{reason}"
        self.reporter.err.print(escape(self.reporter.redact(line)))

    def on_note(self, text: str) -> None:
        self.reporter.err.print(escape(f"{self.verb}: {text}"))

    def confirm_batch(self, done: int, total: int, upcoming: Sequence[Any]) -> bool:
        """--pause: ask on the terminal before the next batch."""
        if self.bar is not None:
            self.bar.stop()
        try:
            question = f"Batch {done} of {total} done. Start batch {done + 1} ({len(upcoming)} host(s))?"
            return bool(click.confirm(question, default=True, err=True))
        except click.Abort:
            return False
        finally:
            if self.bar is not None:
                self.bar.start()


@dataclass
class Reporter:
    out: Console
    err: Console
    redact: Callable[[str], str] = _identity
    verbosity: int = 0  # -1 quiet (summaries and errors only), 0 normal, 1+ verbose

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def use_redactor(self, redactor: Callable[[str], str]) -> None:
        """From now on every line printed or logged is scrubbed of the run's secrets."""
        self.redact = redactor

    def log_to(self, handler: logging.Handler) -> None:
        """Send provision's log (hosts, retries, batches, runs) to `handler`, redacted."""
        handler.addFilter(_RedactingFilter(self))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("provision")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if self.verbosity > 1 else logging.INFO)

    # Errors and warnings -----------------------------------------------------------------

    def error(self, exc: ProvisionError) -> None:
        if isinstance(exc, ConfigError):
            head, *rest = exc.message.split("\n")
            self.err.print(f"[bold red]Error:[/] {escape(self.redact(head))}")
            for line in rest:
                self.err.print(escape(self.redact(line)))
        else:
            self.err.print(f"[bold red]Error:[/] {escape(self.redact(exc.message))}")

    def warnings(self, warnings: Sequence[Problem]) -> None:
        for warning in warnings:
            self.err.print(f"[yellow]Warning:[/] {escape(self.redact(str(warning)))}")

    def note(self, text: str) -> None:
        """A remark about the run on the error stream (an interruption, a stop)."""
        self.err.print(escape(self.redact(text)))

    def _table(self, table: Table, console: Console | None = None) -> None:
        """A table; in a pipe or a log, without the padding at the end of each line."""
        console = console or self.out
        if console.is_terminal:
            console.print(table)
            return
        with console.capture() as captured:
            console.print(table)
        for line in captured.get().splitlines():
            console.print(escape(line.rstrip()))

    def line(self, text: str) -> None:
        self.out.print(escape(self.redact(text)))

    # render ------------------------------------------------------------------------------

    def rendered(self, result: RenderResult, *, json_out: bool = False) -> None:
        """The files written: a table on a terminal, a line each otherwise, then the summary;
        or the JSON of it all (--format json)."""
        rows = result.rows
        hosts = len({h for h, _, _ in rows})
        note = "" if result.secrets else " (passwords masked; --include-secrets writes them)"
        review = " as UTF-8 for review (not for workstations)" if result.encoding == "utf-8" else ""
        files = f"{len(rows)} ini file{'' if len(rows) == 1 else 's'} for {hosts} host{'' if hosts == 1 else 's'}"
        summary = f"Rendered {files} into {display_path(result.out)}{review}{note}"
        if json_out:
            from provision.report.data import to_json
            from provision.report.offline import render_data

            write_text(STDOUT, to_json(render_data(result, summary), self.redact))
            return
        if self.out.is_terminal and rows:
            table = Table(title=None, show_edge=False, pad_edge=False)
            for column in ("host", "user", "accounts"):
                table.add_column(column)
            for host, user, accounts in rows:
                table.add_row(escape(host), escape(user), str(accounts))
            self.out.print(table)
        else:
            for host, user, _ in rows:
                self.out.print(escape(f"rendered {host}/{user}"))
        self.out.print(escape(summary))

    # diff --------------------------------------------------------------------------------

    def diff(self, result: DiffResult, *, json_out: bool = False) -> None:
        """Per target, what would change, then the summary; or the JSON of it (--format json)."""
        plans, failed, new = result.plans, result.failed, result.new
        changed = sum(1 for p in plans if p.changed)
        summary = f"{changed} of {len(plans) + len(failed)} targets would change, {len(plans) - changed} unchanged"
        if failed:
            summary += f", {len(failed)} failed"
        if json_out:
            from provision.report.data import to_json
            from provision.report.offline import diff_data

            write_text(STDOUT, to_json(diff_data(result, summary), self.redact))
            return
        for plan in plans:
            if not plan.changed:
                continue
            what = "new file" if plan.target_id in new else f"{len(plan.changes)} change(s)"
            self.out.print(f"[bold]{escape(plan.target_id)}[/]: {what}")
            for change in plan.changes:
                self.out.print("  " + escape(self.redact(change.describe())))
            for note in plan.notes:
                self.out.print("  note: " + escape(self.redact(note)))
        for target_id, reason in failed:
            self.out.print(f"[bold red]{escape(target_id)}[/]: failed: {escape(self.redact(reason))}")
        self.out.print(escape(summary))

    # push and rollback -------------------------------------------------------------------

    @contextmanager
    def hosts_progress(self, verb: str) -> Iterator[FleetProgress]:
        """Progress while hosts are worked on: a bar on a terminal, a line per host otherwise."""
        shown = FleetProgress(self, verb)
        if shown.bar is None:
            yield shown
            return
        with shown.bar:
            yield shown

    def outcome(
        self,
        run: RunOutcome[Any],
        *,
        diff: bool = False,
        by_group: bool = False,
        show: str = "auto",
        to_stderr: bool = False,
    ) -> None:
        """A run for people: per-user changes if asked, a table (compact for a large fleet),
        per-group summaries if asked, and the one-line summary. On standard error when standard
        output carries a JSON report."""
        from provision.report.data import summary_data, summary_text

        console = self.err if to_stderr else self.out
        if diff:
            for host in run.hosts:
                for user in getattr(host, "users", ()):
                    if not user.changes:
                        continue
                    console.print(f"[bold]{escape(user.target_id)}[/]: {escape(user.status)}")
                    for change in user.changes:
                        console.print("  " + escape(self.redact(change.describe())))
                    for note in user.notes:
                        console.print("  note: " + escape(self.redact(note)))
        if run.command == "doctor" and not self.quiet:
            for line in _steps(run.hosts):
                console.print(escape(self.redact(line)))
        elif run.hosts and not self.quiet:
            rows, left = _rows(run.hosts, show)
            self._table(_hosts_table(run, rows, self.redact), console)
            if left:
                console.print(escape(f"... and {left} more host(s) with nothing to report (--show all lists them)"))
        if by_group and run.hosts and not self.quiet:
            table = Table(show_edge=False, pad_edge=False, box=None)
            for column in ("group", "hosts", "results"):
                table.add_column(column, overflow="fold")
            for group, counts in summary_data(run)["by_group"].items():
                parts = ", ".join(f"{n} {status}" for status, n in counts["by_status"].items())
                table.add_row(escape(group), str(counts["hosts"]), escape(parts))
            self._table(table, console)
        mode = " (check: nothing written)" if run.check else ""
        hosts = f"{len(run.hosts)} host{'' if len(run.hosts) == 1 else 's'}"
        console.print(escape(f"{hosts}: {summary_text(run)} in {run.seconds:.1f} s{mode}{_ending(run)}"))

    # runs --------------------------------------------------------------------------------

    def runs(self, found: Sequence[RunInfo]) -> None:
        """The recorded runs, newest first, a row each."""
        if not found:
            self.out.print("No runs recorded.")
            return
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("run", "command", "status", "started", "by", "hosts", "results"):
            table.add_column(column, overflow="fold")
        for run in found:
            results = ", ".join(
                f"{n} {status}" for status, n in sorted(run.counts.items(), key=lambda i: (-i[1], i[0]))
            )
            table.add_row(
                escape(run.id),
                escape(run.command + (" --check" if run.options.get("check") else "")),
                f"[{_RUN_STYLE.get(run.status, '')}]{escape(run.status)}[/]",
                escape(run.started.replace("+00:00", "Z")),
                escape(f"{run.who}@{run.controller}"),
                f"{run.hosts_done}/{run.hosts_total}",
                escape(results),
            )
        self._table(table)

    def run_detail(self, detail: RunDetail, *, by_group: bool) -> None:
        """One run: what it was, a summary (per group if asked), what failed, every host."""
        run = detail.run
        lines = [
            f"run {run.id}: {run.command}, {run.status}",
            f"  started {run.started}" + (f", finished {run.finished}" if run.finished else ""),
            f"  by {run.who} on {run.controller}" + (f", shard {run.shard}" if run.shard else ""),
            f"  hosts {run.hosts_done} of {run.hosts_total}" + (f", inputs {run.digest}" if run.digest else ""),
        ]
        if run.resume_of:
            lines.append(f"  resumes run {run.resume_of}")
        chosen = {k: v for k, v in run.options.items() if v not in (None, [], False, "", 0) and k != "seed"}
        if chosen:
            lines.append("  options: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
        for line in lines:
            self.out.print(escape(line))
        if by_group:
            table = Table(show_edge=False, pad_edge=False, box=None, title=None)
            table.add_column("group")
            table.add_column("hosts")
            table.add_column("results", overflow="fold")
            for group, counts in detail.by_group().items():
                parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda i: -i[1]))
                table.add_row(escape(group), str(sum(counts.values())), escape(parts))
            self._table(table)
        failures = [o for o in detail.hosts if o.status in ("failed", "busy", "drifted", "unreachable")]
        if failures:
            self.out.print(f"[bold]{len(failures)} host(s) with problems:[/]")
            for outcome in failures:
                reason = outcome.reason or "; ".join(f"{u.user}: {u.reason}" for u in outcome.users if u.reason)
                self.out.print(escape(f"  {outcome.host}: {outcome.status}: {reason}"))
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("host", "result", "users", "time", "reason"):
            table.add_column(column, overflow="fold")
        for outcome in detail.hosts:
            table.add_row(
                escape(outcome.host),
                escape(outcome.status),
                escape(_user_counts(outcome.users)),
                f"{outcome.seconds:.1f}s",
                escape(outcome.reason),
            )
        if detail.hosts and not self.quiet:
            self._table(table)
        if detail.not_started:
            self.out.print(escape(f"{len(detail.not_started)} host(s) not started"))

    # profiles ----------------------------------------------------------------------------

    def profile_names(self, rows: Sequence[tuple[str, str, str]]) -> None:
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("profile", "extends", "description"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        self.out.print(table)

    def resolved(self, located: Located, chain: Sequence[str]) -> None:
        """The merged profile as YAML-like lines, each leaf with the file and line that set it."""
        self.out.print(escape(f"# layers: {' -> '.join(chain)}"))
        lines: list[tuple[str, str]] = []
        _walk(located.data, located, (), 0, lines)
        width = max((len(text) for text, _ in lines), default=0)
        for text, origin in lines:
            self.out.print(escape(f"{text.ljust(width)}  # {origin}" if origin else text))

    def validated(self, result: ValidationResult, *, json_out: bool = False) -> None:
        summary = ", ".join(f"{n} {name}" for name, n in result.counts.items())
        if json_out:
            from provision.report.data import to_json
            from provision.report.offline import validate_data

            write_text(STDOUT, to_json(validate_data(result, summary), self.redact))
            return
        self.out.print(f"[green]OK[/]: {escape(summary)}")


def _ending(run: RunOutcome[Any]) -> str:
    """'; stopped: <why>; 12 not started' for a run that did not go through every host."""
    if run.status == "finished":
        return ""
    text = f"; {run.stop_reason or run.status}"
    if run.not_started:
        text += f"; {len(run.not_started)} not started"
    return text


def _walk(node: Any, located: Located, path: tuple[str | int, ...], depth: int, out: list[tuple[str, str]]) -> None:
    indent = "  " * depth
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            origin = located.origins.get(here)
            if isinstance(value, dict) and value:
                out.append((f"{indent}{key}:", ""))
                _walk(value, located, here, depth + 1, out)
            else:
                shown = (
                    MASK if key == "password" and not str(value).startswith(("env:", "file:", "keyring:")) else value
                )
                out.append((f"{indent}{key}: {_scalar(shown)}", str(origin) if origin else ""))
    else:  # pragma: no cover - profiles are mappings at the top
        out.append((f"{indent}{_scalar(node)}", ""))


def _scalar(value: Any) -> str:
    """A value spelled as YAML would, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1_000_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


COMPACT = 50  # a run over more hosts than this shows problems and changes first (--show all: every host)
_QUIET_STATUSES = frozenset({"unchanged", "ok", "skipped", "no backup"})


def _rows(hosts: Sequence[Any], show: str) -> tuple[list[Any], int]:
    """The hosts to show as rows, and how many are left out."""
    if show == "all" or len(hosts) <= COMPACT:
        return list(hosts), 0
    from provision.report.data import status_rank

    notable = [h for h in hosts if h.status not in _QUIET_STATUSES]
    notable.sort(key=lambda h: -status_rank(h.status))  # the worst first; inventory order within a status
    shown = notable[:COMPACT]
    return shown, len(hosts) - len(shown)


def _hosts_table(run: RunOutcome[Any], rows: Sequence[Any], redact: Callable[[str], str]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None)
    checks = run.command in ("health", "smoke", "doctor")
    columns = ["host", "result", "time", "details"] if checks else ["host", "result", "users", "time", "reason"]
    if run.command == "smoke":
        columns.insert(2, "method")
    for column in columns:
        table.add_column(column, overflow="fold")
    for host in rows:
        status = host.status
        style = (_CHECK_STYLE if checks else _STYLE).get(status, "")
        cells = [escape(host.host), f"[{style}]{escape(status)}[/]" if style else escape(status)]
        if run.command == "smoke":
            cells.append(escape(host.method or "-"))
        if not checks:
            cells.append(escape(_user_counts(host.users)))
        cells.append(f"{host.seconds:.1f}s")
        cells.append(escape(redact(host.reason if checks else _host_reason(host))))
        table.add_row(*cells)
    return table


def _steps(hosts: Sequence[Any]) -> list[str]:
    """doctor: per host, every step with its status, and the fix under a step that warns or fails."""
    out: list[str] = []
    width = max((len(s.name) for h in hosts for s in h.steps), default=10)
    for host in hosts:
        out.append(f"{host.host}  {host.endpoint}".rstrip())
        for step in host.steps:
            out.append(f"  {step.status:<4}  {step.name:<{width}}  {step.detail}".rstrip())
            if step.fix and step.status in ("warn", "fail"):
                out.append(f"        {'':<{width}}  fix: {step.fix}")
    return out


def _user_counts(users: Iterable[Any]) -> str:
    """'2 changed, 1 busy': a host's users by status (results or recorded outcomes)."""
    counts: dict[str, int] = {}
    for user in users:
        counts[user.status] = counts.get(user.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _host_reason(host: HostResult) -> str:
    if host.reason:
        return host.reason
    shown = ("busy", "failed", "no profile", "no backup")
    reasons = [f"{u.user}: {u.reason}" for u in host.users if u.reason and u.status in shown]
    return "; ".join(reasons)
