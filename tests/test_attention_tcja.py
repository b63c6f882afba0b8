"""TCJA (temporal-channel joint attention): against a loop transcribed from the authors'
definition (ridgerchu/TCJA), against their operations run with torch's own 'same'
padding, and the errors."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers import TCJA

F64 = dict(rtol=1e-10, atol=1e-12)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def _loop_tcja(x: torch.Tensor, w_t: torch.Tensor, w_c: torch.Tensor) -> torch.Tensor:
    """Y[t,b,c,...] = σ(A_t ⊙ A_c)[b,t,c] · X[t,b,c,...], every sum written out:
    A_t[b,t,c] = Σ_{t',j} W_t[t,t',j] Z[b,t',c+j-l_t],
    A_c[b,t,c] = Σ_{c',j} W_c[c,c',j] Z[b,t+j-l_c,c'],  l = (k-1)//2, zeros outside."""
    steps, batch, channels = x.shape[:3]
    z = x.reshape(steps, batch, channels, -1).mean(-1) if x.dim() > 3 else x
    kt, kc = w_t.shape[-1], w_c.shape[-1]
    lt, lc = (kt - 1) // 2, (kc - 1) // 2
    y = torch.empty_like(x)
    for b in range(batch):
        for t in range(steps):
            for c in range(channels):
                a_t = sum(w_t[t, u, j] * z[u, b, c + j - lt]
                          for u in range(steps) for j in range(kt)
                          if 0 <= c + j - lt < channels)  # fmt: skip
                a_c = sum(w_c[c, d, j] * z[t + j - lc, b, d]
                          for d in range(channels) for j in range(kc)
                          if 0 <= t + j - lc < steps)  # fmt: skip
                y[t, b, c] = torch.sigmoid(a_t * a_c) * x[t, b, c]
    return y


@pytest.mark.parametrize(("kt", "kc"), [(2, 1), (4, 4), (3, 2), (1, 3)])
@pytest.mark.parametrize("shape", [(5, 2, 6, 3, 4), (4, 3, 5), (3, 2, 4, 7)])
def test_tcja_equals_the_transcribed_loop_in_float64(kt, kc, shape):
    torch.manual_seed(kt * 10 + kc)
    x = torch.randn(shape, dtype=torch.float64)
    layer = TCJA(shape[0], shape[2], kt, kc, dimension=len(shape) - 1).double()
    _randomise(layer, kt + kc)
    expected = _loop_tcja(x, layer.conv.weight, layer.conv_c.weight)
    torch.testing.assert_close(layer(x), expected, **F64)


def test_tcja_equals_the_authors_operations_with_torch_same_padding():
    """Their TCJA_for_TET on a batch-first [B, T, C, H, W] input: mean over H, W, the
    T-channel conv on [B, T, C], the C-channel conv on [B, C, T], product, sigmoid."""
    torch.manual_seed(0)
    T, C = 6, 8
    x = torch.rand(T, 3, C, 4, 4, dtype=torch.float64)
    layer = TCJA(T, C, 4, 4).double()
    _randomise(layer, 1)
    conv = torch.nn.Conv1d(T, T, 4, padding="same", bias=False).double()
    conv_c = torch.nn.Conv1d(C, C, 4, padding="same", bias=False).double()
    conv.weight.data.copy_(layer.conv.weight)
    conv_c.weight.data.copy_(layer.conv_c.weight)
    xb = x.transpose(0, 1)
    z = xb.mean(dim=[3, 4])
    with pytest.warns(UserWarning):  # (torch's even-kernel 'same' copy; spikeflow pads once)
        out = torch.sigmoid(conv_c(z.permute(0, 2, 1)).permute(0, 2, 1) * conv(z))
    expected = (xb * out[:, :, :, None, None]).transpose(0, 1)
    torch.testing.assert_close(layer(x), expected, **F64)


def test_tcja_parameters_and_gradients():
    layer = TCJA(4, 16, 4, 2)
    assert layer.conv.weight.shape == (4, 4, 4) and layer.conv_c.weight.shape == (16, 16, 2)
    assert layer.conv.bias is None and layer.conv_c.bias is None
    x = torch.rand(4, 2, 16, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.conv.weight.grad.abs().sum() > 0
    assert layer.conv_c.weight.grad.abs().sum() > 0
    assert "kernel_size_t=4" in repr(layer)


def test_tcja_scores_depend_on_other_steps():
    """A step's output changes when another step's input does (whole-sequence only)."""
    torch.manual_seed(3)
    layer = TCJA(4, 3, 2, 3).double()
    x = torch.rand(4, 1, 3, 2, 2, dtype=torch.float64)
    y0 = layer(x)[0]
    x2 = x.clone()
    x2[2] += 1.0
    assert not torch.allclose(layer(x2)[0], y0)
    assert layer.streamable is False


def test_tcja_errors():
    with pytest.raises(ConfigurationError, match="T must be an integer >= 1"):
        TCJA(0, 4)
    with pytest.raises(ConfigurationError, match="kernel_size_t"):
        TCJA(4, 4, kernel_size_t=0)
    with pytest.raises(ConfigurationError, match="dimension"):
        TCJA(4, 4, dimension=1)
    layer = TCJA(4, 8)
    with pytest.raises(ShapeError, match="T \\(steps\\) = 4"):
        layer(torch.rand(5, 2, 8, 3, 3))
    with pytest.raises(ShapeError, match="channels = 8"):
        layer(torch.rand(4, 2, 6, 3, 3))
    with pytest.raises(ShapeError, match="missing the time dimension"):
        layer(torch.rand(2, 8, 3, 3))
    with pytest.raises(DTypeError, match="floating-point"):
        layer(torch.ones(4, 2, 8, 3, 3, dtype=torch.int64))
