"""Ansible inventories (INI and YAML) read directly: groups, precedence, variables, what is not used."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import ConfigError
from provision.project import Project, select_targets
from provision.targets import LoadedInventory, load_inventory

from conftest import MakeProject, write

PROFILES = {
    "base": "accounts:\n  office: {server: pbx.example.com, domain: example.com}\n",
    "sales": "settings: {autoAnswer: button}\n",
    "lyon": "settings: {sourcePort: 5070}\n",
}

# One inventory, written in both of Ansible's formats.
INI = """
    # the shared inventory
    ws-solo ansible_host=10.0.0.9

    [windows:children]
    sales
    lyon

    [windows:vars]
    ansible_connection=winrm
    ansible_port=5986
    provision_profiles=base

    [sales]
    ws-[01:03]
    ws-04:5990 ansible_host=10.0.0.4

    [lyon]
    ws-03
    ws-lyon-[a:b] provision_users="[{'name': 'jdoe', 'extension': '2101'}]"

    [sales:vars]
    provision_profiles=sales
    ansible_winrm_transport=kerberos

    [lyon:vars]
    provision_profiles=lyon
    ansible_winrm_transport=ntlm
    ansible_port=5987
"""
YAML = """
    all:
      hosts:
        ws-solo: {ansible_host: 10.0.0.9}
      children:
        windows:
          vars:
            ansible_connection: winrm
            ansible_port: 5986
            provision_profiles: base
          children:
            sales:
              hosts:
                ws-[01:03]:
                ws-04: {ansible_host: 10.0.0.4, ansible_port: 5990}
              vars:
                provision_profiles: [sales]
                ansible_winrm_transport: kerberos
            lyon:
              hosts:
                ws-03:
                ws-lyon-[a:b]:
                  provision_users: [{name: jdoe, extension: "2101"}]
              vars:
                provision_profiles: [lyon]
                ansible_winrm_transport: ntlm
                ansible_port: 5987
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages name files relative to the working directory


def load(tmp_path: Path, text: str, name: str = "hosts") -> LoadedInventory:
    return load_inventory(write(tmp_path / name, text))


def problems(tmp_path: Path, text: str, name: str = "hosts") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, name)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("text", "name", "kind"), [(INI, "hosts", "ansible-ini"), (YAML, "hosts.yml", "ansible-yaml")])
def test_groups_children_ranges_and_precedence(tmp_path: Path, text: str, name: str, kind: str) -> None:
    inventory = load(tmp_path, text, name)
    assert inventory.kind == kind
    hosts = inventory.model.hosts
    # ws-solo has no ansible_connection while others say winrm: it is not provision's.
    assert list(hosts) == ["ws-01", "ws-02", "ws-03", "ws-04", "ws-lyon-a", "ws-lyon-b"]
    # Groups in Ansible's order: shallow to deep, then by name; parents included.
    assert hosts["ws-03"].groups == ["windows", "lyon", "sales"]
    assert hosts["ws-01"].groups == ["windows", "sales"]
    # all < parent < child < host; two groups at one depth: the later name wins (sales over lyon).
    connection = {n: (h.connection.port, h.connection.auth, h.connection.address) for n, h in hosts.items()}
    assert connection == {
        "ws-01": (5986, "kerberos", None),
        "ws-02": (5986, "kerberos", None),
        "ws-03": (5987, "kerberos", None),
        "ws-04": (5990, "kerberos", "10.0.0.4"),
        "ws-lyon-a": (5987, "ntlm", None),
        "ws-lyon-b": (5987, "ntlm", None),
    }
    groups = inventory.model.groups
    assert (groups["windows"].profiles, groups["sales"].profiles, groups["lyon"].profiles) == (
        ["base"],
        ["sales"],
        ["lyon"],
    )
    assert [u.name for u in hosts["ws-lyon-b"].users] == ["jdoe"]
    assert "1 host(s) left out" in str(inventory.warnings) and "ws-solo (Ansible's default, ssh)" in str(
        inventory.warnings
    )


def test_both_formats_read_the_same(tmp_path: Path) -> None:
    ini = load(tmp_path, INI, "hosts").model
    yml = load(tmp_path, YAML, "hosts.yml").model
    assert ini.model_dump() == yml.model_dump()


def test_group_priority_breaks_ties_before_names(tmp_path: Path) -> None:
    text = INI.replace("[lyon:vars]\n", "[lyon:vars]\nansible_group_priority=5\n")
    hosts = load(tmp_path, text).model.hosts
    assert hosts["ws-03"].groups == ["windows", "sales", "lyon"]
    assert (hosts["ws-03"].connection.port, hosts["ws-03"].connection.auth) == (5987, "ntlm")


def test_profiles_layer_as_in_provision_and_targets_resolve(make_project: MakeProject, tmp_path: Path) -> None:
    project: Project = make_project(profiles=PROFILES, inventory=None)
    write(tmp_path / "hosts", INI)
    (target,) = select_targets(project, tmp_path / "hosts", hosts=["ws-lyon-a"])[1]
    assert target.resolved.chain == ("base", "lyon")
    assert target.connection.auth == "ntlm" and target.resolved.profile.settings.sourcePort == 5070
    origin = target.resolved.located.origin(("settings", "sourcePort"))
    assert str(origin).endswith("profiles/lyon.yaml:1")


def test_group_vars_and_host_vars_files_beat_the_inventory_file(tmp_path: Path) -> None:
    write(tmp_path / "group_vars" / "windows.yml", "ansible_port: 6000\n")
    write(tmp_path / "group_vars" / "sales" / "10-conn.yaml", "ansible_winrm_transport: basic\n")
    write(tmp_path / "group_vars" / "sales" / "20-more.yaml", "ansible_winrm_transport: ntlm\nprovision_canary: true\n")
    write(tmp_path / "host_vars" / "ws-01", "ansible_host: 10.1.1.1\nprovision_users: [{name: ann}]\n")
    write(tmp_path / "host_vars" / "not-in-inventory.yml", "ansible_host: 1.2.3.4\n")
    inventory = load(tmp_path, INI)
    hosts = inventory.model.hosts
    # A parent's group_vars file beats a child's inventory vars (Ansible: files over the inventory).
    assert hosts["ws-03"].connection.port == 6000
    assert hosts["ws-01"].connection.auth == "ntlm" and hosts["ws-01"].connection.address == "10.1.1.1"
    assert inventory.model.groups["sales"].canary is True
    assert [u.name for u in hosts["ws-01"].users] == ["ann"]
    assert inventory.located.origin(("hosts", "ws-01", "users", 0)).line == 2
    assert inventory.located.origin(("hosts", "ws-01", "users", 0)).file.endswith("host_vars/ws-01")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ("ansible_winrm_scheme=http ansible_port=5985", {"scheme": "http", "port": 5985}),
        ("ansible_port=5985", {"scheme": "http", "port": 5985}),  # Ansible: 5985 without a scheme is http
        ("ansible_winrm_transport=basic ansible_winrm_scheme=https", {"auth": "basic", "scheme": "https"}),
        ("ansible_winrm_transport=plaintext", {"auth": "basic"}),
        ("ansible_winrm_transport=kerberos,ntlm", {"auth": "kerberos"}),
        ("ansible_winrm_ca_trust_path=ca.pem", {"ca_bundle": "ca.pem"}),
        ("provision_ca_bundle=ours.pem ansible_winrm_ca_trust_path=ca.pem", {"ca_bundle": "ours.pem"}),
        (
            "ansible_connection=psrp ansible_psrp_protocol=http ansible_psrp_auth=ntlm ansible_port=5985",
            {"scheme": "http", "auth": "ntlm", "port": 5985},
        ),
        ("ansible_winrm_server_cert_validation=validate", {}),
    ],
)
def test_connection_variables_map_to_the_connection(
    tmp_path: Path, variables: str, expected: dict[str, object]
) -> None:
    inventory = load(tmp_path, f"ws-01 {variables}\n")
    assert inventory.model.hosts["ws-01"].connection.model_dump(exclude_none=True) == expected
    assert inventory.warnings == []


def test_what_provision_does_not_use_is_reported_with_file_and_line(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """
        [win]
        ws-01 ansible_user=admin ansible_password=hunter2 ansible_become=true
        ws-02 ansible_user=admin ansible_winrm_server_cert_validation=ignore ansible_winrm_transport=credssp
        [win:vars]
        ntp_server=pool.ntp.org
        crm=https://crm
        """,
    )
    assert [str(w) for w in inventory.warnings] == [
        "hosts:3: ansible_winrm_transport: 'credssp': provision authenticates with ntlm, kerberos or basic; "
        "it uses ntlm, its default, for these hosts",
        "hosts:3: ansible_winrm_server_cert_validation: 'ignore' is not followed: provision always checks the "
        "certificates (trust your CA with ansible_winrm_ca_trust_path or provision_ca_bundle; only push "
        "--no-verify-tls turns checking off, for one run)",
        "hosts:2: ansible_become: not used by provision",
        "hosts:2: ansible_password: the WinRM password comes from --password-ref (an env:, file: or keyring: "
        "reference)",
        "hosts:2: ansible_user: the WinRM account is one per run: --user or PROVISION_WINRM_USER (also set in 1 "
        "other place(s))",
        "hosts: 2 variable(s) for playbooks, not used by provision: ntp_server (hosts:5), crm (hosts:6)",
    ]
    assert inventory.model.hosts["ws-02"].connection.auth is None  # provision's default, ntlm


def test_vault_values_are_fine_where_unused_and_an_error_where_needed(tmp_path: Path) -> None:
    vaulted = "!vault |\n          $ANSIBLE_VAULT;1.1;AES256\n          3133\n"
    inventory = load(tmp_path, f"all:\n  vars:\n    ansible_password: {vaulted}  hosts:\n    ws-01:\n", "inv.yml")
    assert list(inventory.model.hosts) == ["ws-01"]
    text = f"all:\n  hosts:\n    ws-01:\n      ansible_host: {vaulted}"
    assert problems(tmp_path, text, "inv.yml") == [
        "inv.yml:4: ansible_host: is encrypted with Ansible Vault; provision cannot read it"
    ]
    write(tmp_path / "group_vars" / "all.yml", "$ANSIBLE_VAULT;1.1;AES256\n3133\n")
    inventory = load(tmp_path, "ws-01\n")
    assert [str(w) for w in inventory.warnings] == [
        "group_vars/all.yml:1: encrypted with Ansible Vault: not read by provision"
    ]


def test_ansible_tags_are_refused_in_provision_inventories(tmp_path: Path) -> None:
    text = "hosts:\n  ws-01:\n    connection: {address: !unsafe x}\n"
    assert any("YAML tag '!unsafe' is not allowed here" in p for p in problems(tmp_path, text, "inv.yaml"))


def test_errors_name_file_line_and_variable(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [sales]
        ws-01 ansible_port=abc provision_profile=sales
        ws-02 provision_users="[{'name': 'a/b'}]"
        ws-03 ansible_host="{{ inventory_hostname }}.corp" bad
        ws-04 note="unclosed
        [sales:vars]
        provision_users=[]
        ansible_winrm_scheme=http
        ansible_winrm_transport=basic
        [nope:vars]
        x=1
        [web:children]
        missing
        [bad section]
        [weird:type]
        [web.servers]
        ws-09
        """,
    )
    text = "\n".join(found)
    assert "hosts:2: ansible_port: must be a valid integer" in text
    assert (
        "hosts:2: provision_profile: not a provision variable" in text and "did you mean 'provision_profiles'" in text
    )
    assert "hosts:3: provision_users[0].name: is not a valid Windows user name" in text
    assert "hosts:4: expected name=value after the host, got 'bad'" in text
    assert "hosts:5: cannot read the host line: No closing quotation" in text
    assert "hosts:7: provision_users: is set on a group; it belongs to a host" in text
    assert "hosts:9: ansible_winrm_transport: basic auth sends the password in clear text" in text
    assert "(http is set at hosts:8)" in text
    assert "hosts:10: [nope:vars] for a group declared nowhere" in text
    assert "hosts:13: [web:children] names group 'missing', which is declared nowhere" in text
    assert "hosts:14: not a section header" in text
    assert "hosts:15: section ['weird':'type']: the type must be hosts, children or vars" in text
    assert "hosts:16: group name 'web.servers': provision's group names are letters" in text


def test_templated_values_are_refused_where_used(tmp_path: Path) -> None:
    found = problems(tmp_path, 'ws-01 ansible_host="{{ inventory_hostname }}.corp"\n')
    assert found == [
        "hosts:1: ansible_host: is a Jinja2 template; provision does not evaluate templates: write the value"
    ]


def test_yaml_inventory_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        all:
          children:
            sales:
              host:
                ws-01:
              hosts:
                ws-02: 10.0.0.2
                ws-[05:1]:
            support: [ws-03]
        """,
        "inv.yaml",
    )
    assert found == [
        "inv.yaml:4: all.children.sales.host: unknown key in group 'sales': a group has hosts, children and vars; "
        "did you mean 'hosts'?",
        "inv.yaml:7: all.children.sales.hosts.ws-02: host variables must be a mapping",
        "inv.yaml:8: host 'ws-[05:1]': [05:1]: with a leading zero, begin and end must have the same number of digits",
        "inv.yaml:9: all.children.support: a group must be a mapping of hosts, children and vars",
    ]
    assert problems(tmp_path, "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "aws_ec2.yml") == [
        "aws_ec2.yml:1: plugin: an inventory plugin's configuration: provision reads static inventories"
    ]


def test_a_group_that_contains_itself_is_an_error(tmp_path: Path) -> None:
    found = problems(tmp_path, "[a:children]\nb\n[b:children]\na\n[a]\nws-01\n")
    assert any("is its own ancestor" in p for p in found)


def test_hosts_of_other_connections_are_left_out_only_when_some_are_winrm(tmp_path: Path) -> None:
    inventory = load(tmp_path, "ws-01\nws-02 ansible_connection=psrp\ndb-01 ansible_connection=ssh\n")
    assert list(inventory.model.hosts) == ["ws-02"]
    inventory = load(tmp_path, "ws-01\nws-02\n[linux]\ndb-01\n[linux:vars]\nansible_connection=ssh\nntp=x\n")
    assert list(inventory.model.hosts) == ["ws-01", "ws-02"]
    assert "linux" not in inventory.model.groups  # not provision's business
    assert "ntp" not in str(inventory.warnings)  # nor are the variables of hosts left out
    assert "db-01 (ssh, hosts:6)" in str(inventory.warnings)


def test_provision_variables_in_the_all_group(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "host,user,extension\nws-01,ann,2101\n")
    inventory = load(
        tmp_path,
        """
        ws-01
        [all:vars]
        provision_profiles=base,site
        provision_users_csv=users.csv
        provision_overrides={'settings': {'sourcePort': 5070}}
        provision_microsip={'mode': 'portable', 'exe': 'C:\\\\MicroSIP\\\\microsip.exe'}
        """,
    )
    defaults = inventory.model.defaults
    assert defaults.profiles == ["base", "site"]
    assert defaults.overrides == {"settings": {"sourcePort": 5070}}
    assert (defaults.microsip.mode, defaults.microsip.exe) == ("portable", "C:\\MicroSIP\\microsip.exe")
    assert [u.name for u in inventory.model.hosts["ws-01"].users] == ["ann"]
    assert inventory.model.groups["ungrouped"] is not None


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("hosts", "ws-01\n", "ansible-ini"),
        ("inventory", "# comment\n[sales]\nws-01\n", "ansible-ini"),
        ("inv.ini", "ws-01:5986\n", "ansible-ini"),
        ("inv.yaml", "all:\n  hosts:\n    ws-01:\n", "ansible-yaml"),
        ("inv.json", '{"sales": {"hosts": {"ws-01": null}}}', "ansible-yaml"),
        ("inventory", "hosts:\n  ws-01: {}\n", "provision"),
        ("inv.yaml", "---\ngroups: {}\nhosts: {ws-01: {}}\n", "provision"),
    ],
)
def test_the_format_is_told_by_the_file(tmp_path: Path, name: str, text: str, kind: str) -> None:
    inventory = load(tmp_path, text, name)
    assert inventory.kind == kind and list(inventory.model.hosts) == ["ws-01"]


def test_errors_never_quote_a_password_written_where_a_host_or_a_list_belongs(tmp_path: Path) -> None:
    # Found by tests/property: the text was quoted whole.
    found = problems(tmp_path, "ansible_password=hunter2 ws-01\nws-02 provision_users=\"[{'password': 'hunter2'}]x\"\n")
    assert found == [
        "hosts:1: a host line starts with the host's name, not a variable ('ansible_password'=...): variables go "
        "after it or in [group:vars]",
        "hosts:2: provision_users: must be a valid list",
    ]


def test_null_is_not_set_as_in_ansible(tmp_path: Path) -> None:
    # Found by tests/property: a null scheme crashed the reader.
    text = "all:\n  vars: {ansible_winrm_scheme: null, ansible_port: null, ansible_connection: null}\n"
    text += "  hosts:\n    ws-01:\n"
    inventory = load(tmp_path, text, "inv.yml")
    assert inventory.model.hosts["ws-01"].connection.model_dump(exclude_none=True) == {}
