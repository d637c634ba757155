"""Profiles: every enum, limit, version rule and cross-field rule, with located messages."""

from __future__ import annotations

import typing

import pytest
import yaml

from provision.model.microsip import KNOWN_CODECS, Version
from provision.model.profile import Account, Profile, Settings
from provision.model.rules import check_profile
from provision.model.source import parse_yaml
from provision.model.validation import validate


def problems(profile: dict[str, typing.Any]) -> list[str]:
    """Validate a profile as the tool does; return 'field: message' for each problem."""
    located = parse_yaml(yaml.safe_dump(profile, sort_keys=False), "p.yaml")
    model, found = validate(Profile, located)
    if model is not None:
        found = check_profile(model, located).problems
    return [f"{p.field}: {p.message}" for p in found]


def warnings(profile: dict[str, typing.Any]) -> list[str]:
    located = parse_yaml(yaml.safe_dump(profile, sort_keys=False), "p.yaml")
    model, found = validate(Profile, located)
    assert model is not None, found
    return [f"{p.field}: {p.message}" for p in check_profile(model, located).warnings]


def literal_values(model: type, field: str) -> list[object]:
    annotation = model.model_fields[field].annotation
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            return list(typing.get_args(arg))
    raise AssertionError(f"{field} is not an enum")


SETTINGS_ENUMS = [
    name
    for name, info in Settings.model_fields.items()
    if any(typing.get_origin(a) is typing.Literal for a in typing.get_args(info.annotation))
]


def test_the_settings_enums_are_the_ones_microsip_reads() -> None:
    assert literal_values(Settings, "autoAnswer") == ["", "button", "header", "all"]
    assert literal_values(Settings, "denyIncoming") == [
        "",
        "button",
        "user",
        "domain",
        "userdomain",
        "remotedomain",
        "all",
    ]
    assert literal_values(Settings, "forwarding") == ["", "button", "all"]
    assert literal_values(Settings, "updatesInterval") == ["", "daily", "monthly", "quarterly", "never", "always"]
    assert literal_values(Account, "transport") == ["udp", "tcp", "tls", "udp+tcp"]
    assert literal_values(Account, "SRTP") == ["", "optional", "mandatory", "dtls-sdes", "dtls"]


@pytest.mark.parametrize("field", SETTINGS_ENUMS)
def test_every_settings_enum_accepts_each_value_and_rejects_others(field: str) -> None:
    for value in literal_values(Settings, field):
        assert problems({"settings": {field: value}}) == [], (field, value)
    wrong = "definitely-not-valid" if isinstance(literal_values(Settings, field)[0], str) else 9
    found = problems({"settings": {field: wrong}})
    assert len(found) == 1 and found[0].startswith(f"settings.{field}: must be"), found


@pytest.mark.parametrize("value", [0, 1, "0", "1", True])
def test_auto_answer_0_and_1_seen_in_the_wild_are_rejected(value: object) -> None:
    found = problems({"settings": {"autoAnswer": value}})
    assert found and "must be '', 'button', 'header' or 'all'" in found[0]


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("volumeRing", [0, 100], [-1, 101]),
        ("sourcePort", [0, 5060, 65535], [-1, 65536]),
        ("rtpPortMin", [0, 10000], [70000]),
        ("DTMFMethod", [0, 1, 2, 3], [4, -1]),
        ("autoAnswerDelay", [0, 30], [-1]),
        ("maxConcurrentCalls", [0, 5], [-3]),
    ],
)
def test_numeric_settings_have_microsips_ranges(field: str, good: list[int], bad: list[int]) -> None:
    for value in good:
        assert problems({"settings": {field: value}}) == [], (field, value)
    for value in bad:
        assert problems({"settings": {field: value}}), (field, value)


def test_setting_strings_are_limited_to_microsips_255_character_buffer() -> None:
    assert problems({"settings": {"userAgent": "x" * 255}}) == []
    (found,) = problems({"settings": {"userAgent": "x" * 256}})
    assert found.startswith("settings.userAgent: must have at most 255 characters (got 'xxx")
    assert found.endswith("... (256 characters))")


def test_account_strings_have_the_per_version_limit() -> None:
    long = "a" * 300
    assert problems({"accounts": {"main": {"server": "s", "domain": long}}}) == []
    found = problems({"microsip_version": "3.21.3", "accounts": {"main": {"server": "s", "domain": long}}})
    assert found == ["accounts.main.domain: is longer than the 255 characters MicroSIP 3.21.3 reads"]
    assert problems({"accounts": {"main": {"domain": "d" * 1041}}})


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("line\nbreak", False),
        ("nul\x00char", False),
        ("cr\rhere", False),
        ("tab\there", False),
        ("unicode\u2028separator", False),
        (" leading", False),
        ('"quoted"', False),
        ("Zoë Müller", True),
        ("王芳", True),
        ("O'Keefe", True),
    ],
)
def test_values_that_could_inject_ini_lines_are_rejected(value: str, accepted: bool) -> None:
    found = problems({"accounts": {"main": {"server": "s", "domain": "d", "displayName": value}}})
    assert (found == []) is accepted, found


def test_injection_through_a_hook_program_or_argument_is_rejected() -> None:
    found = problems({"hooks": {"cmdCallRing": {"program": "C:\\a.exe\n[Account1]\nserver=evil"}}})
    assert found and "line break" in found[0]
    found = problems({"hooks": {"cmdCallRing": {"program": "C:\\a.exe", "args": ["ok", "a b"]}}})
    assert found and "contains a space or quote" in found[0]
    found = problems({"hooks": {"cmdCallRing": {"program": 'C:\\a.exe" & calc "'}}})
    assert found and "must not contain quotes" in found[0]


def test_unknown_keys_get_did_you_mean_and_fake_microsip_keys_get_the_real_one() -> None:
    assert problems({"settings": {"autoAnswr": "all"}}) == [
        "settings.autoAnswr: unknown key 'autoAnswr'; did you mean 'autoAnswer'?"
    ]
    assert problems({"settings": {"updateInterval": "never"}}) == [
        "settings.updateInterval: unknown key 'updateInterval': not a MicroSIP key "
        "(MicroSIP reads 'updatesInterval' (with an s))"
    ]
    assert problems({"accounts": {"main": {"Server": "x"}}}) == [
        "accounts.main.Server: unknown key 'Server'; keys are case-sensitive here: did you mean 'server'?"
    ]
    assert problems({"setings": {}}) == ["setings: unknown key 'setings'; did you mean 'settings'?"]


def test_plaintext_passwords_are_refused_without_echoing_them() -> None:
    found = problems({"accounts": {"main": {"server": "s", "domain": "d", "password": "hunter2"}}})
    assert len(found) == 1 and "plaintext passwords are not allowed" in found[0]
    assert "hunter2" not in found[0]
    for ref in ("env:SIP_PW", "file:secrets/pw.txt", "keyring:microsip/2101"):
        assert problems({"accounts": {"main": {"server": "s", "domain": "d", "password": ref}}}) == []


@pytest.mark.parametrize(
    ("version", "field", "value", "ok"),
    [
        ("3.22", "autoAnswerCalls", "hold", True),
        ("3.21.6", "autoAnswerCalls", "hold", False),
        ("3.21.6", "featureCodeCP", "**", True),
        ("3.21.3", "featureCodeCP", "**", False),
        ("3.21.3", "forwarding", "button", True),
        ("3.20.5", "forwarding", "button", False),
        ("3.20.5", "autoAnswerNumber", "1*", True),
        ("3.20.1", "autoAnswerNumber", "1*", False),
        ("3.21.6", "silent", True, True),
        ("3.22", "silent", True, False),
        ("3.22.3", "networkChanges", True, True),
    ],
)
def test_keys_are_checked_against_the_target_version(version: str, field: str, value: object, ok: bool) -> None:
    found = problems({"microsip_version": version, "settings": {field: value}})
    assert (found == []) is ok, found


def test_hide_cid_is_0_1_before_322_and_empty_or_hard_from_322() -> None:
    account = {"server": "s", "domain": "d"}
    assert problems({"microsip_version": "3.21.6", "accounts": {"a": {**account, "hideCID": True}}}) == []
    assert problems({"microsip_version": "3.22", "accounts": {"a": {**account, "hideCID": "hard"}}}) == []
    assert problems({"microsip_version": "3.22", "accounts": {"a": {**account, "hideCID": True}}}) == [
        "accounts.a.hideCID: from MicroSIP 3.22 this is '' or 'hard'; did you mean 'hard'?"
    ]
    assert problems({"microsip_version": "3.21.6", "accounts": {"a": {**account, "hideCID": "hard"}}}) == [
        "accounts.a.hideCID: MicroSIP 3.21.6 takes true or false here; '' and 'hard' are 3.22"
    ]


def test_srtp_dtls_needs_322() -> None:
    account = {"server": "s", "domain": "d", "SRTP": "dtls"}
    assert problems({"accounts": {"a": account}}) == []
    assert problems({"microsip_version": "3.21.6", "accounts": {"a": account}}) == [
        "accounts.a.SRTP: 'dtls' needs MicroSIP 3.22 or later, not 3.21.6"
    ]


def test_versions_older_than_supported_or_malformed_are_rejected() -> None:
    assert "older than the oldest supported" in problems({"microsip_version": "3.14"})[0]
    assert "is not a version" in problems({"microsip_version": "latest"})[0]
    assert Version("3.22") > Version("3.21.6") > Version("3.21.3")


def test_register_refresh_and_keep_alive_ranges_match_microsips_clamping() -> None:
    account = {"server": "s", "domain": "d"}
    assert problems({"accounts": {"a": {**account, "registerRefresh": 10}}}) == []
    assert problems({"accounts": {"a": {**account, "registerRefresh": 5}}})
    assert problems({"accounts": {"a": {**account, "keepAlive": 1}}})


def test_rtp_port_range_must_not_be_inverted() -> None:
    assert problems({"settings": {"rtpPortMin": 20000, "rtpPortMax": 10000}}) == [
        "settings.rtpPortMax: is below rtpPortMin (20000)"
    ]


def test_codecs_must_be_known_and_unique() -> None:
    assert problems({"settings": {"audioCodecs": sorted(KNOWN_CODECS)[:5]}}) == []
    assert "unknown codec 'PCMA'" in problems({"settings": {"audioCodecs": ["PCMA"]}})[0]
    assert "lists a codec twice" in problems({"settings": {"audioCodecs": ["PCMA/8000/1", "PCMA/8000/1"]}})[0]


def test_active_account_must_name_an_account() -> None:
    found = problems({"accounts": {"office": {"server": "s", "domain": "d"}}, "active_account": "queue"})
    assert found == ["active_account: names no account of this profile (accounts: office)"]


def test_proxy_is_a_list_and_a_proxy_may_not_contain_spaces() -> None:
    assert problems({"accounts": {"a": {"proxy": ["p1:5061", "p2"]}}}) == []
    assert "may not contain spaces" in problems({"accounts": {"a": {"proxy": "p1 p2"}}})[0]


def test_hooks_placeholder_and_script_rules() -> None:
    assert problems({"hooks": {"cmdCallRing": {"program": "C:\\crm.exe", "args": ["%callerid%"]}}}) == [
        "hooks.cmdCallRing.args[0]: MicroSIP substitutes no %placeholders%; it appends the caller's number "
        "as the last argument"
    ]
    assert (
        "only cmdOutgoingCall expands"
        in problems({"hooks": {"cmdCallRing": {"program": "C:\\crm.exe", "args": ["--n={number}"]}}})[0]
    )
    assert problems({"hooks": {"cmdOutgoingCall": {"program": "C:\\crm.exe", "args": ["--n={number}"]}}}) == []
    assert (
        "need MicroSIP 3.21.3"
        in problems(
            {"microsip_version": "3.21.1", "hooks": {"cmdOutgoingCall": {"program": "x.exe", "args": ["{number}"]}}}
        )[0]
    )
    assert warnings({"hooks": {"cmdCallEnd": "C:\\scripts\\log.bat"}}) == [
        "hooks.cmdCallEnd.program: a .bat/.cmd hook receives the caller's number unescaped and can be made to "
        "run commands by a crafted number; prefer an .exe or powershell.exe -File"
    ]
    assert warnings({"hooks": {"cmdOutgoingCall": {"program": "x.exe", "args": ["{password}"]}}}) == [
        "hooks.cmdOutgoingCall.args[0]: hands the SIP password to the hook program"
    ]
    assert (
        "cmdCallAnswerVideo: is read by MicroSIP 3.21.3"
        in problems({"microsip_version": "3.20.5", "hooks": {"cmdCallAnswerVideo": "x.exe"}})[0]
    )


def test_hook_command_over_the_buffer_is_rejected() -> None:
    found = problems({"hooks": {"cmdCallRing": {"program": "C:\\" + "d" * 200 + ".exe", "args": ["x" * 60]}}})
    assert found == ["hooks.cmdCallRing: the command is longer than MicroSIP's 255-character buffer"]


def test_extra_settings_pass_raw_keys_but_not_managed_user_or_bogus_ones() -> None:
    assert problems({"extra_settings": {"someNewKey": "1", "otherKey": True}}) == []
    assert problems({"extra_settings": {"AUTOANSWER": "all"}}) == [
        "extra_settings.AUTOANSWER: has a typed field: use settings.autoAnswer"
    ]
    assert problems({"extra_settings": {"cmdCallRing": "x"}}) == [
        "extra_settings.cmdCallRing: is managed through hooks.cmdCallRing"
    ]
    assert problems({"extra_settings": {"accountId": "2"}}) == [
        "extra_settings.accountId: is managed through active_account"
    ]
    assert "is user state" in problems({"extra_settings": {"volumeOutput": 50}})[0]
    assert "not a MicroSIP key" in problems({"extra_settings": {"sipServer": "x"}})[0]
    assert "not a valid ini key name" in problems({"extra_settings": {"bad key=": "x"}})[0]
    assert "line break" in problems({"extra_settings": {"note": "a\nb"}})[0]


def test_updates_interval_defaults_to_never() -> None:
    assert Profile().settings.updatesInterval == "never"


BIG = "x" * 100_000


@pytest.mark.parametrize(
    "profile",
    [
        {"settings": {"autoAnswer": BIG}},
        {"settings": {"userAgent": BIG}},
        {"settings": {"sourcePort": BIG}},
        {"settings": {"callWaiting": BIG}},
        {"settings": {"audioCodecs": [BIG]}},
        {"settings": {BIG: 1}},
        {"accounts": {"main": {"server": "s", "domain": "d", "transport": BIG}}},
        {"hooks": {"cmdCallRing": {"program": "C:\\x.exe", "args": ["a b" + "x" * 250]}}},
        {"microsip_version": BIG},
        {"extra_settings": {"k": BIG}},
        {"active_account": BIG},
    ],
)
def test_a_bad_value_is_quoted_at_most_60_characters(profile: dict[str, typing.Any]) -> None:
    found = problems(profile)
    assert found
    for message in found:
        assert "x" * 61 not in message and len(message) < 400


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({"callWaiting": "maybe"}, "'maybe'"),
        ({"sourcePort": "eighty"}, "'eighty'"),
        ({"sourcePort": 70000}, "70000"),
        ({"userAgent": "a\nb"}, "'a\\nb'"),
        ({"autoAnswer": 1}, "1"),
    ],
)
def test_errors_show_the_bad_value(settings: dict[str, object], shown: str) -> None:
    (message,) = problems({"settings": settings})
    assert f"(got {shown})" in message


@pytest.mark.parametrize("password", ["hunter2", "hunter2\n", "h" * 300, 12345])
def test_a_bad_password_is_never_shown(password: object) -> None:
    found = problems({"accounts": {"main": {"server": "s", "domain": "d", "password": password}}})
    assert found and all("hunter2" not in m and "hhh" not in m and "12345" not in m for m in found)
