"""Starting a config directory, and the defaults of every option: config file, environment, env files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provision.cli.config import option_table
from provision.cli.main import cli

from conftest import write


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env or {}, catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, like an admin's new config folder; no PROVISION_* around."""
    for name in list(os.environ):
        if name.startswith("PROVISION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_writes_a_config_directory_that_validates_as_it_is(folder: Path) -> None:
    result = run("init", "phones")
    assert result.exit_code == 0, result.output
    made = sorted(str(p.relative_to(folder / "phones")) for p in (folder / "phones").rglob("*") if p.is_file())
    assert made == sorted(
        [
            ".env",
            ".gitignore",
            "inventory.yaml",
            "provision.toml",
            "profiles/base.yaml",
            "profiles/sales.yaml",
            "profiles/smoke.yaml",
            "profiles/support.yaml",
        ]
    )
    assert stat.S_IMODE((folder / "phones" / ".env").stat().st_mode) == 0o600
    assert ".env" in (folder / "phones" / ".gitignore").read_text("utf-8").split()
    os.chdir(folder / "phones")
    checked = run("validate")  # inventory and .env come from provision.toml
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("OK: 4 profiles, 3 hosts, 3 targets")


def test_init_never_overwrites_and_writes_nothing_when_a_file_exists(folder: Path) -> None:
    write(folder / "inventory.yaml", "hosts: {}\n")
    result = run("init", ".")
    assert result.exit_code == 2
    assert "inventory.yaml: already exists" in result.output and "nothing was written" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["inventory.yaml"]
    assert (folder / "inventory.yaml").read_text("utf-8") == "hosts: {}\n"


def rendered_hosts(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return sorted(line.split()[1].split("/")[0] for line in result.output.splitlines() if line.startswith("rendered "))


def test_the_command_line_beats_the_environment_which_beats_the_config_file(folder: Path) -> None:
    assert run("init", ".").exit_code == 0
    with open(folder / "provision.toml", "a", encoding="utf-8") as config:
        config.write('\n[render]\nlimit = "ws-sales-01"\nout = "out"\n')
    assert rendered_hosts(run("render")) == ["ws-sales-01"]
    assert rendered_hosts(run("render", env={"PROVISION_LIMIT": "ws-sales-02"})) == ["ws-sales-02"]
    both = run("render", "--limit", "ws-support-01", env={"PROVISION_LIMIT": "ws-sales-02"})
    assert rendered_hosts(both) == ["ws-support-01"]
    assert (folder / "out" / "ws-support-01").is_dir()


def test_tool_provision_in_pyproject_and_paths_relative_to_the_config_file(folder: Path) -> None:
    assert run("init", "cfg").exit_code == 0
    (folder / "cfg" / "provision.toml").unlink()
    write(
        folder / "cfg" / "pyproject.toml",
        """
        [project]
        name = "phones"
        [tool.provision]
        inventory = "inventory.yaml"
        env_file = [".env"]
        """,
    )
    os.chdir(folder / "cfg")
    assert run("validate").exit_code == 0
    os.chdir(folder)
    # From elsewhere, with --config: its paths are relative to it, not to the working directory.
    elsewhere = run("--config", "cfg/pyproject.toml", "--profiles", "cfg/profiles", "validate")
    assert elsewhere.exit_code == 0, elsewhere.output


def test_a_bad_config_file_is_a_clear_error(folder: Path) -> None:
    write(folder / "provision.toml", "forks = 8\n[push]\nforkss = 3\n")
    typo = run("validate")
    assert typo.exit_code == 2
    assert "provision.toml: push.forkss: unknown option or command; did you mean 'forks'?" in typo.output
    write(folder / "provision.toml", "inventory = \n")
    broken = run("validate")
    assert broken.exit_code == 2 and "provision.toml:1: invalid TOML" in broken.output
    write(folder / "provision.toml", "colour = 'blue'\n")
    unknown = run("validate")
    assert unknown.exit_code == 2 and "colour: unknown option" in unknown.output


def test_env_files_anywhere_repeatable_later_wins_with_a_warning(folder: Path) -> None:
    assert run("init", ".").exit_code == 0
    (folder / "provision.toml").unlink()
    write(folder / "a.env", "SIP_PW_2101=first\nOTHER=x\n")
    write(folder / "b.env", "SIP_PW_2101=second\n")
    os.chmod(folder / "a.env", 0o600)
    os.chmod(folder / "b.env", 0o644)
    result = run("--env-file", ".env", "--env-file", "a.env", "render", "-i", "inventory.yaml", "-o", "out",
                 "--env-file", "b.env", "--include-secrets")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "SIP_PW_2101 from b.env overrides a.env" in result.output
    assert "b.env: holds secrets but its mode is 0644" in result.output and "a.env: holds" not in result.output
    assert "first" not in result.output and "second" not in result.output  # values never shown
    ini = (folder / "out" / "ws-sales-01" / "jdoe" / "microsip.ini").read_bytes().decode("utf-16")
    assert "password=second" in ini


def test_every_option_of_every_command_has_an_environment_variable() -> None:
    rows = option_table(cli)
    assert len(rows) > 60
    missing = [(command, option) for command, option, envvar in rows if not envvar.startswith("PROVISION_")]
    assert missing == []
    by_option = {(command, option): envvar for command, option, envvar in rows}
    assert by_option[("push", "--forks")] == "PROVISION_FORKS"
    assert by_option[("push", "--report")] == "PROVISION_REPORT"
    assert by_option[("(all)", "--profiles")] == "PROVISION_PROFILES"


def complete(words: str) -> list[str]:
    env = {"_PROVISION_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = CliRunner().invoke(cli, [], env=env, prog_name="provision")
    return [line.partition(",")[2] for line in result.output.splitlines()]


def test_shells_complete_hosts_groups_patterns_and_profiles(folder: Path) -> None:
    assert run("init", ".").exit_code == 0
    assert complete("provision push --host ws-s") == ["ws-sales-01", "ws-sales-02", "ws-support-01"]
    assert complete("provision push --limit sales,!ws-sales-0") == ["sales,!ws-sales-01", "sales,!ws-sales-02"]
    assert complete("provision push --canary su") == ["support"]
    assert complete("provision smoke --profile s") == ["sales", "smoke", "support"]
    for shell in ("bash", "zsh", "fish", "powershell"):
        script = CliRunner().invoke(cli, [], env={"_PROVISION_COMPLETE": f"{shell}_source"}, prog_name="provision")
        assert "_PROVISION_COMPLETE" in script.output, shell


def test_the_option_table_in_the_docs_is_current() -> None:
    from provision.cli.config import options_markdown

    from conftest import ROOT

    page = ROOT / "docs" / "configuration.md"
    text = page.read_text("utf-8")
    head, rest = text.split("<!-- options -->\n")
    _, tail = rest.split("<!-- /options -->")
    current = head + "<!-- options -->\n" + options_markdown(cli) + "<!-- /options -->" + tail
    if os.environ.get("PROVISION_REFRESH_GOLDEN") == "1":
        page.write_text(current, "utf-8")
        text = current
    assert text == current, "docs/configuration.md is stale: PROVISION_REFRESH_GOLDEN=1 pytest tests/test_config.py"
