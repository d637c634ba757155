"""Console examples in Markdown pages: read them, run them, compare them with what they show.

How a page is read:

- A ```console block holds commands, each on a line starting with `$ ` (a line ending in
  `\\` goes on to the next), each followed by the output the page shows for it.
- `<!-- file: PATH -->` on the line before a fenced block: the block is that file's whole
  content; it is written (relative to the current folder) when the page reaches it.
- `<!-- edit: PATH -->` before a ```diff block: the change is made to that file. Lines
  starting with a space are context, `-` lines are removed, `+` lines added; the context and
  removed lines must be found in the file exactly once; `@@` lines separate changes.
- `<!-- not run: REASON -->` before a ```console block: the block is not run (a real Windows
  host is needed, say). The reason is required.

How a page runs: its blocks run in order, in one folder of its own that starts with a copy of
the repository's `profiles/` (a page may also `provision init` a folder and `cd` into it),
so that state flows from one command to the next. The README starts from the copy as a
checkout has it; every other page from the copy as the README's tour leaves it (its first
command makes `profiles/inventory/demo.env` readable by its owner only). Every command runs through bash, with
`provision` on PATH running the installed package (`python -m provision`), no PROVISION_*
variable from the outer environment, and the user name `admin`. `cd DIR` alone on a line
changes the folder for the rest of the page. A page stops the labs it starts (`provision lab
down`); whatever is still up at the end, also after a failure, is stopped then.

How output is compared: standard output and standard error together, as a person sees them
in a pipe (no colours). Progress lines (`[3/4] lab-003 changed` on standard error) are left
out unless the page shows one for that command. Blank lines and spacing inside a line are not
compared (tables align to their content). A line `...` stands for any number of lines, and
`...` within a line for any text there. What
changes from run to run is normalised on both sides: durations (`0.1s`, `0.1 s`, `12 ms`),
run ids (`20261129T083200-3f9a1c`; a run id, or its first characters, in a later command
stands for the run the page showed with that id), ISO dates and times, compact UTC times in
backup names, lab addresses (`127.x.y.z`), the lab's random account names (`lab-3f9a1c`),
the controller's host name (shown as `ctl-01`), and the page's folder (shown as `/tmp/work`).
No command may crash: exit status 70 or a traceback fails the page, whatever it shows; exit
statuses of failures are part of the story and are not compared.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

NOT_RUN = re.compile(r"^<!--\s*not run\s*(?::\s*(?P<reason>.*?))?\s*-->$")
FILE = re.compile(r"^<!--\s*file:\s*(?P<path>\S+)\s*-->$")
EDIT = re.compile(r"^<!--\s*edit:\s*(?P<path>\S+)\s*-->$")
MARKER = re.compile(r"^<!--\s*(not run|file|edit)\b")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[\w+-]*)")
PROGRESS = re.compile(r"^\[\d+/\d+\] \S+ ")
RUN_ID = re.compile(r"\b\d{8}T\d{6}-[0-9a-f]{6}\b")
RUN_REF = re.compile(r"\b\d{8}T\d{4,6}(?:-[0-9a-f]{1,6})?\b")
SHOWN_FOLDER = "/tmp/work"
SHOWN_HOST = "ctl-01"
COMMAND_TIMEOUT = 120.0

# Applied in order to expected and actual lines alike.
NORMALISE: list[tuple[re.Pattern[str], str]] = [
    (RUN_ID, "<run>"),
    (re.compile(r"\b\d{8}T\d{6,9}Z\b"), "<utc>"),  # backup names
    (
        re.compile(r"\b\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?)?\b"),
        "<time>",
    ),
    (re.compile(r"\b\d+(?:\.\d+)? ?ms\b"), "<duration>"),
    (re.compile(r"\b\d+\.\d+ ?s\b"), "<duration>"),
    (re.compile(r"\b127\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"), "<lab address>"),
    (re.compile(r"\blab-[0-9a-f]{6}\b"), "<lab account>"),
]


@dataclass(frozen=True)
class Step:
    command: str
    expected: tuple[str, ...]
    line: int  # of the command, in the page


@dataclass(frozen=True)
class Console:
    line: int
    steps: tuple[Step, ...]
    not_run: str | None = None  # the reason, when marked


@dataclass(frozen=True)
class WriteFile:
    line: int
    target: str
    text: str


@dataclass(frozen=True)
class EditFile:
    line: int
    target: str
    changes: tuple[tuple[str, str], ...]  # (old text, new text)


Item = Console | WriteFile | EditFile


@dataclass
class Page:
    path: Path
    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # markers misused, blocks that cannot run

    @property
    def consoles(self) -> list[Console]:
        return [item for item in self.items if isinstance(item, Console)]

    @property
    def runs(self) -> bool:
        return any(c.not_run is None for c in self.consoles)


def parse_page(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text("utf-8").splitlines()
    marker: tuple[int, str] | None = None  # (line number, text) of a marker waiting for its block
    index = 0
    while index < len(lines):
        text = lines[index].strip()
        fence = FENCE.match(lines[index])
        if fence is None:
            if MARKER.match(text):
                if marker is not None:
                    page.problems.append(f"{path.name}:{marker[0]}: a marker with no block after it")
                marker = (index + 1, text)
            elif text and marker is not None:
                page.problems.append(f"{path.name}:{marker[0]}: a marker with no block after it")
                marker = None
            index += 1
            continue
        start, indent, info = index + 1, fence["indent"], fence["info"]
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence["fence"]):
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index].lstrip())
            index += 1
        index += 1
        page.items.extend(_block(page, start, info, body, marker))
        marker = None
    if marker is not None:
        page.problems.append(f"{path.name}:{marker[0]}: a marker with no block after it")
    return page


def _block(page: Page, line: int, info: str, body: list[str], marker: tuple[int, str] | None) -> Iterator[Item]:
    where = f"{page.path.name}:{line}"
    marked = marker[1] if marker else ""
    if (found := FILE.match(marked)) is not None:
        yield WriteFile(line, found["path"], "\n".join(body) + "\n")
        return
    if (found := EDIT.match(marked)) is not None:
        if info != "diff":
            page.problems.append(f"{where}: an edit marker needs a ```diff block")
            return
        yield EditFile(line, found["path"], tuple(_changes(body)))
        return
    not_run = NOT_RUN.match(marked)
    if marker is not None and not_run is None:
        page.problems.append(f"{page.path.name}:{marker[0]}: unknown marker {marked!r}")
    if info != "console":
        if not_run is not None:
            page.problems.append(f"{where}: `not run` marks a ```console block, not a {info or 'plain'} block")
        if any(row.startswith("$ ") for row in body):
            page.problems.append(f"{where}: commands with `$ ` prompts belong in a ```console block")
        return
    steps = tuple(_steps(body, line))
    if not steps:
        page.problems.append(f"{where}: a ```console block without a `$ ` command")
    if not_run is not None:
        reason = (not_run["reason"] or "").strip()
        if not reason:
            page.problems.append(f"{where}: `not run` needs a reason: <!-- not run: WHY -->")
        yield Console(line, steps, not_run=reason or "?")
        return
    yield Console(line, steps)


def _steps(body: list[str], first_line: int) -> Iterator[Step]:
    command: list[str] = []
    expected: list[str] = []
    at = 0
    for offset, row in enumerate(body):
        if command and command[-1].endswith("\\") and not expected:
            command.append(row)
            continue
        if row.startswith("$ "):
            if command:
                yield Step("\n".join(command), tuple(expected), at)
            command, expected, at = [row[2:]], [], first_line + 1 + offset
        elif command:
            expected.append(row)
    if command:
        yield Step("\n".join(command), tuple(expected), at)


def _changes(body: list[str]) -> Iterator[tuple[str, str]]:
    old: list[str] = []
    new: list[str] = []
    for row in [*body, "@@"]:
        if row.startswith("@@") or row.startswith(("--- ", "+++ ")):
            if old or new:
                yield "\n".join(old) + "\n", "\n".join(new) + "\n"
            old, new = [], []
        elif row.startswith("-"):
            old.append(row[1:])
        elif row.startswith("+"):
            new.append(row[1:])
        else:
            context = row[1:] if row.startswith(" ") else row
            old.append(context)
            new.append(context)


# Comparing


@dataclass
class Normaliser:
    folder: Path  # the page's folder, shown as SHOWN_FOLDER
    host: str = field(default_factory=socket.gethostname)

    def line(self, text: str) -> str:
        for real in {str(self.folder.resolve()), str(self.folder)}:
            text = text.replace(real, SHOWN_FOLDER)
        if self.host:
            host = re.escape(self.host)
            text = re.sub(rf"(?<=@){host}\b|(?<=\bon ){host}\b", SHOWN_HOST, text)
        for pattern, replacement in NORMALISE:
            text = pattern.sub(replacement, text)
        return " ".join(text.split())


def shown_lines(output: str, expected: Sequence[str]) -> list[str]:
    """What a page would show of a command's output: progress lines only if it shows one."""
    keep_progress = any(PROGRESS.match(row.strip()) for row in expected)
    return [row for row in output.splitlines() if keep_progress or not PROGRESS.match(row)]


def line_matches(expected: str, actual: str) -> bool:
    """The same line, or the same but where `expected` has `...` (any text there)."""
    if expected == actual:
        return True
    return "..." in expected and _pattern(expected).fullmatch(actual) is not None


@cache
def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def align(expected: Sequence[str], actual: Sequence[str]) -> list[tuple[int, int]] | None:
    """Pairs (expected index, actual index) if `expected` (with `...` lines) matches `actual`."""
    limit = len(actual)

    @cache
    def solve(i: int, j: int) -> tuple[tuple[int, int], ...] | None:
        if i == len(expected):
            return () if j == limit else None
        if expected[i] == "...":
            for k in range(j, limit + 1):
                rest = solve(i + 1, k)
                if rest is not None:
                    return rest
            return None
        if j < limit and line_matches(expected[i], actual[j]):
            rest = solve(i + 1, j + 1)
            if rest is not None:
                return ((i, j), *rest)
        return None

    found = solve(0, 0)
    return list(found) if found is not None else None


@dataclass
class Comparison:
    matched: bool
    expected: list[str]  # normalised, blank lines dropped
    actual: list[str]
    bindings: dict[str, str]  # run id shown -> run id now

    def explain(self) -> str:
        import difflib

        diff = difflib.unified_diff(self.expected, self.actual, "page shows", "command printed", lineterm="")
        return "\n".join(diff)


def compare(expected: Sequence[str], output: str, normaliser: Normaliser) -> Comparison:
    raw_expected = [row for row in expected if row.strip()]
    raw_actual = [row for row in shown_lines(output, expected) if row.strip()]
    norm_expected = ["..." if row.strip() == "..." else normaliser.line(row) for row in raw_expected]
    norm_actual = [normaliser.line(row) for row in raw_actual]
    pairs = align(norm_expected, norm_actual)
    bindings: dict[str, str] = {}
    for i, j in pairs or []:
        shown, now = RUN_ID.findall(raw_expected[i]), RUN_ID.findall(raw_actual[j])
        if len(shown) == len(now):
            bindings.update(zip(shown, now, strict=True))
    return Comparison(pairs is not None, norm_expected, norm_actual, bindings)


def substitute_runs(command: str, bindings: dict[str, str]) -> str:
    """A run id (or its first characters) the page showed earlier stands for that run now."""

    def replace(found: re.Match[str]) -> str:
        token = found[0]
        now = {bindings[shown] for shown in bindings if shown.startswith(token)}
        return now.pop() if len(now) == 1 else token

    return RUN_REF.sub(replace, command)


# Running


@dataclass
class Outcome:
    command: str  # as run, run ids substituted
    output: str
    returncode: int
    seconds: float

    @property
    def crashed(self) -> bool:
        return self.returncode == 70 or "Traceback (most recent call last)" in self.output


class Workspace:
    """One page's folder, the commands run in it, and the labs they start (stopped by close)."""

    def __init__(self, folder: Path, python: str, bin_folder: Path) -> None:
        self.root = folder
        self.cwd = folder
        self.python = python
        self.bindings: dict[str, str] = {}
        bin_folder.mkdir(parents=True, exist_ok=True)
        shim = bin_folder / "provision"
        shim.write_text(f'#!/bin/sh\nexec "{python}" -m provision "$@"\n', "utf-8")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.env = clean_environment(bin_folder)
        self.normaliser = Normaliser(folder)

    def run(self, step: Step) -> Outcome:
        command = substitute_runs(step.command, self.bindings)
        words = command.split()
        began = time.monotonic()
        if len(words) == 2 and words[0] == "cd":
            target = (self.cwd / words[1]).resolve()
            if not target.is_dir():
                return Outcome(command, f"cd: {words[1]}: No such directory\n", 1, 0.0)
            self.cwd = target
            return Outcome(command, "", 0, 0.0)
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        output = done.stdout.decode("utf-8", errors="replace")
        return Outcome(command, output, done.returncode, time.monotonic() - began)

    def check(self, step: Step, outcome: Outcome) -> Comparison:
        comparison = compare(step.expected, outcome.output, self.normaliser)
        self.bindings.update(comparison.bindings)
        return comparison

    def write(self, item: WriteFile) -> None:
        path = self.cwd / item.target
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:  # an existing file keeps its mode (.env: 0600)
            out.write(item.text)

    def edit(self, item: EditFile) -> None:
        path = self.cwd / item.target
        text = path.read_text("utf-8")
        for old, new in item.changes:
            count = text.count(old)
            if count != 1:
                raise AssertionError(f"{item.target}: the lines to change are found {count} times, not once:\n{old}")
            text = text.replace(old, new)
        with path.open("w", encoding="utf-8") as out:
            out.write(text)

    def close(self) -> list[str]:
        """Stop every lab still up under this folder (`lab down`, else a kill); the ones that were up."""
        left: list[str] = []
        for pid_file in sorted(self.root.rglob("lab.pid")):
            try:
                pid = int(pid_file.read_text("utf-8").strip())
            except (OSError, ValueError):
                continue
            if not _alive(pid):
                continue
            left.append(str(pid_file.parent.relative_to(self.root)))
            subprocess.run(
                [self.python, "-m", "provision", "lab", "down", "--dir", str(pid_file.parent)],
                cwd=self.root,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        return left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def clean_environment(bin_folder: Path) -> dict[str, str]:
    """The outer environment without provision's variables or forced colours; `provision` first on PATH."""
    dropped = {"COLUMNS", "LINES", "FORCE_COLOR", "CLICOLOR_FORCE", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PROVISION_", "_PROVISION_")) and name not in dropped
    }
    env["PATH"] = f"{bin_folder}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["USER"] = env["LOGNAME"] = "admin"
    env.pop("USERNAME", None)
    return env


def copy_examples(root: Path, folder: Path, *, private_env: bool) -> None:
    """A page's folder starts with the repository's example profiles, as a checkout has them;
    with `private_env`, as the README's tour leaves them: demo.env readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "profiles", folder / "profiles")
    if private_env:
        (folder / "profiles" / "inventory" / "demo.env").chmod(0o600)
