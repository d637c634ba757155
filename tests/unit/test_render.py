"""Rendering: goldens of the shipped examples, template errors, the sandbox, the read-back checks.

Goldens live in tests/golden/render/<host>/<user>.ini as UTF-8 text (readable in review);
refresh them after an intended change with:  PROVISION_REFRESH_GOLDEN=1 pytest tests/unit/test_render.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.ini import decode_ini, read_ini
from provision.output import render_file
from provision.project import Project, prepare

from conftest import EXAMPLE_INVENTORY, MakeProject

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "render"
REFRESH = os.environ.get("PROVISION_REFRESH_GOLDEN") == "1"


def rendered_examples(examples: Project) -> dict[str, str]:
    prepared = prepare(examples, EXAMPLE_INVENTORY)
    out = {}
    for rendered in prepared.rendered:
        content = render_file(rendered, prepared.secrets[rendered.target.id]).content
        out[rendered.target.id] = decode_ini(content)
    return out


def test_examples_match_the_goldens(examples: Project) -> None:
    texts = rendered_examples(examples)
    assert len(texts) == 14
    if REFRESH:
        for target_id, text in texts.items():
            path = GOLDEN / f"{target_id}.ini"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    stored = {str(p.relative_to(GOLDEN).with_suffix("")): p.read_text(encoding="utf-8") for p in GOLDEN.rglob("*.ini")}
    assert stored.keys() == texts.keys()
    for target_id, text in texts.items():
        assert text == stored[target_id], f"{target_id} differs from its golden file"


def test_rendered_examples_are_what_microsip_needs(examples: Project) -> None:
    for target_id, text in rendered_examples(examples).items():
        doc = read_ini(text)
        accounts = [s for s in doc.sections if s.startswith("account")]
        assert doc.get("settings", "accountid") == "1", target_id
        assert doc.get("settings", "updatesinterval") == "never"
        for section in accounts:
            assert doc.get(section, "domain") and doc.get(section, "server") and doc.get(section, "username")
            assert doc.get(
                section,
                "password",
            ).startswith("demo-")
    sales = read_ini(rendered_examples(examples)["ws-sales-01/jdoe"])
    # cmd* values are wrapped in one extra pair of quotes, as MicroSIP writes them.
    assert sales.get("settings", "cmdcallring") == (
        '""C:\\Program Files\\Contoso CRM\\crm-popup.exe" --source microsip --event ring"'
    )


def test_the_real_file_is_utf16le_with_bom_and_crlf(examples: Project) -> None:
    prepared = prepare(examples, EXAMPLE_INVENTORY, hosts=["ws-sales-02"])
    (rendered,) = prepared.rendered
    content = render_file(rendered, prepared.secrets[rendered.target.id]).content
    assert content[:2] == b"\xff\xfe"
    text = content[2:].decode("utf-16-le")
    assert "displayName=Zoë Müller\r\n" in text and "\n" not in text.replace("\r\n", "")


def test_passwords_never_enter_the_template(make_project: MakeProject, tmp_path: Path) -> None:
    leak = (
        "[Settings]\naccountId=1\nupdatesInterval=never\n{% for a in accounts %}[{{ a.section }}]\n"
        "{% for k, v in a.fields.items() %}{{ k }}={{ v }}\n{% endfor %}note={{ a.fields.password }}\n{% endfor %}"
    )
    project = make_project(templates={"microsip.ini.j2": leak})
    with pytest.raises(ConfigError) as info:
        prepare(project, tmp_path / "inventory.yaml")
    assert "a secret may only be the value of an account's password" in str(info.value)
    assert "s3cret-jdoe!" not in str(info.value)


def test_masked_output_when_secrets_are_not_asked_for(make_project: MakeProject, tmp_path: Path) -> None:
    prepared = prepare(make_project(), tmp_path / "inventory.yaml")
    text = decode_ini(render_file(prepared.rendered[0], None).content)
    assert "password=********" in text and "s3cret" not in text


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("[Settings]\n{{ nope }}\n", "microsip.ini.j2:2: undefined value: 'nope' is undefined"),
        ("[Settings]\n{% for x in %}\n", "microsip.ini.j2:2: template syntax error"),
        ("{{ ''.__class__.__mro__ }}", "not allowed in the sandbox"),
        ("{{ settings.clear() }}", "not allowed in the sandbox"),
        ("[Settings]\naccountId=1\n", "updatesInterval must be 'never'"),
        ("[Settings]\nupdatesInterval=never\n[Account1]\ndomain=d\n", "[Settings] has no accountId"),
        (
            "[Settings]\naccountId=2\nupdatesInterval=never\n[Account1]\ndomain=d\nserver=s\nusername=u\n",
            "accountId=2 points at no account",
        ),
        (
            "[Settings]\naccountId=1\nupdatesInterval=never\n[Account2]\ndomain=d\nserver=s\nusername=u\n",
            "numbered 1..N without gaps",
        ),
        ("[Settings]\naccountId=1\naccountId=1\n", "accountId appears twice"),
        ("[Settings]\nupdatesInterval=never\n[Calls]\n0=x\n", "[Calls] belongs to MicroSIP"),
        ("[Settings]\nmainX=1\n", "mainX is user state"),
        ("[Settings]\nnot a line\n", "neither a section"),
    ],
)
def test_bad_templates_are_reported_with_file_and_line(
    make_project: MakeProject, tmp_path: Path, template: str, message: str
) -> None:
    project = make_project(templates={"microsip.ini.j2": template})
    with pytest.raises(ConfigError) as info:
        prepare(project, tmp_path / "inventory.yaml")
    assert message in str(info.value)


def test_user_templates_fall_back_to_the_built_in_ones(make_project: MakeProject, tmp_path: Path) -> None:
    own = (
        "; our header\n[Settings]\n{% for k, v in settings.items() %}{{ k }}={{ v }}\n{% endfor %}"
        "{% for account in accounts %}\n[{{ account.section }}]\n{% include 'account.ini.j2' %}{% endfor %}"
    )
    prepared = prepare(make_project(templates={"microsip.ini.j2": own}), tmp_path / "inventory.yaml")
    text = prepared.rendered[0].display_text()
    assert text.startswith("; our header\n[Settings]\naccountId=1\n") and "username=2101" in text


def test_missing_secrets_fail_the_whole_run_with_every_location(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(environ={})
    with pytest.raises(ConfigError) as info:
        prepare(project, tmp_path / "inventory.yaml")
    assert "ws-01/jdoe: secret env:PW_JDOE (used at" in str(info.value)
    assert "environment variable PW_JDOE is not set" in str(info.value)


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("[Settings]\n{{ 1/0 }}\n", 2, "division by zero"),
        ("[Settings]\n\n{{ 9**999999999 }}\n", 3, "limit"),
        ("[Settings]\n{{ 2**100000 }}\n", 2, "limit"),
        ("[Settings]\n{{ 'x' * 1000000000 }}\n", 2, "limit"),
        ("[Settings]\n{{ [1] * 1000000000 }}\n", 2, "limit"),
        ("[Settings]\n{{ 10**2000 * 10**2000 }}\n", 2, "limit"),
        ("[Settings]\n{{ '%999999999d' % 1 }}\n", 2, "limit"),
        ("[Settings]\n{{ '%*d' % (999999999, 1) }}\n", 2, "limit"),
        ("[Settings]\n{{ '{:>999999999}'.format(1) }}\n", 2, "limit"),
        ("[Settings]\n{{ 'x'|center(999999999) }}\n", 2, "limit"),
        ("[Settings]\n{{ 'x'.ljust(999999999) }}\n", 2, "limit"),
        ("[Settings]\n{{ '%999999999s'|format(1) }}\n", 2, "limit"),
        ("[Settings]\n{{ ('x' * 100000)|replace('x', 'x' * 100000) }}\n", 2, "limit"),
        ("[Settings]\n{{ ('\\n' * 100000)|indent(100000) }}\n", 2, "limit"),
        ("[Settings]\n{{ [1]|batch(999999999, 'x')|list }}\n", 2, "limit"),
        ("[Settings]\n{{ lipsum(999999999) }}\n", 2, "lipsum"),
        (
            "[Settings]\n{% set ns = namespace(s='x') %}{% for i in range(64) %}\n{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}\n",
            3,
            "limit",
        ),
        (
            "[Settings]\n{% for a in range(100000) %}{% for b in range(100000) %}\n{% endfor %}{% endfor %}\n",
            2,
            "limit",
        ),
        (
            "[Settings]\n{% for a in range(100) %}{% for b in [1] * 100 %}{% for c in 'x' * 100 %}"
            "\n{% endfor %}{% endfor %}{% endfor %}\n",
            2,
            "limit",
        ),
        (
            "[Settings]\n{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}\n"
            "{{ f(60) }}\n",
            2,
            "limit",
        ),
        ("[Settings]\n{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}\n", 2, "recursion"),
        ("[Settings]\n{% include 'microsip.ini.j2' %}\n", 2, "recursion"),
        ("[Settings]\n{{ ([[1]] * 100000)|sum(start=[]) }}\n", 2, "limit"),
        ("[Settings]\n{{ (['x' * 100000] * 100000)|join }}\n", 2, "limit"),
        ("[Settings]\n{{ (['x' * 100000] * 100000)|string }}\n", 2, "limit"),
        ("[Settings]\n{{ ['x' * 100000] * 100000 }}\n", 2, "limit"),
        ("[Settings]\n{{ ('x' * 100000).translate({120: 'y' * 100000}) }}\n", 2, "sandbox"),
    ],
)
def test_templates_that_would_hang_or_eat_memory_are_template_errors_with_file_and_line(
    make_project: MakeProject, tmp_path: Path, template: str, line: int, message: str
) -> None:
    project = make_project(templates={"microsip.ini.j2": template})
    with pytest.raises(ConfigError) as info:
        prepare(project, tmp_path / "inventory.yaml")
    (problem,) = info.value.problems
    assert f"microsip.ini.j2:{line}: " in problem.message, problem.message
    assert message in problem.message
    assert len(problem.message) < 500


def test_a_number_too_big_for_python_to_print_in_a_template_is_a_template_error(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(templates={"microsip.ini.j2": "[Settings]\n{{ " + "9" * 5000 + " }}\n"})
    with pytest.raises(ConfigError, match=r"microsip\.ini\.j2"):
        prepare(project, tmp_path / "inventory.yaml")


@pytest.mark.parametrize("account_id", ["²", "1" * 5000, "١"])
def test_an_account_id_that_is_no_plain_number_is_a_template_error(
    make_project: MakeProject, tmp_path: Path, account_id: str
) -> None:
    template = (
        f"[Settings]\naccountId={account_id}\nupdatesInterval=never\n{{% for a in accounts %}}[{{{{ a.section }}}}]\n"
        "{% for k, v in a.fields.items() %}{{ k }}={{ v }}\n{% endfor %}{% endfor %}"
    )
    with pytest.raises(ConfigError) as info:
        prepare(make_project(templates={"microsip.ini.j2": template}), tmp_path / "inventory.yaml")
    assert "points at no account" in str(info.value) and "1" * 61 not in str(info.value)


def test_a_template_gone_wrong_lists_its_first_problems_short(make_project: MakeProject, tmp_path: Path) -> None:
    template = "[Settings]\n" + "".join(f"[{'S' * 200}{i}]\n" for i in range(100))
    with pytest.raises(ConfigError) as info:
        prepare(make_project(templates={"microsip.ini.j2": template}), tmp_path / "inventory.yaml")
    text = str(info.value)
    assert "S" * 61 not in text and "... and" in text and len(text) < 5000


def test_an_account_section_with_a_huge_number_is_a_template_error(make_project: MakeProject, tmp_path: Path) -> None:
    template = "[Settings]\naccountId=1\nupdatesInterval=never\n[Account" + "1" * 5000 + "]\ndomain=d\n"
    with pytest.raises(ConfigError, match="is not a section MicroSIP reads"):
        prepare(make_project(templates={"microsip.ini.j2": template}), tmp_path / "inventory.yaml")
