"""What MicroSIP itself accepts, read from its source (see docs/microsip.md).

Numbers here are facts about MicroSIP, each with the reason it bites.
"""

from __future__ import annotations

import re
from functools import total_ordering

# GetPrivateProfileString buffers: most [Settings] strings are read into 256 characters
# (255 plus NUL); longer values are cut silently.
SETTINGS_STRING_MAX = 255
# audioCodecs has a 512-character buffer.
AUDIO_CODECS_MAX = 511
# Account strings grew from 256 to 1041-character buffers in 3.21.6.
ACCOUNT_STRING_MAX_OLD = 255
ACCOUNT_STRING_MAX = 1040

HOOK_KEYS = (
    "cmdOutgoingCall",
    "cmdIncomingCall",
    "cmdCallRing",
    "cmdCallAnswer",
    "cmdCallAnswerVideo",
    "cmdCallBusy",
    "cmdCallStart",
    "cmdCallEnd",
)

AUDIO_KEYS = {"input": "audioInputDevice", "output": "audioOutputDevice", "ring": "audioRingDevice"}

# Sections MicroSIP owns: history, redial list, speed dial, the local IP account, version.
OWNED_SECTIONS = frozenset({"account0", "calls", "dialed", "shortcuts", "contacts", "global"})

# [Settings] keys MicroSIP rewrites from its own state on every save: they belong to the
# person at the workstation, and a value pushed for them is overwritten at the next exit.
USER_STATE_KEYS = frozenset(
    k.lower()
    for k in (
        "mainX", "mainY", "mainW", "mainH", "messagesX", "messagesY", "messagesW", "messagesH",
        "ringinX", "ringinY", "callsWidth0", "callsWidth1", "callsWidth2", "callsWidth3",
        "callsWidth4", "callsWidth5", "contactsWidth0", "contactsWidth1", "contactsWidth2",
        "volumeOutput", "volumeInput", "activeTab", "lastCallNumber", "lastCallHasVideo",
        "callsLastKey", "checkUpdatesTime", "DND", "AA", "AC", "FWD", "version",
    )
)  # fmt: skip

# Keys that circulate in deployment scripts but that MicroSIP never reads, with the real one.
NOT_MICROSIP_KEYS = {
    "updateinterval": "MicroSIP reads 'updatesInterval' (with an s)",
    "sipserver": "the registrar is 'server' in an account",
    "disablelocalaccount": "MicroSIP reads 'enableLocalAccount'",
    "accountname": "an account's name is its 'label'",
    "login": "the SIP user is 'username' in an account",
    "enabled": "MicroSIP has no per-account 'enabled' key",
    "listenport": "the local SIP port is 'sourcePort'",
}

# Codec ids from MicroSIP's caption table; any other token is ignored by MicroSIP.
KNOWN_CODECS = frozenset(
    [
        "opus/48000/2", "PCMA/8000/1", "PCMU/8000/1", "G722/16000/1", "G7221/16000/1",
        "G7221/32000/1", "G723/8000/1", "G729/8000/1", "GSM/8000/1", "GSM-EFR/8000/1",
        "AMR/8000/1", "AMR-WB/16000/1", "iLBC/8000/1", "speex/32000/1", "speex/16000/1",
        "speex/8000/1", "SILK/24000/1", "SILK/16000/1", "SILK/12000/1", "SILK/8000/1",
        "L16/8000/1", "L16/16000/1", "L16/44100/1", "L16/48000/1", "L16/8000/2",
        "L16/16000/2", "L16/44100/2", "L16/48000/2",
    ]
)  # fmt: skip

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


@total_ordering
class Version:
    """A MicroSIP version such as 3.22 or 3.21.6; a missing patch number counts as 0."""

    __slots__ = ("parts", "text")

    def __init__(self, text: str) -> None:
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise ValueError("is not a version like 3.22 or 3.21.6")
        major, minor, patch = match.groups()
        self.text = text.strip()
        self.parts = (int(major), int(minor), int(patch or 0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.parts == other.parts

    def __lt__(self, other: Version) -> bool:
        return self.parts < other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


#: The oldest version whose ini location, hooks and command line match what this tool
#: assumes (3.14 names its files differently and keys portable mode on the working directory).
OLDEST_SUPPORTED = Version("3.19.27")
CURRENT = Version("3.22")


def account_string_max(version: Version) -> int:
    """Characters MicroSIP reads of an [AccountN] value: 1040 from 3.21.6, 255 before."""
    return ACCOUNT_STRING_MAX if version >= Version("3.21.6") else ACCOUNT_STRING_MAX_OLD
