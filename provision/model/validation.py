"""Validating located data with pydantic and reporting each error at its file and line."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from provision.errors import Problem
from provision.model.microsip import NOT_MICROSIP_KEYS
from provision.model.source import FieldPath, Located
from provision.model.values import shown

M = TypeVar("M", bound=BaseModel)

# Fields whose input must never be echoed back in an error message.
_SECRET_FIELDS = frozenset({"password"})
# Fields that hold passwords further down: their input is not echoed when it is text where
# a list or mapping belongs (users written as one string, as an INI file can).
_HOLDS_SECRETS = frozenset({"users", "accounts", "overrides"})


def validate(model: type[M], located: Located, prefix: FieldPath = ()) -> tuple[M | None, list[Problem]]:
    """Validate the data at `prefix` in `located`; return the model or the problems."""
    data = located.data
    for part in prefix:
        data = data[part]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from(exc, model, located, prefix, data)


def problems_from(
    exc: ValidationError, model: type[BaseModel], located: Located, prefix: FieldPath, data: Any
) -> list[Problem]:
    problems: dict[FieldPath, Problem] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _data_path(data, loc, missing=error["type"] == "missing")
        if path in problems:
            continue  # one message per field (a union reports each of its members)
        message = _message(error, model, path)
        problems[path] = located.problem((*prefix, *path), message)
    return list(problems.values())


def _data_path(data: Any, loc: Sequence[Any], *, missing: bool) -> FieldPath:
    """The part of a pydantic location that exists in the data (unions add type tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        else:
            if missing and isinstance(node, dict) and isinstance(part, str):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


# pydantic's "Input should be ...", "String should have ...": said of the field here.
_SHOULD = re.compile(r"^(?:Input|String|Value|List|Dictionary|Tuple|Set) should ")
#: A message longer than this is cut: a validator may have quoted more than it should.
MESSAGE_MAX = 300


def _message(error: Any, model: type[BaseModel], path: FieldPath) -> str:
    kind = error["type"]
    field = path[-1] if path else ""
    if kind == "extra_forbidden":
        return unknown_key_message(str(field), _field_names(model, path[:-1]))
    if kind == "missing":
        return "is required"
    message = str(error["msg"])
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    message = _SHOULD.sub("must ", message)
    if len(message) > MESSAGE_MAX:
        message = message[:MESSAGE_MAX] + "..."
    value = error.get("input")
    secret = any(part in _SECRET_FIELDS for part in path if isinstance(part, str))
    secret |= isinstance(value, str) and any(part in _HOLDS_SECRETS for part in path[-2:] if isinstance(part, str))
    if not secret and (value is None or isinstance(value, str | int | float)):
        # Show what was written (never a password): at most QUOTE_MAX characters of it.
        message += f" (got {shown(value)})"
    return message


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    message = f"unknown key {shown(key)}"
    known = list(known)
    hint = NOT_MICROSIP_KEYS.get(key.lower())
    folded = {k.lower(): k for k in known}
    if key.lower() in folded and folded[key.lower()] != key:
        return f"{message}; keys are case-sensitive here: did you mean {folded[key.lower()]!r}?"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if hint:
        message += f": not a MicroSIP key ({hint})"
    elif close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _field_names(model: type[BaseModel], path: FieldPath) -> list[str]:
    """Field names of the model found at `path` inside `model`, for 'did you mean'."""
    current: Any = model
    for part in path:
        current = _descend(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _descend(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return _unwrap(field.annotation) if field else None
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional, Annotated and one-model unions down to the interesting type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
