"""--limit patterns, with Ansible's grammar: which hosts a pattern names.

A pattern is a list of terms separated by ',' or ':' (a ':' inside brackets belongs to
the term: `sales[0:2]`, `ws-[01:10]`). A term is

- `all` or `*`: every host;
- a group name: its hosts; a host name: that host (names ignore case);
- a glob (`ws-hq-*`, `ws-0[12]`, `*.example.com`): the groups and the hosts it matches;
- `~REGEX`: the groups and hosts whose name the regular expression matches from its
  start (Python's re, ignoring case): `~ws-0[1-5]`;
- a host range (`ws-[01:10]`), as in inventories;
- any of these followed by a subscript that picks among the hosts matched, in inventory
  order: `sales[0]`, `sales[-1]`, `sales[0:2]` (both ends included), `sales[3:]`;
- `@FILE`: the terms written in FILE, one or more per line (an Ansible retry file lists
  one host per line; blank lines and lines starting with '#' are skipped).

`!` before a term excludes its hosts, `&` keeps only the hosts it also matches. As in
Ansible, plain terms are added up first, then the `&` terms intersect, then the `!` terms
exclude, whatever order they are written in; with no plain term, the start is every host.
A term that matches no host is an error naming it, so a typo never turns into a smaller
run. The hosts chosen keep the inventory's order.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.errors import ConfigError, Problem, display_path
from provision.model.hostrange import HostRangeError, expand_host_range, has_range
from provision.model.values import cut, shown

# A pattern followed by [N], [-N], [A:B], [A:] or [:B] ([A-B] as older Ansible wrote it).
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]*)([:-])([0-9]*))\]$")
_GLOB = frozenset("*?[")
#: A pattern file is read whole; one bigger than this is not a list of hosts.
MAX_PATTERN_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Term:
    op: str  # "" (add), "&" (intersect) or "!" (exclude)
    body: str
    source: str = "--limit"  # the option, or the file the term was written in
    line: int | None = None

    def problem(self, message: str) -> Problem:
        return Problem(self.source, self.line, "", message)

    @property
    def written(self) -> str:
        return self.op + self.body


def split_pattern(pattern: str) -> list[str]:
    """Terms of a pattern: split at ',' and ':' outside brackets, blanks dropped."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char in ",:" and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


def parse_pattern(
    pattern: str, read_file: Callable[[str], str] | None = None, source: str = "--limit"
) -> tuple[list[Term], list[Problem]]:
    """The terms of a --limit pattern, with `@FILE` terms replaced by the file's terms, and
    the problems found reading it (terms that are not terms, files that cannot be read)."""
    out: list[Term] = []
    problems: list[Problem] = []
    for text in split_pattern(pattern):
        op = text[0] if text[0] in "!&" else ""
        body = text[len(op) :].strip()
        if not body:
            problems.append(Problem(source, None, "", f"{shown(text)}: '{op}' must be followed by a host or group"))
            continue
        if body.startswith("@"):
            if op or read_file is None:
                problems.append(Problem(source, None, "", f"{shown(text)}: '@FILE' cannot be negated or nested"))
                continue
            out += _file_terms(body[1:], read_file, problems)
            continue
        out.append(Term(op, body, source))
    return out, problems


def _file_terms(name: str, read_file: Callable[[str], str], problems: list[Problem]) -> list[Term]:
    try:
        text = read_file(name)
    except ConfigError as exc:
        problems += exc.problems
        return []
    terms: list[Term] = []
    where = cut(display_path(name))
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for text in split_pattern(line):
            op = text[0] if text[0] in "!&" else ""
            body = text[len(op) :].strip()
            if not body or body.startswith("@"):
                problems.append(Problem(where, number, "", f"{shown(text)} is not a host or group pattern"))
                continue
            terms.append(Term(op, body, where, number))
    return terms


def read_pattern_file(name: str) -> str:
    """A pattern file (`--limit @FILE`), relative to the working directory."""
    path = Path(name)
    where = cut(display_path(path))
    try:
        if not path.is_file():
            missing = "is a folder, not a file" if path.is_dir() else "file not found"
            raise ConfigError([Problem(where, None, "", f"--limit @FILE: {missing}")])
        if path.stat().st_size > MAX_PATTERN_FILE:
            raise ConfigError([Problem(where, None, "", f"is over {MAX_PATTERN_FILE:,} bytes; not a list of hosts")])
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError([Problem(where, None, "", f"cannot read: {reason}")]) from None


class HostIndex:
    """Hosts in inventory order and the groups each belongs to, for matching terms."""

    def __init__(self, hosts: Sequence[str], groups_of: Mapping[str, Sequence[str]], groups: Sequence[str]) -> None:
        self.hosts = list(hosts)
        self.position = {h: i for i, h in enumerate(self.hosts)}
        self.by_folded = {h.casefold(): h for h in self.hosts}
        self.members: dict[str, list[str]] = {g: [] for g in groups}
        for host in self.hosts:
            for group in groups_of.get(host, ()):
                self.members.setdefault(group, []).append(host)
        if "ungrouped" not in self.members:
            # As in Ansible: the hosts that are in no group.
            self.members["ungrouped"] = [h for h in self.hosts if not groups_of.get(h)]
        self.groups_by_folded = {g.casefold(): g for g in self.members}

    def match(self, term: Term) -> list[str]:
        """The hosts a term (without its '!' or '&') names, in inventory order."""
        body = term.body
        found = self._subscripted(term) if not body.startswith("~") else None
        if found is not None:
            return found
        found = self._match(body, term)
        if not found and has_range(body) and not body.startswith("~"):
            try:
                names = expand_host_range(body)
            except HostRangeError:
                names = []
            found = self._ordered({self.by_folded[n.casefold()] for n in names if n.casefold() in self.by_folded})
        return found

    def _match(self, body: str, term: Term) -> list[str]:
        if body in ("all", "*"):
            return list(self.hosts)
        folded = body.casefold()
        if body.startswith("~"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # re's FutureWarnings about a person's pattern
                    regex = re.compile(body[1:], re.IGNORECASE)
            except re.error as exc:
                raise ConfigError([term.problem(f"{shown(term.written)}: not a regular expression: {exc}")]) from None
            groups = [g for g in self.members if regex.match(g)]
            chosen = {h for g in groups for h in self.members[g]}
            chosen.update(h for h in self.hosts if regex.match(h))
            return self._ordered(chosen)
        group = self.groups_by_folded.get(folded)
        glob = any(c in _GLOB for c in body)
        if not glob:
            host = self.by_folded.get(folded)
            if group is not None:
                return list(self.members[group]) + ([host] if host and host not in self.members[group] else [])
            return [host] if host else []
        groups = [g for g in self.members if fnmatch.fnmatchcase(g.casefold(), folded)]
        chosen = {h for g in groups for h in self.members[g]}
        chosen.update(h for h in self.hosts if fnmatch.fnmatchcase(h.casefold(), folded))
        return self._ordered(chosen)

    def _subscripted(self, term: Term) -> list[str] | None:
        """`base[index]` or `base[start:end]` when `base` matches hosts; None when it is not that."""
        found = _SUBSCRIPT.match(term.body)
        if found is None:
            return None
        base, index, start, _, end = found.groups()
        hosts = self._match(base, term)
        if not hosts:
            return None  # a glob such as ws-0[12] or a range such as ws-[01:10]
        if index is not None:
            position = int(index)
            if not -len(hosts) <= position < len(hosts):
                message = f"{shown(term.written)}: {shown(base)} matches {len(hosts)} host(s); no index {index}"
                raise ConfigError([term.problem(message)])
            return [hosts[position]]
        first = int(start) if start else 0
        last = int(end) if end else len(hosts) - 1
        if first >= len(hosts):
            raise ConfigError(
                [term.problem(f"{shown(term.written)}: {shown(base)} matches {len(hosts)} host(s); none from {first}")]
            )
        return hosts[first : last + 1]

    def _ordered(self, chosen: set[str]) -> list[str]:
        return sorted(chosen, key=self.position.__getitem__)


def select(index: HostIndex, terms: Sequence[Term], problems: Sequence[Problem] = ()) -> list[str]:
    """Apply the terms as Ansible does: add, then intersect, then exclude. All problems at once,
    with those of reading the pattern."""
    problems = list(problems)
    matched: list[tuple[Term, list[str]]] = []
    for term in terms:
        try:
            hosts = index.match(term)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if not hosts:
            problems.append(term.problem(f"{shown(term.written)} matches no host or group"))
        matched.append((term, hosts))
    if problems:
        raise ConfigError(problems)
    plain = [hosts for term, hosts in matched if not term.op]
    chosen: set[str] = set(index.hosts) if not plain else {h for hosts in plain for h in hosts}
    for term, hosts in matched:
        if term.op == "&":
            chosen &= set(hosts)
    for term, hosts in matched:
        if term.op == "!":
            chosen -= set(hosts)
    return [h for h in index.hosts if h in chosen]
