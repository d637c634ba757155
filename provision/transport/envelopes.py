"""WinRS envelopes from string templates, and their replies read the way pywinrm reads them.

The requests are, element for element, what pywinrm 0.5's Protocol builds through xmltodict
(see Protocol.build_wsman_header and the operations after it); building them by formatting a
string costs a few microseconds instead of a dictionary walk. Replies are parsed with
ElementTree and read with pywinrm's own rules: the shell id is the text of any element named
by a Name="ShellId" attribute, the command id the first element whose tag ends in CommandId,
output every *Stream element named stdout or stderr, done when exactly one element has a
State ending in CommandState/Done.
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
CREATE = TRANSFER + "Create"
DELETE = TRANSFER + "Delete"
COMMAND = SHELL + "Command"
SEND = SHELL + "Send"
RECEIVE = SHELL + "Receive"
SIGNAL = SHELL + "Signal"
TERMINATE = SHELL + "signal/terminate"
CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
MAX_ENVELOPE_SIZE = 153600  # the largest reply pywinrm accepts, and so do we

_NAMESPACES = (
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:b="http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd" '
    'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:cfg="http://schemas.microsoft.com/wbem/wsman/1/config"'
)
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_TEMPLATE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    f"<env:Envelope {_NAMESPACES}><env:Header>"
    "<a:To>http://windows-host:5985/wsman</a:To>"
    f'<a:ReplyTo><a:Address mustUnderstand="true">{_ANONYMOUS}</a:Address></a:ReplyTo>'
    f'<w:MaxEnvelopeSize mustUnderstand="true">{MAX_ENVELOPE_SIZE}</w:MaxEnvelopeSize>'
    "<a:MessageID>uuid:{message_id}</a:MessageID>"
    '<w:Locale mustUnderstand="false" xml:lang="en-US"></w:Locale>'
    '<p:DataLocale mustUnderstand="false" xml:lang="en-US"></p:DataLocale>'
    "<w:OperationTimeout>PT{timeout}S</w:OperationTimeout>"
    f'<w:ResourceURI mustUnderstand="true">{CMD_RESOURCE}</w:ResourceURI>'
    '<a:Action mustUnderstand="true">{action}</a:Action>'
    "{selector}{options}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
)


@dataclass(frozen=True)
class Envelope:
    message_id: str  # lower-case uuid, as sent (without the uuid: prefix)
    text: bytes


def envelope(action: str, timeout: int, *, shell_id: str | None = None, options: str = "", body: str = "") -> Envelope:
    message_id = str(uuid.uuid4())
    selector = ""
    if shell_id is not None:
        selector = f'<w:SelectorSet><w:Selector Name="ShellId">{escape(shell_id)}</w:Selector></w:SelectorSet>'
    text = _TEMPLATE.format(
        message_id=message_id, timeout=timeout, action=action, selector=selector, options=options, body=body
    )
    return Envelope(message_id, text.encode("utf-8"))


def _options(**values: str) -> str:
    inner = "".join(f'<w:Option Name="{name}">{value}</w:Option>' for name, value in values.items())
    return f"<w:OptionSet>{inner}</w:OptionSet>"


def create(
    timeout: int,
    *,
    codepage: int = 437,
    noprofile: bool = False,
    input_streams: str = "stdin",
    output_streams: str = "stdout stderr",
    working_directory: str | None = None,
    environment: dict[str, str] | None = None,
    idle_timeout: str | int | None = None,
) -> Envelope:
    options = _options(WINRS_NOPROFILE=str(noprofile).upper(), WINRS_CODEPAGE=str(int(codepage)))
    parts = [
        f"<rsp:InputStreams>{escape(input_streams)}</rsp:InputStreams>",
        f"<rsp:OutputStreams>{escape(output_streams)}</rsp:OutputStreams>",
    ]
    if working_directory:
        parts.append(f"<rsp:WorkingDirectory>{escape(working_directory)}</rsp:WorkingDirectory>")
    if idle_timeout:
        parts.append(f"<rsp:IdleTimeOut>{escape(str(idle_timeout))}</rsp:IdleTimeOut>")
    if environment:
        variables = "".join(
            f"<rsp:Variable Name={quoteattr(name)}>{escape(value)}</rsp:Variable>"
            for name, value in environment.items()
        )
        parts.append(f"<rsp:Environment>{variables}</rsp:Environment>")
    return envelope(CREATE, timeout, options=options, body=f"<rsp:Shell>{''.join(parts)}</rsp:Shell>")


def command(
    timeout: int,
    shell_id: str,
    command_line: str,
    arguments: list[str],
    *,
    console_mode_stdin: bool = True,
    skip_cmd_shell: bool = False,
) -> Envelope:
    options = _options(
        WINRS_CONSOLEMODE_STDIN=str(console_mode_stdin).upper(), WINRS_SKIP_CMD_SHELL=str(skip_cmd_shell).upper()
    )
    args = f"<rsp:Arguments>{escape(' '.join(arguments))}</rsp:Arguments>" if arguments else ""
    body = f"<rsp:CommandLine><rsp:Command>{escape(command_line)}</rsp:Command>{args}</rsp:CommandLine>"
    return envelope(COMMAND, timeout, shell_id=shell_id, options=options, body=body)


def send(timeout: int, shell_id: str, command_id: str, data: bytes, *, end: bool = False) -> Envelope:
    body = (
        f'<rsp:Send><rsp:Stream CommandId={quoteattr(command_id)} Name="stdin" End="{str(end).lower()}" '
        f'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
        f"{base64.b64encode(data).decode('ascii')}</rsp:Stream></rsp:Send>"
    )
    return envelope(SEND, timeout, shell_id=shell_id, body=body)


def receive(timeout: int, shell_id: str, command_id: str) -> Envelope:
    stream = f"<rsp:DesiredStream CommandId={quoteattr(command_id)}>stdout stderr</rsp:DesiredStream>"
    body = f"<rsp:Receive>{stream}</rsp:Receive>"
    return envelope(RECEIVE, timeout, shell_id=shell_id, body=body)


def signal(timeout: int, shell_id: str, command_id: str) -> Envelope:
    body = f"<rsp:Signal CommandId={quoteattr(command_id)}><rsp:Code>{TERMINATE}</rsp:Code></rsp:Signal>"
    return envelope(SIGNAL, timeout, shell_id=shell_id, body=body)


def delete(timeout: int, shell_id: str) -> Envelope:
    return envelope(DELETE, timeout, shell_id=shell_id)


# Replies -----------------------------------------------------------------------------------


class ReplyError(ValueError):
    """A 200 reply that lacks what the operation must return."""


def _parse(reply: bytes) -> ET.Element:
    try:
        # The reply of a WinRM listener we connected to; expat refuses entity expansion bombs.
        return ET.fromstring(reply)  # noqa: S314
    except ET.ParseError:
        raise ReplyError("the reply is not XML") from None


def shell_id(reply: bytes) -> str:
    for node in _parse(reply).iter():
        if node.get("Name") == "ShellId":
            return node.text or ""
    raise ReplyError("the Create reply names no shell")


def command_id(reply: bytes) -> str:
    for node in _parse(reply).iter():
        if node.tag.endswith("CommandId"):
            return node.text or ""
    raise ReplyError("the Command reply names no command")


def relates_to(reply: bytes) -> str:
    for node in _parse(reply).iter():
        if node.tag.endswith("RelatesTo"):
            return (node.text or "").strip()
    raise ReplyError("the reply relates to no request")


def output(reply: bytes) -> tuple[bytes, bytes, int, bool]:
    """stdout, stderr, exit code (-1 until done) and whether the command is done."""
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    done = 0
    exit_code = -1
    code_text: str | None = None
    for node in _parse(reply).iter():
        tag = node.tag
        if tag.endswith("Stream"):
            if node.text:
                name = node.get("Name")
                if name == "stdout":
                    stdout.append(base64.b64decode(node.text.encode("ascii")))
                elif name == "stderr":
                    stderr.append(base64.b64decode(node.text.encode("ascii")))
        elif tag.endswith("ExitCode") and code_text is None:
            code_text = node.text or ""
        if node.get("State", "").endswith("CommandState/Done"):
            done += 1
    finished = done == 1
    if finished:
        if code_text is None:
            raise ReplyError("the finished command has no exit code")
        exit_code = int(code_text or -1)
    return b"".join(stdout), b"".join(stderr), exit_code, finished
