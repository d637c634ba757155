"""The agent's PowerShell as a syntax tree (tree-sitter-powershell), for the tests that read it."""

from __future__ import annotations

from collections.abc import Iterator

import tree_sitter
import tree_sitter_powershell

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def nodes(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Every node below `node` (itself first), in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()
