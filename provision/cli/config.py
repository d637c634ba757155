"""Defaults for every option: a config file, and an environment variable per option.

Precedence, highest first: the command line, the environment variable (PROVISION_<OPTION>,
e.g. PROVISION_FORKS), the config file, the built-in default. The config file is
provision.toml in the working directory (or [tool.provision] in its pyproject.toml, or the
file named by --config / PROVISION_CONFIG):

    inventory = "inventory.yaml"      # an option of the top command or of any command
    env_file = [".env"]
    forks = 64
    [push]                            # options of one command
    batch = "10%"
    [lab.up]                          # of a subcommand
    hosts = 20

Paths in the file are relative to the file.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from provision.errors import ConfigError, Problem, display_path

ENV_PREFIX = "PROVISION_"
CONFIG_ENV = "PROVISION_CONFIG"
CONFIG_NAME = "provision.toml"


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    data: dict[str, Any]
    table: str = ""  # "tool.provision" for a pyproject.toml


def find_config(explicit: str | None, cwd: Path) -> ConfigFile | None:
    """The config file to use: --config, $PROVISION_CONFIG, ./provision.toml, ./pyproject.toml."""
    named = explicit or os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError([Problem(display_path(path), None, "", "config file not found")])
        if path.name == "pyproject.toml":
            found = _tool_table(path)
            if found is None:
                raise ConfigError([Problem(display_path(path), None, "", "has no [tool.provision] table")])
            return found
        return _read(path)
    own = cwd / CONFIG_NAME
    if own.is_file():
        return _read(own)
    pyproject = cwd / "pyproject.toml"
    return _tool_table(pyproject) if pyproject.is_file() else None


def _tool_table(pyproject: Path) -> ConfigFile | None:
    table = _read(pyproject).data.get("tool", {}).get("provision")
    return ConfigFile(pyproject, table, "tool.provision") if isinstance(table, dict) else None


def _read(path: Path) -> ConfigFile:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        message = str(exc).split(" (at ")[0]
        raise ConfigError([Problem(display_path(path), line, "", f"invalid TOML: {message}")]) from None
    except OSError as exc:
        raise ConfigError([Problem(display_path(path), None, "", f"cannot read: {exc.strerror or exc}")]) from None
    return ConfigFile(path, data)


def default_map(config: ConfigFile, root: click.Group) -> dict[str, Any]:
    """Click's default_map for the command tree, from the config file; unknown keys are errors."""
    problems: list[Problem] = []
    where = display_path(config.path)
    base = config.path.resolve().parent

    def prefix(path: Sequence[str]) -> str:
        return ".".join([config.table, *path] if config.table else path)

    def build(
        command: click.Command, inherited: dict[str, Any], table: dict[str, Any], path: list[str]
    ) -> dict[str, Any]:
        options = _options(command)
        out: dict[str, Any] = {}
        for name, value in inherited.items():
            if name in options:
                out[str(options[name].name)] = _value(options[name], value, base)
        for key, value in table.items():
            name = key.replace("-", "_")
            sub = command.commands.get(key) if isinstance(command, click.Group) else None
            if sub is not None:
                if not isinstance(value, dict):
                    problems.append(Problem(where, None, prefix([*path, key]), "must be a table of options"))
                    continue
                out[key] = build(sub, inherited, value, [*path, key])
            elif name in options:
                out[str(options[name].name)] = _value(options[name], value, base)
            elif not path and any(name in _options(c) for c in all_commands(root)):
                continue  # an option of other commands, given for all of them
            else:
                known = list(options) + (list(command.commands) if isinstance(command, click.Group) else [])
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(Problem(where, None, prefix([*path, key]), f"unknown option or command{hint}"))
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                if sub_name not in out:
                    out[sub_name] = build(sub, inherited, {}, [*path, sub_name])
        return out

    everywhere = {k.replace("-", "_"): v for k, v in config.data.items() if not isinstance(v, dict)}
    result = build(root, everywhere, config.data, [])
    if problems:
        raise ConfigError(problems)
    return result


def all_commands(command: click.Command) -> Iterator[click.Command]:
    """`command` and every command below it."""
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from all_commands(sub)


def option_key(option: click.Option) -> str:
    """The name an option goes by in the config file and its environment variable: its long flag."""
    return max(option.opts, key=len).lstrip("-").replace("-", "_")


def _options(command: click.Command) -> dict[str, click.Option]:
    """A command's options by their config name (the long flag, e.g. report for --report)."""
    return {
        option_key(p): p
        for p in command.params
        if isinstance(p, click.Option) and p.name and p.expose_value and p.name not in ("help", "version")
    }


def _value(option: click.Option, value: Any, base: Path) -> Any:
    """Relative paths in the file are relative to the file."""
    if isinstance(option.type, click.Path):
        if isinstance(value, list):
            return [str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in value]
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(base / value)
    return value


def add_environment_variables(root: click.Command) -> None:
    """Give every option of every command an environment variable, PROVISION_<OPTION>."""
    for command in all_commands(root):
        for param in _options(command).values():
            if param.envvar is None:
                param.envvar = ENV_PREFIX + option_key(param).upper()
            param.show_envvar = True


def option_table(root: click.Command) -> list[tuple[str, str, str]]:
    """(command, option, environment variable) for every option: the reference in the docs."""
    rows: list[tuple[str, str, str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        for param in _options(command).values():
            envvar = param.envvar if isinstance(param.envvar, str) else ", ".join(param.envvar or [])
            rows.append((" ".join(path) or "(all)", max(param.opts, key=len), envvar))
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*path, name])

    walk(root, [])
    return rows


def options_markdown(root: click.Command) -> str:
    """The table of every option and its environment variable, for docs/configuration.md."""
    lines = ["| command | option | environment variable |", "|---|---|---|"]
    lines += [f"| {command} | `{option}` | `{envvar}` |" for command, option, envvar in option_table(root)]
    return "\n".join(lines) + "\n"
