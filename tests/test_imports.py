"""Every module imports on its own in a fresh interpreter (no hidden import-order dependency)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import provision


def modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages(provision.__path__, "provision.") if m.name != "provision.__main__"
    )


def test_every_module_imports_alone() -> None:
    names = modules()
    assert "provision.render" in names and "provision.cli.main" in names
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    for name in names:
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_python_m_provision_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "provision", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and provision.__version__ in result.stdout


def test_provision_log_never_reaches_standard_error_on_its_own() -> None:
    """Without --log-file or -v nothing configures logging: Python's last-resort handler would
    print provision's warnings to standard error, unredacted."""
    code = "import logging, provision.fleet\nlogging.getLogger('provision.fleet').error('a secret: hunter2')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == ""
