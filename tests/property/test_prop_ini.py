"""The ini reader and merge: any file is merged keeping what Windows reads, or refused as an IniError.

The model of Windows is `read_ini` (tested against MicroSIP's rules in tests/unit/test_ini.py):
after a merge, every key the profile does not manage reads as before, no key appears that
was not there, and every managed key reads as desired.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision.errors import IniError, UnreadableIniError
from provision.ini import BOM, Desired, Key, decode_ini, merge_ini, read_ini
from provision.plan import TargetPlan, plan_target
from provision.project import Prepared, Project, prepare

from .propkit import LONG, loads_or_refuses

blank = st.sampled_from(["", "", "", " ", "\t"])
section_names = st.one_of(
    st.sampled_from(["Settings", "settings", " Settings ", "SETTINGS", "Account1", "account1", "Account2", "Calls"]),
    st.sampled_from(["x", "", " ", "é", "a]b", "[", "Settings]"]) | st.text(max_size=5),
)
key_names = st.one_of(
    st.sampled_from(["autoAnswer", "AutoAnswer", "enableLog", "password", "Password", "server", "label", "accountId"]),
    st.sampled_from(["mainX", "volumeRing", "x", "a b", "#k", "[k", "k]", "", " k "]) | st.text(max_size=5),
)
values = st.sampled_from(['"q"', "'", " pad ", "=", ";c", "[x]", LONG, "", "1"]) | st.text(max_size=8)
headers = st.builds(
    lambda a, n, b, c: f"{a}[{n}]{b}{c}", blank, section_names, blank, st.sampled_from(["", "", "", "x", "]", ";c"])
)
key_lines = st.builds(
    lambda a, k, sep, v: f"{a}{k}{sep}{v}", blank, key_names, st.sampled_from(["=", "=", "=", " = ", ":", ""]), values
)
other_lines = st.one_of(
    st.builds(lambda c, t: f"{c}{t}", st.sampled_from([";", "#", " ;"]), st.text(max_size=6)),
    st.text(max_size=10),
    st.just(""),
)
blocks = st.builds(
    lambda header, body: [header, *body], headers, st.lists(key_lines | key_lines | other_lines, min_size=1, max_size=6)
)
ini_texts = st.builds(
    lambda before, blocks: "\n".join([*before, *(line for block in blocks for line in block)]).replace("\r", ""),
    st.lists(key_lines | other_lines, max_size=2),
    st.lists(blocks, min_size=1, max_size=4),
)

MANAGED_KEYS = ["autoAnswer", "enableLog", "accountId", "server", "domain", "username", "password", "label"]
safe_values = st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=8).map(str.strip)
desired_sections = st.lists(
    st.tuples(
        st.sampled_from(["Settings", "Account1", "Account2"]),
        st.dictionaries(st.sampled_from(MANAGED_KEYS), safe_values, max_size=4),
    ),
    max_size=3,
    unique_by=lambda s: s[0],
).map(lambda sections: Desired(tuple((name, tuple(items.items())) for name, items in sections)))
some_keys = st.sets(
    st.tuples(st.sampled_from(["settings", "account1", "calls"]), st.sampled_from([k.lower() for k in MANAGED_KEYS])),
    max_size=4,
)


def readable(text: str) -> dict[Key, str]:
    return read_ini(text).keys()


@given(ini_texts, desired_sections, some_keys, some_keys, st.sampled_from(["", "new-pw"]))
def test_merge_keeps_every_unmanaged_key_and_sets_every_managed_one(
    existing: str, desired: Desired, remove: set[Key], keep: set[Key], password: str
) -> None:
    overrides = {(s.lower(), "password"): password for s, _ in desired.sections} if password else {}
    result = loads_or_refuses(merge_ini, existing, desired, overrides, remove=remove, keep=keep)
    if isinstance(result, IniError):
        if isinstance(result, UnreadableIniError):
            assert result.line is None or 1 <= result.line <= existing.count("\n") + 1
        return
    assert isinstance(result, str)
    doc = read_ini(result)
    assert not doc.duplicate_sections
    before, after = readable(existing), doc.keys()
    wanted = desired.keys()
    removed = remove - wanted.keys()
    for key, value in before.items():
        if key not in wanted and key not in removed:
            assert after.get(key) == value, f"unmanaged {key} changed"
    for key in after:
        assert key in wanted or key in before, f"{key} appeared from nowhere"
    for key, raw in wanted.items():
        expected = before[key] if key in keep and key in before else overrides.get(key, raw)
        assert after.get(key) == expected.strip(), f"managed {key} not as desired"
    for key in removed:
        assert key not in after
    again = merge_ini(result, desired, overrides, remove=remove, keep=keep)
    assert readable(again) == after


encodings = st.sampled_from(["utf-16-le+bom", "utf-8", "utf-8-sig", "cp1252", "utf-16-le"])


def encoded(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-le+bom":
        return BOM + text.replace("\n", "\r\n").encode("utf-16-le", errors="surrogatepass")
    return text.encode(encoding, errors="replace")


raw_files = st.one_of(
    st.binary(max_size=300),
    st.builds(encoded, ini_texts, encodings),
    st.builds(lambda text, enc, junk: encoded(text, enc) + junk, ini_texts, encodings, st.binary(max_size=5)),
)


@given(raw_files)
def test_decoding_any_bytes_gives_text_or_an_unreadable_ini(data: bytes) -> None:
    result = loads_or_refuses(decode_ini, data, strict=True)
    if isinstance(result, str):
        assert "\x00" not in result and "\r" not in result
    else:
        assert isinstance(result, UnreadableIniError) and (result.line or 1) >= 1


PROFILE = """
settings: {updatesInterval: never, autoAnswer: button}
accounts:
  office: {server: pbx.example.com, domain: example.com, transport: tls}
"""
INVENTORY = """
defaults: {profiles: [base]}
hosts:
  ws-01:
    users: [{name: jdoe, extension: "2101", password: env:PW}]
"""


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "profiles").mkdir()
        (root / "profiles" / "base.yaml").write_text(PROFILE, encoding="utf-8")
        (root / "inventory.yaml").write_text(INVENTORY, encoding="utf-8")
        project = Project(root / "profiles", None, root / "state.db", {"PW": "pw-1"}, root)
        return prepare(project, root / "inventory.yaml")


@given(current=raw_files)
def test_planning_against_any_current_file_gives_a_plan_or_an_ini_error(prepared: Prepared, current: bytes) -> None:
    (rendered,) = prepared.rendered
    result = loads_or_refuses(plan_target, rendered, prepared.secrets["ws-01/jdoe"], current, None, b"k" * 32)
    if isinstance(result, TargetPlan) and result.content is not None:
        after = read_ini(decode_ini(result.content, strict=True))
        assert after.get("settings", "autoanswer") == "button"
        assert after.get("account1", "password") == "pw-1"
        before = read_ini(decode_ini(current, strict=True)).keys() if current.strip() else {}
        wanted = rendered.desired.keys()
        for key, value in before.items():
            if key not in wanted:
                assert after.keys().get(key) == value
