"""The profile: what a department's (or site's, or host's) MicroSIP should look like.

Field names under `settings`, `accounts` and `hooks` are MicroSIP's own ini key names, so
a profile reads like the ini it produces. Every field is optional: a key that no layer
sets is not managed, and whatever the workstation has for it is kept.
The profile reference in docs/ is generated from these models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from provision.model.microsip import AUDIO_CODECS_MAX, KNOWN_CODECS, Version
from provision.model.values import (
    AccountText,
    Description,
    Name,
    SecretRef,
    SettingText,
    check_ini_text,
    shown,
)


class StrictModel(BaseModel):
    """Frozen, no unknown keys, numbers accepted where text is expected (`extension: 2101`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def key(description: str, *, since: str | None = None, until: str | None = None, **kw: Any) -> Any:
    """A managed ini key: optional, with the MicroSIP versions that read it."""
    extra: dict[str, Any] = {}
    if since:
        extra["since"] = since
    if until:
        extra["until"] = until
    return Field(
        default=kw.pop("default", None),
        description=description,
        json_schema_extra=extra or None,
        **kw,
    )


Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[int, Field(ge=0, le=86400)]


class Settings(StrictModel):
    """Keys of MicroSIP's [Settings] section (MicroSIP's names and values)."""

    # Calls and answering
    autoAnswer: Literal["", "button", "header", "all"] | None = key(
        "When to answer automatically: '' never, 'button' when the AA button is on, "
        "'header' when the call asks for it (X-AUTOANSWER, Call-Info answer-after), 'all' always. "
        "Not 0/1."
    )
    autoAnswerDelay: Seconds | None = key("Seconds to wait before auto-answering.")
    autoAnswerNumber: SettingText | None = key(
        "Caller masks allowed to be auto-answered, separated by ';' or '|'.", since="3.20.5"
    )
    autoAnswerCalls: Literal["", "hold", "all"] | None = key(
        "Whether auto-answer may fire while other calls exist: '' only with no other calls, "
        "'hold' when they are on hold, 'all' always.",
        since="3.22",
    )
    denyIncoming: Literal["", "button", "user", "domain", "userdomain", "remotedomain", "all"] | None = key(
        "Which incoming calls to reject: '' none, 'button' when DND is on, or by user/domain match, or 'all'."
    )
    forwarding: Literal["", "button", "all"] | None = key(
        "Call forwarding: '' off, 'button' when the FWD button is on, 'all' always.", since="3.21.3"
    )
    forwardingNumber: SettingText | None = key("Number calls are forwarded to.", since="3.21.3")
    forwardingDelay: Seconds | None = key("Seconds before forwarding.", since="3.21.3")
    callWaiting: bool | None = key("Accept a second call while one is active.")
    maxConcurrentCalls: Annotated[int, Field(ge=0, le=100)] | None = key("0 = no limit.")
    autoHangUpTime: Seconds | None = key("Hang up calls after this many seconds; 0 = never.")
    singleMode: bool | None = key("Single call window mode.")
    defaultAction: Literal["", "call", "video", "message"] | None = key("Action of the dial button.")
    DTMFMethod: Literal[0, 1, 2, 3] | None = key("0 auto, 1 in-band, 2 RFC 2833, 3 SIP INFO.")
    localDTMF: bool | None = key("Play DTMF tones locally.")
    enableLocalAccount: bool | None = key("Offer the 'call by IP address' local account.")
    # Audio
    audioCodecs: list[str] | None = key(
        "Codecs in priority order, e.g. [opus/48000/2, G722/16000/1, PCMA/8000/1]. Every codec "
        "not listed is disabled; an empty list means MicroSIP's default set."
    )
    volumeRing: Annotated[int, Field(ge=0, le=100)] | None = key("Ring volume, 0-100.")
    micAmplification: bool | None = key("Microphone amplification.")
    swLevelAdjustment: bool | None = key("Software level adjustment.")
    VAD: bool | None = key("Voice activity detection.")
    EC: bool | None = key("Echo cancellation.")
    forceCodec: bool | None = key("Force the first codec.")
    opusStereo: bool | None = key("Opus in stereo (turns echo cancellation off).", since="3.20.5")
    ringingSound: SettingText | None = key("Path to a WAV file; %VARIABLES% are expanded by MicroSIP.")
    # Network
    sourcePort: Port | None = key("Local SIP port; 0 = automatic.")
    rtpPortMin: Port | None = key("Lowest RTP port; 0 = automatic.")
    rtpPortMax: Port | None = key("Highest RTP port; 0 = automatic.")
    rport: bool | None = key("Use rport (RFC 3581).")
    dnsSrv: bool | None = key("Use DNS SRV records.")
    dnsSrvNs: SettingText | None = key("Up to 4 name servers, separated by ';' or ','.")
    enableSTUN: bool | None = key("Use STUN.")
    STUN: SettingText | None = key("Up to 8 STUN servers, separated by ';' or ','.")
    networkChanges: bool | None = key("Re-register when the network changes.", since="3.22")
    userAgent: SettingText | None = key("SIP User-Agent header; MicroSIP's default names its version.")
    portKnockerHost: SettingText | None = key("Host to send UDP knocks to before registering.")
    portKnockerPorts: SettingText | None = key("Knock ports, comma-separated.")
    # Recording and logging
    recordingPath: SettingText | None = key("Folder for recordings (no %VARIABLE% expansion).")
    recordingFormat: Literal["", "mp3", "wav"] | None = key("'' and 'mp3' both mean MP3.")
    autoRecording: bool | None = key("Record every call.")
    recordingButton: bool | None = key("Show the record button.")
    enableLog: bool | None = key("Write a SIP log (<exe>_log.txt); read at start, so it takes effect after a restart.")
    # Updates and behaviour
    updatesInterval: Literal["", "daily", "monthly", "quarterly", "never", "always"] | None = key(
        "How often MicroSIP looks for updates ('' = weekly). An update prompt is a modal dialog "
        "that blocks an unattended workstation, so provision writes 'never' unless told otherwise.",
        default="never",
    )
    usersDirectory: SettingText | None = key(
        "URL of a directory XML; with placeholders it is fetched after every registration."
    )
    minimized: bool | None = key("Always start minimized.", since="3.21.3")
    silent: bool | None = key("Start silently (no pop-ups); removed in 3.22.", until="3.21.6")
    bringToFrontOnIncoming: bool | None = key("Show the window on an incoming call.")
    randomAnswerBox: bool | None = key("Place the answer box randomly.")
    disableNameLookup: bool | None = key("Do not look up caller names.", since="3.22")
    multiMonitor: bool | None = key("Multi-monitor support.", since="3.21.3")
    noIgnoreCall: bool | None = key("Hide the 'ignore call' button.")
    noResize: bool | None = key("Fixed-size window.")
    alwaysOnTop: bool | None = key("Keep the window on top.")
    enableShortcuts: bool | None = key("Show the speed-dial shortcuts.")
    shortcutsBottom: bool | None = key("Shortcuts at the bottom.")
    enableMediaButtons: bool | None = key("React to media keys.")
    headsetSupport: bool | None = key("Headset button support.")
    buttonAC: bool | None = key("Show the auto-conference button.", since="3.22")
    buttonCONF: bool | None = key("Show the conference button.", since="3.22")
    disableMessaging: bool | None = key("Turn instant messaging off.", since="3.20.5")
    disableVideo: bool | None = key("Turn video off (video builds).", since="3.20.5")
    featureCodeCP: SettingText | None = key("Call pickup feature code (default '**').", since="3.21.6")
    featureCodeBT: SettingText | None = key("Blind transfer feature code (default '##').", since="3.21.6")
    featureCodeAT: SettingText | None = key("Attended transfer feature code (default '*2').", since="3.21.6")
    enableFeatureCodeCP: bool | None = key("Enable the call pickup feature code.", since="3.21.6")
    enableFeatureCodeBT: bool | None = key("Enable the blind transfer feature code.", since="3.21.6")
    enableFeatureCodeAT: bool | None = key("Enable the attended transfer feature code.", since="3.21.6")

    @field_validator("audioCodecs")
    @classmethod
    def _codecs(cls, codecs: list[str] | None) -> list[str] | None:
        if codecs is None:
            return None
        unknown = [c for c in codecs if c not in KNOWN_CODECS]
        if unknown:
            raise ValueError(
                f"unknown codec {shown(unknown[0])}: MicroSIP ignores it (codecs are name/clock/channels, "
                f"e.g. PCMA/8000/1, opus/48000/2)"
            )
        if len(set(codecs)) != len(codecs):
            raise ValueError("lists a codec twice")
        if len(" ".join(codecs)) > AUDIO_CODECS_MAX:
            raise ValueError(f"is longer than MicroSIP's {AUDIO_CODECS_MAX}-character buffer")
        return codecs


HookArg = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Hook(StrictModel):
    """A program MicroSIP runs on a call event; MicroSIP appends the caller's number as the last argument."""

    program: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="Full path of the program on the workstation, e.g. 'C:\\Program Files\\CRM\\popup.exe'."
    )
    args: list[HookArg] = Field(
        default_factory=list,
        description="Fixed arguments before the number. MicroSIP re-joins arguments with single spaces "
        "and loses quoting, so an argument may not contain spaces or quotes.",
    )

    @field_validator("program")
    @classmethod
    def _program(cls, program: str) -> str:
        check_ini_text(program)
        if '"' in program:
            raise ValueError("must not contain quotes; provision quotes the path itself")
        return program

    @field_validator("args")
    @classmethod
    def _args(cls, args: list[str]) -> list[str]:
        for arg in args:
            check_ini_text(arg)
            if any(c in arg for c in ' \t"'):
                raise ValueError(
                    f"argument {shown(arg)} contains a space or quote; MicroSIP splits and re-joins "
                    "arguments without quoting, so it would arrive in pieces"
                )
        return args


def _hook(description: str, **kw: Any) -> Any:
    return key(description + " A string is a program path with no arguments.", **kw)


class Hooks(StrictModel):
    """Event hooks: MicroSIP's cmd* keys. MicroSIP waits up to 10 s for each hook."""

    cmdOutgoingCall: Hook | None = _hook(
        "An outgoing call starts. From 3.21.3 arguments may use {number}, {name}, {user}, {domain}, "
        "{server}, {extension}, {callerid}, {time}, {duration}."
    )
    cmdIncomingCall: Hook | None = _hook(
        "Every incoming INVITE, also calls then rejected; runs on MicroSIP's SIP thread."
    )
    cmdCallRing: Hook | None = _hook("An incoming call rings.")
    cmdCallAnswer: Hook | None = _hook("An incoming call is answered.")
    cmdCallAnswerVideo: Hook | None = _hook("An incoming video call is answered.", since="3.21.3")
    cmdCallBusy: Hook | None = _hook("A call ends busy or declined (486, 600, 603).")
    cmdCallStart: Hook | None = _hook("Any call is connected.")
    cmdCallEnd: Hook | None = _hook("Any other call end, including missed calls.")

    def programs(self) -> list[str]:
        """The programs the hooks run, each once, in key order."""
        found = [hook.program for hook in self.__dict__.values() if hook is not None]
        return list(dict.fromkeys(found))

    @field_validator("*", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"program": value} if isinstance(value, str) else value


DeviceName = Annotated[str, StringConstraints(max_length=253), Field()]


class Audio(StrictModel):
    """Audio devices by name as Windows shows them; '' means the system default, absent means not managed."""

    input: DeviceName | None = key("Microphone (audioInputDevice).")
    output: DeviceName | None = key("Speaker or headset (audioOutputDevice).")
    ring: DeviceName | None = key("Device that rings (audioRingDevice), e.g. the PC speaker for a headset user.")

    @field_validator("input", "output", "ring")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value:
            check_ini_text(value)
        return value


def check_dial_string(text: str) -> str:
    if not re.fullmatch(r"[0-9*#+]{1,32}", text):
        raise ValueError("a number to dial: digits, *, # and + only (MicroSIP dials any other argument as text)")
    return text


DialString = Annotated[str, AfterValidator(check_dial_string)]


class Smoke(StrictModel):
    """How `provision smoke` exercises a test copy of MicroSIP rendered from this profile."""

    number: DialString | None = key("Number the test instance dials, e.g. an echo test (*43). Omit: no call.")
    ready_seconds: int = Field(
        default=30, ge=1, le=300, description="How long the test instance may take to register, in seconds."
    )
    step_seconds: int = Field(
        default=10, ge=1, le=120, description="How long each control command may take to show its effect."
    )


class Account(StrictModel):
    """One SIP account ([AccountN]). Per-user identity (username, password, ...) usually comes from the inventory."""

    label: AccountText | None = key("Name shown in MicroSIP's title bar and account menu.")
    server: AccountText | None = key(
        "Registrar host[:port]. Required once all layers are applied: without it MicroSIP does not register."
    )
    proxy: list[AccountText] | None = key("Outbound proxies, in order.")
    domain: AccountText | None = key(
        "SIP domain. Required once all layers are applied: MicroSIP skips an account without one."
    )
    username: AccountText | None = key("SIP user. Normally set per user in the inventory.")
    authID: AccountText | None = key("Digest user name, when it differs from username.")
    displayName: AccountText | None = key("Caller name. Normally set per user in the inventory.")
    password: SecretRef | None = key(
        "A secret reference for a shared account; per-user passwords belong in the inventory."
    )
    voicemailNumber: AccountText | None = key("Voicemail number; also turns on message-waiting indication.")
    transport: Literal["udp", "tcp", "tls", "udp+tcp"] | None = key(
        "SIP transport. 'udp+tcp' is written as MicroSIP's empty value."
    )
    SRTP: Literal["", "optional", "mandatory", "dtls-sdes", "dtls"] | None = key(
        "Media encryption: '' off, 'optional', 'mandatory'; 'dtls-sdes' and 'dtls' from 3.22."
    )
    publicAddr: AccountText | None = key("Public address to put in SIP headers.")
    publish: bool | None = key("Publish presence.")
    ICE: bool | None = key("Use ICE.")
    allowRewrite: bool | None = key("Allow contact rewrite.")
    disableSessionTimer: bool | None = key("Turn SIP session timers off.")
    registerRefresh: Annotated[int, Field(ge=10, le=86400)] | None = key(
        "Seconds between re-registrations (MicroSIP raises anything under 10 to 10)."
    )
    keepAlive: Annotated[int, Field(ge=2, le=3600)] | None = key("Seconds between keep-alives.")
    hideCID: Literal[False, True, "", "hard"] | None = key(
        "Hide caller ID: true/false before 3.22; '' or 'hard' from 3.22."
    )
    dialingPrefix: AccountText | None = key("Prefix put before dialled numbers.")
    dialPlan: AccountText | None = key("Dial plan rewriting rules.")

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("proxy")
    @classmethod
    def _proxy_no_spaces(cls, value: list[str] | None) -> list[str] | None:
        for proxy in value or []:
            if " " in proxy:
                raise ValueError("a proxy may not contain spaces; MicroSIP separates proxies with spaces")
        return value


ExtraValue = str | int | bool


class Profile(StrictModel):
    """A profile file: profiles/<name>.yaml. Layers merge key by key; later layers win."""

    extends: list[Name] = Field(
        default_factory=list,
        description="Profiles this one builds on (a name or a list), applied first, in order.",
    )
    description: Description | None = key("What this profile is for.")
    microsip_version: str = Field(
        default="3.22",
        description="MicroSIP version the workstations run; keys the version does not read are rejected.",
    )
    settings: Settings = Field(default_factory=Settings, description="[Settings] keys.")
    accounts: dict[Name, Account] = Field(
        default_factory=dict,
        description="SIP accounts by name, written as [Account1], [Account2], ... in this order.",
    )
    active_account: Name | None = key("Name of the account MicroSIP uses (accountId); default: the first.")
    hooks: Hooks = Field(default_factory=Hooks, description="Event hook commands (cmd* keys).")
    audio: Audio = Field(default_factory=Audio, description="Audio devices.")
    smoke: Smoke = Field(default_factory=Smoke, description="For smoke profiles: what `provision smoke` does.")
    extra_settings: dict[str, ExtraValue] = Field(
        default_factory=dict,
        description="Raw [Settings] keys provision has no field for, written as given. "
        "Checked for safety, not for meaning.",
    )

    @field_validator("extends", mode="before")
    @classmethod
    def _extends_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("microsip_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        text = str(value)
        Version(text)  # raises ValueError with a readable message
        return text

    @property
    def version(self) -> Version:
        return Version(self.microsip_version)
