"""A run as JUnit XML, for a CI server or a monitoring job: a test case per host.

A host that failed is a failure (its reason the message, its problems the text); one that
could not be reached is an error; one skipped (another run held it), stopped before its next
step, or never started is skipped. Every user's or check's line goes to system-out. With
`by_group`, one test suite per inventory group (a host in two groups is in both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree as ET

from provision.fleet import ABORTED_CLASS, FAILED_CLASS, SKIPPED_CLASS, UNREACHABLE_CLASS, outcome_class
from provision.outcome import RunOutcome


def junit_xml(run: RunOutcome[Any], *, by_group: bool = False) -> str:
    root = ET.Element("testsuites", {"name": f"provision {run.command}"})
    if by_group:
        members: dict[str, list[Any]] = {}
        waiting: dict[str, list[str]] = {}
        for host in run.hosts:
            for group in run.groups.get(host.host) or ("(no group)",):
                members.setdefault(group, []).append(host)
        for name in run.not_started:
            for group in run.groups.get(name) or ("(no group)",):
                waiting.setdefault(group, []).append(name)
        for group in sorted({*members, *waiting}):
            root.append(
                _suite(run, f"provision {run.command}: {group}", members.get(group, []), waiting.get(group, []))
            )
    else:
        root.append(_suite(run, f"provision {run.command}", run.hosts, run.not_started))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(run: RunOutcome[Any], name: str, hosts: Sequence[Any], not_started: Sequence[str]) -> ET.Element:
    classes = [outcome_class(h) for h in hosts]
    suite = ET.Element(
        "testsuite",
        {
            "name": name,
            "tests": str(len(hosts) + len(not_started)),
            "failures": str(classes.count(FAILED_CLASS)),
            "errors": str(classes.count(UNREACHABLE_CLASS)),
            "skipped": str(classes.count(SKIPPED_CLASS) + classes.count(ABORTED_CLASS) + len(not_started)),
            "time": f"{sum(h.seconds for h in hosts):.3f}",
            "timestamp": run.started.removesuffix("+00:00"),
        },
    )
    for host, kind in zip(hosts, classes, strict=True):
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"provision.{run.command}", "name": host.host, "time": f"{host.seconds:.3f}"},
        )
        message = run.redactor(host.reason)[:1000]
        if kind == FAILED_CLASS:
            element = ET.SubElement(case, "failure", {"message": message, "type": host.status})
            element.text = run.redactor("\n".join(_problems(host)))
        elif kind == UNREACHABLE_CLASS:
            ET.SubElement(case, "error", {"message": message, "type": host.status})
        elif kind in (SKIPPED_CLASS, ABORTED_CLASS):
            ET.SubElement(case, "skipped", {"message": message})
        ET.SubElement(case, "system-out").text = run.redactor("\n".join(_lines(host)))
    for host_name in not_started:
        case = ET.SubElement(
            suite, "testcase", {"classname": f"provision.{run.command}", "name": host_name, "time": "0"}
        )
        ET.SubElement(case, "skipped", {"message": f"not started ({run.stop_reason or run.status})"})
    return suite


def _lines(host: Any) -> list[str]:
    if hasattr(host, "steps"):
        return [f"{s.status.upper():4} {_step(s)}" for s in host.steps]
    if hasattr(host, "checks"):
        return [f"{c.status.upper():4} {c.name}: {c.detail}" for c in host.checks if c.status != "skip" or c.detail]
    lines = []
    for user in getattr(host, "users", ()):
        lines.append(f"{user.user}: {user.status}" + (f": {user.reason}" if user.reason else ""))
        lines += [f"  {change.describe()}" for change in user.changes]
    return lines or [f"{host.status}: {host.reason}" if host.reason else host.status]


def _problems(host: Any) -> list[str]:
    if hasattr(host, "steps"):
        return [_step(s) for s in host.steps if s.status == "fail"]
    if hasattr(host, "checks"):
        return [f"{c.name}: {c.detail}" for c in host.checks if c.status == "fail"]
    problems = [f"{u.user}: {u.status}: {u.reason}" for u in getattr(host, "users", ()) if u.reason]
    return problems or [host.reason]


def _step(step: Any) -> str:
    return f"{step.name}: {step.detail}" + (f" (fix: {step.fix})" if step.fix else "")
