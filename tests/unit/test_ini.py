"""microsip.ini I/O and merging, on files shaped like the ones MicroSIP writes."""

from __future__ import annotations

import pytest

from provision.errors import IniError
from provision.ini import BOM, Desired, decode_ini, encode_ini, merge_ini, read_ini, win32_value

from conftest import FIXTURES

AFTER_RUN = (FIXTURES / "microsip-after-run.ini").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["Zoë Müller", "Дмитрий Иванов", "王芳", "Linh Nguyễn", "emoji 📞 ok"])
def test_utf16_round_trip_keeps_every_name(name: str) -> None:
    data = encode_ini(f"[Account1]\ndisplayName={name}\n")
    assert data.startswith(BOM)
    assert b"\r\x00\n\x00" in data and b"\n\x00" not in data.replace(b"\r\x00\n\x00", b"")
    assert decode_ini(data) == f"[Account1]\ndisplayName={name}\n"
    assert read_ini(decode_ini(data)).get("account1", "displayname") == name


def test_inputs_in_ansi_utf8_and_utf8_bom_are_read() -> None:
    assert decode_ini("[S]\nname=Zoë\r\n".encode("cp1252")) == "[S]\nname=Zoë\n"
    assert decode_ini("[S]\nname=Zoë\n".encode()) == "[S]\nname=Zoë\n"
    assert decode_ini(b"\xef\xbb\xbf[S]\nname=Zo\xc3\xab\n") == "[S]\nname=Zoë\n"


def test_win32_reading_rules() -> None:
    doc = read_ini(
        "junk before\n[Settings]\nAutoAnswer = button\nautoanswer=all\n  indented=1\nnot a key\n[settings]\nlate=1\n"
    )
    assert doc.get("SETTINGS", "autoAnswer") == "button"  # first wins, case ignored
    assert doc.get("settings", "indented") == "1"
    assert doc.get("settings", "late") is None  # Win32 reads only the first section of that name
    assert [k for _, k, _ in doc.duplicate_keys] == ["autoanswer", "late"]
    assert doc.ignored_lines == [1, 6]
    assert [w for w in map(win32_value, ['"x y"', "'q'", ' "" ', '"half'])] == ["x y", "q", "", '"half']


def test_the_after_run_fixture_is_what_microsip_writes() -> None:
    doc = read_ini(AFTER_RUN)
    assert len(doc.sections["settings"].values) >= 100
    assert doc.get("account1", "password") == "8f3a9c21d04e7b6a5c3e2f1d0a9b8c7d"
    assert not doc.duplicate_keys and not doc.ignored_lines


DESIRED = Desired(
    (
        ("Settings", (("accountId", "1"), ("autoAnswer", ""), ("updatesInterval", "never"), ("enableLog", "1"))),
        ("Account1", (("label", "Sales"), ("domain", "pbx.example.com"), ("password", "TOKEN"))),
        ("Account2", (("label", "Queue"), ("domain", "pbx.example.com"), ("username", "8000"))),
    )
)


def merged_doc(existing: str, **kw: object) -> tuple[str, object]:
    text = merge_ini(existing, DESIRED, {("account1", "password"): "new-plain"}, **kw)  # type: ignore[arg-type]
    return text, read_ini(text)


def test_merge_sets_managed_keys_and_keeps_everything_else() -> None:
    text, doc = merged_doc(AFTER_RUN)
    before = read_ini(AFTER_RUN)
    assert doc.get("settings", "autoanswer") == "" and doc.get("settings", "updatesinterval") == "never"
    assert doc.get("settings", "enablelog") == "1"
    for user_key in ("mainx", "mainh", "volumeoutput", "lastcallnumber", "callslastkey", "audiooutputdevice"):
        assert doc.get("settings", user_key) == before.get("settings", user_key), user_key
    for owned in ("account0", "calls", "dialed", "shortcuts"):
        assert doc.sections[owned].values == before.sections[owned].values, owned
    assert doc.get("account1", "password") == "new-plain"
    assert doc.get("account1", "srtp") == "mandatory"  # an unmanaged account key stays
    assert doc.get("account2", "username") == "8000"
    order = [s.name for s in doc.sections.values()]
    assert order == ["Settings", "Account0", "Account1", "Account2", "Calls", "Dialed", "Shortcuts"]
    assert "\n\n[Account2]\n" in text and "\n\n[Calls]\n" in text


def test_merge_keeps_comments_spelling_and_position() -> None:
    existing = "; set up by the helpdesk\n[Settings]\nAutoAnswer=button\n; keep me\nmainX=10\n"
    text, _ = merged_doc(existing)
    lines = text.split("\n")
    assert lines[:5] == ["; set up by the helpdesk", "[Settings]", "AutoAnswer=", "; keep me", "mainX=10"]


def test_merge_keeps_an_encrypted_password_it_is_told_to_keep() -> None:
    _, doc = merged_doc(AFTER_RUN, keep={("account1", "password")})
    assert doc.get("account1", "password") == "8f3a9c21d04e7b6a5c3e2f1d0a9b8c7d"


def test_merge_removes_keys_a_previous_push_managed_and_empty_sections() -> None:
    existing = AFTER_RUN + "\n[Account3]\nlabel=Old queue\ndomain=old\n"
    _, doc = merged_doc(
        existing,
        remove={
            ("settings", "ringingsound"),
            ("account3", "label"),
            ("account3", "domain"),
            ("settings", "autoanswer"),
        },
    )
    assert doc.get("settings", "ringingsound") is None
    assert "account3" not in doc.sections
    assert doc.get("settings", "autoanswer") == ""  # still managed: not removed


def test_merge_into_a_file_with_junk_and_duplicate_keys_keeps_win32_meaning() -> None:
    existing = "[Settings]\nautoAnswer=all\nautoAnswer=button\n   mainX=5\nthis is junk\n"
    text, doc = merged_doc(existing)
    assert doc.get("settings", "mainx") == "5" and ";this is junk" in text
    assert text.count("autoAnswer") == 1


def test_a_duplicated_section_is_refused_rather_than_guessed() -> None:
    with pytest.raises(IniError, match=r"section \[settings\] twice \(line 3\)"):
        merged_doc("[Settings]\na=1\n[settings]\nb=2\n")


def test_merge_into_an_empty_file_writes_the_managed_keys() -> None:
    text, doc = merged_doc("")
    assert doc.get("account1", "password") == "new-plain" and text.startswith("[Settings]\naccountId=1\n")


SETTINGS = Desired((("Settings", (("autoAnswer", "button"),)),))


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("[]\nx=1\n", 1, "empty section name"),
        ("[Settings]\na=1\n[]\nb=2\n", 3, "empty section name"),
        ("[Settings]\na=1\n[  ]\n", 3, "empty section name"),
        ("[Settings]\nname=Zo\x00\x00\n", 2, "NUL"),
    ],
)
def test_an_ini_that_cannot_be_merged_safely_is_unreadable_with_its_line(text: str, line: int, what: str) -> None:
    from provision.errors import UnreadableIniError

    with pytest.raises(UnreadableIniError) as info:
        merge_ini(text, SETTINGS, {})
    assert info.value.line == line
    assert info.value.message.startswith(f"unreadable ini: line {line}: ") and what in info.value.message


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (BOM + "[Settings]\r\na=1\r\n".encode("utf-16-le") + b"\x00\xd8", 3),  # a lone surrogate
        (BOM + "[Settings]\r\na=1\r\n".encode("utf-16-le") + b"x", 3),  # an odd byte
        (b"\xef\xbb\xbf[Settings]\na=\xff\xfe\n", 2),  # UTF-8 BOM, then not UTF-8
        ("[Settings]\r\nname=Zoë\r\n".encode("utf-16-le"), 1),  # UTF-16 without its BOM
    ],
)
def test_an_ini_in_a_wrong_encoding_is_unreadable_not_garbled(data: bytes, line: int) -> None:
    from provision.errors import UnreadableIniError

    with pytest.raises(UnreadableIniError) as info:
        decode_ini(data, strict=True)
    assert info.value.line == line and "unreadable ini" in info.value.message


def test_an_ini_over_the_size_cap_is_refused_before_it_is_decoded() -> None:
    from provision.ini import MAX_INI_BYTES

    with pytest.raises(IniError, match=r"is 8,388,609 bytes; an ini over 8,388,608 bytes is refused"):
        decode_ini(b"x" * (MAX_INI_BYTES + 1))


def test_section_names_with_blanks_are_the_section_windows_reads() -> None:
    merged = merge_ini("[ Settings ]\nkeep=1\n", SETTINGS, {})
    doc = read_ini(merged)
    assert not doc.duplicate_sections
    assert doc.get("settings", "autoanswer") == "button" and doc.get("settings", "keep") == "1"


def test_removing_the_last_two_keys_of_a_section_drops_it_once() -> None:
    # Found by tests/property: the second removal looked up the section already dropped.
    merged = merge_ini("[Settings]\na=1\n", Desired(()), {}, remove=[("settings", "a"), ("settings", "b")])
    assert read_ini(merged).sections == {}
