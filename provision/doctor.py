"""provision doctor: every step from a host's name to its MicroSIP, each ok, warn or fail, with the fix.

    name -> DNS -> TCP -> TLS (chain, name, expiry) -> the authentication the listener offers
    -> login and the agent (administrator, language mode, PowerShell, .NET, Task Scheduler)
    -> WinRM settings -> MicroSIP installs -> each user's profile, ini and running MicroSIP

The network steps are plain socket and ssl probes from the controller; the rest is one
conversation with the agent (its `inspect` request, which reads only). A step that cannot
be reached because an earlier one failed is skipped. The conversation can be written to a
transcript, every ini and password masked and every known secret redacted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography import x509

from provision.jobs import Endpoint, HostJob, UserJob, endpoint_of, group_by_host, host_groups
from provision.outcome import RunOutcome
from provision.project import Project, select_targets
from provision.remote import INSTALLED_EXE
from provision.remote.agent import PreflightError, Recorder
from provision.remote.protocol import Facts, InspectRequest, Op, Preflight, UserStatus
from provision.report.files import write_text
from provision.rollout import EVERY_HOST, ConnectFactory, RunSettings
from provision.secrets import Redactor
from provision.session import Connect, SessionOptions, converse, install_of
from provision.transport.base import AUTH, REFUSED, TIMEOUT, TLS, UNREACHABLE, TransportError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"  # a step's status
HEALTHY, WARNING, FAILED = "ok", "warning", "failed"  # a host's
EXPIRY_WARN_DAYS = 14
PROBE_TIMEOUT = 5.0
# .NET Framework 4.x: the lowest Release value of each version (Microsoft's table).
DOTNET = [(533320, "4.8.1"), (528040, "4.8"), (461808, "4.7.2"), (461308, "4.7.1"), (460798, "4.7"),
          (394802, "4.6.2"), (394254, "4.6.1"), (393295, "4.6"), (379893, "4.5.2"), (378675, "4.5.1"),
          (378389, "4.5")]  # fmt: skip


@dataclass
class Step:
    name: str
    status: str
    detail: str = ""
    fix: str = ""


@dataclass
class Diagnosis:
    """One host's steps; what the fleet runner and the report see of it."""

    host: str
    endpoint: str
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    kind: str = ""
    attempts: int = 1

    def add(self, name: str, status: str, detail: str = "", fix: str = "") -> None:
        self.steps.append(Step(name, status, detail, fix))

    @property
    def status(self) -> str:
        statuses = {s.status for s in self.steps}
        return FAILED if FAIL in statuses else WARNING if WARN in statuses else HEALTHY

    @property
    def ok(self) -> bool:
        return self.status != FAILED

    @property
    def reason(self) -> str:
        for wanted in (FAIL, WARN):
            found = [f"{s.name}: {s.detail}" for s in self.steps if s.status == wanted]
            if found:
                return "; ".join(found)
        return ""


DoctorRun = RunOutcome[Diagnosis]


# The command -------------------------------------------------------------------------------


def doctor(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    settings: RunSettings = EVERY_HOST,
    *,
    timeout: float = 60.0,
    verify_tls: bool = True,
    user: str | None = None,
    transcript: Path | None = None,
    lines: Transcript | None = None,
) -> DoctorRun:
    """Diagnose every chosen host. `user` is the WinRM account's name, for the hints. The
    conversation is written to `transcript`: the agent's lines, and the envelopes `lines`
    heard from the transport (its `wire`, given to winrm_connect as the tracer)."""
    loaded, targets = select_targets(project, inventory, settings.limit, settings.hosts)
    jobs = group_by_host((UserJob(t) for t in targets), host_groups(loaded))
    connect = connect_factory(loaded)
    base = loaded.path.resolve().parent
    redactor = Redactor()  # doctor resolves no secret of its own: the WinRM password is added to it
    settings.on_redactor(redactor)
    lines = lines or Transcript()
    lines.redactor = redactor
    options = SessionOptions(timeout=timeout, retries=0)

    def work(job: HostJob) -> Diagnosis:
        return diagnose_host(job, connect, endpoint_of(job, base), options, verify_tls, user, lines.recorder(job.host))

    def broken(job: HostJob, reason: str, kind: str) -> Diagnosis:
        result = Diagnosis(job.host, "")
        result.add("provision", FAIL, f"{kind}: {reason}")
        return result

    run = settings.run(jobs, work, broken)
    if transcript is not None:
        write_text(transcript, lines.text())
    return DoctorRun.of("doctor", run, jobs, redactor=redactor, verify_tls=verify_tls)


def diagnose_host(
    job: HostJob,
    connect: Connect,
    target: Endpoint,
    options: SessionOptions,
    verify_tls: bool = True,
    user: str | None = None,
    recorder: Recorder | None = None,
) -> Diagnosis:
    """Every step for one host; stops probing the network at the first step that fails."""
    result = Diagnosis(job.host, f"{target.address}:{target.port} ({target.scheme}, {target.auth})")
    address = check_dns(result, target)
    if address is None or not check_tcp(result, target, address):
        skip(result, "tls", "authentication", "login")
        return result
    if target.scheme == "https":
        if not check_tls(result, target, verify_tls):
            skip(result, "authentication", "login")
            return result
    else:
        result.add("tls", SKIP, "plain HTTP: NTLM and Kerberos encrypt the messages; HTTPS is better")
    check_auth_methods(result, target, verify_tls)
    request: InspectRequest = {
        "op": Op.INSPECT,
        "install": install_of(job),
        "users": [{"name": u.user} for u in job.users],
    }

    def talk(agent: Any) -> dict[str, Any] | TransportError:
        reply: dict[str, Any] = agent.request(request)
        reply["recovered"] = agent.recovered
        return reply

    answer, _ = converse(job, connect, options, talk, lambda exc: exc, recorder=recorder)
    if isinstance(answer, TransportError):
        judge_failure(result, answer, target, user)
        return result
    result.add("login", OK, f"accepted ({target.auth})" + (f" as {user}" if user else ""))
    judge_facts(result, answer.get("facts") or {})
    judge_winrm(result, answer.get("winrm") or {}, target, options)
    judge_installs(result, answer.get("installs") or [], job)
    for entry in answer.get("users") or []:
        judge_user(result, entry)
    for entry in answer.get("recovered") or []:
        status = WARN if entry.get("restarted") else FAIL
        detail = "MicroSIP an earlier run left closed was started again"
        if not entry.get("restarted"):
            detail = f"MicroSIP an earlier run left closed is still not running: {entry.get('reason')}"
        result.add(f"{entry.get('name')}: recovered", status, detail)
    return result


def skip(result: Diagnosis, *names: str) -> None:
    for name in names:
        result.add(name, SKIP, "not reached")


# Network probes ---------------------------------------------------------------------------


def check_dns(result: Diagnosis, target: Endpoint) -> str | None:
    try:
        ipaddress.ip_address(target.address)
    except ValueError:
        pass
    else:
        result.add("dns", OK, f"{target.address} (an IP address)")
        return target.address
    try:
        found = socket.getaddrinfo(target.address, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        result.add(
            "dns",
            FAIL,
            f"cannot resolve {target.address}: {exc.strerror}",
            "add the host to DNS, or give its IP address as connection.address in the inventory",
        )
        return None
    address = str(found[0][4][0])
    result.add("dns", OK, f"{target.address} is {address}")
    return address


def check_tcp(result: Diagnosis, target: Endpoint, address: str) -> bool:
    clock = time.monotonic()
    try:
        with socket.create_connection((address, target.port), timeout=PROBE_TIMEOUT):
            pass
    except ConnectionRefusedError:
        result.add(
            "tcp",
            FAIL,
            f"connection refused on port {target.port}: no WinRM listener there",
            f"create the WinRM {target.scheme.upper()} listener (docs/windows.md), or set connection.port",
        )
        return False
    except (TimeoutError, OSError) as exc:
        result.add(
            "tcp",
            FAIL,
            f"no connection to port {target.port}: {getattr(exc, 'strerror', None) or 'timed out'}",
            f"allow TCP {target.port} inbound in Windows Defender Firewall (by GPO), and check the route",
        )
        return False
    result.add("tcp", OK, f"port {target.port} open ({(time.monotonic() - clock) * 1000:.0f} ms)")
    return True


def check_tls(result: Diagnosis, target: Endpoint, verify: bool) -> bool:
    """The certificate: chain, name and expiry. False when it is not trusted."""
    step = tls_step(target.address, target.port, target.ca_bundle, verify)
    result.steps.append(step)
    return step.status != FAIL


def tls_step(address: str, port: int, ca_bundle: Path | None, verify: bool = True) -> Step:
    try:
        der = _peer_certificate(address, port)
    except (OSError, ssl.SSLError) as exc:
        return Step("tls", FAIL, f"no TLS handshake: {exc}", "check that the listener on this port is HTTPS")
    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc
    days = (expires - dt.datetime.now(dt.UTC)).days
    names = _names(certificate)
    about = f"issued to {', '.join(names) or '(no name)'}, expires {expires.date().isoformat()} ({days} days)"
    if days < 0:
        return Step(
            "tls",
            FAIL,
            f"the certificate expired on {expires.date().isoformat()}",
            "renew it (certificate auto-enrolment) and bind the new one to the HTTPS listener",
        )
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    try:
        with (
            socket.create_connection((address, port), timeout=PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=address),
        ):
            pass
    except ssl.SSLCertVerificationError as exc:
        message = str(exc.verify_message or exc)
        if "hostname" in message.lower() or "ip address mismatch" in message.lower():
            status = WARN if not verify else FAIL
            return Step(
                "tls",
                status,
                f"the certificate is not for {address}: {about}",
                "issue it with this name (or IP address) in its subject alternative names, or use the name it has",
            )
        where = f" (CA bundle {ca_bundle})" if ca_bundle else " (the system's CAs)"
        return Step(
            "tls",
            WARN if not verify else FAIL,
            f"the certificate is not trusted{where}: {message}; {about}",
            "give the CA that issued it as connection.ca_bundle in the inventory",
        )
    except (OSError, ssl.SSLError) as exc:
        return Step("tls", FAIL, f"TLS failed: {exc}", "check the listener's certificate binding")
    if days < EXPIRY_WARN_DAYS:
        return Step("tls", WARN, f"trusted, but expires in {days} days; {about}", "renew the certificate soon")
    return Step("tls", OK, f"trusted, name matches; {about}")


def _peer_certificate(address: str, port: int) -> bytes:
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=PROBE_TIMEOUT) as raw,
        unverified.wrap_socket(raw, server_hostname=address) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("no certificate")
    return der


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        attributes = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(a.value) for a in attributes]
    names = [str(n) for n in extension.value.get_values_for_type(x509.DNSName)]
    return names + [str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)]


# Which authentication, per scheme word in WWW-Authenticate.
OFFERS = {"ntlm": {"negotiate", "ntlm"}, "kerberos": {"negotiate", "kerberos"}, "basic": {"basic"}}


def check_auth_methods(result: Diagnosis, target: Endpoint, verify: bool) -> None:
    """What the listener offers (the WWW-Authenticate headers of its 401 to a request with none)."""
    url = f"{target.scheme}://{target.address}:{target.port}/wsman"
    check: bool | str = (str(target.ca_bundle) if target.ca_bundle else True) if verify else False
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(url, data=b"", timeout=PROBE_TIMEOUT, verify=check)
    except requests.RequestException as exc:
        result.add("authentication", WARN, f"could not ask the listener: {type(exc).__name__}")
        return
    result.steps.append(auth_step(response.status_code, response.raw.headers.getlist("WWW-Authenticate"), target))


def auth_step(status: int, headers: Sequence[str], target: Endpoint) -> Step:
    offered = sorted({h.split(" ", 1)[0] for h in headers if h.strip()})
    if status != 401 or not offered:
        return Step("authentication", WARN, f"the listener answered HTTP {status} without offering a method")
    wanted = OFFERS.get(target.auth, set())
    if not {o.lower() for o in offered} & wanted:
        fix = 'use auth: ntlm (Negotiate), or enable it: winrm set winrm/config/service/auth @{Basic="true"}'
        if target.auth == "basic" and target.scheme != "https":
            fix = "Basic is only for HTTPS: use auth: ntlm over HTTP"
        return Step("authentication", FAIL, f"the listener offers {', '.join(offered)}; not {target.auth}", fix)
    return Step("authentication", OK, f"the listener offers {', '.join(offered)}; {target.auth} is one of them")


# The conversation -------------------------------------------------------------------------


STEP_OF: dict[str, str] = {
    Preflight.LANGUAGE_MODE: "language mode",
    Preflight.POWERSHELL: "powershell",
    Preflight.NOT_ADMIN: "administrator",
    Preflight.UAC_FILTERED: "administrator",
    Preflight.TASK_SCHEDULER: "task scheduler",
}


def judge_failure(result: Diagnosis, exc: TransportError, target: Endpoint, user: str | None) -> None:
    if isinstance(exc, PreflightError):
        result.add("login", OK, f"accepted ({target.auth})" + (f" as {user}" if user else ""))
        judge_facts(result, exc.facts)
        name = STEP_OF.get(exc.kind, exc.kind)
        what, fix = str(exc).split(". Fix: ", 1) if ". Fix: " in str(exc) else (str(exc), "")
        found = next((s for s in result.steps if s.name == name), None)
        if found is None:
            found = Step(name, FAIL)
            result.steps.append(found)
        found.status, found.detail, found.fix = FAIL, f"{exc.kind}: {what}", fix
        return
    if exc.kind == AUTH:
        local = user is not None and "\\" not in user and "@" not in user
        fix = "check the user name (DOMAIN\\name or name@domain) and the password"
        if local:
            fix = (
                "a local account in Administrators gets a UAC-filtered token over the network, which WinRM "
                "refuses: set LocalAccountTokenFilterPolicy=1 (HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\"
                "Policies\\System), or use a domain account in Administrators"
            )
        result.add("login", FAIL, f"credentials rejected ({target.auth}){' for ' + user if user else ''}", fix)
        return
    fixes = {
        TLS: "give the CA as connection.ca_bundle",
        REFUSED: "start the WinRM service and its listener",
        UNREACHABLE: "check the network path to the host",
        TIMEOUT: "the host did not answer in time: try --timeout, and look at the host's load",
    }
    result.add("login", FAIL, f"{exc.kind}: {exc}", fixes.get(exc.kind, "see the transcript (--transcript)"))


def dotnet_version(release: int | None) -> str | None:
    if release is None:
        return None
    return next((name for floor, name in DOTNET if release >= floor), None)


def judge_facts(result: Diagnosis, facts: Facts | dict[str, Any]) -> None:
    """The session's facts, each a step (the ones the agent did not get to are left out)."""
    mode = facts.get("language_mode")
    if mode:
        result.add("language mode", OK if mode == "FullLanguage" else FAIL, str(mode))
    version = facts.get("powershell")
    if version:
        parts = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())
        result.add("powershell", OK if parts >= (5, 1) else FAIL, str(version))
    if "elevated" in facts:
        if facts.get("elevated"):
            result.add("administrator", OK, "elevated (an administrator's full token)")
        elif facts.get("filtered"):
            result.add("administrator", FAIL, "a local administrator, but not elevated (UAC remote filtering)")
        else:
            result.add("administrator", FAIL, "not an administrator here")
    if "dotnet" in facts:
        name = dotnet_version(facts.get("dotnet"))
        if name is None:
            result.add(".net", FAIL, ".NET Framework 4.5 or later not found", "install .NET Framework 4.8")
        else:
            result.add(".net", OK, f".NET Framework {name} (release {facts.get('dotnet')})")
    service = facts.get("task_scheduler")
    if service:
        result.add("task scheduler", OK if service == "Running" else FAIL, f"the Schedule service: {service}")
    folder = facts.get("provision_folder")
    if folder == "ok":
        result.add("provision folder", OK, "C:\\ProgramData\\provision: Administrators and SYSTEM only")
    elif folder == "absent":
        result.add("provision folder", OK, "C:\\ProgramData\\provision: not there yet (made when first needed)")
    elif folder:
        what, _, fix = str(folder).partition(". Fix: ")
        result.add("provision folder", FAIL, what, fix)


def judge_winrm(result: Diagnosis, winrm: dict[str, Any], target: Endpoint, options: SessionOptions) -> None:
    envelope = winrm.get("MaxEnvelopeSizekb")
    declared = target.max_envelope_kb
    if envelope is None:
        result.add("MaxEnvelopeSizekb", WARN, "unreadable")
    elif declared is not None and declared > envelope:
        result.add(
            "MaxEnvelopeSizekb",
            FAIL,
            f"{envelope} KB, but the inventory says max_envelope_kb: {declared}: requests would be refused (HTTP 413)",
            f"set connection.max_envelope_kb: {envelope} (or leave it out if that is 500)",
        )
    elif declared is None and envelope < 500:
        result.add(
            "MaxEnvelopeSizekb",
            FAIL,
            f"{envelope} KB, under the 500 KB provision sizes its requests for",
            f"set connection.max_envelope_kb: {envelope} in the inventory, or: winrm set winrm/config "
            '@{MaxEnvelopeSizekb="500"}',
        )
    else:
        hint = (
            f" (set connection.max_envelope_kb: {envelope} for fewer round trips)"
            if declared is None and envelope > 500
            else ""
        )
        result.add("MaxEnvelopeSizekb", OK, f"{envelope} KB{hint}")
    winrs, service = "winrm set winrm/config/winrs", "winrm set winrm/config/service"
    limits = [
        ("MaxMemoryPerShellMB", 256, "MB", "a shell reads inis up to 8 MB", f'{winrs} @{{MaxMemoryPerShellMB="1024"}}'),
        ("MaxShellsPerUser", 2, "", "a retry opens a second shell", f'{winrs} @{{MaxShellsPerUser="30"}}'),
        ("MaxConcurrentOperationsPerUser", 100, "", "a push takes dozens of operations",
         f'{service} @{{MaxConcurrentOperationsPerUser="1500"}}'),
    ]  # fmt: skip
    for name, floor, unit, why, fix in limits:
        value = winrm.get(name)
        if value is None:
            result.add(name, WARN, "unreadable")
        elif value < floor:
            result.add(name, WARN, f"{value} {unit}".strip() + f": low ({why})", fix)
        else:
            result.add(name, OK, f"{value} {unit}".strip())
    idle = winrm.get("IdleTimeout")
    if idle is None:
        result.add("IdleTimeout", WARN, "unreadable")
    elif idle < options.timeout * 1000:
        result.add(
            "IdleTimeout",
            WARN,
            f"{idle // 1000} s: a shell idle that long is closed, under the host time of {options.timeout:.0f} s",
            'winrm set winrm/config/winrs @{IdleTimeout="7200000"}',
        )
    else:
        result.add("IdleTimeout", OK, f"{idle // 1000} s")


def judge_installs(result: Diagnosis, installs: list[dict[str, Any]], job: HostJob) -> None:
    declared = job.install.exe or INSTALLED_EXE
    found = [i for i in installs if i.get("exists")]
    for install in found:
        built = install.get("build_time")
        date = dt.datetime.fromtimestamp(built, dt.UTC).date().isoformat() if isinstance(built, int) else "unknown"
        result.add(
            "microsip", OK, f"{install.get('path')}: version {install.get('version') or 'unknown'}, built {date}"
        )
    paths = {str(i.get("path", "")).casefold() for i in found}
    if "%" not in declared and declared.casefold() not in paths:
        result.add(
            "microsip",
            FAIL,
            f"the inventory's exe {declared} is not there",
            "install MicroSIP there, or set microsip.exe in the inventory to where it is",
        )
    elif not found:
        result.add("microsip", FAIL, "no MicroSIP found", "install MicroSIP, or set microsip.exe in the inventory")


def judge_user(result: Diagnosis, entry: dict[str, Any]) -> None:
    name = entry.get("name")
    status = entry.get("status")
    if status == UserStatus.NO_PROFILE:
        result.add(f"{name}: profile", WARN, "never logged on to this host: no profile, nothing to configure yet")
        return
    if status == UserStatus.FAILED:
        result.add(f"{name}: profile", FAIL, str(entry.get("reason")), "see the user's profile on the host")
        return
    result.add(f"{name}: profile", OK, str(entry.get("profile_path")))
    appdata = f"AppData {entry.get('appdata')}" if entry.get("appdata") else ""
    if status == UserStatus.REDIRECTED:
        result.add(
            f"{name}: ini",
            FAIL,
            str(entry.get("reason")),
            "the ini lives on the file server: configure it there, or leave the user out of the inventory",
        )
    elif entry.get("warning"):
        result.add(f"{name}: ini", WARN, f"{entry.get('ini_path')}; {entry.get('warning')}")
    else:
        there = "exists" if entry.get("exists") else "not there yet (MicroSIP creates it at first start)"
        result.add(f"{name}: ini", OK, f"{entry.get('ini_path')} ({there}; {appdata})")
    if entry.get("running"):
        result.add(f"{name}: microsip", OK, f"running in session {entry.get('session')}")
    else:
        result.add(f"{name}: microsip", OK, "not running")


# Output ------------------------------------------------------------------------------------


_STREAM = re.compile(rb"(<(?:rsp:)?Stream\b[^>]*>)([^<]*)(</(?:rsp:)?Stream>)")
_ARGUMENTS = re.compile(rb"(<(?:rsp:)?Arguments>)([^<]{200,})(</(?:rsp:)?Arguments>)")


def masked_envelope(body: bytes) -> str:
    """A WS-Management envelope for the transcript: its stream payloads (the agent's lines,
    shown masked on their own) and the long encoded command replaced by their sizes."""
    body = _STREAM.sub(lambda m: m.group(1) + b"<%d base64 characters>" % len(m.group(2)) + m.group(3), body)
    body = _ARGUMENTS.sub(lambda m: m.group(1) + b"<%d characters>" % len(m.group(2)) + m.group(3), body)
    return body.decode("utf-8", "replace")


class Transcript:
    """The whole conversation with every host: each WS-Management envelope sent and received
    (`wire`, its payload masked) and each agent request and reply line (`recorder`, inis and
    passwords masked by remote.agent.masked), every known secret redacted."""

    def __init__(self) -> None:
        self.redactor = Redactor()
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def wire(self, host: str, direction: str, envelope: bytes) -> None:
        arrow = ">>" if direction == "request" else "<<"
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        text = self.redactor(f"{stamp} {host} {arrow} {masked_envelope(envelope)}")
        with self._lock:
            self._lines.append(text)

    def recorder(self, host: str) -> Callable[[str, str], None]:
        def record(direction: str, text: str) -> None:
            arrow = ">" if direction == "send" else "<"
            stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            with self._lock:
                self._lines.append(self.redactor(f"{stamp} {host} {arrow} {text}"))

        return record

    def text(self) -> str:
        head = (
            "# provision doctor: the conversation with each host. >> and << are WS-Management envelopes\n"
            "# sent and received (their payload by size); > and < the agent's lines inside them.\n"
            "# Inis are shown by size and digest, passwords masked, known secrets redacted.\n"
        )
        with self._lock:
            return head + "\n".join(self._lines) + "\n"
