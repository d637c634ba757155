"""provision: roll out and look after MicroSIP on Windows workstations."""

__version__ = "0.1.0"
