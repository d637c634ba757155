"""The WinRM transports against the lab: which one runs, what each costs, and how they fail.

The push goes through provision.rollout with the transport chosen explicitly, so the lean
transport (the default where it applies) and stock pywinrm are held to the same behaviour.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.lab.certs import make_certificates
from provision.project import Project
from provision.push import PushOptions
from provision.rollout import Credentials, RunResult, RunSettings, push, winrm_connect
from provision.secrets import Secret, read_env_file
from provision.transport import tls

from labkit import Lab


def push_with(
    lab: Lab,
    transport: str = "auto",
    *,
    timeout: float = 20.0,
    retries: int = 2,
    hosts: tuple[str, ...] = (),
) -> RunResult:
    env = read_env_file(lab.fleet.env_file)
    project = Project(lab.profiles, None, lab.root / "state.db", env, lab.root)
    credentials = Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"]))
    connect = winrm_connect(credentials, timeout=timeout, transport=transport)
    options = PushOptions(timeout=timeout, retries=retries, backoff=0.01)
    return push(project, lab.fleet.inventory, connect, options, RunSettings(hosts=hosts))


def use(lab: Lab, scheme: str = "https", auth: str = "ntlm") -> None:
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8").replace("scheme: https", f"scheme: {scheme}")
    inventory.write_text(text.replace("auth: ntlm", f"auth: {auth}"), "utf-8")


def requests_per_host(lab: Lab) -> set[int]:
    return {host.stats["requests"] for host in lab.fleet.hosts.values()}


# Which transport, and what it costs ---------------------------------------------------------

# HTTP requests for an unchanged host (Create, Command, Send, Receive, Delete, plus the
# authentication legs): the lean transport's NTLM authenticate leg carries the first envelope
# over HTTPS; requests_ntlm first sends the envelope without credentials, and over HTTP
# pywinrm adds an empty request to set up sealing.
REQUESTS = {
    ("https", "ntlm", "auto"): 6,
    ("https", "ntlm", "pywinrm"): 7,
    ("http", "ntlm", "auto"): 7,
    ("http", "ntlm", "pywinrm"): 8,
    ("https", "basic", "auto"): 5,
    ("https", "basic", "pywinrm"): 5,
}


@pytest.mark.parametrize(("scheme", "auth", "transport"), sorted(REQUESTS))
def test_each_transport_pushes_the_same_and_lean_is_the_default(
    lab: Lab, scheme: str, auth: str, transport: str
) -> None:
    use(lab, scheme, auth)
    first = push_with(lab, transport)
    assert {h.status for h in first.hosts} == {"changed"}, [h.reason for h in first.hosts]
    lab.reset_counts()
    second = push_with(lab, transport)
    assert {h.status for h in second.hosts} == {"unchanged"}
    assert set(lab.ops().values()) == {5}
    assert requests_per_host(lab) == {REQUESTS[(scheme, auth, transport)]}


def test_kerberos_to_an_ip_address_fails_before_any_request(lab: Lab) -> None:
    use(lab, "https", "kerberos")
    run = push_with(lab)
    assert {h.kind for h in run.hosts} == {"auth"}
    assert all("Kerberos needs the host's DNS name" in h.reason for h in run.hosts)
    assert all(h.attempts == 1 for h in run.hosts)
    assert requests_per_host(lab) == {0}


# Failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["auto", "pywinrm"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_reset_in_the_middle_of_a_reply_is_a_transient_reset(lab: Lab, scheme: str, transport: str) -> None:
    use(lab, scheme)
    host = lab.host("lab-002")
    before = {u: lab.ini("lab-002", u) for u in host.users}
    host.faults.reset_mid_response = "Receive"
    run = push_with(lab, transport, retries=1, hosts=("lab-002",))
    (result,) = run.hosts
    assert result.status == "failed"
    assert result.kind == "reset" and "reset" in result.reason, result.reason
    assert result.attempts == 2  # transient: tried again on a new shell
    assert host.stats["action_Create"] == 2
    assert {u: lab.ini("lab-002", u) for u in host.users} == before


@pytest.mark.parametrize("transport", ["auto", "pywinrm"])
def test_a_trickling_server_cannot_stretch_the_time_limit(lab: Lab, transport: str) -> None:
    lab.host("lab-002").faults.trickle_bytes_per_s = 100
    run = push_with(lab, transport, timeout=2.0, retries=0, hosts=("lab-002",))
    (result,) = run.hosts
    assert result.kind == "timeout", result.reason
    assert "timed out" in result.reason
    # Generous: the figure that matters (within 10 %) comes from bench runs, not from here.
    assert result.seconds < 1.5 * 2.0


def test_replies_trickled_in_pieces_are_read_whole(lab: Lab) -> None:
    for host in lab.fleet.hosts.values():
        host.faults.trickle_bytes_per_s = 40_000
    run = push_with(lab, hosts=("lab-001", "lab-002"))
    assert {h.status for h in run.hosts} == {"changed"}, [h.reason for h in run.hosts]


# Trust ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_trust() -> Iterator[None]:
    """TLS contexts are made once per process; these tests change what the system store holds."""
    tls.forget_contexts()
    yield
    tls.forget_contexts()


def without_ca_bundle(lab: Lab) -> None:
    inventory = lab.fleet.inventory
    inventory.write_text(inventory.read_text("utf-8").replace("ca_bundle: tls/ca.pem", ""), "utf-8")


@pytest.mark.usefixtures("fresh_trust")
@pytest.mark.parametrize("transport", ["auto", "pywinrm"])
def test_a_root_in_the_system_trust_store_is_trusted_without_ca_bundle(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """As an AD CS root pushed to the controller by group policy: no ca_bundle in the inventory."""
    without_ca_bundle(lab)
    anchors = tmp_path / "trust-anchors"
    anchors.mkdir()
    shutil.copy(lab.fleet.ca, anchors / "corp-root.pem")
    # What OpenSSL's default verify paths read: the controller's store, here holding the lab's root.
    monkeypatch.setenv("SSL_CERT_FILE", str(anchors / "corp-root.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(anchors))
    run = push_with(lab, transport, hosts=("lab-001",))
    assert {h.status for h in run.hosts} == {"changed"}, [h.reason for h in run.hosts]


@pytest.mark.usefixtures("fresh_trust")
@pytest.mark.parametrize("transport", ["auto", "pywinrm"])
def test_a_root_missing_from_the_system_store_fails_as_tls(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    without_ca_bundle(lab)
    store, *_ = make_certificates(tmp_path / "other-anchors", ["127.0.0.1"])  # a store with some other root
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    monkeypatch.setenv("SSL_CERT_DIR", str(store.parent))
    run = push_with(lab, transport, hosts=("lab-001",))
    (result,) = run.hosts
    assert result.kind == "tls" and "certificate not trusted" in result.reason


@pytest.mark.usefixtures("fresh_trust")
def test_the_ca_bundle_wins_over_the_system_store(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a ca_bundle given, only it is trusted: a root in the system store does not widen it."""
    other_ca, *_ = make_certificates(tmp_path / "other-ca", ["127.0.0.1"])
    inventory = lab.fleet.inventory
    shutil.copy(other_ca, inventory.parent / "tls" / "other-ca.pem")
    inventory.write_text(inventory.read_text("utf-8").replace("tls/ca.pem", "tls/other-ca.pem"), "utf-8")
    monkeypatch.setenv("SSL_CERT_FILE", str(lab.fleet.ca))  # the lab's root, in the system store
    run = push_with(lab, hosts=("lab-001",))
    (result,) = run.hosts
    assert result.kind == "tls"
