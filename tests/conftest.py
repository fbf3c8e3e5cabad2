"""Shared test configuration: hypothesis profiles chosen by the HYPOTHESIS_PROFILE env var.

`ci` (the default) keeps property tests quick enough for every run; `dev` explores far more
examples when a property is being worked on: `HYPOTHESIS_PROFILE=dev pytest tests/test_expr.py`.
Tests that pass an explicit `max_examples` to `@settings` keep their own count.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
