"""Inventory: groups, per-host and per-user layers, CSV users, selection, connection rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.project import Project, select_targets
from provision.targets import load_inventory, select_hosts

from conftest import EXAMPLE_INVENTORY, MakeProject, write

PROFILES = {
    "base": """
        settings: {enableLog: false}
        accounts:
          office: {server: pbx.example.com, domain: example.com}
    """,
    "sales": "extends: base\nsettings: {autoAnswer: button}\n",
    "site": "accounts:\n  office: {proxy: sbc-lyon:5061}\n",
}


def targets(project: Project, inventory: Path, **kw: object) -> dict[str, object]:
    return {t.id: t for t in select_targets(project, inventory, **kw)[1]}  # type: ignore[arg-type]


def test_layers_apply_defaults_groups_host_then_user(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        profiles=PROFILES,
        inventory="""
            defaults: {profiles: [base]}
            groups:
              sales: {profiles: [sales], overrides: {settings: {enableLog: true}}}
              lyon: {profiles: [site]}
            hosts:
              ws-01:
                groups: [sales, lyon]
                overrides: {settings: {sourcePort: 5070}}
                users:
                  - {name: jdoe, extension: "2101"}
                  - {name: ann, extension: "2102", overrides: {settings: {sourcePort: 5080}}}
        """,
    )
    found = targets(project, tmp_path / "inventory.yaml")
    jdoe, ann = found["ws-01/jdoe"], found["ws-01/ann"]
    assert jdoe.resolved.chain == ("base", "sales", "site")
    settings = jdoe.resolved.profile.settings
    assert (settings.autoAnswer, settings.enableLog, settings.sourcePort) == ("button", True, 5070)
    assert ann.resolved.profile.settings.sourcePort == 5080
    assert jdoe.accounts[0].values["proxy"] == ["sbc-lyon:5061"]
    assert str(jdoe.resolved.located.origin(("settings", "sourcePort"))).endswith("inventory.yaml:8")


def test_user_identity_fills_the_first_account_and_named_ones(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        profiles={
            "base": """
                accounts:
                  office: {server: s, domain: d}
                  queue: {server: s, domain: d, username: "8000", password: env:QUEUE_PW}
            """
        },
        inventory="""
            defaults: {profiles: [base]}
            hosts:
              ws-01:
                users:
                  - name: jdoe
                    extension: "2101"
                    auth_id: jdoe-auth
                    display_name: Jane Doe
                    password: env:PW_JDOE
                    accounts:
                      queue: {display_name: Support (Jane)}
        """,
    )
    (target,) = targets(project, tmp_path / "inventory.yaml").values()
    office, queue = target.accounts
    assert office.values | {} == {
        "server": "s",
        "domain": "d",
        "username": "2101",
        "authID": "jdoe-auth",
        "displayName": "Jane Doe",
    }
    assert office.password.ref == "env:PW_JDOE" and office.password.where.endswith("inventory.yaml:9")
    assert queue.values["username"] == "8000" and queue.values["displayName"] == "Support (Jane)"
    assert queue.password.ref == "env:QUEUE_PW"
    assert (office.section, queue.section) == ("Account1", "Account2")


def test_an_account_without_username_or_domain_is_refused(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        profiles={"base": "accounts:\n  office: {server: s}\n"},
        inventory="defaults: {profiles: [base]}\nhosts:\n  ws-01:\n    users:\n      - {name: jdoe}\n",
    )
    with pytest.raises(ConfigError) as info:
        select_targets(project, tmp_path / "inventory.yaml")
    text = str(info.value)
    assert "accounts.office: has no domain once all layers are applied" in text
    assert "account 'office' has no username" in text and "inventory.yaml:5" in text


def test_unknown_groups_and_profiles_are_located(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(
        profiles=PROFILES,
        inventory="hosts:\n  ws-01:\n    groups: [sales]\n  ws-02:\n    profiles: [nope]\n",
    )
    with pytest.raises(ConfigError) as info:
        select_targets(project, tmp_path / "inventory.yaml")
    text = str(info.value)
    assert "inventory.yaml:3: hosts.ws-01.groups[0]: no group 'sales' (groups: none)" in text
    assert "inventory.yaml:5: hosts.ws-02.profiles[0]: no profile 'nope'" in text


def test_basic_auth_is_refused_over_http() -> None:
    from provision.model.inventory import Connection

    with pytest.raises(ValueError, match="allowed only with scheme: https"):
        Connection(auth="basic", scheme="http")
    assert Connection(auth="basic", scheme="https").auth == "basic"


def test_inventory_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "inv.yaml",
        """
        hosts:
          ws-01:
            users:
              - {name: "bad\\\\name"}
              - {name: jdoe, password: hunter2}
          "../evil": {}
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    text = str(info.value)
    assert "inv.yaml:4: hosts.ws-01.users[0].name: is not a valid Windows user name" in text
    assert "inv.yaml:5: hosts.ws-01.users[1].password: must be a secret reference" in text
    assert "hunter2" not in text
    assert "inv.yaml:6: hosts.../evil: is not a valid host name" in text


def test_users_listed_twice_ignoring_case_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "inv.yaml", "hosts:\n  ws-01:\n    users: [{name: JDoe}, {name: jdoe}]\n")
    with pytest.raises(ConfigError, match="listed twice"):
        load_inventory(path)


def test_csv_users_join_their_hosts_and_errors_name_the_csv_line(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "host,user,extension,display_name,password\nws-01,ann,2102,Ann Lee,env:PW_ANN\n")
    path = write(tmp_path / "inv.yaml", "users_csv: [users.csv]\nhosts:\n  ws-01:\n    users: [{name: jdoe}]\n")
    inventory = load_inventory(path)
    users = inventory.model.hosts["ws-01"].users
    assert [(u.name, u.extension, u.display_name, u.password) for u in users][1] == (
        "ann",
        "2102",
        "Ann Lee",
        "env:PW_ANN",
    )
    write(tmp_path / "users.csv", "host,user,password\nws-01,bob,pw-in-clear\nws-99,carl,\nws-01,JDOE,\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    text = str(info.value)
    assert "users.csv:2: password: must be a secret reference" in text and "pw-in-clear" not in text
    assert "users.csv:3: host 'ws-99' is not in the inventory" in text
    assert "users.csv:4: name: user 'JDOE' is already listed for ws-01" in text


def test_csv_with_an_unknown_column_or_ragged_row_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "host,user,phone\nws-01,a,1\n")
    path = write(tmp_path / "inv.yaml", "users_csv: [users.csv]\nhosts:\n  ws-01: {}\n")
    with pytest.raises(ConfigError, match=r"users\.csv:1: phone: unknown column"):
        load_inventory(path)
    write(tmp_path / "users.csv", "host,user\nws-01,a,extra\n")
    with pytest.raises(ConfigError, match="has 3 cells, the header has 2"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("limit", "hosts", "expected"),
    [
        (None, (), 10),
        ("sales", (), ["ws-sales-01", "ws-sales-02", "ws-sales-03", "ws-sales-04", "ws-lyon-01", "ws-lyon-02"]),
        ("sales,!lyon", (), ["ws-sales-01", "ws-sales-02", "ws-sales-03", "ws-sales-04"]),
        ("ws-support-*", (), ["ws-support-01", "ws-support-02", "ws-support-03"]),
        ("WS-LYON-0[12]", (), ["ws-lyon-01", "ws-lyon-02"]),
        ("!support", (), 6),
        (None, ("ws-lyon-03",), ["ws-lyon-03"]),
        ("lyon", ("ws-sales-01", "ws-lyon-02"), ["ws-lyon-02"]),
    ],
)
def test_limit_patterns(limit: str | None, hosts: tuple[str, ...], expected: object) -> None:
    chosen = select_hosts(load_inventory(EXAMPLE_INVENTORY).model, limit, hosts)
    assert (len(chosen) if isinstance(expected, int) else chosen) == expected


def test_limits_that_match_nothing_are_errors_not_empty_runs() -> None:
    model = load_inventory(EXAMPLE_INVENTORY).model
    with pytest.raises(ConfigError, match="'salse' matches no host or group"):
        select_hosts(model, "salse")
    with pytest.raises(ConfigError, match="'ws-nope' is not in the inventory"):
        select_hosts(model, None, ["ws-nope"])


@pytest.mark.parametrize(
    "where", ["defaults:\n  profiles", "groups:\n  g:\n    profiles", "hosts:\n  ws-01:\n    profiles"]
)
def test_inventory_profile_lists_take_names_not_paths(make_project: MakeProject, tmp_path: Path, where: str) -> None:
    (tmp_path / "evil.yaml").write_text("settings: {enableLog: true}\n")
    make_project(profiles=PROFILES, inventory=f"{where}: [base, ../evil]\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(tmp_path / "inventory.yaml")
    (problem,) = info.value.problems
    assert problem.field.endswith("profiles[1]") and problem.line is not None
    assert "../evil" in problem.message


@pytest.mark.parametrize("name", ["ws-01\n", "sales\n"])
def test_names_with_a_trailing_line_break_are_not_names(name: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from provision.model.values import HostName, Name

    for kind in (Name, HostName):
        with pytest.raises(ValidationError):
            TypeAdapter(kind).validate_python(name)


@pytest.mark.parametrize(
    ("inventory", "auth_line", "scheme_line"),
    [
        (
            "defaults:\n  profiles: [base]\n  connection: {auth: basic}\n"
            "hosts:\n  ws-01:\n    connection: {scheme: http}\n",
            3,
            6,
        ),
        (
            "defaults:\n  profiles: [base]\n  connection:\n    scheme: http\n"
            "groups:\n  g:\n    connection:\n      auth: basic\n"
            "hosts:\n  ws-01:\n    groups: [g]\n",
            8,
            4,
        ),
    ],
)
def test_basic_auth_over_http_reached_through_layers_is_refused_before_any_host(
    make_project: MakeProject, tmp_path: Path, inventory: str, auth_line: int, scheme_line: int
) -> None:
    project = make_project(profiles=PROFILES, inventory=inventory)
    with pytest.raises(ConfigError) as info:
        select_targets(project, tmp_path / "inventory.yaml")
    (problem,) = info.value.problems
    assert problem.line == auth_line and problem.field.endswith("connection.auth")
    assert "allowed only with scheme: https" in problem.message
    assert f"inventory.yaml:{scheme_line}" in problem.message


def test_basic_auth_over_https_after_layers_is_fine(make_project: MakeProject, tmp_path: Path) -> None:
    inventory = (
        "defaults:\n  profiles: [base]\n  connection: {auth: basic, scheme: http}\n"
        "hosts:\n  ws-01:\n    connection: {scheme: https}\n"
    )
    project = make_project(profiles=PROFILES, inventory=inventory)
    with pytest.raises(ConfigError):  # the defaults on their own are refused
        select_targets(project, tmp_path / "inventory.yaml")
    inventory = (
        "defaults:\n  profiles: [base]\n  connection: {auth: basic}\nhosts:\n  ws-01:\n    connection: {port: 5986}\n"
        "    users: [{name: jdoe, extension: '2101'}]\n"
    )
    project = make_project(profiles=PROFILES, inventory=inventory)
    _, (target,) = select_targets(project, tmp_path / "inventory.yaml")
    assert (target.connection.auth, target.connection.scheme, target.connection.port) == ("basic", None, 5986)


def test_csv_values_in_errors_are_quoted_short(tmp_path: Path) -> None:
    # Found by tests/property: a host name from a CSV row was quoted whole.
    write(tmp_path / "users.csv", "host,user," + "c" * 500 + "\n" + "h" * 500 + ",a\n")
    path = write(tmp_path / "inv.yaml", "users_csv: [users.csv]\nhosts:\n  ws-01: {}\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert "c" * 61 not in str(info.value)
    write(tmp_path / "users.csv", "host,user\n" + "h" * 500 + ",a\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert "is not in the inventory" in str(info.value) and "h" * 61 not in str(info.value)


def test_a_csv_cell_larger_than_the_csv_reader_takes_is_a_located_error(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "host,user\nws-01,a\nws-01," + "b" * 200_000 + "\n")
    path = write(tmp_path / "inv.yaml", "users_csv: [users.csv]\nhosts:\n  ws-01: {}\n")
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    (problem,) = info.value.problems
    assert problem.file.endswith("users.csv") and problem.line == 3
    assert "b" * 61 not in problem.message
