"""One protocol: the words the controller and the lab use are the agent's, and the other way round.

The PowerShell side is read with tree-sitter-powershell: the operations its loop dispatches,
the status words it writes, the request fields it reads and the reply fields it writes.
The Python side is provision/remote/protocol.py; the controller and the lab's twin must
take their operation names and status words from it, never spell them out.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import tree_sitter

from provision.remote import SCRIPTS, protocol

from powershell_tree import PARSER, nodes, text

ROOT = Path(__file__).resolve().parents[2]
# Variables of the agent that hold request data (a request, or one user or command of it).
REQUEST_VARIABLES = {"$request", "$user", "$install", "$command"}
# Smoke's step helper and the reply builders take the status word as a parameter.
STATUS_PARAMETERS = {"-status"}


def literal(node: tree_sitter.Node) -> str | None:
    """The value of a string literal inside an expression node, if that is all it is."""
    found = [n for n in nodes(node) if n.type == "string_literal"]
    if len(found) == 1 and text(found[0]).strip("'\"") == text(node).strip().strip("'\""):
        return text(found[0])[1:-1]
    return None


def agent_tree() -> list[tree_sitter.Node]:
    return [PARSER.parse(path.read_bytes()).root_node for path in sorted(SCRIPTS.glob("*.ps1"))]


def ps_ops() -> set[str]:
    ops: set[str] = set()
    for root in agent_tree():
        for node in nodes(root):
            if node.type == "switch_statement" and ".op" in text(node.child_by_field_name("condition") or node):
                for clause in nodes(node):
                    if clause.type == "switch_clause_condition":
                        value = literal(clause)
                        if value is not None:
                            ops.add(value)
    return ops


def ps_request_fields() -> set[str]:
    found: set[str] = set()
    for root in agent_tree():
        for node in nodes(root):
            if node.type != "member_access":
                continue
            base = node.children[0]
            chain = [node]
            while base.type in ("member_access", "element_access"):
                chain.append(base)
                base = base.children[0]
            if base.type == "variable" and text(base).lower() in REQUEST_VARIABLES:
                name = node.child_by_field_name("member") or node.children[-1]
                found.add(text(name))
    return found


def hash_value(entry: tree_sitter.Node) -> tree_sitter.Node:
    return next(c for c in entry.children if c.type in ("pipeline", "statement"))


def ps_reply_fields() -> set[str]:
    """Keys of hashtable literals, and members set on variables that are not .NET objects
    (a .NET object comes from New-Object or a static method: [Type]::Method(...))."""
    found: set[str] = set()
    for root in agent_tree():
        objects: set[str] = set()
        assignments = [n for n in nodes(root) if n.type == "assignment_expression"]
        for node in assignments:
            if re.match(r"New-Object\b|\[[\w.]+\]::", text(node.children[-1]).lstrip()):
                objects.add(text(node.children[0]).strip().lower())
        for node in nodes(root):
            if node.type == "hash_entry":
                found.add(text(node.children[0]).strip("'\""))
        for node in assignments:
            target = node.children[0]
            accesses = [n for n in nodes(target) if n.type == "member_access"]
            base = accesses[0].children[0] if accesses else None
            member = text(accesses[0].children[-1]) if accesses else ""
            if member[:1].isupper():
                continue  # a .NET property ($stream.Position, $ref.Value); reply fields are snake_case
            if base is not None and base.type == "variable" and text(base).lower() not in objects | REQUEST_VARIABLES:
                found.add(member)
    return found


def ps_statuses() -> set[str]:
    words: set[str] = set()
    for root in agent_tree():
        for node in nodes(root):
            if node.type == "hash_entry" and text(node.children[0]) == "status":
                value = literal(hash_value(node))
                if value is not None:
                    words.add(value)
            elif node.type == "assignment_expression" and text(node.children[0]).endswith(".status"):
                value = literal(node.children[-1])
                if value is not None:
                    words.add(value)
            elif node.type == "command_elements":
                parts = [c for c in node.children if c.type != "command_argument_sep"]
                for parameter, argument in itertools.pairwise(parts):
                    if parameter.type == "command_parameter" and text(parameter).lower() in STATUS_PARAMETERS:
                        value = literal(argument)
                        if value is not None:
                            words.add(value)
    return words


def test_the_agent_dispatches_exactly_the_protocols_operations() -> None:
    assert ps_ops() == {op.value for op in protocol.Op}


def test_the_agent_writes_exactly_the_protocols_status_words() -> None:
    expected = {s.value for s in protocol.UserStatus} | {s.value for s in protocol.StepStatus}
    assert ps_statuses() == expected


def test_the_agent_reads_exactly_the_request_fields() -> None:
    assert ps_request_fields() == protocol.fields(protocol.REQUEST_TYPES)


def test_the_agent_writes_exactly_the_reply_fields() -> None:
    assert ps_reply_fields() == protocol.fields(protocol.REPLY_TYPES)


def test_the_extraction_sees_what_it_should() -> None:
    """The readers above are not blind: a made-up word in the agent's text shows up."""
    source = b"switch ($request.op) {\n'nope' { x }\n}\n$r = @{ status = 'weird'; odd = 1 }\n$User.strange\n"
    root = PARSER.parse(source).root_node
    assert "weird" in {literal(hash_value(n)) for n in nodes(root) if n.type == "hash_entry"}
    assert any(text(n) == "'nope'" for n in nodes(root) if n.type == "string_literal")
    assert any(n.type == "member_access" and text(n).endswith("strange") for n in nodes(root))


# The Python side takes its words from the protocol ---------------------------------------------

PYTHON_USERS = [
    ROOT / "provision" / "push.py",
    ROOT / "provision" / "checks.py",
    ROOT / "provision" / "doctor.py",
    ROOT / "provision" / "lab" / "programs.py",
]
AGENT_WORDS = {op.value for op in protocol.Op} | {
    s.value for s in protocol.UserStatus if s is not protocol.UserStatus.OK
}


def spelled_out(path: Path) -> list[str]:
    """Operation names and agent status words written as literals: in "op": ..., in a
    comparison with a reply's status, or as a "status" value."""
    tree = ast.parse(path.read_text("utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value in ("op", "status")
                    and isinstance(value, ast.Constant)
                    and value.value in AGENT_WORDS
                ):
                    found.append(f"{path.name}:{node.lineno}: {key.value}={value.value!r}")
        elif isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in AGENT_WORDS:
                    found.append(f"{path.name}:{node.lineno}: compared with {side.value!r}")
                elif isinstance(side, ast.Tuple | ast.Set | ast.List):
                    found += [
                        f"{path.name}:{node.lineno}: compared with {e.value!r}"
                        for e in side.elts
                        if isinstance(e, ast.Constant) and e.value in AGENT_WORDS
                    ]
        elif (
            isinstance(node, ast.keyword)
            and node.arg in ("op", "status")
            and isinstance(node.value, ast.Constant)
            and node.value.value in AGENT_WORDS
        ):
            found.append(f"{path.name}:{node.value.lineno}: {node.arg}={node.value.value!r}")
    return found


def test_the_controller_and_the_lab_take_ops_and_statuses_from_the_protocol() -> None:
    found = [line for path in PYTHON_USERS for line in spelled_out(path)]
    assert found == []
