"""Secret references and their values: the one place a secret exists in the clear.

A reference is `env:NAME`, `file:PATH` or `keyring:SERVICE/USER`. Values are resolved
only when an ini is rendered for a push or a diff, wrapped in `Secret` so that printing,
logging or formatting one shows `********`, and collected in a `Redactor` that scrubs
any text leaving the program.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv.parser import parse_stream

from provision.errors import ConfigError, Problem, SecretError, display_path
from provision.model.microsip import Version, account_string_max
from provision.model.values import cut, unsafe_character

MASK = "********"
#: The most a file: secret is read (a password is at most a few hundred characters).
MAX_SECRET_FILE = 64 * 1024


class Secret:
    """A secret value that does not show itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and same_text(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def same_text(a: str, b: str) -> bool:
    """Constant-time equality of two texts (hmac.compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _about(ref: str, where: str) -> str:
    """How an error names a secret: its reference (cut if huge) and where it is used."""
    return f"secret {cut(ref)} (used at {where})"


class SecretResolver:
    """Resolves references; `environ` and the keyring are passed in, never read globally."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path) -> None:
        self._environ = environ
        self._base_dir = base_dir
        self._cache: dict[str, Secret] = {}

    def resolve(self, ref: str, where: str) -> Secret:
        cached = self._cache.get(ref)
        if cached is None:
            value = self._lookup(ref, where)
            bad = unsafe_character(value)
            if bad:
                raise SecretError(f"{_about(ref, where)} contains {bad}; it would break the ini file")
            if not value:
                raise SecretError(f"{_about(ref, where)} is empty")
            cached = self._cache[ref] = Secret(value)
        return cached

    def resolve_ini(self, ref: str, where: str, version: Version) -> Secret:
        """A secret that becomes an ini value: refused if MicroSIP would read it back changed.

        GetPrivateProfileString trims spaces, strips one pair of quotes and reads at most a
        buffer's worth; a password that arrives changed fails to register with no clue why.
        """
        secret = self.resolve(ref, where)
        value = secret.reveal()
        problem = None
        if value != value.strip():
            problem = "starts or ends with a space (or other blank); Windows trims it when MicroSIP reads the ini"
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            problem = "is wrapped in quotes; Windows strips one pair of quotes when MicroSIP reads the ini"
        elif len(value) > account_string_max(version):
            problem = f"is longer than the {account_string_max(version)} characters MicroSIP {version} reads"
        if problem:
            raise SecretError(f"{_about(ref, where)} {problem}")
        return secret

    def _lookup(self, ref: str, where: str) -> str:
        scheme, _, name = ref.partition(":")
        if scheme == "env":
            if name not in self._environ:
                raise SecretError(f"{_about(ref, where)}: environment variable {name} is not set")
            return self._environ[name]
        if scheme == "file":
            path = Path(name).expanduser()
            path = path if path.is_absolute() else self._base_dir / path
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    # A FIFO would block and a device never end.
                    raise SecretError(f"{_about(ref, where)}: not a regular file")
                with path.open("rb") as handle:
                    data = handle.read(MAX_SECRET_FILE + 1)
                if len(data) > MAX_SECRET_FILE:
                    raise SecretError(
                        f"{_about(ref, where)}: the file is larger than {MAX_SECRET_FILE:,} bytes; "
                        "a secret file holds one password"
                    )
                return data.decode("utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable as UTF-8"
                raise SecretError(f"{_about(ref, where)}: {reason}") from None
        if scheme == "keyring":
            return _keyring_lookup(ref, name, where)
        raise SecretError(f"{_about(ref, where)}: unknown scheme {scheme!r}")

    def secrets(self) -> list[Secret]:
        return list(self._cache.values())


def _keyring_lookup(ref: str, name: str, where: str) -> str:
    service, _, user = name.partition("/")
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]  # optional extra
        import keyring.errors  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise SecretError(
            f"{_about(ref, where)}: keyring references need the keyring extra (pip install 'provision[keyring]')"
        ) from None
    try:
        value = keyring.get_password(service, user)
    except keyring.errors.KeyringError as exc:
        raise SecretError(f"{_about(ref, where)}: keyring error: {type(exc).__name__}") from None
    if value is None:
        raise SecretError(f"{_about(ref, where)}: not found in the keyring")
    return str(value)


def fingerprint(key: bytes, scope: str, secret: Secret) -> str:
    """A keyed fingerprint: tells whether a secret changed without being reversible offline."""
    return hmac.new(key, f"{scope}\0{secret.reveal()}".encode(), hashlib.sha256).hexdigest()[:32]


class Redactor:
    """Replaces every known secret value in text with the mask (defence in depth)."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._values: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[Secret]) -> None:
        self._values.update(s.reveal() for s in secrets)

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=VALUE lines as python-dotenv reads them (export, quotes, escapes, # comments).

    Values are taken as written: ${VAR} is not expanded, so a secret arrives unchanged.
    A line that is not NAME=VALUE is an error naming its number, never its text: it may
    hold a secret.
    """
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise ConfigError([Problem(name, None, "", f"cannot read: {reason}")]) from None
    values: dict[str, str] = {}
    problems = []
    for binding in parse_stream(io.StringIO(text)):
        # The parser counts a binding from the blank lines before it: skip to its text.
        written = binding.original.string
        line = binding.original.line + written[: len(written) - len(written.lstrip())].count("\n")
        if binding.error:
            problems.append(Problem(name, line, "", "expected NAME=VALUE (a quote left open?)"))
        elif binding.key is None:
            continue  # a blank line or a comment
        elif not _ENV_NAME.fullmatch(binding.key):
            problems.append(Problem(name, line, "", "NAME must be letters, digits and _, not starting with a digit"))
        elif binding.value is None:
            problems.append(Problem(name, line, "", "expected NAME=VALUE (no = on this line)"))
        else:
            values[binding.key] = binding.value
    if problems:
        raise ConfigError(problems)
    return values


def env_file_warnings(path: Path) -> list[Problem]:
    """Warnings about an env file that holds secrets: readable or writable by others."""
    if os.name != "posix":
        return []  # Windows permissions are ACLs; st_mode says nothing about them
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if not mode & 0o077:
        return []
    name = display_path(path)
    return [
        Problem(
            name,
            None,
            "",
            f"holds secrets but its mode is {mode:04o} (group or others have access); chmod 600 {name}",
        )
    ]
