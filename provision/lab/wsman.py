"""WS-Management / WinRS: Create, Command, Send, Receive, Signal and Delete, as Windows answers.

Replies have the shapes pywinrm reads; limits and faults are Windows' own: the envelope size,
the per-shell operation quota, a shell that no longer exists, ERROR_BUSY, OperationTimeout.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from provision.lab.host import SimulatedHost
from provision.lab.programs import Program, start_program

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTIONS = {
    TRANSFER + "Create": "Create",
    TRANSFER + "Delete": "Delete",
    SHELL + "Command": "Command",
    SHELL + "Send": "Send",
    SHELL + "Receive": "Receive",
    SHELL + "Signal": "Signal",
}

TOO_LARGE = 413  # what the service answers to a request over MaxEnvelopeSizekb (no SOAP fault)
MAX_OPERATIONS_PER_SHELL = 1500  # MaxConcurrentOperationsPerUser default
OUTPUT_CHUNK = 96 * 1024  # keeps each Receive reply under pywinrm's 153,600-byte MaxEnvelopeSize

# Fault codes clients look for (WSManFault @Code, or MSFT_WmiError error_Code).
TIMED_OUT = 2150858793
SHELL_NOT_FOUND = 2150858843
QUOTA_MAX_OPERATIONS = 2150859174
ERROR_BUSY = 170


class SoapFaultError(Exception):
    def __init__(self, subcode: str, reason: str, code: int, *, wmi: bool = False, status: int = 500) -> None:
        super().__init__(reason)
        self.subcode, self.reason, self.code, self.wmi, self.status = subcode, reason, code, wmi, status


@dataclass
class Shell:
    id: str
    operations: int = 0
    commands: dict[str, Program] = field(default_factory=dict)


class WSManService:
    """One workstation's WinRM service."""

    def __init__(self, host: SimulatedHost) -> None:
        self.host = host
        self.shells: dict[str, Shell] = {}

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """An HTTP request body in, (status, reply body) out."""
        message_id = ""
        if len(body) > self.host.faults.winrm("MaxEnvelopeSizekb") * 1024:
            # Windows answers an oversized request with HTTP 413 and no WS-Management fault.
            self.host.stats["too_large"] += 1
            return TOO_LARGE, b""
        try:
            try:
                # Requests come from clients on this machine; expat refuses entity expansion bombs.
                root = ET.fromstring(body)  # noqa: S314
            except ET.ParseError:
                raise SoapFaultError(
                    "w:InvalidRepresentation", "The request is not well-formed XML.", 2150858778, status=400
                ) from None
            header = _required(root, "s:Header")
            message_id = _text(header, "a:MessageID")
            action_uri = _text(header, "a:Action")
            action = ACTIONS.get(action_uri)
            if action is None:
                raise SoapFaultError("a:ActionNotSupported", f"The action {action_uri} is not supported.", 2150858758)
            if _text(header, "w:ResourceURI") != SHELL_URI:
                raise SoapFaultError("w:InvalidResourceURI", "The resource URI is not supported.", 2150858770)
            self.host.stats[f"action_{action}"] += 1
            injected = self.host.faults.take_soap_fault(action)
            if injected:
                raise _injected(injected)
            reply = await getattr(self, "_" + action.lower())(root, header)
            return 200, _envelope(action_uri + "Response", message_id, reply)
        except SoapFaultError as fault:
            return fault.status, _fault_envelope(message_id, fault)

    # Actions ------------------------------------------------------------------------------

    async def _create(self, root: ET.Element, header: ET.Element) -> str:
        shell = Shell(str(uuid.uuid4()).upper())
        self.shells[shell.id] = shell
        return (
            "<x:ResourceCreated><a:Address>http://localhost:5985/wsman</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{SHELL_URI}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId></rsp:Shell>"
        )

    async def _delete(self, root: ET.Element, header: ET.Element) -> str:
        shell = self._shell(header)
        del self.shells[shell.id]
        for program in shell.commands.values():  # the shell's job object ends its processes
            program.terminate()
        return ""

    async def _command(self, root: ET.Element, header: ET.Element) -> str:
        shell = self._shell(header, count=True)
        line = _required(root, "s:Body/rsp:CommandLine")
        command = _text(line, "rsp:Command")
        arguments = " ".join(a.text or "" for a in line.findall("rsp:Arguments", NS))
        skip = _option(header, "WINRS_SKIP_CMD_SHELL").upper() == "TRUE"
        command_id = str(uuid.uuid4()).upper()
        with self.host.lock:
            shell.commands[command_id] = start_program(self.host, command, arguments, skip)
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    async def _send(self, root: ET.Element, header: ET.Element) -> str:
        shell = self._shell(header, count=True)
        for stream in root.findall("s:Body/rsp:Send/rsp:Stream", NS):
            program = self._program(shell, stream.get("CommandId", ""))
            data = base64.b64decode(stream.text or "")
            program.feed(data, stream.get("End", "false").lower() == "true")
        return "<rsp:SendResponse/>"

    async def _receive(self, root: ET.Element, header: ET.Element) -> str:
        shell = self._shell(header, count=True)
        desired = _required(root, "s:Body/rsp:Receive/rsp:DesiredStream")
        command_id = desired.get("CommandId", "")
        program = self._program(shell, command_id)
        timeout = _duration(_text(header, "w:OperationTimeout") or "PT20S")
        waited, pause = 0.0, 0.001
        # powershell.exe takes a while to start (faults.powershell_start_ms): no output before then.
        while time.monotonic() < program.ready_at or not (program.stdout or program.stderr or program.done):
            if waited >= timeout:
                raise SoapFaultError(
                    "w:TimedOut",
                    "The WS-Management service cannot complete the operation within the "
                    "time specified in OperationTimeout.",
                    TIMED_OUT,
                )
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.05)
        out = bytes(program.stdout[:OUTPUT_CHUNK])
        del program.stdout[: len(out)]
        err = bytes(program.stderr[:OUTPUT_CHUNK])
        del program.stderr[: len(err)]
        finished = program.done and not program.stdout and not program.stderr
        parts = ["<rsp:ReceiveResponse>"]
        for name, data in (("stdout", out), ("stderr", err)):
            end = ' End="true"' if finished else ""
            encoded = base64.b64encode(data).decode()
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}"{end}>{encoded}</rsp:Stream>')
        state = "Done" if finished else "Running"
        parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{SHELL}CommandState/{state}">')
        if finished:
            parts.append(f"<rsp:ExitCode>{program.exit_code}</rsp:ExitCode>")
        parts.append("</rsp:CommandState></rsp:ReceiveResponse>")
        return "".join(parts)

    async def _signal(self, root: ET.Element, header: ET.Element) -> str:
        shell = self._shell(header)
        signal = _required(root, "s:Body/rsp:Signal")
        program = self._program(shell, signal.get("CommandId", ""))
        program.finish(program.exit_code if program.exit_code is not None else -1)
        del shell.commands[signal.get("CommandId", "")]
        return "<rsp:SignalResponse/>"

    # Helpers ------------------------------------------------------------------------------

    def _shell(self, header: ET.Element, *, count: bool = False) -> Shell:
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell = self.shells.get((selector.text or "").strip()) if selector is not None else None
        if shell is None:
            raise SoapFaultError(
                "w:InvalidSelectors",
                "The request for the Windows Remote Shell failed because the shell was not found on the server.",
                SHELL_NOT_FOUND,
            )
        if count:
            shell.operations += 1
            if shell.operations > MAX_OPERATIONS_PER_SHELL:
                raise _injected("quota")
        return shell

    def _program(self, shell: Shell, command_id: str) -> Program:
        program = shell.commands.get(command_id)
        if program is None:
            raise SoapFaultError("w:InvalidSelectors", "The command was not found in this shell.", 2150858843)
        return program


def _injected(kind: str) -> SoapFaultError:
    if kind == "busy":
        return SoapFaultError("w:InternalError", "The requested resource is in use.", ERROR_BUSY)
    if kind == "quota":
        return SoapFaultError(
            "w:QuotaLimit",
            "The WS-Management service cannot process the request. This user is "
            "allowed a maximum number of concurrent operations, which has been exceeded.",
            QUOTA_MAX_OPERATIONS,
            wmi=True,
        )
    if kind == "shell-not-found":
        return SoapFaultError("w:InvalidSelectors", "The shell was not found on the server.", SHELL_NOT_FOUND)
    raise AssertionError(kind)


def _required(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path, NS)
    if found is None:
        raise SoapFaultError("w:InvalidRepresentation", f"The request has no {path}.", 2150858778, status=400)
    return found


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


def _option(header: ET.Element, name: str) -> str:
    found = header.find(f"w:OptionSet/w:Option[@Name='{name}']", NS)
    return (found.text or "").strip() if found is not None else ""


def _duration(text: str) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", text)
    return float(match.group(1)) if match else 20.0


_HEAD = (
    '<s:Envelope xmlns:s="{s}" xmlns:a="{a}" xmlns:x="{x}" xmlns:w="{w}" xmlns:rsp="{rsp}" xmlns:p="{p}" '
    'xml:lang="en-US"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{mid}</a:MessageID>'
    "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
    "<a:RelatesTo>{relates}</a:RelatesTo></s:Header>"
)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    head = _HEAD.format(**NS, action=action, mid=str(uuid.uuid4()).upper(), relates=escape(relates_to))
    return (head + f"<s:Body>{body}</s:Body></s:Envelope>").encode("utf-8")


def _fault_envelope(relates_to: str, fault: SoapFaultError) -> bytes:
    detail = (
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{fault.code}" '
        f'Machine="lab"><f:Message>{escape(fault.reason)}</f:Message></f:WSManFault>'
    )
    if fault.wmi:
        detail += (
            '<p:MSFT_WmiError xmlns:p="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError">'
            f"<p:error_Code>{fault.code}</p:error_Code></p:MSFT_WmiError>"
        )
    body = (
        f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f"<s:Detail>{detail}</s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)
