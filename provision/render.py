"""Rendering a target's microsip.ini from Jinja2 templates, and checking what came out.

Values are validated and spelled for the ini (booleans as 1/0, hook commands and device
names quoted as MicroSIP writes them) before they reach the template. Secrets never
reach it: a password is a placeholder token, swapped for the real value only when the
final file is made (provision/plan.py). The rendered text is then read back with
MicroSIP's own rules and checked.
"""

from __future__ import annotations

import re
import secrets as _random
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

import provision
from provision.errors import TemplateError, display_path
from provision.ini import Desired, Key, read_ini
from provision.model import microsip
from provision.model.profile import Profile
from provision.model.rules import hook_command, ini_value
from provision.model.values import cut, one_line, unsafe_character
from provision.sandbox import LimitedSandbox, TemplateLimitError, render_budget
from provision.targets import Target

TEMPLATE = "microsip.ini.j2"
_ACCOUNT_SECTION = re.compile(r"account([1-9][0-9]{0,8})")
_ACCOUNT_ID = re.compile(r"[0-9]{1,9}")  # ASCII digits: str.isdigit also takes '²' and '١'


def packaged_templates() -> Path:
    """The default templates: inside the wheel, or templates/ at the top of a checkout."""
    here = Path(provision.__file__).resolve().parent
    inside = here / "templates"
    return inside if inside.is_dir() else here.parent / "templates"


class Templates:
    """A sandboxed Jinja2 environment over the user's templates, falling back to the defaults."""

    def __init__(self, directory: Path | None = None) -> None:
        search = [d for d in (directory, packaged_templates()) if d is not None and d.is_dir()]
        self.directories = search
        self.env = LimitedSandbox(
            loader=jinja2.FileSystemLoader([str(d) for d in search]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._template: jinja2.Template | None = None
        # A template over a limit is over it for every target: fail the rest at once.
        self._over_limit: TemplateError | None = None

    def template(self) -> jinja2.Template:
        if self._template is None:
            try:
                self._template = self.env.get_template(TEMPLATE)
            except jinja2.TemplateSyntaxError as exc:
                where = f"{display_path(exc.filename or exc.name or TEMPLATE)}:{exc.lineno}"
                raise TemplateError(f"{where}: template syntax error: {one_line(exc.message or '')}") from None
            except jinja2.TemplateNotFound as exc:
                dirs = ", ".join(display_path(d) for d in self.directories) or "none"
                raise TemplateError(f"template {one_line(str(exc.name))} not found (searched: {dirs})") from None
            except Exception as exc:  # noqa: BLE001 - compiling runs the template's constant parts
                where = _template_line(exc, None)
                raise TemplateError(f"{where}: the template cannot be compiled: {_template_message(exc)}") from None
        return self._template

    def render(self, context: dict[str, Any]) -> str:
        template = self.template()
        if self._over_limit is not None:
            raise self._over_limit
        try:
            with render_budget():
                return template.render(context)
        except Exception as exc:  # noqa: BLE001 - the template is the admin's code: what it raises is its error
            error = TemplateError(f"{_template_line(exc, template)}: {_template_message(exc)}")
            if isinstance(exc, TemplateLimitError | RecursionError):
                self._over_limit = error
            raise error from None


def _template_line(exc: BaseException, template: jinja2.Template | None) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and frame.filename.endswith(".j2"):
            return f"{display_path(frame.filename)}:{frame.lineno}"
    return display_path((template.filename if template else None) or TEMPLATE)


def _template_message(exc: BaseException) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {one_line(exc.message or '')}"
    if isinstance(exc, TemplateLimitError):
        return f"{exc} (a microsip.ini template needs far less)"
    if isinstance(exc, SecurityError):
        return f"not allowed in the sandbox: {one_line(str(exc))}"
    if isinstance(exc, RecursionError):
        return "recursion too deep: a macro that calls itself or a template that includes itself"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"template error: {one_line(str(exc))}"


@dataclass(frozen=True)
class RenderedIni:
    """A target's managed ini content; `tokens` maps each password placeholder to its account section."""

    target: Target
    text: str
    desired: Desired
    tokens: dict[str, str]  # token -> account section (lower case)

    def display_text(self) -> str:
        text = self.text
        for token in self.tokens:
            text = text.replace(token, "********")
        return text


class Renderer:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        # A fresh nonce per run: a value that happens to contain a token cannot be one.
        self._nonce = _random.token_hex(6)
        # Many targets share one resolved profile: spell its [Settings] once.
        self._settings: dict[tuple[int, int], tuple[object, dict[str, str]]] = {}

    def _settings_for(self, target: Target) -> dict[str, str]:
        key = (id(target.resolved), target.active_index)
        cached = self._settings.get(key)
        if cached is None or cached[0] is not target.resolved:
            cached = (target.resolved, settings_values(target.resolved.profile, target.active_index))
            self._settings[key] = cached
        return dict(cached[1])

    def render(self, target: Target) -> RenderedIni:
        tokens: dict[str, str] = {}
        accounts = []
        for account in target.accounts:
            keys = account_values(account.values)
            if account.password is not None:
                token = f"@@secret-{self._nonce}-{account.section.lower()}@@"
                tokens[token] = account.section.lower()
                keys["password"] = token
            accounts.append({"section": account.section, "name": account.name, "fields": keys})
        profile = target.resolved.profile
        context = {
            "settings": self._settings_for(target),
            "accounts": accounts,
            "host": {"name": target.host, "address": target.connection.address or target.host},
            "user": {
                "name": target.user,
                "extension": target.user_model.extension or "",
                "display_name": target.user_model.display_name or "",
            },
            "profile": {
                "chain": list(target.resolved.chain),
                "description": profile.description or "",
                "microsip_version": profile.microsip_version,
            },
            "provision_version": provision.__version__,
        }
        text = self.templates.render(context)
        desired = check_rendered(text, target, tokens)
        return RenderedIni(target, text, desired, tokens)


def settings_values(profile: Profile, active_index: int) -> dict[str, str]:
    """[Settings] keys the profile manages, spelled for the ini, accountId first."""
    values = {"accountId": str(active_index)}
    for name, value in profile.settings:
        if value is not None:
            values[name] = ini_value(value)
    for role, key in microsip.AUDIO_KEYS.items():
        device = getattr(profile.audio, role)
        if device is not None:
            values[key] = f'"{device}"'  # MicroSIP saves device names in quotes
    for key in microsip.HOOK_KEYS:
        hook = getattr(profile.hooks, key)
        if hook is not None:
            # MicroSIP writes cmd* values in an extra pair of quotes; reading strips one pair.
            values[key] = f'"{hook_command(hook)}"'
    for key, extra in profile.extra_settings.items():
        values[key] = ini_value(extra)
    return values


def account_values(values: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if key == "transport" and value == "udp+tcp":
            out[key] = ""  # MicroSIP's spelling of "UDP and TCP"
        else:
            out[key] = ini_value(value)
    return out


def check_rendered(text: str, target: Target, tokens: dict[str, str]) -> Desired:
    """Read the rendered text back as MicroSIP would and check it is a good microsip.ini."""
    doc = read_ini(text)
    where = f"{TEMPLATE} for {target.id}"
    errors: list[str] = []
    for name, line in doc.duplicate_sections:
        errors.append(f"line {line}: section [{cut(name)}] appears twice")
    for section, key, line in doc.duplicate_keys:
        errors.append(f"line {line}: [{cut(section)}] {cut(key)} appears twice (MicroSIP would read the first)")
    for line in doc.ignored_lines:
        errors.append(f"line {line}: neither a section, a key=value line nor a ; comment")
    settings = doc.sections.get("settings")
    if settings is None:
        errors.append("no [Settings] section")
    numbers = []
    for lower, sec in doc.sections.items():
        match = _ACCOUNT_SECTION.fullmatch(lower)
        if match:
            numbers.append(int(match.group(1)))
            errors += [
                f"[{cut(sec.name)}] has no {k}" for k in ("domain", "server", "username") if not sec.values.get(k)
            ]
        elif lower in microsip.OWNED_SECTIONS:
            errors.append(f"[{cut(sec.name)}] belongs to MicroSIP and the user; a template may not write it")
        elif lower != "settings":
            errors.append(f"[{cut(sec.name)}] is not a section MicroSIP reads")
        for key, value in sec.values.items():
            bad = unsafe_character(value)
            if bad:
                errors.append(f"[{cut(sec.name)}] {cut(sec.names[key])} contains {bad}")
            limit = _value_limit(bool(match), key)
            if len(value) > limit:
                errors.append(f"[{cut(sec.name)}] {cut(sec.names[key])} is longer than MicroSIP reads ({limit})")
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        errors.append(f"accounts must be numbered 1..N without gaps (found {cut(str(sorted(numbers)))})")
    if settings is not None:
        account_id = settings.values.get("accountid")
        if account_id is None:
            errors.append("[Settings] has no accountId; without it MicroSIP ignores [Account1]")
        elif not _ACCOUNT_ID.fullmatch(account_id) or not 1 <= int(account_id) <= len(numbers):
            errors.append(f"[Settings] accountId={cut(account_id)} points at no account")
        wanted = target.resolved.profile.settings.updatesInterval
        if wanted is not None and settings.values.get("updatesinterval") != wanted:
            errors.append(f"[Settings] updatesInterval must be {wanted!r} (an update prompt blocks the workstation)")
        for key in settings.values:
            if key in microsip.USER_STATE_KEYS:
                errors.append(
                    f"[Settings] {cut(settings.names[key])} is user state MicroSIP rewrites; do not manage it"
                )
    errors += _check_tokens(doc.keys(), tokens)
    if errors:
        shown = errors[:MAX_REPORTED] + (
            [f"... and {len(errors) - MAX_REPORTED} more"] if len(errors) > MAX_REPORTED else []
        )
        raise TemplateError(f"{where}: the rendered ini is not valid:\n" + "\n".join(f"  {e}" for e in shown))
    return Desired.from_doc(doc)


#: Problems listed for one rendered ini; a template gone wrong can make thousands.
MAX_REPORTED = 20


def _value_limit(account: bool, key: str) -> int:
    if account:
        return microsip.ACCOUNT_STRING_MAX
    if key == "audiocodecs":
        return microsip.AUDIO_CODECS_MAX
    return microsip.SETTINGS_STRING_MAX + 2  # two for the quotes MicroSIP puts around some values


def _check_tokens(keys: dict[Key, str], tokens: dict[str, str]) -> list[str]:
    """Each password placeholder must be exactly the password of its own account, and nowhere else."""
    errors = []
    for (section, key), value in keys.items():
        if "@@secret-" in value and (tokens.get(value) != section or key != "password"):
            errors.append(f"[{cut(section)}] {cut(key)}: a secret may only be the value of an account's password")
    for token, section in tokens.items():
        if keys.get((section, "password")) != token:
            errors.append(f"[{cut(section)}] password must be written exactly as {{{{ account.fields.password }}}}")
    return errors
