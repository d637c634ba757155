"""Templates: any small template renders or is a TemplateError, bounded in time and memory.

Templates are assembled from the constructs that can blow up: big numbers and powers,
repetition, string formatting, filters and text methods with large arguments, nested
loops, self-calling macros, self-inclusion and doubling through `~`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.errors import TemplateError
from provision.project import Project, select_targets
from provision.render import TEMPLATE, Renderer, Templates
from provision.sandbox import LimitedSandbox
from provision.targets import Target

from .propkit import check_message

#: Growth of the process's peak memory one example may cause.
RSS_LIMIT = 256 * 1024 * 1024

CONTEXT = {
    "settings": {"accountId": "1", "updatesInterval": "never", "autoAnswer": "button"},
    "accounts": [{"section": "Account1", "name": "office", "fields": {"server": "pbx", "password": "@@token@@"}}],
    "host": {"name": "ws-01", "address": "ws-01"},
    "user": {"name": "jdoe", "extension": "2101", "display_name": "Jane"},
    "profile": {"chain": ["base"], "description": "", "microsip_version": "3.22"},
    "provision_version": "0.1.0",
}

PROFILE = "accounts:\n  office: {server: pbx.example.com, domain: example.com}\n"
INVENTORY = "defaults: {profiles: [base]}\nhosts:\n  ws-01:\n    users: [{name: jdoe, extension: '2101'}]\n"

numbers = st.one_of(st.integers(-3, 12), st.sampled_from([0, 2, 9, 64, 4096, 10**5, 10**9, 2**31, 10**30]))
texts = st.sampled_from(["''", "'x'", "'ab'", "'%d'", "'%999999999d'", "'{:>99}'", "'{}'", "'\\n'", "'\\t'", "'é'"])
names = st.sampled_from(
    [
        "settings",
        "accounts",
        "host.name",
        "user",
        "settings.accountId",
        "accounts[0].fields",
        "profile.chain",
        "nope",
        "range(10)",
        "range(100000)",
        "[1, 2, 3]",
        "{'a': 1}",
        "loop",
        "lipsum(3)",
        "dict(a=1)",
    ]
)
FILTERS = sorted(LimitedSandbox().filters)
METHODS = ["upper", "center", "ljust", "replace", "join", "format", "split", "zfill", "expandtabs", "count", "items"]
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "<", "in", "and", "or"]


def _binary(parts: tuple[str, str, str]) -> str:
    return f"({parts[0]} {parts[1]} {parts[2]})"


def _filter(parts: tuple[str, str, list[str]]) -> str:
    return f"({parts[0]}|{parts[1]}({', '.join(parts[2])}))"


def _method(parts: tuple[str, str, list[str]]) -> str:
    return f"{parts[0]}.{parts[1]}({', '.join(parts[2])})"


expressions = st.recursive(
    numbers.map(str) | texts | names,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(_binary),
        st.tuples(inner, st.sampled_from(FILTERS), st.lists(inner, max_size=2)).map(_filter),
        st.tuples(inner, st.sampled_from(METHODS), st.lists(inner, max_size=2)).map(_method),
        inner.map(lambda x: f"[{x}, {x}]"),
        inner.map(lambda x: f"(-{x})"),
    ),
    max_leaves=8,
)


def _for(parts: tuple[str, list[str]]) -> str:
    return "{% for i in " + parts[0] + " %}" + "".join(parts[1]) + "{% endfor %}"


def _if(parts: tuple[str, list[str]]) -> str:
    return "{% if " + parts[0] + " %}" + "".join(parts[1]) + "{% else %}x{% endif %}"


def _macro(body: list[str]) -> str:
    calls = "{{ m(n - 1) if n > 0 else '' }}"
    return "{% macro m(n) %}" + "".join(body) + calls + calls + "{% endmacro %}{{ m(12) }}"


def _doubling(body: list[str]) -> str:
    return (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        + "".join(body)
        + "{% endfor %}{{ ns.s|length }}"
    )


lines = st.one_of(
    st.sampled_from(["[Settings]\n", "key=value\n", "updatesInterval=never\n", "[Calls]\n", "mainX=1\n", "junk\n"]),
    st.sampled_from(["accountId=", "[Account", "password=", "[", "x="]).flatmap(
        lambda head: expressions.map(lambda x: head + "{{ " + x + " }}" + ("]" if head.startswith("[") else "") + "\n")
    ),
    st.just(
        "{% for a in accounts %}[{{ a.section }}]\n{% for k, v in a.fields.items() %}{{ k }}={{ v }}\n{% endfor %}"
        "{% endfor %}"
    ),
)
statements = st.recursive(
    st.one_of(lines, expressions.map(lambda x: "{{ " + x + " }}")),
    lambda body: st.one_of(
        st.tuples(expressions, st.lists(body, max_size=3)).map(_for),
        st.tuples(expressions, st.lists(body, max_size=3)).map(_if),
        expressions.map(lambda x: "{% set v = " + x + " %}{{ v }}"),
        st.lists(body, max_size=2).map(_macro),
        st.lists(body, max_size=2).map(_doubling),
        st.just("{% include '" + TEMPLATE + "' %}"),
        st.just("{% include 'other.j2' %}"),
    ),
    max_leaves=6,
)
templates = st.lists(statements, min_size=1, max_size=4).map("".join)


def peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# A template over a limit takes the product's worst case (up to ~0.4 s) to be refused:
# a quarter of the examples the other properties get.
@settings(max_examples=max(20, settings.default.max_examples // 4))
@pytest.fixture(scope="module")
def target() -> Target:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "profiles").mkdir()
        (root / "profiles" / "base.yaml").write_text(PROFILE, encoding="utf-8")
        (root / "inventory.yaml").write_text(INVENTORY, encoding="utf-8")
        project = Project(root / "profiles", None, root / "state.db", {}, root)
        (found,) = select_targets(project, root / "inventory.yaml")[1]
        return found


@given(source=templates)
def test_any_template_renders_or_is_a_template_error_within_bounds(target: Target, source: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / TEMPLATE).write_text(source, encoding="utf-8")
        (folder / "other.j2").write_text("{{ host.name * 3 }}{% include '" + TEMPLATE + "' %}", encoding="utf-8")
        templates = Templates(folder)
        before = peak_rss()
        try:
            text = templates.render(dict(CONTEXT))
            rendered = Renderer(templates).render(target)  # and read back as MicroSIP would
        except TemplateError as exc:
            check_message(exc)
            assert TEMPLATE in exc.message or "other.j2" in exc.message, exc.message
        else:
            assert isinstance(text, str) and rendered.desired.sections
        assert peak_rss() - before < RSS_LIMIT
