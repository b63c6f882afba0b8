"""The noisy spiking neurons of NoisySAN (spikeflow.neurons.noisy) and the non-spiking
decoders (spikeflow.neurons.nonspiking): coloured noise equal to SpikingJelly's for the
same draws and with the spectrum it claims, outputs and gradients equal to SpikingJelly
2.0's classes given the same noise, float64 gradchecks, replay of stored noise, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from sj_checks import TIGHT, grads, sj
from spikeflow import neurons, surrogate
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError, StateError
from spikeflow.neurons.noisy import colored_noise, powerlaw_psd_gaussian

DECODES = [None, "max-mem", "max-abs-mem", "mean-mem", "last-mem"]


def _sj_layout(beta: float, num_node: int, steps: int, T: int, rng) -> torch.Tensor:
    """SpikingJelly's reset_noise layout, drawn by its own generator from ``rng``."""
    series = sj("neuron").noisy.powerlaw_psd_gaussian(beta, [num_node, steps * T], random_state=rng)
    return torch.from_numpy(series.reshape(num_node, steps, T)).permute(1, 2, 0)


def _give_sj_noise(node, beta: float, steps: int, seed: int, names: tuple[str, ...]) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        setattr(node, name, _sj_layout(beta, node.num_node, steps, node.T, rng))
    node.noise_step = -1


# -- coloured noise ------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0, 2.0])
@pytest.mark.parametrize("size", [(3, 16), (2, 4, 11), 9])
def test_powerlaw_equal_to_spikingjelly(beta, size):
    theirs = sj("neuron").noisy.powerlaw_psd_gaussian
    for fmin in (0.0, 0.2):
        for source in (
            lambda: 5,
            lambda: np.random.default_rng(5),
            lambda: np.random.RandomState(5),
        ):
            want = theirs(beta, size, fmin=fmin, random_state=source())
            got = powerlaw_psd_gaussian(beta, size, fmin=fmin, random_state=source())
            np.testing.assert_array_equal(got, want)
            assert got.shape == ((size,) if isinstance(size, int) else size)


def test_powerlaw_fmin_above_every_frequency_is_white():
    # 5 samples: frequencies 0, 0.2, 0.4; fmin 0.45 or 0.5 flattens them all (no inf).
    white = powerlaw_psd_gaussian(0.0, (2, 5), random_state=0)
    for fmin in (0.45, 0.5):
        got = powerlaw_psd_gaussian(1.0, (2, 5), fmin=fmin, random_state=0)
        np.testing.assert_allclose(got, white, rtol=1e-12)


def _spectrum_slope(beta: float) -> float:
    """The log-log slope of the mean periodogram of 64 series of 1024 samples, fitted
    between frequencies 1/256 and 1/4 (away from the cutoff and the Nyquist term)."""
    y = powerlaw_psd_gaussian(beta, (64, 1024), random_state=np.random.default_rng(0))
    power = (np.abs(np.fft.rfft(y, axis=-1)) ** 2).mean(0)
    f = np.fft.rfftfreq(1024)
    band = (f >= 1 / 256) & (f <= 1 / 4)
    return float(np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0])


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_powerlaw_spectrum_has_slope_minus_beta(beta):
    # The tolerance is a tenth of the gap between white (0) and pink (-1) noise.
    assert abs(_spectrum_slope(beta) + beta) < 0.1
    y = powerlaw_psd_gaussian(beta, (64, 1024), random_state=1)
    assert abs(float(y.var(axis=-1).mean()) - 1.0) < 0.35  # unit variance in expectation


def test_colored_noise_is_spikingjelly_layout_and_torch_seeded():
    got = colored_noise(1.0, 3, 4, 5, random_state=np.random.default_rng(2), dtype=torch.float64)
    want = _sj_layout(1.0, 3, 4, 5, np.random.default_rng(2))
    assert got.shape == (4, 5, 3)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Step k of the environment continues the series of step k - 1.
    flat = powerlaw_psd_gaussian(1.0, [3, 20], random_state=np.random.default_rng(2))
    np.testing.assert_array_equal(got[1, :, 0].numpy(), flat[0, 5:10])
    a, b = neurons.NoisyCubaLIFNode(3), neurons.NoisyCubaLIFNode(3)
    torch.manual_seed(4)
    a.reset_noise(3)
    torch.manual_seed(4)
    b.reset_noise(3)
    assert torch.equal(a.eps_v_seq, b.eps_v_seq) and torch.equal(a.eps_s_seq, b.eps_s_seq)
    assert not torch.equal(a.eps_v_seq, a.eps_s_seq)


# -- the spiking neurons against SpikingJelly ------------------------------------------------


def _pair(kind: str, **kw):
    noisy = sj("neuron").noisy
    if kind == "cuba":
        ours = neurons.NoisyCubaLIFNode(6, 0.6, 0.8, T=4, surrogate_function=surrogate.Rect(), **kw)
        theirs = noisy.NoisyCUBALIFNode(6, 0.6, 0.8, T=4, **kw)
    else:
        ours = neurons.NoisyILCCubaLIFNode(2, 3, 0.6, 0.8, T=4, **kw)
        theirs = noisy.NoisyILCCUBALIFNode(2, 3, 0.6, 0.8, T=4, **kw).double()
        ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize(("kind", "v_reset"), [("cuba", 0.0), ("cuba", -0.2), ("ilc", -0.2)])
def test_spiking_equal_to_spikingjelly(float64, kind, v_reset):
    ours, theirs = _pair(kind, beta=1.0, sigma_init=0.8, v_threshold=0.4, v_reset=v_reset)
    ours.reset_noise(3, random_state=11)
    _give_sj_noise(theirs, 1.0, 3, 11, ("eps_v_seq", "eps_s_seq"))
    params = list(ours.parameters())
    for _call in range(3):  # each call takes the next step's noise
        x = (torch.rand(4, 5, 6) * 1.5 - 0.3).requires_grad_()
        x_sj = x.detach().clone().requires_grad_()
        out, out_sj = ours(x), theirs(x_sj)
        torch.testing.assert_close(out, out_sj, **TIGHT)
        assert (out - out.round()).abs().max() > 0  # the output noise is there
        torch.testing.assert_close(ours.get_colored_noise(), theirs.get_colored_noise(), **TIGHT)
        g = torch.randn_like(out)
        got = grads(out, [x, *params], g)
        want = grads(out_sj, [x_sj, *theirs.parameters()], g)
        assert got[0].abs().sum() > 0
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TIGHT)
    theirs.is_training = False
    ours.eval()
    x = torch.rand(4, 5, 6) * 1.5
    torch.testing.assert_close(ours(x), theirs(x), **TIGHT)
    assert set(ours(x).unique().tolist()) == {0.0, 1.0}


def test_float32_noise_equal_to_spikingjelly_reset_noise(monkeypatch):
    """SpikingJelly's own reset_noise (float32, from numpy's default generator) fed the
    draws of a seeded generator: the same float32 outputs."""
    noisy = sj("neuron").noisy
    theirs = noisy.NoisyCUBALIFNode(5, T=3, beta=0.5)
    ours = neurons.NoisyCubaLIFNode(5, T=3, beta=0.5, surrogate_function=surrogate.Rect())
    rng = np.random.default_rng(21)
    monkeypatch.setattr(noisy, "default_rng", lambda seed=None: rng)  # its global draws
    theirs.reset_noise(2)
    ours.reset_noise(2, random_state=21)
    assert ours.eps_v_seq.dtype == torch.float32
    x = torch.rand(3, 2, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_eval_mode_is_cuba_lif():
    c, v = 0.5, 0.75
    node = neurons.NoisyCubaLIFNode(4, c, v, T=6).eval()
    tau_syn, tau_mem = 1 / (1 - c), 1 / (1 - v)
    ref = neurons.CubaLIFNode(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_syn * tau_mem, v_threshold=0.5,
        surrogate_function=surrogate.Rect(),
    )  # fmt: skip
    x = torch.rand(6, 3, 4)
    torch.testing.assert_close(node(x), ref(x))


def test_soft_reset_by_hand():
    node = neurons.NoisyCubaLIFNode(1, c_decay=0.0, v_decay=1.0, T=3, v_reset=None).eval()
    # IF with a soft reset at 0.5: V = 0.7 fires (0.2 left), 0.9 fires (0.4), 0.7 fires.
    out = node(torch.tensor([0.7, 0.7, 0.3]).view(3, 1, 1))
    assert out.view(-1).tolist() == [1.0, 1.0, 1.0]


# -- the non-spiking decoders ----------------------------------------------------------------


@pytest.mark.parametrize("decode", DECODES)
def test_noisy_decoder_equal_to_spikingjelly(float64, decode):
    noisy = sj("neuron").noisy
    theirs = noisy.NoisyNonSpikingIFNode(
        4, T=5, beta=2.0, decode={"last-mem": "last-me"}.get(decode, decode)
    )
    theirs.sigma = torch.nn.Parameter(theirs.sigma.detach().double() + torch.rand(4))
    ours = neurons.NoisyNonSpikingIFNode(4, T=5, beta=2.0, decode=decode)
    ours.load_state_dict(theirs.state_dict())
    ours.reset_noise(2, random_state=3)
    _give_sj_noise(theirs, 2.0, 2, 3, ("eps_seq",))
    for _ in range(2):
        x = torch.randn(5, 3, 4, requires_grad=True)
        x_sj = x.detach().clone().requires_grad_()
        out, out_sj = ours(x), theirs(x_sj)
        if decode is None:
            out_sj = torch.stack(out_sj)
        torch.testing.assert_close(out, out_sj, **TIGHT)
        g = torch.randn_like(out)
        got = grads(out, [x, ours.sigma], g)
        want = grads(out_sj, [x_sj, theirs.sigma], g)
        assert got[1].abs().sum() > 0
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize("decode", DECODES)
def test_nonspiking_equal_to_spikingjelly(float64, decode):
    sj_neuron = sj("neuron")
    sj_decode = {"last-mem": "last_mem"}.get(decode, decode)
    x = torch.randn(6, 3, 2)
    for ours, theirs in (
        (neurons.NonSpikingIFNode(decode), sj_neuron.NonSpikingIFNode(sj_decode)),
        (neurons.NonSpikingLIFNode(3.0, decode), sj_neuron.NonSpikingLIFNode(3.0, sj_decode)),
    ):
        want = theirs(x)
        torch.testing.assert_close(ours(x), torch.stack(want) if decode is None else want, **TIGHT)
    torch.testing.assert_close(neurons.NonSpikingLIFNode(3.0)(x), neurons.LINode(3.0)(x), **TIGHT)


def test_decodes_by_hand():
    v = torch.tensor([1.0, -3.0, 2.5, 0.5]).view(4, 1, 1)  # membranes of IF: X = diff
    x = torch.diff(v, dim=0, prepend=torch.zeros(1, 1, 1))
    want = {"max-mem": 2.5, "max-abs-mem": -3.0, "mean-mem": 0.25, "last-mem": 0.5}
    for decode, value in want.items():
        assert neurons.NonSpikingIFNode(decode)(x).item() == pytest.approx(value)
    tie = torch.tensor([2.0, -4.0]).view(2, 1, 1)  # |max| = |min|: the minimum
    assert neurons.NonSpikingIFNode("max-abs-mem")(tie).item() == -2.0


# -- gradients, replay ------------------------------------------------------------------------


def test_gradcheck_through_the_loop(float64):
    smooth = surrogate.Sigmoid(spiking=False)  # the primitive: a smooth forward to check
    for node in (
        neurons.NoisyCubaLIFNode(3, T=3, surrogate_function=smooth),
        neurons.NoisyILCCubaLIFNode(1, 3, T=3, surrogate_function=smooth),
        neurons.NoisyNonSpikingIFNode(3, T=3, decode="mean-mem"),
    ):
        node.reset_noise(1, random_state=0)
        names = [n for n, _ in node.named_parameters()]
        x = torch.rand(3, 1, 3, requires_grad=True)

        def run(x, *values, node=node, names=names):
            node.noise_step = -1  # the same step's noise at every evaluation
            return functional_call(node, dict(zip(names, values)), (x,))

        values = [p.detach().clone().requires_grad_() for p in node.parameters()]
        assert torch.autograd.gradcheck(run, (x, *values))


def test_replay_reproduces_the_training_forward(float64):
    hidden = neurons.NoisyCubaLIFNode(6, T=4, beta=1.0)
    head = neurons.NoisyNonSpikingIFNode(6, T=4, beta=1.0, decode="max-abs-mem")
    hidden.reset_noise(5, random_state=1)
    head.reset_noise(5, random_state=2)
    inputs, outputs, stored = [], [], []
    for _ in range(3):  # three environment steps, one observation each
        x = torch.rand(4, 1, 6) * 2
        outputs.append(head(hidden(x)))
        inputs.append(x)
        stored.append((hidden.get_colored_noise(), head.get_colored_noise()))
    batch = torch.cat(inputs, dim=1)  # the update step: the three transitions at once
    hidden.load_colored_noise(torch.stack([s[0] for s in stored]))
    head.load_colored_noise(torch.stack([s[1] for s in stored]))
    replayed = head(hidden(batch))
    assert torch.equal(replayed, torch.cat(outputs))
    assert hidden.noise_step == 2  # no episode noise was drawn meanwhile
    hidden.cancel_load()
    head.cancel_load()
    unloaded = head(hidden(inputs[0]))
    assert not torch.equal(unloaded, outputs[0])  # step 3's noise, not step 0's


# -- errors ----------------------------------------------------------------------------------


def test_errors():
    node = neurons.NoisyCubaLIFNode(4, T=3)
    with pytest.raises(StateError, match=r"reset_noise\(num_steps\) before"):
        node(torch.rand(3, 2, 4))
    with pytest.raises(StateError, match="no noise was drawn"):
        node.get_colored_noise()
    node.reset_noise(1)
    with pytest.raises(ShapeError, match=r"\[T=3, B, num_node=4\].*\(3, 2, 5\)"):
        node(torch.rand(3, 2, 5))
    with pytest.raises(ShapeError, match=r"\(2, 2, 4\)"):
        node(torch.rand(2, 2, 4))
    with pytest.raises(DTypeError, match="floating-point"):
        node(torch.ones(3, 2, 4, dtype=torch.long))
    node(torch.rand(3, 2, 4))
    with pytest.raises(StateError, match="all 1 steps of noise"):
        node(torch.rand(3, 2, 4))
    with pytest.raises(ShapeError, match=r"\[B, T=3, 2 x num_node=8\]"):
        node.load_colored_noise(torch.rand(2, 3, 4))
    node.load_colored_noise(torch.rand(2, 3, 8))
    with pytest.raises(ShapeError, match="batch of 2, the input has 5"):
        node(torch.rand(3, 5, 4))
    node.eval()
    assert node(torch.rand(3, 5, 4)).shape == (3, 5, 4)  # eval: no noise, loaded or not
    with pytest.raises(ConfigurationError, match="decode must be"):
        neurons.NoisyNonSpikingIFNode(3, decode="max")
    with pytest.raises(ConfigurationError, match="decode must be"):
        neurons.NonSpikingIFNode("sum")
    with pytest.raises(ConfigurationError, match="random_state"):
        node.reset_noise(2, random_state="seed")
    with pytest.raises(ConfigurationError, match="num_steps"):
        node.reset_noise(0)
    with pytest.raises(ConfigurationError, match="at least 2 samples"):
        neurons.NoisyCubaLIFNode(4, T=1).reset_noise(1)
    with pytest.raises(ConfigurationError, match="fmin"):
        powerlaw_psd_gaussian(1.0, 8, fmin=0.6)
    with pytest.raises(ConfigurationError, match="c_decay"):
        neurons.NoisyCubaLIFNode(4, c_decay=1.5)
    with pytest.raises(ConfigurationError, match="sigma_init"):
        neurons.NoisyCubaLIFNode(4, sigma_init=-1.0)
    with pytest.raises(ConfigurationError, match="multi-step"):
        node.step_mode = "s"
