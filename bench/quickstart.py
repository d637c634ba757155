"""The quickstart from a wheel in an empty folder, timed.

Builds the wheel, installs it into a fresh virtual environment in an empty temporary folder,
and there runs docs/quickstart.md as the page shows it: its commands exactly as written
(init, validate, lab up -i, push, push again, health, smoke, runs, lab down), its edits made
as the page describes them (the PBX in profiles/base.yaml, inventory.yaml, .env), read from
the page the same way the docs tests read it (tests/transcripts.py). Every command must
succeed (exit status 0) and print what the page shows. Prints the time of each step, the
commands' total (goal: under 60 s) and an estimate of a newcomer's time with the page (goal:
under 10 minutes), with how it is estimated.

    python bench/quickstart.py            # needs the package index (the wheel's dependencies)
    python bench/quickstart.py --keep     # keep the temporary folder, and say where
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "quickstart.md"
COMMANDS_GOAL_SECONDS = 60.0
NEWCOMER_GOAL_MINUTES = 10.0

# A newcomer's time with the page, beyond the commands themselves (assumptions, printed):
READING_WORDS_PER_MINUTE = 200  # instructions read once, with care (adults read prose at about 240)
SECONDS_PER_COMMAND = 15  # copy a command from the page, paste it, read what it prints
SECONDS_PER_EDITED_LINE = 15  # a line of YAML or .env typed or changed in an editor
SECONDS_PER_FILE_OPENED = 20  # opening the file in an editor, finding the place, saving it

sys.path.insert(0, str(ROOT / "tests"))
from transcripts import Console, EditFile, Page, Workspace, WriteFile, parse_page  # noqa: E402


def run(command: list[str], cwd: Path) -> float:
    """A set-up step, timed; its output shown only if it fails."""
    began = time.monotonic()
    done = subprocess.run(command, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    page = parse_page(PAGE)
    if page.problems:
        sys.exit("\n".join(page.problems))
    temp = Path(tempfile.mkdtemp(prefix="provision-quickstart-"))
    rows: list[tuple[str, float]] = []
    try:
        dist, venv, work = temp / "dist", temp / "venv", temp / "work"
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)]
        rows.append(("build the wheel", run(build, temp)))
        wheel = next(dist.glob("provision-*.whl"))
        rows.append(("make a virtual environment", run([sys.executable, "-m", "venv", str(venv)], temp)))
        rows.append(("pip install the wheel", run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], temp)))
        work.mkdir()
        assert not any(work.iterdir())
        commands = run_page(page, Workspace(work, str(venv / "bin" / "python"), temp / "bin"), rows)
    finally:
        if args.keep:
            print(f"kept: {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
    install = sum(seconds for _, seconds in rows[:3])
    width = max(len(step) for step, _ in rows)
    for step, seconds in rows:
        print(f"{step:<{width}}  {seconds:6.2f} s")
    print(f"{'install (wheel, venv, pip)':<{width}}  {install:6.2f} s")
    verdict = "under" if commands <= COMMANDS_GOAL_SECONDS else "OVER"
    print(
        f"{'the quickstart commands':<{width}}  {commands:6.2f} s  ({verdict} the {COMMANDS_GOAL_SECONDS:.0f} s goal)"
    )
    print(newcomer_estimate(page, commands, install))
    if commands > COMMANDS_GOAL_SECONDS:
        sys.exit(1)


def run_page(page: Page, workspace: Workspace, rows: list[tuple[str, float]]) -> float:
    """The page's blocks in order; each command timed, checked for exit 0 and the page's output."""
    total = 0.0
    try:
        for item in page.items:
            if isinstance(item, WriteFile):
                workspace.write(item)
            elif isinstance(item, EditFile):
                workspace.edit(item)
            elif isinstance(item, Console) and item.not_run is None:
                for step in item.steps:
                    outcome = workspace.run(step)
                    comparison = workspace.check(step, outcome)
                    if outcome.returncode != 0 or not comparison.matched:
                        sys.exit(
                            f"$ {outcome.command}\nexit {outcome.returncode}\n{outcome.output}\n{comparison.explain()}"
                        )
                    rows.append((f"$ {outcome.command}", outcome.seconds))
                    total += outcome.seconds
    finally:
        left = workspace.close()
        if left:
            sys.exit(f"labs left running (stopped now): {left}")
    return total


def newcomer_estimate(page: Page, commands: float, install: float) -> str:
    """Reading the page, typing its commands and edits, the commands' and the install's own time."""
    text = PAGE.read_text("utf-8")
    prose = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    words = len(re.findall(r"\w+", prose))
    items = page.items
    steps = sum(len(i.steps) for i in items if isinstance(i, Console) and i.not_run is None)
    edits = [i for i in items if isinstance(i, WriteFile | EditFile)]
    lines = sum(len(i.text.splitlines()) if isinstance(i, WriteFile) else _added(i) for i in edits)
    reading = words / READING_WORDS_PER_MINUTE * 60
    editing = len(edits) * SECONDS_PER_FILE_OPENED + lines * SECONDS_PER_EDITED_LINE
    minutes = (reading + steps * SECONDS_PER_COMMAND + editing + commands + install) / 60
    verdict = "under" if minutes <= NEWCOMER_GOAL_MINUTES else "OVER"
    return (
        f"a newcomer with the page: about {minutes:.1f} min ({verdict} the {NEWCOMER_GOAL_MINUTES:.0f} min goal) =\n"
        f"  reading {words} words at {READING_WORDS_PER_MINUTE} a minute ({reading / 60:.1f} min)\n"
        f"  + {steps} commands at {SECONDS_PER_COMMAND} s each ({steps * SECONDS_PER_COMMAND / 60:.1f} min)\n"
        f"  + {len(edits)} files edited at {SECONDS_PER_FILE_OPENED} s, {lines} lines typed at "
        f"{SECONDS_PER_EDITED_LINE} s ({editing / 60:.1f} min)\n"
        f"  + the commands' and the install's own time ({(commands + install) / 60:.1f} min)"
    )


def _added(edit: EditFile) -> int:
    """Lines an edit adds or changes (not its context)."""
    return sum(len(set(new.splitlines()) - set(old.splitlines())) for old, new in edit.changes)


if __name__ == "__main__":
    main()
