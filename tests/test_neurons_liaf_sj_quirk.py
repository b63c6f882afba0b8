"""docs/migration.md's LIAF row: SpikingJelly 2.0's multi-step ``LIAFNode`` returns binary
spikes unless ``store_v_seq=True``; with it, it equals spikeflow's ``act(H - θ)``."""

from __future__ import annotations

import pytest
import torch

from spikeflow.neurons import LIAFNode


def test_spikingjelly_liaf_multi_step_needs_store_v_seq():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    x = torch.full((3, 1), 1.5, dtype=torch.float64)
    ours = LIAFNode(lambda h: h, True)(x).flatten().tolist()
    assert ours == pytest.approx([-0.25, 0.125, -0.25])  # H = 0.75, 1.125 (fires), 0.75
    plain = neuron.LIAFNode(lambda h: h, True, step_mode="m")
    assert plain(x).flatten().tolist() == [0.0, 1.0, 0.0]  # LIFNode's spikes
    stored = neuron.LIAFNode(lambda h: h, True, step_mode="m", store_v_seq=True)
    assert stored(x).flatten().tolist() == pytest.approx(ours)
