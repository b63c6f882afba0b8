"""encoding.StatelessEncoder / StatefulEncoder: SpikingJelly 2.0's encoder bases, with
spikeflow's step modes and streaming; a subclass gives SpikingJelly's subclass's spikes."""

from __future__ import annotations

import pytest
import torch

from sj_checks import sj
from spikeflow import encoding, functional
from spikeflow.errors import ConfigurationError, ShapeError, StateError


def _latency(x: torch.Tensor, T: int) -> torch.Tensor:
    t_f = ((T - 1) * (1 - x)).round()
    steps = torch.arange(T).view(-1, *[1] * x.dim())
    return (steps == t_f).to(x.dtype)


class Latency(encoding.StatefulEncoder):
    def encode(self, x):
        return _latency(x, self.T)


class Threshold(encoding.StatelessEncoder):
    def encode_step(self, x):
        return (x > 0.5).to(x.dtype)


def test_stateful_encoder_gives_spikingjellys_steps():
    sj_encoding = sj("encoding")

    class SJLatency(sj_encoding.StatefulEncoder):
        def single_step_encode(self, x):
            return _latency(x, self.T)

    x = torch.rand(2, 3, generator=torch.Generator().manual_seed(0))
    theirs = SJLatency(5)
    want = torch.stack([theirs(x) for _ in range(12)])  # period 5
    assert torch.equal(Latency(5)(x), want[:5])
    ours = Latency(5, step_mode="s")
    with functional.streaming(ours):
        assert torch.equal(torch.stack([ours(x) for _ in range(12)]), want)
        with pytest.raises(StateError):
            ours(torch.rand(4, 3))  # another batch while streaming


def test_stateless_encoder_gives_spikingjellys_spikes():
    sj_encoding = sj("encoding")

    class SJThreshold(sj_encoding.StatelessEncoder):
        def forward(self, x):
            return (x > 0.5).to(x.dtype)

    x = torch.rand(4, 6)
    assert torch.equal(Threshold(step_mode="s")(x), SJThreshold()(x))
    assert torch.equal(Threshold(3)(x), SJThreshold()(x).expand(3, 4, 6))
    assert "T=3" in repr(Threshold(3))


def test_bases_refuse_bad_use():
    with pytest.raises(ConfigurationError, match="needs T"):
        Threshold()(torch.rand(2))
    with pytest.raises(ConfigurationError, match="T"):
        Threshold(0)
    with pytest.raises(ConfigurationError, match="T"):
        Latency(0)
    with pytest.raises(NotImplementedError, match="encode_step"):
        encoding.StatelessEncoder(2)(torch.rand(2))
    with pytest.raises(NotImplementedError, match="encode"):
        encoding.StatefulEncoder(2)(torch.rand(2))

    class Short(encoding.StatefulEncoder):
        def encode(self, x):
            return x.expand(self.T - 1, *x.shape)

    with pytest.raises(ShapeError, match=r"\[T, \.\.\.\] with T = 3, got \(2, 2\)"):
        Short(3)(torch.rand(2))
