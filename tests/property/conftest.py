"""Hypothesis settings for the property tests.

By default (profile "ci") each property runs a few hundred examples, a few thousand in
all, in well under a minute. More, when looking for trouble:

    PROVISION_HYPOTHESIS_PROFILE=thorough pytest tests/property      # 20 times as many
    PROVISION_HYPOTHESIS_EXAMPLES=20000 pytest tests/property       # exactly this many each

The deadline is each example's time bound; a failing example is printed, shrunk, with
the line to reproduce it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=timedelta(seconds=3),
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=6000)
_examples = os.environ.get("PROVISION_HYPOTHESIS_EXAMPLES")
_profile = os.environ.get("PROVISION_HYPOTHESIS_PROFILE", "ci")
if _examples:
    settings.register_profile("chosen", parent=settings.get_profile(_profile), max_examples=int(_examples))
    _profile = "chosen"
settings.load_profile(_profile)
