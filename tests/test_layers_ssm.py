"""The S4D layer (spikeflow.layers.S4D) against its definition: the explicit complex
recurrence in float64, a one-mode kernel derived by hand, the direct causal
convolution, gradcheck, chunked streaming, the S4D-Lin/Inv initial values, errors and
the optimiser groups of S4's training code."""

from __future__ import annotations

import cmath
import math

import pytest
import torch
from torch.func import functional_call

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.layers.ssm import S4D, _causal_fft_conv, s4d_initial_imag, ssm_parameter_groups

T, B, H, N = 11, 3, 4, 8


def _layer(**kwargs) -> S4D:
    torch.manual_seed(0)
    layer = S4D(H, N, **kwargs).double()
    with torch.no_grad():  # spread the steps so every mode matters within T steps
        layer.log_dt.copy_(torch.linspace(math.log(0.05), math.log(0.6), H))
    return layer


def _x(steps: int = T) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(steps, B, H, generator=g, dtype=torch.float64)


def _recurrence(layer: S4D, u: torch.Tensor) -> torch.Tensor:
    """``x_k = Ā x_{k-1} + B̄ u_k``, ``y_k = 2 Re(C x_k) + D u_k``, with ZOH written out
    from the parameters: ``Ā = exp(ΔA)``, ``B̄ = (Ā - 1) / A``."""
    p = {k: v.detach() for k, v in layer.named_parameters()}
    a = -torch.exp(p["log_a_real"]) + 1j * p["a_imag"]
    dt = torch.exp(p["log_dt"]).unsqueeze(-1)
    a_bar = torch.exp(dt * a)
    b_bar = (a_bar - 1) / a
    c = p["c"][..., 0] + 1j * p["c"][..., 1]
    state = torch.zeros(u.shape[1], H, N // 2, dtype=torch.complex128)
    out = []
    for k in range(u.shape[0]):
        state = a_bar * state + b_bar * u[k].unsqueeze(-1)
        out.append(2 * (c * state).sum(-1).real + p["d"] * u[k])
    return torch.stack(out)


def test_the_convolution_equals_the_explicit_recurrence():
    layer, u = _layer(), _x()
    torch.testing.assert_close(layer(u), _recurrence(layer, u), atol=1e-12, rtol=1e-10)


def test_the_kernel_is_the_recurrence_impulse_response():
    layer = _layer()
    impulse = torch.zeros(T, 1, H, dtype=torch.float64)
    impulse[0] = 1.0
    response = _recurrence(layer, impulse)[:, 0] - layer.d.detach() * impulse[:, 0]
    torch.testing.assert_close(layer.kernel(T).detach(), response.T, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("omega", [0.0, 2.5])
def test_one_mode_kernel_derived_by_hand(omega):
    # One mode: A = -a + iω, Δ = dt, C = c. ZOH: Ā = e^{(-a+iω)dt}, B̄ = (Ā - 1) / A,
    # K[k] = 2 Re(c B̄ Ā^k); for ω = 0 and real c: 2c (1 - e^{-a dt}) / a · e^{-a dt k}.
    a, dt, c = 0.5, 0.1, complex(0.7, -0.4)
    layer = S4D(1, 2).double()
    with torch.no_grad():
        layer.log_a_real.fill_(math.log(a))
        layer.a_imag.fill_(omega)
        layer.log_dt.fill_(math.log(dt))
        layer.c.copy_(torch.tensor([[[c.real, c.imag]]], dtype=torch.float64))
    big_a = complex(-a, omega)
    a_bar = cmath.exp(big_a * dt)
    expected = [2 * (c * (a_bar - 1) / big_a * a_bar**k).real for k in range(6)]
    if omega == 0.0:
        assert expected == pytest.approx(
            [2 * c.real * (1 - math.exp(-a * dt)) / a * math.exp(-a * dt * k) for k in range(6)],
            rel=1e-12,
        )
    got = layer.kernel(6).detach()[0].tolist()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 65, 130])
def test_vandermonde_powers_equal_the_direct_exponentials(length):
    layer = _layer()
    dt_a, _, _ = layer.discrete()
    direct = torch.exp(dt_a.unsqueeze(-1) * torch.arange(length, dtype=torch.float64))
    torch.testing.assert_close(layer._powers(dt_a, length), direct, atol=1e-13, rtol=1e-12)


def test_fft_convolution_equals_the_direct_causal_convolution():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 3, 9, generator=g, dtype=torch.float64)
    kernel = torch.randn(3, 9, generator=g, dtype=torch.float64)
    direct = torch.zeros_like(u)
    for t in range(9):
        for j in range(t + 1):
            direct[..., t] += kernel[:, t - j] * u[..., j]
    torch.testing.assert_close(_causal_fft_conv(u, kernel), direct, atol=1e-12, rtol=1e-10)


def test_gradcheck_input_and_ssm_parameters():
    torch.manual_seed(0)
    layer = S4D(2, 4, dt_min=0.05, dt_max=0.5).double()
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    u = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)

    def fn(x, *values):
        return functional_call(layer, dict(zip(names, values)), (x,))

    assert torch.autograd.gradcheck(fn, (u, *params), atol=1e-7, rtol=1e-5)
    assert names == ["log_dt", "log_a_real", "a_imag", "c", "d"]


def test_streaming_chunks_and_single_steps_equal_the_whole_sequence():
    u = _x()
    whole_layer, chunk_layer, step_layer = _layer(), _layer(), _layer(step_mode="s")
    x_whole, x_chunks = u.clone().requires_grad_(), u.clone().requires_grad_()
    whole = whole_layer(x_whole)
    with F.streaming(chunk_layer):
        parts = [chunk_layer(part) for part in x_chunks.split([4, 1, 6])]
        end = chunk_layer.state
    streamed = torch.cat(parts)
    torch.testing.assert_close(streamed, whole, atol=1e-12, rtol=1e-10)
    with F.streaming(step_layer):
        steps = torch.stack([step_layer(u[t]) for t in range(T)])
        for name, value in step_layer.state.items():
            torch.testing.assert_close(value, end[name], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(steps, whole.detach(), atol=1e-12, rtol=1e-10)
    assert set(end) == {"x_real", "x_imag"} and end["x_real"].shape == (N // 2, B, H)
    g = torch.randn_like(u)
    grads_whole = torch.autograd.grad((whole * g).sum(), [x_whole, whole_layer.log_dt])
    grads_chunks = torch.autograd.grad((streamed * g).sum(), [x_chunks, chunk_layer.log_dt])
    for a, b in zip(grads_chunks, grads_whole):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-9)


def test_explicit_state_run_continues_the_sequence_and_plain_calls_restart():
    layer, u = _layer(), _x()
    first, state = layer.run(u[:5])
    second, _ = layer.run(u[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), layer(u), atol=1e-12, rtol=1e-10)
    # outside streaming each call starts from the zero state: no leak between batches
    torch.testing.assert_close(layer(u[5:]), _recurrence(layer, u[5:]), atol=1e-12, rtol=1e-10)
    with F.streaming(layer):
        layer(u[:, :2])
        with pytest.raises(StateError, match="reset_net"):
            layer(u)  # another batch size: a new sequence


def test_initial_values_follow_s4d_lin_and_inv():
    torch.manual_seed(3)
    layer = S4D(16, 8, dt_min=1e-3, dt_max=1e-1)
    lin = torch.tensor([0.0, math.pi, 2 * math.pi, 3 * math.pi])
    assert torch.equal(layer.a_imag.detach(), lin.float().repeat(16, 1))
    assert torch.allclose(torch.exp(layer.log_a_real.detach()), torch.full((16, 4), 0.5))
    log_dt = layer.log_dt.detach().double()
    assert log_dt.min() >= math.log(1e-3) and log_dt.max() <= math.log(1e-1)
    assert log_dt.std() > 0.5  # drawn across the range, not one value
    inv = s4d_initial_imag(4, "inv")  # (N/π)(N/(2n+1) - 1), N = 4
    torch.testing.assert_close(
        inv, torch.tensor([12 / math.pi, 4 / (3 * math.pi)], dtype=inv.dtype)
    )
    assert torch.equal(S4D(2, 4, init="inv").a_imag.detach(), inv.float().repeat(2, 1))
    c = torch.view_as_complex(S4D(256, 64).c.detach())
    assert c.abs().pow(2).mean().item() == pytest.approx(1.0, abs=0.05)  # unit variance


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.zeros(5, 2, 3), ShapeError, r"d_model = 4; got shape \(5, 2, 3\)"),
        (torch.zeros(2, 4), ShapeError, r"\[T, B, d_model\]"),
        (torch.zeros(0, 2, 4), ShapeError, r"at least one time step .*\(0, 2, 4\)"),
        (torch.zeros(3, 0, 4), ShapeError, r"one sample .*\(3, 0, 4\)"),
        (torch.zeros(5, 2, 4, dtype=torch.long), DTypeError, "real floating-point input"),
        (torch.zeros(5, 2, 4, dtype=torch.complex64), DTypeError, "real floating-point"),
        (torch.zeros(5, 2, 4, dtype=torch.float64), DTypeError, r"\.double\(\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, error, match):
    with pytest.raises(error, match=match):
        S4D(4, 4)(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_state": 5}, "d_state must be even"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min <= dt_max"),
        ({"dt_max": float("inf")}, "dt_max < inf"),
        ({"dt_min": float("nan")}, "dt_min <= dt_max"),
        ({"init": "legs"}, "init must be 'lin'"),
        ({"lr": -1.0}, "lr must be None or >= 0"),
        ({"d_model": 0}, "d_model must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        S4D(**{"d_model": 4, **kwargs})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_layer_is_refused_naming_its_dtype(dtype):
    layer = S4D(4, 4).to(dtype)
    with pytest.raises(DTypeError, match=rf"parameters are {dtype}.*float32"):
        layer(torch.randn(6, 2, 4, dtype=dtype))


def test_parameters_follow_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        layer = S4D(H, N)
    finally:
        torch.set_default_dtype(previous)
    assert {p.dtype for p in layer.parameters()} == {torch.float64}
    u = _x()
    torch.testing.assert_close(layer(u), _recurrence(layer, u))


def test_half_precision_input_runs_in_the_parameters_precision():
    layer = S4D(4, 4)
    u = torch.randn(6, 2, 4)
    out = layer(u.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer(u.bfloat16().float()).bfloat16().float())


def test_parameter_groups_give_the_ssm_parameters_their_rate_and_no_decay():
    torch.manual_seed(0)
    net = torch.nn.Sequential(S4D(4, 4), torch.nn.Linear(4, 2), S4D(4, 4, lr=None))
    groups = ssm_parameter_groups(net, lr=0.01, weight_decay=0.05)
    ids = [{id(p) for p in g["params"]} for g in groups]
    first, second = net[0], net[2]
    assert ids[0] == {id(p) for p in (first.c, first.d, second.c, second.d, *net[1].parameters())}
    assert (groups[0]["lr"], groups[0]["weight_decay"]) == (0.01, 0.05)
    assert ids[1] == {id(getattr(first, n)) for n in ("log_dt", "log_a_real", "a_imag")}
    assert (groups[1]["lr"], groups[1]["weight_decay"]) == (1e-3, 0.0)
    assert ids[2] == {id(getattr(second, n)) for n in ("log_dt", "log_a_real", "a_imag")}
    assert (groups[2]["lr"], groups[2]["weight_decay"]) == (0.01, 0.0)
    assert sum(len(i) for i in ids) == len(list(net.parameters()))
    torch.optim.AdamW(groups)  # a valid optimiser setup
    with pytest.raises(ConfigurationError, match="holds no S4D layer"):
        ssm_parameter_groups(torch.nn.Linear(2, 2), 0.1)
