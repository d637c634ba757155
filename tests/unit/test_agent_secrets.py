"""Secrets stay out of PowerShell's logs: no cmdlet ever receives request data holding one.

Module Logging (event 4103) records the parameter bindings of every cmdlet call; Script
Block Logging (4104) the text of every script. The ini content (which holds the SIP
password) and the smoke test's ini may therefore only pass through .NET calls and the
agent's own functions. The agent is read with tree-sitter-powershell and followed value
by value: what holds a secret, or a whole request or reply with one inside, may not be an
argument of, or piped into, a cmdlet.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
import tree_sitter

from provision.remote import SCRIPTS, agent_text, script

from powershell_tree import PARSER, nodes, text

SECRET_FIELDS = {"content_b64", "ini_b64"}  # request and reply fields that hold an ini
# Variables of the script (outside functions) that hold a whole request, or the raw line it came in.
REQUESTS = {"$line", "$request", "$first"}
FORBIDDEN = {"convertfrom-json", "convertto-json"}


def enclosing_function(node: tree_sitter.Node) -> str:
    parent = node.parent
    while parent is not None and parent.type != "function_statement":
        parent = parent.parent
    if parent is None:
        return ""
    return text(next(c for c in parent.children if c.type == "function_name")).lower()


def local_names(root: tree_sitter.Node) -> dict[str, set[str]]:
    """Per function: its parameters and the variables it assigns or loops over (its own scope)."""
    names: dict[str, set[str]] = {}
    for node in nodes(root):
        if node.type == "script_parameter":
            variable = next(c for c in node.children if c.type == "variable")
        elif node.type == "assignment_expression":
            found = [n for n in nodes(node.children[0]) if n.type == "variable"]
            if not found:
                continue
            variable = found[0]
        elif node.type == "foreach_statement":
            variable = next(c for c in node.children if c.type == "variable")
        else:
            continue
        names.setdefault(enclosing_function(node), set()).add(text(variable).lower())
    return names


@dataclass
class Taint:
    """Per variable: 'value' holds a secret, 'object' holds something with one inside.

    Variables are told apart by scope (PowerShell names ignore case): a function's
    parameters and the variables it assigns are its own; any other is the script's."""

    scopes: dict[str, set[str]]
    kinds: dict[str, str] = field(default_factory=dict)
    returns: set[str] = field(default_factory=set)  # agent functions that give back something tainted

    def key(self, variable: tree_sitter.Node | str, function: str | None = None) -> str:
        if isinstance(variable, str):
            name = variable.lower()
            scope = function or ""
        else:
            name = text(variable).lower()
            scope = enclosing_function(variable)
        return f"{scope}:{name}" if name in self.scopes.get(scope, set()) else f":{name}"

    def mark(self, variable: tree_sitter.Node | str, kind: str, function: str | None = None) -> bool:
        key = self.key(variable, function)
        if self.kinds.get(key) == "value" or self.kinds.get(key) == kind:
            return False
        self.kinds[key] = kind
        return True

    def secret(self, expression: tree_sitter.Node) -> str | None:
        """'value' if the expression's value is a secret, 'object' if it holds one, else None."""
        kind: str | None = None
        for node in nodes(expression):
            if node.type == "command" and text(node.children[0]).lower() in self.returns:
                kind = kind or "object"
            if node.type == "member_access" and text(node.children[-1]) in SECRET_FIELDS:
                return "value"
            if node.type != "variable":
                continue
            held = self.kinds.get(self.key(node))
            if held == "value":
                return "value"
            if held == "object":
                parent = node.parent
                member = parent is not None and parent.type in ("member_access", "element_access")
                if not member or (parent is not None and text(parent.children[-1]) == "users"):
                    kind = "object"
        return kind


def functions(root: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    found = {}
    for node in nodes(root):
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name")
            found[text(name).lower()] = node
    return found


def parameters(function: tree_sitter.Node) -> list[str]:
    return [
        text(next(c for c in p.children if c.type == "variable")).lower()
        for p in nodes(function)
        if p.type == "script_parameter"
    ]


def arguments(command: tree_sitter.Node) -> list[tuple[str | None, tree_sitter.Node]]:
    """(parameter name or None for positional, argument node) of a command call."""
    elements = next((c for c in command.children if c.type == "command_elements"), None)
    if elements is None:
        return []
    parts = [c for c in elements.children if c.type not in ("command_argument_sep",)]
    found: list[tuple[str | None, tree_sitter.Node]] = []
    pending: str | None = None
    for part in parts:
        if part.type == "command_parameter":
            if pending is not None:
                found.append((pending, part))  # a switch
            pending = text(part).lstrip("-").split(":")[0].lower()
            continue
        found.append((pending, part))
        pending = None
    return found


def violations(source: str) -> list[str]:
    root = PARSER.parse(source.encode()).root_node
    own = functions(root)
    taint = Taint(local_names(root))
    for node in nodes(root):
        if node.type == "variable" and text(node).lower() in REQUESTS and not enclosing_function(node):
            taint.mark(node, "object")
    found: list[str] = []
    changed = True
    while changed:  # until nothing new is tainted
        changed = False
        for node in nodes(root):
            if node.type == "assignment_expression":
                target, value = node.children[0], node.children[-1]
                kind = taint.secret(value)
                variables = [n for n in nodes(target) if n.type == "variable"]
                accesses = [n for n in nodes(target) if n.type == "member_access"]
                if variables and accesses and text(accesses[0].children[-1]) in SECRET_FIELDS:
                    changed |= taint.mark(variables[0], "object")  # $reply.content_b64 = ...
                elif variables and kind and not accesses:
                    changed |= taint.mark(variables[0], kind)
                elif variables and kind and accesses:
                    changed |= taint.mark(variables[0], "object")  # a secret put into a map
            elif node.type == "return_statement":
                function = node.parent
                while function is not None and function.type != "function_statement":
                    function = function.parent
                if function is not None and taint.secret(node):
                    name = text(next(c for c in function.children if c.type == "function_name")).lower()
                    if name not in taint.returns:
                        taint.returns.add(name)
                        changed = True
            elif node.type == "foreach_statement":
                variable = next(c for c in node.children if c.type == "variable")
                source_node = [c for c in node.children if c.type == "pipeline"]
                if source_node and taint.secret(source_node[0]):
                    changed |= taint.mark(variable, "object")
            elif node.type == "command":
                name = text(node.children[0]).lower()
                for parameter, argument in arguments(node):
                    kind = taint.secret(argument)
                    if kind and name in own:
                        names = parameters(own[name])
                        if parameter is not None:
                            targets = [p for p in names if p == "$" + parameter]
                        else:
                            position = [a for p, a in arguments(node) if p is None].index(argument)
                            targets = names[position : position + 1]
                        for target in targets:
                            changed |= taint.mark(target, kind, name)
    for node in nodes(root):
        if node.type == "command":
            name = text(node.children[0]).lower()
            line = node.start_point[0] + 1
            if name in FORBIDDEN:
                found.append(f"line {line}: {name} is never used (it logs what it parses)")
            if name in own or name in (".", "&"):
                continue
            for parameter, argument in arguments(node):
                if taint.secret(argument):
                    found.append(f"line {line}: {name} -{parameter or '(positional)'} {text(argument)[:40]}")
        elif node.type == "pipeline_chain":
            children = [c for c in node.children if c.type not in ("|",)]
            for before, after in itertools.pairwise(children):
                piped = after.type == "command" and text(after.children[0]).lower() not in own
                if piped and taint.secret(before):
                    found.append(f"line {node.start_point[0] + 1}: piped into {text(after.children[0])}")
    return found


def test_no_cmdlet_receives_a_secret() -> None:
    assert violations(agent_text()) == []


def test_the_bootstrap_parses_nothing_with_cmdlets() -> None:
    assert violations(script("bootstrap.ps1")) == []


@pytest.mark.parametrize(
    "source",
    [
        "$x = ConvertFrom-Json $line",
        "$request | ConvertTo-Json",
        "$c = $User.content_b64\nSet-Content -Path 'x' -Value $c",
        "foreach ($u in $request.users) { Write-Output $u }",
        "function Put {\n    param($Data)\n    Out-File -InputObject $Data\n}\nPut -Data $request.ini_b64",
        "$r = @{}\n$r.content_b64 = 'x'\n$r | Out-String",
    ],
)
def test_the_scan_catches_a_leak(source: str) -> None:
    assert violations(source) != []


def test_the_scan_lets_dotnet_and_plain_fields_through() -> None:
    source = (
        "$bytes = [Convert]::FromBase64String($User.content_b64)\n"
        "[System.IO.File]::WriteAllBytes($User.ini_path, $bytes)\n"
        "Test-Path -LiteralPath $User.ini_path\n"
        "foreach ($u in $request.users) { Get-Thing -Name $u.name }\n"
    )
    assert violations(source) == []


def test_every_script_is_scanned() -> None:
    assert {p.name for p in SCRIPTS.glob("*.ps1")} >= {"bootstrap.ps1", "common.ps1", "loop.ps1"}
