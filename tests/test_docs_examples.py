"""Every console example in README.md and docs/ runs, and shows what the tool prints.

For whoever writes the docs: a ```console block is a transcript. Its `$ ` commands run in
order, page by page, each page in a folder of its own holding a copy of `profiles/` (with
`profiles/inventory/demo.env` readable by its owner only, except for the README, whose tour
starts from a fresh checkout and says so), with the `provision` installed here; what each
command prints must be what the page shows under it. Write what a person sees in a pipe,
without colours and without the `[n/N] host status` progress lines (show one and they are
all compared). `...` on a line of its own stands for any number of lines, and within a line
for any text; blank lines and the spacing inside a line do not count. Durations, run ids,
dates and times, lab addresses and account names, the controller's name (`ctl-01`) and the
page's folder (`/tmp/work`) are normalised; a run id shown earlier on the page can be used in
a later command. A page makes the files its story needs where the reader sees them:
`<!-- file: PATH -->` before a fenced block writes it, `<!-- edit: PATH -->` before a
```diff block changes a file. Start labs in the page and stop them (`provision lab down`);
any left running fails the page. A block that cannot run here is marked
`<!-- not run: REASON -->` right before it. The rules in full: tests/transcripts.py.

Run one page:  pytest tests/test_docs_examples.py -k quickstart
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from transcripts import (
    Console,
    EditFile,
    Normaliser,
    Step,
    Workspace,
    WriteFile,
    align,
    compare,
    copy_examples,
    parse_page,
    substitute_runs,
)

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


RUNNABLE = [page for page in PAGES if parse_page(page).runs]


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_page_examples_run_as_shown(page: Path, tmp_path: Path) -> None:
    parsed = parse_page(page)
    folder = tmp_path / "work"
    copy_examples(ROOT, folder, private_env=page != ROOT / "README.md")
    workspace = Workspace(folder, sys.executable, tmp_path / "bin")
    try:
        for item in parsed.items:
            if isinstance(item, WriteFile):
                workspace.write(item)
            elif isinstance(item, EditFile):
                workspace.edit(item)
            elif item.not_run is None:
                for step in item.steps:
                    _run_step(workspace, page, step)
    finally:
        left = workspace.close()
    assert not left, f"the page leaves labs running (stopped now): {left}; end it with `provision lab down`"


def _run_step(workspace: Workspace, page: Path, step: Step) -> None:
    outcome = workspace.run(step)
    where = f"{_name(page)}:{step.line}: $ {outcome.command}"
    assert not outcome.crashed, f"{where}\ncrashed (exit {outcome.returncode}):\n{outcome.output}"
    comparison = workspace.check(step, outcome)
    assert comparison.matched, f"{where}\n(exit {outcome.returncode})\n{comparison.explain()}"


def test_every_console_block_runs_or_says_why() -> None:
    """Markers in the right places, and every ```console block either runs or is marked with its reason."""
    parsed = [parse_page(page) for page in PAGES]
    problems = [problem for page in parsed for problem in page.problems]
    assert not problems, "\n".join(problems)
    blocks = [(page.path, block) for page in parsed for block in page.consoles]
    assert blocks
    for path, block in blocks:
        assert block.steps, f"{_name(path)}:{block.line}: no command"
        assert block.not_run is None or block.not_run.strip(), f"{_name(path)}:{block.line}: no reason"


# The rules themselves


def test_a_marker_needs_a_reason_and_a_console_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not run -->\n```console\n$ provision push\n```\n\n"
        "<!-- not run: needs a real Windows host -->\n```sh\nprovision doctor\n```\n\n"
        "```sh\n$ provision runs\n```\n\n<!-- not run: no block follows -->\n\nText.\n",
        "utf-8",
    )
    problems = parse_page(page).problems
    assert len(problems) == 4, problems
    assert "needs a reason" in problems[0]
    assert "not a sh block" in problems[1]
    assert "belong in a ```console block" in problems[2]
    assert "no block after it" in problems[3]


def test_console_steps_files_and_edits_are_read_in_order(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: faults.yaml -->\n```yaml\nlab-004:\n  refuse: true\n```\n"
        "<!-- edit: profiles/sales.yaml -->\n```diff\n settings:\n-  autoAnswer: button\n+  autoAnswer: all\n```\n"
        "```console\n$ provision lab up --hosts 4 \\\n    --faults faults.yaml\n...\n\n"
        "$ provision lab down\nLab down.\n```\n",
        "utf-8",
    )
    parsed = parse_page(page)
    assert not parsed.problems
    written, edit, console = parsed.items
    assert isinstance(written, WriteFile) and written.text == "lab-004:\n  refuse: true\n"
    assert isinstance(edit, EditFile)
    assert edit.changes == (("settings:\n  autoAnswer: button\n", "settings:\n  autoAnswer: all\n"),)
    assert isinstance(console, Console)
    assert [s.command for s in console.steps] == [
        "provision lab up --hosts 4 \\\n    --faults faults.yaml",
        "provision lab down",
    ]
    assert console.steps[0].expected == ("...", "")
    assert console.steps[1].line == 17


def test_dots_stand_for_any_lines_and_nothing_else() -> None:
    assert align(["a", "...", "d"], ["a", "b", "c", "d"]) == [(0, 0), (2, 3)]
    assert align(["a", "...", "d"], ["a", "d"]) == [(0, 0), (2, 1)]
    assert align(["a", "d"], ["a", "b", "d"]) is None
    assert align(["a"], ["a", "b"]) is None
    assert align([], ["anything"]) is None
    assert align(["..."], []) == []
    assert align(["options: forks=..., workers=..."], ["options: forks=256, workers=2"]) == [(0, 0)]
    assert align(["options: forks=..., workers=2"], ["options: forks=256, workers=8"]) is None


def test_what_changes_from_run_to_run_is_normalised(tmp_path: Path) -> None:
    normaliser = Normaliser(tmp_path, host="buildbox")
    shown = "lab-003  changed  2 changed   0.1s   via 127.44.0.3:5986 as lab-e5b04b in 0.2 s"
    now = "lab-003 changed 2 changed 12.3s via 127.201.0.3:5986 as lab-0a1b2c in 1.0 s"
    assert normaliser.line(shown) == normaliser.line(now)
    assert normaliser.line("lab-003 changed") != normaliser.line("lab-004 changed")
    run = "20261129T091623-51f112  push  finished  2026-11-29T09:16:23Z  admin@ctl-01"
    assert normaliser.line(run) == normaliser.line(
        "20270101T000000-abcdef push finished 2027-01-01T00:00:00.123Z admin@buildbox"
    )
    assert normaliser.line(f"{tmp_path}/.provision/lab/tls/ca.pem") == "/tmp/work/.provision/lab/tls/ca.pem"


def test_progress_lines_are_compared_only_when_shown(tmp_path: Path) -> None:
    normaliser = Normaliser(tmp_path)
    output = "[1/2] lab-002 changed\n[2/2] lab-001 changed\n2 hosts: 2 changed in 0.1 s\n"
    assert compare(["2 hosts: 2 changed in 0.3 s"], output, normaliser).matched
    assert not compare(["[1/2] lab-001 changed", "..."], output, normaliser).matched
    assert compare(["[1/2] lab-002 changed", "..."], output, normaliser).matched


def test_a_run_id_shown_earlier_stands_for_the_run_now(tmp_path: Path) -> None:
    comparison = compare(
        ["20261129T091620-8be1a2  push  stopped"], "20270102T030405-0a0b0c push stopped\n", Normaliser(tmp_path)
    )
    assert comparison.matched
    assert comparison.bindings == {"20261129T091620-8be1a2": "20270102T030405-0a0b0c"}
    command = "provision runs show 20261129T091620 --by-group"
    assert substitute_runs(command, comparison.bindings) == "provision runs show 20270102T030405-0a0b0c --by-group"
    assert substitute_runs("provision runs show 20261129T0000", comparison.bindings).endswith("20261129T0000")
