"""The Spike-driven Transformer's DVS variant ("Erode", Yao et al., NeurIPS 2023):
against a transcription of the authors' attention with ``dvs=True`` (their
``module/ms_conv.py``, on SpikingJelly's modules and weights; outputs, gradients and
running statistics in float64), against loops over each window, and the zoo presets'
parameter counts against the authors' layers."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.layers import SpikeDrivenSelfAttention
from spikeflow.layers.attention import erode_grid, erode_heads
from spikeflow.models import create_model
from spikeflow.models import spike_driven as sdt
from test_models_sj_transformers import _compare


def _authors_erode_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The authors' ``MS_SSA_Conv.forward`` with ``dvs=True``, written out on
    SpikingJelly's attention modules (the same names): the ``MaxPool3d((1, 3, 3))``
    applied to K and V ``[T, B, C, H, W]`` after their neurons, to ``K ⊙ V`` and to
    ``Q ⊙ kv`` in the heads layout ``[T, B, heads, N, C/heads]``."""
    steps, batch, channels, height, width = x.shape
    pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))
    identity = x
    x = self.shortcut_lif(x)

    def heads(maps: torch.Tensor) -> torch.Tensor:
        tokens = maps.flatten(3).transpose(-1, -2)
        return tokens.reshape(steps, batch, height * width, self.num_heads,
                              channels // self.num_heads).permute(0, 1, 3, 2, 4)  # fmt: skip

    q = heads(self.q_lif(self.q_bn(self.q_conv(x))))
    k = heads(pool(self.k_lif(self.k_bn(self.k_conv(x)))))
    v = heads(pool(self.v_lif(self.v_bn(self.v_conv(x)))))
    kv = self.attn_lif(pool(k.mul(v)).sum(dim=-2, keepdim=True))
    x = pool(q.mul(kv)).transpose(3, 4).reshape(steps, batch, channels, height, width)
    return self.proj_bn(self.proj_conv(x)) + identity


@pytest.mark.parametrize("training", [False, True])
def test_erode_equals_the_authors_dvs_attention(float64, training):
    """SpikingJelly's ``SpikeDrivenTransformer`` with every attention running the
    authors' DVS forward, against ``sdt_cifar10dvs`` at a small width with its weights:
    the same time-mean outputs, input and parameter gradients and running statistics.
    The 16x24 input leaves a 4x6 grid of tokens (not square: the grid is passed on)."""
    spike_driven = pytest.importorskip(
        "spikingjelly.activation_based.model.spike_driven_transformer",
        reason="SpikingJelly is not installed",
    )
    theirs = spike_driven.SpikeDrivenTransformer(
        T=2, in_channels=2, num_classes=5, embed_dims=32, num_heads=2, depths=2,
        pooling_stat="0011", detach_reset=True,
    )  # fmt: skip
    for block in theirs.blocks:
        block.attn.forward = _authors_erode_forward.__get__(block.attn)
    ours = create_model("sdt_cifar10dvs", num_classes=5, embed_dim=32, num_heads=2, depth=2,
                        input_size=16, neuron_kwargs={"detach_reset": True})  # fmt: skip
    assert all(block.attention.erode for block in ours.blocks)
    x = torch.rand(2, 2, 2, 16, 24) * 2

    def convert(state):
        return sdt.convert_spikingjelly_state_dict(state, pools=2)

    _compare(theirs, ours, convert, x, training, time_mean=True)
    # the pools change the outputs: without them the same weights give others
    plain = create_model("sdt_cifar10dvs", num_classes=5, embed_dim=32, num_heads=2, depth=2,
                         erode=False).train(training)  # fmt: skip
    plain.load_state_dict(ours.state_dict())
    assert (plain(x) - ours(x)).abs().max() > 1e-3


def _max3x3_loop(a: torch.Tensor) -> torch.Tensor:
    """The max over each entry's in-range 3x3 neighbourhood of the last two dims."""
    out = torch.empty_like(a)
    rows, cols = a.shape[-2:]
    for i in range(rows):
        for j in range(cols):
            window = a[..., max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            out[..., i, j] = window.amax(dim=(-2, -1))
    return out


def test_the_pools_equal_loops_over_their_windows():
    """:func:`erode_grid`: each token's 3x3 neighbours on the grid (rows of ``w``
    tokens); :func:`erode_heads`: neighbouring token indices and channels of a head."""
    torch.manual_seed(0)
    h, w, heads, width = 3, 5, 2, 4
    x = torch.randn(2, 3, heads, h * w, width, dtype=torch.float64)
    maps = x.transpose(3, 4).reshape(2, 3, heads, width, h, w)
    want = _max3x3_loop(maps).reshape(2, 3, heads, width, h * w).transpose(3, 4)
    torch.testing.assert_close(erode_grid(x, (h, w)), want)
    torch.testing.assert_close(erode_heads(x), _max3x3_loop(x))
    # token 4 ends the first row: on the grid its neighbours are tokens 3, 8, 9 (not 5)
    spike = torch.zeros(1, 1, 1, h * w, 1)
    spike[..., 5, 0] = 1.0
    assert erode_grid(spike, (h, w))[..., 4, 0] == 0 and erode_heads(spike)[..., 4, 0] == 1


@torch.no_grad()
def test_the_layer_by_hand():
    """The DVS attention as its formula, with the loops above: ``K, V`` eroded on the
    grid, ``SN_kv(Σ_N erode(K ⊙ V))``, ``BN(erode(Q ⊙ kv) W_o)``."""
    from sample_neurons import lif_loop
    from test_attention import _bn, _qkv_by_hand, _randomise

    torch.manual_seed(3)
    layer = SpikeDrivenSelfAttention(8, num_heads=2, erode=True).double().eval()
    _randomise(layer, 4)
    h, w = 2, 3
    x = torch.randn(3, 2, h * w, 8, dtype=torch.float64) * 2
    q, k, v = (t.reshape(3, 2, h * w, 2, 4).transpose(2, 3)
               for t in _qkv_by_hand(layer, lif_loop(x)))  # fmt: skip

    def on_grid(t):
        maps = t.transpose(3, 4).reshape(3, 2, 2, 4, h, w)
        return _max3x3_loop(maps).reshape(3, 2, 2, 4, h * w).transpose(3, 4)

    kv = lif_loop(_max3x3_loop(on_grid(k) * on_grid(v)).sum(dim=-2, keepdim=True),
                  threshold=0.5)  # fmt: skip
    attended = _max3x3_loop(q * kv).transpose(2, 3).reshape(3, 2, h * w, 8)
    want = _bn(layer.proj_norm, attended @ layer.proj.weight.T)
    torch.testing.assert_close(layer(x, (h, w)), want)
    assert kv.sum() > 0 and attended.sum() > 0  # not an all-silent case


def _authors_parameters(dim: int, depth: int, heads: int, in_channels: int,
                        classes: int) -> int:  # fmt: skip
    """The parameters of the authors' ``SpikeDrivenTransformer`` (``model/spikeformer.py``,
    ``module/sps.py``, ``module/ms_conv.py``), layer by layer."""
    widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
    total = sum(a * b * 9 + 2 * b for a, b in itertools.pairwise(widths))  # conv (no bias), BN
    total += dim * dim * 9 + 2 * dim  # rpe_conv (no bias), rpe_bn
    attention = 3 * (dim * dim + 2 * dim)  # q/k/v conv (no bias), BN
    attention += heads * heads  # talking_heads Conv1d (no bias; unused in forward)
    attention += dim * dim + dim + 2 * dim  # proj_conv (with bias), proj_bn
    mlp = (dim * 4 * dim + 4 * dim) + 2 * 4 * dim + (4 * dim * dim + dim) + 2 * dim
    return total + depth * (attention + mlp) + dim * classes + classes


@pytest.mark.parametrize(("name", "classes"), [("sdt_cifar10dvs", 10), ("sdt_dvsgesture", 11)])
def test_the_dvs_presets_are_the_authors_configurations(name, classes):
    """2-256, 8 heads, the authors' parameters less each block's projection bias (a
    batch norm follows it) and unused talking-heads layer; 16x16 tokens."""
    with torch.device("meta"):
        model = create_model(name)
    ours = sum(p.numel() for p in model.parameters())
    theirs = _authors_parameters(256, 2, 8, 2, classes)
    assert theirs - ours == 2 * (256 + 8 * 8)
    assert round(theirs / 1e6, 2) == 2.57  # the paper's 2.57M
    assert model.tokens == 256 and model.head.out_features == classes
    assert all(block.attention.erode == (name == "sdt_cifar10dvs") for block in model.blocks)


def test_bad_erode_arguments_are_named():
    with pytest.raises(ConfigurationError, match="erode must be True or False, got 'yes'"):
        SpikeDrivenSelfAttention(8, 2, erode="yes")
    with pytest.raises(ConfigurationError, match="argument erode must be true or false, got 1"):
        create_model("sdt_cifar10dvs", erode=1)
    layer = SpikeDrivenSelfAttention(8, 2, erode=True)
    with pytest.raises(ShapeError, match=r"grid .* for 6 tokens, which are not a square"):
        layer(torch.rand(2, 1, 6, 8))
    with pytest.raises(ShapeError, match=r"grid \(2, 2\) has 4 positions, the input 6 tokens"):
        layer(torch.rand(2, 1, 6, 8), (2, 2))
    assert layer(torch.rand(2, 1, 9, 8)).shape == (2, 1, 9, 8)  # 3x3 by default
