"""Ways to run a command on a workstation. The push never imports pywinrm: only this package does.

open_transport() picks the implementation: the lean one (transport/lean.py) for NTLM over
HTTPS or HTTP and Basic over HTTPS, stock pywinrm (transport/winrm.py) for the rest (Kerberos).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provision.transport.base import Transport
    from provision.transport.winrm import WinRMSettings

AUTO, LEAN, PYWINRM = "auto", "lean", "pywinrm"
CHOICES = (AUTO, LEAN, PYWINRM)
LEAN_AUTH = frozenset({("https", "ntlm"), ("http", "ntlm"), ("https", "basic")})


def lean_applies(settings: WinRMSettings) -> bool:
    return (settings.scheme, settings.auth) in LEAN_AUTH


def open_transport(settings: WinRMSettings, prefer: str = AUTO, *, deadline: float | None = None) -> Transport:
    """A transport for one host: `prefer` is "auto" (lean where it applies), "lean" or "pywinrm".

    deadline (time.monotonic()) bounds every network wait, as Transport.set_deadline does.
    Nothing is sent until the first command starts."""
    from provision.transport.base import AUTH, TransportError
    from provision.transport.lean import LeanTransport
    from provision.transport.winrm import WinRMTransport

    if prefer not in CHOICES:
        raise ValueError(f"unknown transport {prefer!r}; choose one of {', '.join(CHOICES)}")
    transport: WinRMTransport
    if prefer == PYWINRM or (prefer == AUTO and not lean_applies(settings)):
        transport = WinRMTransport(settings)
    elif lean_applies(settings):
        transport = LeanTransport(settings)
    else:
        raise TransportError(AUTH, f"the lean transport does not speak {settings.auth} over {settings.scheme}")
    if deadline is not None:
        transport.set_deadline(deadline)
    return transport
