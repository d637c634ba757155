"""provision: roll out and look after MicroSIP on Windows workstations."""

import logging

__version__ = "0.1.0"

# provision's log goes where the command line sends it (--log-file, -vv), redacted; never, by
# Python's last-resort handler, unredacted to standard error.
logging.getLogger(__name__).addHandler(logging.NullHandler())
