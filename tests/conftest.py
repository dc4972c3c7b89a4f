"""Test settings: a small Hypothesis profile for CI (2 cores, no GPU), a larger one on request."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("nightly", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("CHARSEQ_HYPOTHESIS_PROFILE", "ci"))
