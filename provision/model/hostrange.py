"""Host ranges in names, as Ansible writes them: `ws-[01:50]`, `ws-[a:f]`, `ws-[01:50:2]`.

A range is `[begin:end]` or `[begin:end:step]`, both ends included. Numbers keep the width
of a begin written with a leading zero (`[01:50]` gives 01 ... 50; begin and end must then
have the same width); a missing begin is 0. Letters run through a-z then A-Z (`[a:f]`,
`[x:B]`). A name may hold several ranges (`rack[1:2]-ws[01:10]`): every combination.
"""

from __future__ import annotations

import re
import string

#: The most names one range may produce: a fleet is at most tens of thousands of hosts,
#: and `ws-[0:999999999]` must be an error, not a billion names.
MAX_RANGE_HOSTS = 100_000

_RANGE = re.compile(r"\[([^\[\]]*)\]")


class HostRangeError(ValueError):
    """A bracket in a host name that is not a valid range; the message says why."""


def has_range(name: str) -> bool:
    return "[" in name or "]" in name


def expand_host_range(name: str, limit: int = MAX_RANGE_HOSTS) -> list[str]:
    """Every name `name` stands for, in order; `name` itself if it has no brackets."""
    if not has_range(name):
        return [name]
    match = _RANGE.search(name)
    if match is None:
        raise HostRangeError("has an unmatched '[' or ']' (a range is [begin:end], e.g. ws-[01:50])")
    head, tail = name[: match.start()], name[match.end() :]
    if has_range(head):
        raise HostRangeError("has an unmatched '[' or ']' (a range is [begin:end], e.g. ws-[01:50])")
    values = _values(match.group(1))
    tails = expand_host_range(tail, limit)
    if len(values) * len(tails) > limit:
        raise HostRangeError(f"gives {len(values) * len(tails):,} names; a range may give at most {limit:,}")
    return [head + value + rest for value in values for rest in tails]


def _values(inside: str) -> list[str]:
    shown = f"[{inside}]" if len(inside) <= 40 else "the range"
    bounds = inside.split(":")
    if len(bounds) not in (2, 3):
        raise HostRangeError(f"{shown} is not a range: write [begin:end] or [begin:end:step]")
    begin, end = bounds[0].strip(), bounds[1].strip()
    step_text = bounds[2].strip() if len(bounds) == 3 else "1"
    if not step_text.isdigit() or int(step_text) < 1:
        raise HostRangeError(f"{shown}: the step must be a whole number of at least 1")
    step = int(step_text)
    if not end:
        raise HostRangeError(f"{shown}: the range needs an end")
    begin = begin or "0"
    if len(begin) == 1 and len(end) == 1 and begin in string.ascii_letters and end in string.ascii_letters:
        first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
        if first > last:
            raise HostRangeError(f"{shown}: the begin comes after the end")
        return list(string.ascii_letters[first : last + 1 : step])
    if not (begin.isascii() and begin.isdigit() and end.isascii() and end.isdigit()):
        raise HostRangeError(f"{shown}: a range is of numbers ([01:50]) or of single letters ([a:f])")
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise HostRangeError(f"{shown}: with a leading zero, begin and end must have the same number of digits")
    low, high = int(begin), int(end)
    if low > high:
        raise HostRangeError(f"{shown}: the begin is greater than the end")
    if (high - low) // step + 1 > MAX_RANGE_HOSTS:
        raise HostRangeError(f"gives more than {MAX_RANGE_HOSTS:,} names; a range may give at most {MAX_RANGE_HOSTS:,}")
    return [str(n).zfill(width) for n in range(low, high + 1, step)]
