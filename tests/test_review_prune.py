"""Pruning bugs found in review: each test failed before its fix."""

from __future__ import annotations

import pytest

from spikeflow import prune
from spikeflow.errors import ConfigurationError


@pytest.mark.parametrize(
    ("alpha", "target", "named"),
    [
        (0.0, 0.9, "alpha"),  # was a ZeroDivisionError
        (-1.0, 0.9, "alpha"),  # was a centre of +1.6 (no prior has a negative strength)
        (0.1, 1.0, "target_sparsity"),  # was "math domain error"
        (0.1, 0.0, "target_sparsity"),
        (float("nan"), 0.9, "alpha"),
    ],
)
def test_prior_centre_names_a_bad_argument(alpha, target, named):
    with pytest.raises(ConfigurationError, match=f"prior_centre: {named}"):
        prune.prior_centre(alpha, target)


@pytest.mark.parametrize("shape", ["sine", "linear", "slats"])
@pytest.mark.parametrize("x", [-0.5, 1.5, 2.0])
def test_threshold_at_refuses_progress_outside_zero_to_one(shape, x):
    """It returned a value silently: "sine" at x = 2 was 0 (the start again), "linear"
    and "slats" at x = 2 twice the final threshold."""
    with pytest.raises(ConfigurationError, match=r"threshold_at: x .* in \[0, 1\]"):
        prune.threshold_at(shape, x, 1.0)


def test_threshold_at_refuses_a_negative_final_threshold():
    with pytest.raises(ConfigurationError, match=r"threshold_at: final"):
        prune.threshold_at("linear", 0.5, -1.0)
