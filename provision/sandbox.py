"""The Jinja2 sandbox templates run in, with limits on work, size and time.

Jinja2's sandbox keeps a template away from Python's internals; it does not stop one from
asking for a string of 10**9 characters, a number of a billion digits (`9**9**9`, which
Jinja2 would even try to compute while compiling) or 10**10 loop iterations. Here every
operation that can make something much bigger than its inputs checks the size first,
and every call, filter and loop iteration counts against a budget per render, so a bad
template fails in well under a second with a `TemplateLimitError` instead of hanging the
run or exhausting memory. A real microsip.ini template stays far below every limit.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Characters of any string, or items of any list, a template may make.
MAX_SIZE = 1_000_000
#: Characters a whole rendered file may have (a real microsip.ini has a few thousand).
MAX_OUTPUT = 4_000_000
#: Bits of any number (about 1,200 digits).
MAX_INT_BITS = 4096
#: A width, count or repeat given to a filter or text method.
MAX_PARAM = 100_000
#: Calls, filters and loop iterations in one render (the built-in template takes about 100).
MAX_STEPS = 50_000
#: Wall-clock time of one render.
MAX_SECONDS = 5.0

# Text methods that could blow a short string up beyond what its arguments say.
_REFUSED_METHODS = frozenset({"translate", "maketrans"})
_DIGITS = re.compile(r"\d+")


class TemplateLimitError(SecurityError):
    """A template asked for more work, size or time than any microsip.ini needs."""


@dataclass
class _Budget:
    steps: int
    deadline: float

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimitError(f"limit: more than {MAX_STEPS:,} calls, filters and loop iterations in one render")
        if self.steps % 1024 == 0 and time.monotonic() > self.deadline:
            raise TemplateLimitError(f"limit: rendering took longer than {MAX_SECONDS:g} s")


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextlib.contextmanager
def render_budget() -> Iterator[None]:
    """Count the work of one render; outside of one (compiling), only sizes are checked."""
    token = _budget.set(_Budget(MAX_STEPS, time.monotonic() + MAX_SECONDS))
    try:
        yield
    finally:
        _budget.reset(token)


def _step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend()


def _refuse(what: str, size: int, limit: int = MAX_SIZE) -> None:
    if size > limit:
        raise TemplateLimitError(f"limit: {what} would be {size:,} long (at most {limit:,})")


def _weight(value: Any, limit: int = MAX_SIZE) -> int:
    """About how many characters str(value) has; stops counting once past `limit`."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 16
    return total


def _check_text(what: str, value: Any) -> None:
    _refuse(what, _weight(value))


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"limit: a number of more than {MAX_INT_BITS} bits")


def _check_result(value: Any) -> Any:
    _check_int(value)
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        _refuse("a value", len(value))
    return value


def _check_params(params: Iterable[Any]) -> None:
    for param in params:
        if isinstance(param, int) and not isinstance(param, bool) and abs(param) > MAX_PARAM:
            raise TemplateLimitError(f"limit: a width, count or repeat of {param:,} (at most {MAX_PARAM:,})")
        if isinstance(param, str):
            _refuse("an argument", len(param))


def _check_format(spec: str, args: Any) -> None:
    """printf and str.format specs: no width or precision beyond MAX_PARAM, no huge arguments."""
    _check_params(int(d) for d in _DIGITS.findall(spec) if len(d) < 12)
    if any(len(d) >= 12 for d in _DIGITS.findall(spec)):
        raise TemplateLimitError("limit: a width or precision of 12 digits or more")
    _check_params(args if isinstance(args, tuple | list) else [args])
    _check_text("a formatted value", args)


def _join_estimate(items: Any, separator: Any) -> int:
    size = _weight(items)
    if isinstance(items, list | tuple) and isinstance(separator, str):
        size += len(items) * len(separator)
    return size


def _replace_estimate(text: Any, old: Any, new: Any, count: Any = None) -> int:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    hits = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * len(new)


def _filter_precheck(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Filters whose result can be far bigger than their arguments are estimated first."""
    _check_params([*args, *kwargs.values()])
    _check_text("a filter's input", value)
    if name == "replace":
        _refuse("the replaced text", _replace_estimate(value, *args[:3], **kwargs))
    elif name == "indent" and isinstance(value, str):
        width = kwargs.get("width", args[0] if args else 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _refuse("the indented text", len(value) + (value.count("\n") + 1) * pad)
    elif name == "wordwrap" and isinstance(value, str):
        wrap = kwargs.get("wrapstring", args[2] if len(args) > 2 else "\n")
        _refuse("the wrapped text", len(value) * (1 + (len(wrap) if isinstance(wrap, str) else 1)))
    elif name == "join":
        separator = kwargs.get("d", args[0] if args else "")
        _refuse("the joined text", _join_estimate(value, separator))
    elif name == "format" and isinstance(value, str):
        _check_format(value, (*args, *kwargs.values()))
    elif name == "sum":
        start = kwargs.get("start", args[1] if len(args) > 1 else 0)
        if not isinstance(start, int | float):
            raise TemplateLimitError("limit: sum adds numbers only (adding lists or text grows quadratically)")


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        value = args[skip] if len(args) > skip else None
        _filter_precheck(name, value, args[skip + 1 :], kwargs)
        return _check_result(func(*args, **kwargs))

    return guarded


def _join_output(parts: Iterable[str]) -> str:
    """The `concat` of rendered pieces (a file, a macro's output, a block), sized before joining.

    The pieces are mostly references to strings that exist already, and how many there
    are is bounded by the step budget; joining them is what would make a huge string."""
    pieces = list(parts)
    _refuse("the output", sum(map(len, pieces)), MAX_OUTPUT)
    return "".join(pieces)


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja2's code generator with every loop and every `~` routed through the sandbox."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        guard = nodes.EnvironmentAttribute("loop_guard", lineno=node.lineno)
        node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_text((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the limits above."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_join_output)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, finalize=self._finalize_output, **kwargs)
        # lipsum(n) writes n paragraphs of filler text: nothing an ini needs.
        del self.globals["lipsum"]
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}

    @staticmethod
    def _finalize_output(value: Any) -> Any:
        if type(value) is str:  # the usual case, made cheap: every {{ }} comes here
            _refuse("an output value", len(value))
        else:
            _check_text("an output value", value)
        return value

    def loop_guard(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget.get()
        for item in iterable:
            if budget is not None:
                budget.spend()
            yield item

    def join_text(self, parts: tuple[Any, ...]) -> str:
        _step()
        _refuse("the joined text", sum(_weight(p) for p in parts))
        return "".join(str(p) for p in parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        if operator == "**" and numbers and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and right > MAX_INT_BITS:
                raise TemplateLimitError(f"limit: a number of more than {MAX_INT_BITS} bits")
            _refuse("a number", left.bit_length() * right, MAX_INT_BITS)
        elif operator == "*" and not numbers:
            count, sized = (right, left) if isinstance(right, int) else (left, right)
            if isinstance(count, int) and hasattr(sized, "__len__"):
                _refuse("a repeated value", len(sized) * max(count, 0))
        elif operator == "*" and isinstance(left, int) and isinstance(right, int):
            _refuse("a number", left.bit_length() + right.bit_length(), MAX_INT_BITS)
        elif operator == "+" and hasattr(left, "__len__") and hasattr(right, "__len__"):
            _refuse("a joined value", len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right)
        return _check_result(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _step()
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            name = getattr(method, "__name__", "")
            if name in _REFUSED_METHODS:
                raise SecurityError(f"str.{name} is not allowed in templates")
            _check_params([*args, *kwargs.values()])
            if name == "replace":
                _refuse("the replaced text", _replace_estimate(owner, *args[:3]))
            elif name == "join":
                _refuse("the joined text", _join_estimate(args[0] if args else (), owner))
            elif name in ("format", "format_map"):
                _check_format(owner, (*args, *kwargs.values()))
            elif name == "expandtabs":
                size = args[0] if args and isinstance(args[0], int) else 8
                _refuse("the expanded text", len(owner) + owner.count("\t") * size)
        return _check_result(super().call(__context, __obj, *args, **kwargs))
