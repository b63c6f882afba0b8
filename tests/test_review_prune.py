"""Pruning bugs found in review: each test failed before its fix."""

from __future__ import annotations

import pytest
from torch import nn

from spikeflow import prune, quant
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


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


@pytest.mark.parametrize("method", [prune.apply_gradient_rewiring, prune.apply_soft_threshold])
def test_pruning_a_quantized_layer_says_it_is_quantized_and_which_order_works(method):
    """It said "its weight is already parametrized (pruning applied twice?)": the layer
    was quantized, not pruned, and docs/quantization.md's order (prune, then quantize)
    is what works."""
    net = _net()
    quant.apply_weight_quantization(net, bits=4, layers=[net[1]])
    with pytest.raises(ConfigurationError) as error:
        method(net)
    message = str(error.value)
    assert "layer '1': its weight is already parametrized by weight quantization" in message
    assert "apply pruning first, then quantization" in message
    assert "twice" not in message


def test_pruning_a_pruned_layer_still_says_twice():
    net = _net()
    prune.apply_soft_threshold(net)
    with pytest.raises(
        ConfigurationError,
        match=r"layer '0': its weight is already "
        r"parametrized by pruning \(SoftThreshold\): pruning applied twice\?",
    ):
        prune.apply_gradient_rewiring(net)


def test_pruning_a_layer_with_another_parametrization_names_it():
    net = _net()
    nn.utils.parametrizations.weight_norm(net[0])
    with pytest.raises(
        ConfigurationError,
        match=r"layer '0': its weight is already "
        r"parametrized by _WeightNorm",
    ):
        prune.apply_gradient_rewiring(net)


def test_grad_r_refuses_maximize():
    """``maximize=True`` was accepted: Adam then climbed the loss while the prior still
    pulled the strengths down (its step is written for descent)."""
    net = _net()
    prune.apply_gradient_rewiring(net)
    with pytest.raises(ConfigurationError, match=r"GradRewiring: maximize=True"):
        prune.GradRewiring(net, maximize=True)
    strengths = [net[0].parametrizations.weight.original]
    with pytest.raises(ConfigurationError, match=r"GradRewiring: maximize=True .*group 1"):
        prune.GradRewiring(
            [
                {"params": strengths, "alpha": 0.1},
                {"params": [net[0].bias], "alpha": 0.0, "maximize": True},
            ]
        )
    optimizer = prune.GradRewiring(net)
    with pytest.raises(ConfigurationError, match=r"GradRewiring: maximize=True"):
        optimizer.add_param_group({"params": [net[1].bias], "maximize": True})
    assert len(optimizer.param_groups) == 2  # the refused group was not added
