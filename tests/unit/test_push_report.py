"""How push results are shown: progress on a terminal, lines otherwise, the table and summary."""

from __future__ import annotations

import io

from rich.console import Console

from provision.push import BUSY, CHANGED, UNCHANGED, UNREACHABLE, HostResult, UserResult
from provision.report import Reporter
from provision.report.data import count_statuses
from provision.rollout import RunResult
from provision.secrets import Redactor, Secret


def reporter(terminal: bool) -> tuple[Reporter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return (
        Reporter(
            out=Console(file=out, force_terminal=terminal, width=120),
            err=Console(file=err, force_terminal=terminal, width=120),
        ),
        out,
        err,
    )


def results() -> list[HostResult]:
    return [
        HostResult("ws-1", [UserResult("ws-1", "a", CHANGED), UserResult("ws-1", "b", UNCHANGED)]),
        HostResult("ws-2", [UserResult("ws-2", "a", BUSY, "MicroSIP did not close")]),
        HostResult("ws-3", [], reason="connection refused by 10.0.0.3:5986 (pw hunter2)", kind="refused"),
        HostResult("ws-4", [UserResult("ws-4", "a", UNCHANGED)]),
    ]


def test_a_host_is_as_bad_as_its_worst_user() -> None:
    assert [h.status for h in results()] == [CHANGED, BUSY, UNREACHABLE, UNCHANGED]  # refused: the listener is off
    assert count_statuses(results()) == {UNCHANGED: 1, CHANGED: 1, UNREACHABLE: 1, BUSY: 1}
    assert [h.ok for h in results()] == [True, False, False, True]


def test_without_a_terminal_each_host_is_a_line_as_it_finishes() -> None:
    rep, _, err = reporter(terminal=False)
    rep.redact = Redactor([Secret("hunter2")])
    with rep.hosts_progress("push") as progress:
        progress.on_start(4)
        for result in results():
            progress.on_done(result)
    lines = err.getvalue().splitlines()
    assert lines[0] == "[1/4] ws-1 changed"
    assert lines[2] == "[3/4] ws-3 unreachable: connection refused by 10.0.0.3:5986 (pw ********)"


def test_on_a_terminal_a_progress_bar_counts_hosts() -> None:
    rep, _, err = reporter(terminal=True)
    with rep.hosts_progress("push") as progress:
        progress.on_start(4)
        for result in results():
            progress.on_done(result)
    assert "4/4" in err.getvalue()


def test_the_table_and_the_fleet_summary() -> None:
    rep, out, _ = reporter(terminal=False)
    rep.redact = Redactor([Secret("hunter2")])
    run = RunResult("push", results(), "2026-11-24T00:00:00+00:00", 1.25)
    rep.outcome(run)
    text = out.getvalue()
    assert "a: MicroSIP did not close" in text
    assert "hunter2" not in text
    assert "1 changed, 1 unchanged" in text
    assert text.splitlines()[-1] == "4 hosts: 1 unchanged, 1 changed, 1 unreachable, 1 busy in 1.2 s"


def test_a_large_fleet_gets_a_compact_table_problems_first() -> None:
    rep, out, _ = reporter(terminal=False)
    hosts = [HostResult(f"ws-{i:03d}", [UserResult(f"ws-{i:03d}", "a", UNCHANGED)]) for i in range(60)]
    hosts[7].users[0].status = CHANGED
    hosts[42].users[0] = UserResult("ws-042", "a", BUSY, "MicroSIP did not close")
    hosts[50] = HostResult("ws-050", [], reason="connection refused", kind="refused")
    rep.outcome(RunResult("push", hosts, "2026-11-24T00:00:00+00:00", 3.0))
    rows = [line.split()[0] for line in out.getvalue().splitlines()[1:-2]]
    assert rows == ["ws-042", "ws-050", "ws-007"]  # busy, unreachable, changed; nothing unchanged
    assert "... and 57 more host(s) with nothing to report (--show all lists them)" in out.getvalue()
    rep, out, _ = reporter(terminal=False)
    rep.outcome(RunResult("push", hosts, "2026-11-24T00:00:00+00:00", 3.0), show="all")
    assert len(out.getvalue().splitlines()) == 62  # header, 60 hosts, summary


def test_the_json_report_masks_a_secret_that_json_would_escape() -> None:
    """Redaction runs on each string before json.dumps escapes its quotes and backslashes."""
    import json

    from provision.report.data import report_json

    secret = 'hun"ter\\2'
    hosts = [HostResult("ws-1", [], reason=f"refused (pw {secret})", kind="refused")]
    run = RunResult("push", hosts, "2026-01-01T00:00:00+00:00", 1.0, redactor=Redactor([Secret(secret)]))
    text = report_json(run)
    assert "hun" not in text and json.loads(text)["hosts"][0]["reason"] == "refused (pw ********)"
