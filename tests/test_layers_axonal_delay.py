"""``layers.AxonalDelay``: learnable axonal delays, Lava-DL's ``slayer.axon.Delay``.

Lava-DL is not installable here; its delay is transcribed below from
``src/lava/lib/dl/slayer/axon/delay.py`` (``Delay.forward``, ``_delayFunction``) and
the CPU paths of the helpers it calls (``utils/time/shift.py``, ``utils/filter/conv.py``),
in its time-last layout ``[N, C, (H, W,) T]``, and is the reference for the truncated
forward (``interpolate=False``) and for the delay gradient of both modes. The linear
interpolation is checked against its formula written as loops and by float64 gradcheck;
whole delays against ``layers.Delay(k)`` neuron by neuron; streaming in chunks and single
steps against one call; clamping, ``grad_scale``, a buffer of fixed delays, the errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as tnf
from torch import nn

from spikeflow import functional as F
from spikeflow import layers
from spikeflow.errors import ConfigurationError, ShapeError, StateError
from spikeflow.layers import AxonalDelay, axonal_delay, clamp_delays
from streaming_checks import check_chunked_streaming

F64 = torch.float64


# ---- Lava-DL's axon delay, transcribed (CPU paths; layout [N, C, (H, W,) T]) --------------


def _lava_shift_group(input, shift_val, sampling_time=1):
    """utils/time/shift.py ``_shift_group``: every row shifted by int(shift / Ts)."""
    if hasattr(shift_val, "grad"):
        shift_val = shift_val.item()
    shift_blocks = int(shift_val / sampling_time)
    out_shape = input.shape
    input = input.reshape(-1, input.shape[-1])
    if shift_blocks == 0:
        output = input
    elif shift_blocks > 0:
        output = torch.zeros_like(input)
        output[..., shift_blocks:] = input[..., :-shift_blocks]
    else:
        output = torch.zeros_like(input)
        output[..., :shift_blocks] = input[..., -shift_blocks:]
    return output.reshape(out_shape)


def _lava_shift_individual(input, shift_val, sampling_time=1):
    """utils/time/shift.py ``_shift_individual``: one shift per neuron."""
    assert np.prod(input.shape[1:-1]) == shift_val.numel()
    out_shape = input.shape
    input = input.reshape(input.shape[0], -1, input.shape[-1])
    output = torch.zeros_like(input)
    shift_val = shift_val.flatten() / sampling_time
    for i in range(output.shape[1]):
        output[:, i : i + 1] = _lava_shift_group(
            input[:, i : i + 1], int(shift_val[i].item()), sampling_time
        )
    return output.reshape(out_shape)


def _lava_shift(input, shift_val, sampling_time=1):
    """utils/time/shift.py ``shift`` (CPU)."""
    if hasattr(shift_val, "grad") and shift_val.numel() > 1:
        return _lava_shift_individual(input, shift_val, sampling_time)
    if hasattr(shift_val, "grad"):
        shift_val = shift_val.item()
    return _lava_shift_group(input, shift_val, sampling_time)


def _lava_conv(input, filter, sampling_time=1):
    """utils/filter/conv.py ``conv`` forward (``_fwd``): causal convolution in time."""
    return (
        tnf.conv3d(
            tnf.pad(
                input.reshape((input.shape[0], 1, 1, -1, input.shape[-1])),
                pad=(torch.numel(filter) - 1, 0, 0, 0, 0, 0),
                value=0,
            ),
            torch.flip(filter.reshape(1, 1, 1, 1, -1), dims=[-1]),
        ).reshape(input.shape)
        * sampling_time
    )


class _LavaDelayFunction(torch.autograd.Function):
    """axon/delay.py ``_delayFunction``."""

    @staticmethod
    def forward(ctx, input, delay_val, grad_scale, sampling_time):
        output = _lava_shift(input, delay_val.data, sampling_time)
        sampling_time = torch.tensor(sampling_time, dtype=input.dtype)
        grad_scale = torch.tensor(grad_scale, dtype=input.dtype)
        ctx.save_for_backward(output, delay_val.data, grad_scale, sampling_time)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        (output, delay_val, grad_scale, sampling_time) = ctx.saved_tensors
        diff_filter = torch.tensor([-1, 1], dtype=grad_output.dtype) / sampling_time
        output_diff = _lava_conv(output, diff_filter, 1)
        grad_delay = (
            torch.sum(grad_output * output_diff, [0, -1], keepdim=True).reshape(
                grad_output.shape[1:-1]
            )
            * sampling_time
        )
        return (
            _lava_shift(grad_output, -delay_val, sampling_time),
            grad_delay * grad_scale,
            None,
            None,
        )


def _lava_delay(input, delay, max_delay, grad_scale=1.0):
    """axon/delay.py ``Delay.forward`` (delays already initialised): the parameter is
    clamped in place, then one delay per channel (repeated over H, W for NCHWT)."""
    delay.data.clamp_(0, max_delay)
    assert delay.shape[0] == input.shape[1]
    if np.prod(input.shape[1:-1]) == delay.shape[0]:
        return _LavaDelayFunction.apply(input, delay, grad_scale, 1)
    broadcast_shape = list(input.shape[1:-1])
    broadcast_shape[0] = 1
    return _LavaDelayFunction.apply(
        input, delay.reshape(-1, 1, 1).repeat(broadcast_shape), grad_scale, 1
    )


# ---- helpers ----------------------------------------------------------------------------

T, B, C, H, W, M = 7, 2, 5, 2, 3, 6
#: 0 < d < 1, whole delays, d = max_delay, and delays longer than the sequence (M > T - 1)
DELAYS = [0.4, 2.0, 3.75, 6.0, 5.5]


def _x(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _layer(delays, interpolate: bool, **kwargs) -> AxonalDelay:
    return AxonalDelay(len(delays), M, init=delays, interpolate=interpolate, **kwargs).double()


def _ours_and_lava(x, delays, interpolate, grad_scale=1.0):
    """Outputs and gradients (input, delays) for one random cotangent: ours, Lava-DL's."""
    layer = _layer(delays, interpolate, grad_scale=grad_scale)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    lava_delay = torch.tensor(delays, dtype=F64, requires_grad=True)
    ours = layer(x1)
    theirs = _lava_delay(x2.movedim(0, -1), lava_delay, M, grad_scale).movedim(-1, 0)
    g = _x(*x.shape, seed=7)
    grads = torch.autograd.grad((ours * g).sum(), [x1, layer.delay])
    lava_grads = torch.autograd.grad((theirs * g).sum(), [x2, lava_delay])
    return (ours, *grads), (theirs, *lava_grads)


def _interpolated_loops(x, delays):
    """``y[t] = (1 − f) x[t − n] + f x[t − n − 1]``, d = n + f clamped into [0, M],
    written out channel by channel and step by step (x[s] = 0 for s < 0)."""
    y = torch.zeros_like(x)
    for c, d in enumerate(delays):
        d = min(max(d, 0.0), M)
        n, f = math.floor(d), d - math.floor(d)
        for t in range(x.shape[0]):
            near = x[t - n, :, c] if t - n >= 0 else 0.0
            far = x[t - n - 1, :, c] if t - n - 1 >= 0 else 0.0
            y[t, :, c] = (1 - f) * near + f * far
    return y


# ---- against Lava-DL ----------------------------------------------------------------------


def test_the_transcribed_lava_delay_by_hand():
    # a spike at step 2 through d = 2.7 lands at step 4 (truncated); d(y[5])/dd = +1
    # (a later spike would reach step 5), d(y[4])/dd = -1, and x's gradient is shifted back
    x = torch.zeros(1, 1, 8, dtype=F64)
    x[0, 0, 2] = 1.0
    d = torch.tensor([2.7], dtype=F64, requires_grad=True)
    xg = x.clone().requires_grad_()
    y = _lava_delay(xg, d, 6)
    assert y.view(-1).tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    g = torch.zeros_like(y)
    g[0, 0, 5], g[0, 0, 4] = 1.0, 0.5
    gx, gd = torch.autograd.grad((y * g).sum(), [xg, d])
    assert gd.tolist() == [1.0 - 0.5] and gx.view(-1).tolist() == [0, 0, 0.5, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("spatial", [(), (H, W)])
def test_truncated_delays_equal_lava_forward_and_backward(spatial):
    x = _x(T, B, C, *spatial)
    (ours, gx, gd), (theirs, lava_gx, lava_gd) = _ours_and_lava(x, DELAYS, interpolate=False)
    assert torch.equal(ours, theirs)
    assert torch.equal(gx, lava_gx)
    torch.testing.assert_close(gd, lava_gd, rtol=1e-13, atol=1e-13)
    assert gd.abs().min() > 0


@pytest.mark.parametrize("spatial", [(), (H, W)])
def test_interpolated_delay_gradient_is_lavas_slope(spatial):
    # For the same output gradient, ∂L/∂d = Σ g (x[t − n − 1] − x[t − n]) in both modes:
    # Lava-DL's backward difference of its truncated output is the interpolation's slope.
    x = _x(T, B, C, *spatial)
    (ours, gx, gd), (theirs, lava_gx, lava_gd) = _ours_and_lava(x, DELAYS, interpolate=True)
    torch.testing.assert_close(gd, lava_gd, rtol=1e-13, atol=1e-13)
    whole = [i for i, d in enumerate(DELAYS) if d == int(d)]
    part = [i for i, d in enumerate(DELAYS) if d != int(d)]
    # whole delays: nothing to interpolate, the forward is Lava-DL's too
    assert torch.equal(ours[:, :, whole], theirs[:, :, whole])
    assert torch.equal(gx[:, :, whole], lava_gx[:, :, whole])
    assert not torch.allclose(ours[:, :, part], theirs[:, :, part])


def test_grad_scale_scales_the_delay_gradient_as_lava():
    x = _x(T, B, C)
    (ours, gx, gd), (theirs, lava_gx, lava_gd) = _ours_and_lava(
        x, DELAYS, interpolate=False, grad_scale=4.0
    )
    assert torch.equal(ours, theirs) and torch.equal(gx, lava_gx)
    torch.testing.assert_close(gd, lava_gd, rtol=1e-13, atol=1e-13)
    (_, _, unscaled), _ = _ours_and_lava(x, DELAYS, interpolate=False)
    torch.testing.assert_close(gd, 4.0 * unscaled, rtol=1e-14, atol=0)


# ---- the interpolation --------------------------------------------------------------------


def test_interpolation_equals_the_formula_as_loops():
    x = _x(T, B, C)
    layer = _layer(DELAYS, interpolate=True)
    expected = _interpolated_loops(x, layer.delay.tolist())  # (float32 delays, widened)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-15)
    # by hand: one spike at step 0 through d = 1.25 lands 3/4 at step 1, 1/4 at step 2
    spike = torch.zeros(4, 1, 1, dtype=F64)
    spike[0] = 1.0
    out = AxonalDelay(1, 3, init=1.25).double()(spike).view(-1)
    assert out.tolist() == [0.0, 0.75, 0.25, 0.0]


@pytest.mark.parametrize("interpolate", [True, False])
def test_whole_delays_equal_delay_layers_per_neuron(interpolate):
    delays = [[0.0, 3.0, 1.0], [6.0, 2.0, 4.0]]  # per neuron of [C=2, 3]
    x = _x(T, B, 2, 3, 4)
    layer = AxonalDelay((2, 3), M, init=delays, interpolate=interpolate).double()
    out = layer(x)
    for c in range(2):
        for i in range(3):
            expected = layers.Delay(int(delays[c][i]))(x[:, :, c, i])
            assert torch.equal(out[:, :, c, i], expected), (c, i)


def test_gradcheck_input_and_delays():
    x = _x(5, 2, 3, 2).requires_grad_()
    d = torch.tensor([0.3, 1.6, 2.45], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, d: axonal_delay(x, d, 3), (x, d))
    # truncated delays: piecewise constant in d (its gradient is Lava's surrogate), exact in x
    assert torch.autograd.gradcheck(lambda x: axonal_delay(x, d.detach(), 3, False), (x,))


def test_a_delay_learns_a_target_shift():
    # a smooth signal shifted by 4.3 steps; the delay starts at 1 and descends to it
    t = torch.arange(60, dtype=torch.float32).view(-1, 1, 1)
    phase = torch.rand(1, 8, 1, generator=torch.Generator().manual_seed(0)) * 6.28
    x = torch.sin(2 * math.pi * t / 30 + phase)
    target = AxonalDelay(1, 8, init=4.3, learnable=False)(x)
    layer = AxonalDelay(1, 8, init=1.0)
    optimizer = torch.optim.SGD(layer.parameters(), lr=10.0)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        optimizer.step()
        clamp_delays(layer)
    assert abs(layer.delay.item() - 4.3) < 1e-3


# ---- state: streaming, reset --------------------------------------------------------------


@pytest.mark.parametrize("interpolate", [True, False])
def test_streaming_in_chunks_and_single_steps_equals_one_call(interpolate):
    x = _x(12, B, C, 2)
    check_chunked_streaming(lambda: _layer(DELAYS, interpolate), x, "delay", split=(2, 1, 6, 3))
    whole = _layer(DELAYS, interpolate)(x)
    layer = _layer(DELAYS, interpolate)
    F.set_step_mode(layer, "s")
    with F.streaming(layer):
        steps = torch.stack([layer(x[t]) for t in range(x.shape[0])])
    assert torch.equal(steps, whole)


def test_no_state_between_calls_and_reset_net():
    x = _x(T, B, C)
    layer = _layer(DELAYS, True)
    first = layer(x)
    assert torch.equal(layer(x), first) and layer.state is None  # not streaming: fresh
    F.set_streaming(layer, True)
    layer(x)
    assert layer.state["history"].shape == (M + 1, B, C)
    assert not torch.equal(layer(x), first)  # continues the sequence
    F.reset_net(layer)
    assert torch.equal(layer(x), first)
    F.set_streaming(layer, False)
    F.set_step_mode(layer, "s")
    with pytest.raises(StateError, match="streaming"):
        layer(x[0])


# ---- clamping, parameters, errors ---------------------------------------------------------


def test_calls_read_clamped_delays_and_clamp_delays_moves_them():
    x = _x(T, B, 3)
    layer = AxonalDelay(3, M, init=[1.5, 2.0, 3.0]).double()
    with torch.no_grad():
        layer.delay.copy_(torch.tensor([-2.0, M + 3.5, 2.5]))
    out = layer(x)
    assert layer.delay.tolist() == [-2.0, M + 3.5, 2.5]  # a call leaves them alone
    torch.testing.assert_close(out, _interpolated_loops(x, [-2.0, M + 3.5, 2.5]))
    net = nn.Sequential(layer, layers.DelayedLinear(3, 2, 4))
    assert clamp_delays(net) == 2
    assert layer.delay.tolist() == [0.0, float(M), 2.5]
    assert torch.equal(layer(x), out)
    # at the ends the gradient still flows (Lava-DL clamps, then differentiates)
    layer(x).sum().backward()
    assert (layer.delay.grad[:2] != 0).all()


def test_fixed_delays_initialisers_and_repr():
    fixed = AxonalDelay(4, 5, init=2.0, learnable=False)
    assert list(fixed.parameters()) == [] and "delay" in fixed.state_dict()
    assert fixed.delay.tolist() == [2.0] * 4
    torch.manual_seed(3)
    lava = AxonalDelay((8, 16), 62)  # Lava-DL's blocks: max_delay 62, uniform in [0, 1)
    assert lava.delay.shape == (8, 16) and 0 <= lava.delay.min() < 0.05
    assert 0.95 < lava.delay.max() < 1 and abs(lava.delay.mean() - 0.5) < 0.1
    assert isinstance(lava.delay, nn.Parameter)
    ramp = AxonalDelay(3, 5, init=lambda d: d.copy_(torch.arange(3.0)))
    assert ramp.delay.tolist() == [0.0, 1.0, 2.0]
    assert AxonalDelay(np.int64(2), np.int64(3), init=np.array([1.0, 2.0])).shape == (2,)
    assert "shape=(8, 16), max_delay=62, learnable=True, interpolate=True" in repr(lava)
    assert layers.AxonalDelay is AxonalDelay and "AxonalDelay" in layers.__all__


def test_errors_name_what_is_wrong():
    for bad in (0, -1, 2.5, True, (), (2, 0), "3", [2, None]):
        with pytest.raises(ConfigurationError, match="shape"):
            AxonalDelay(bad, 3)
    for bad in (-1, 2.5, True, None):
        with pytest.raises(ConfigurationError, match="max_delay"):
            AxonalDelay(2, bad)
    for bad in (-0.5, 3.5, float("nan"), [1.0, 4.0]):
        with pytest.raises(ConfigurationError, match=r"init delays must lie in \[0, max_delay = 3"):
            AxonalDelay(2, 3, init=bad)
    for bad in ([1.0, 2.0, 0.5], "one"):
        with pytest.raises(ConfigurationError, match="init must be"):
            AxonalDelay(2, 3, init=bad)
    with pytest.raises(ConfigurationError, match="grad_scale"):
        AxonalDelay(2, 3, grad_scale=float("inf"))
    for flag in ("learnable", "interpolate"):
        with pytest.raises(ConfigurationError, match=flag):
            AxonalDelay(2, 3, **{flag: "yes"})
    layer = AxonalDelay((2, 3), 3)
    with pytest.raises(ShapeError, match=r"delays of shape \(2, 3\).*\[T, B, 2, 3, \.\.\.\]"):
        layer(torch.zeros(4, 1, 3, 2))
    with pytest.raises(ShapeError, match="multi-step mode"):
        layer(torch.zeros(4, 2, 3))
    with pytest.raises(ConfigurationError, match="axonal_delay: max_delay"):
        axonal_delay(torch.zeros(4, 1, 2), torch.zeros(2), 2.5)
    with pytest.raises(ShapeError, match="history must have shape"):
        axonal_delay(torch.zeros(4, 1, 2), torch.zeros(2), 3, history=torch.zeros(3, 1, 2))


def test_docs_example():
    text = (Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    match = re.search(r"<!-- layers: axonal-delay\b.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "no axonal-delay block in docs/layers.md"
    ns: dict = {}
    exec(compile(match.group(1), "docs/layers.md", "exec"), ns)
    assert ns["y"].view(-1).tolist() == [0.0, 0.5, 0.5, 0.0, 0.0]
    assert ns["spikes"].shape == (20, 4, 8, 6, 6) and ns["lava"].interpolate is False


def test_online_training_is_refused():
    from spikeflow.training.online import check_online_model

    with pytest.raises(ConfigurationError, match="delays of up to 3 steps"):
        check_online_model(nn.Sequential(nn.Identity(), AxonalDelay(2, 3)))
    check_online_model(nn.Sequential(AxonalDelay(2, 0)))  # max_delay 0: the identity
