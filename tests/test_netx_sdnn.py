"""``export_netx`` / ``import_netx`` of sigma-delta networks (Lava-DL's SDNN blocks).

Lava and Lava-DL cannot be installed here; what they write and compute is transcribed
from reading their code:

* the layout: ``lava-nc/lava-dl`` ``slayer/block/sigma_delta.py`` (``Output.export_hdf5``:
  a dense group whose ``neuron/*`` are the sigma-delta neuron's ``device_params`` plus
  ``sigma_output = True``), ``slayer/block/base.py`` (``AbstractInput.export_hdf5``:
  ``type`` ``(1,)`` ``S10``, ``shape``, ``neuron/*``; the dense and conv blocks as for
  CUBA), ``slayer/neuron/sigma_delta.py`` (``device_params``: ``type = 'SDNN'``,
  ``activation`` the function's ``__name__``, ``vThMant``); ``netx/hdf5.py`` at
  ``4919a66a`` (``get_neuron_params``: ``SDNN`` input -> ``Delta``, ``sigma_output``
  -> ``Sigma``, else ``SigmaDelta``, each with ``vth = vThMant``, ``spike_exp = 6``,
  ``state_exp = 6``);
* the fixed-point processes: ``lava-nc/lava`` ``proc/sdn/process.py`` (``vth`` and
  ``bias`` scaled by ``2^(spike_exp + state_exp)``) and ``proc/sdn/models.py``
  (``PyDeltaModelFixed``, ``PySigmaModelFixed``, ``PySigmaDeltaModelFixed``: the
  ``fixed_pt`` model Lava's run configs select, the first of the module's two, and the
  one Lava-DL's tutorials name; not ``PySigmaDeltaModelFixedCorrected``):
  ``_lava_sdnn`` below, with netx's dense weight path from ``tests/lava_checks.py``
  (without the one-step buffer of each Dense process, which ``NetxNetwork`` leaves out).
"""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lava_checks import netx_dense_synapse
from spikeflow import layers
from spikeflow.conversion import to_sigma_delta
from spikeflow.errors import ConfigurationError, DataFormatError
from spikeflow.interop import LoihiSigmaDelta, export_netx, import_netx, lava_dl_weights

sklearn_datasets = pytest.importorskip("sklearn.datasets")

T = 8
UNIT = 2**18  # netx's state / output scale per unit of activation (2^(6 + 6 + 6))


def _lava_sdnn(q: np.ndarray, vth_in: int, dense: list[tuple]) -> np.ndarray:
    """Lava's fixed-point SDNN as netx builds it, on input integers ``q`` ``[T, N]``:
    the ``Delta`` input, then per layer a ``Dense`` and a ``SigmaDelta`` (``dense``:
    ``(stored_weight, bias, vThMant)``) or, for ``bias is None``, the ``Sigma`` output.
    Returns the output sigma ``[T, K]``."""
    act = np.zeros(q.shape[1], np.int64)
    residue = np.zeros_like(act)
    spikes = []
    for a_in in q.astype(np.int64):  # PyDeltaModelFixed.run_spk
        a = np.left_shift(a_in, 12)
        delta = a - act + residue
        s_scaled = np.where(np.abs(delta) >= vth_in << 12, delta, 0)
        residue = delta - s_scaled
        act = a
        spikes.append(np.right_shift(s_scaled, 6))
    x = np.stack(spikes)
    for stored, bias, vth in dense:
        weights = netx_dense_synapse(stored)
        # (Lava's Dense sends a step's sums at the next step, which delays each layer
        # by one step and lets a bias act before the input arrives; as NetxNetwork,
        # the sums are delivered in the step)
        sigma = np.cumsum(x @ weights.T, axis=0)  # PySigmaModelFixed: a_in + sigma
        if bias is None:
            x = sigma
            continue
        act = np.zeros(weights.shape[0], np.int64)
        residue = np.zeros_like(act)
        out = []
        for total in sigma:  # PySigmaDeltaModelFixed.run_spk (AbstractSigmaDeltaModel)
            act_new = np.maximum(total + (bias.astype(np.int64) << 12), 0)
            delta = act_new - act + residue
            s_scaled = np.where(np.abs(delta) >= vth << 12, delta, 0)
            residue = delta - s_scaled
            act = act_new
            out.append(np.right_shift(s_scaled, 6))
        x = np.stack(out)
    return x


def _train_on_grid(sizes: tuple[int, ...]) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A ReLU network of layer ``sizes`` trained on the real 8x8 digits, its weights
    and biases put on Lava-DL's grids (no bias on the output layer), and the test
    images on the input grid (1/64)."""
    data = sklearn_datasets.load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    modules: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        modules += [nn.Linear(n_in, n_out, bias=not last)] + ([] if last else [nn.ReLU()])
    net = nn.Sequential(*modules)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:1500]), y[:1500]).backward()
        opt.step()
    with torch.no_grad():
        net[-1].weight /= 4  # the logits (argmax unchanged) inside Loihi's 24-bit output
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(lava_dl_weights(layer.weight).float() / 64)
                if layer.bias is not None:
                    layer.bias.copy_(torch.round(layer.bias * 64) / 64)
    return net, torch.round(x[1500:] * 64) / 64, y[1500:]


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """64-32-10 on the digits (see :func:`_train_on_grid`)."""
    return _train_on_grid((64, 32, 10))


def _fade_in(images: torch.Tensor) -> torch.Tensor:
    """A real image fading in over ``T`` steps, on the 1/64 input grid: ``[T, B, 64]``."""
    ramp = torch.arange(1, T + 1, dtype=torch.float32).reshape(T, 1, 1) / T
    return torch.round(images.unsqueeze(0) * ramp * 64) / 64


def _round_trip(net: nn.Sequential, images: torch.Tensor, theta: float, tmp_path) -> tuple:
    """The float SDNN's outputs and the fixed-point network's read from its file, in
    the float network's units, ``[T, B, 10]`` each."""
    sdnn, _ = to_sigma_delta(net, theta)
    x = _fade_in(images)
    with torch.no_grad():
        expected = sdnn(x).double()
    fixed = import_netx(export_netx(sdnn, tmp_path / "digits_sdnn.net", (64,)))
    out = fixed(torch.round(x * 64).long())
    assert out.dtype == torch.int64
    return out.double() / UNIT, expected


@pytest.mark.parametrize("theta", [0.0, 3 / 64])
def test_one_hidden_layer_on_the_grids_is_exact(digits_mlp: tuple, theta: float, tmp_path) -> None:
    # input 1/64 times weights 1/32 plus biases 1/64: the hidden activations are on
    # 1/2048, so the 2^-12 floor of a graded spike loses nothing and the threshold
    # comparisons (vThMant = 64 θ) are the float encoder's: the same numbers exactly
    net, images, labels = digits_mlp
    got, expected = _round_trip(net, images, theta, tmp_path)
    assert torch.equal(got, expected)
    accuracy = (got[-1].argmax(-1) == labels).double().mean().item()
    assert accuracy > 0.85  # a trained network, read back from its file
    if theta == 0:  # the last step's output: the ANN's on the last image
        ann = net(_fade_in(images)[-1]).double()
        assert (got[-1] - ann).abs().max() < 1e-5


def test_two_hidden_layers_within_the_format_quantisation(tmp_path) -> None:
    # the second hidden layer's activations are on 2^-16: each graded spike is floored
    # to 2^-12 and the reference is the activation sent (PySigmaDeltaModelFixed), so a
    # hidden unit's accumulated output falls below its activation by less than 2^-12
    # per send, T sends at θ = 0: e_l <= ||W_l||∞ e_(l-1) + T 2^-12, the output within
    # ||W_L||∞ e
    net, images, labels = _train_on_grid((64, 32, 16, 10))
    got, expected = _round_trip(net, images, 0.0, tmp_path)
    norms = [m.weight.detach().double().abs().sum(1).max() for m in net if isinstance(m, nn.Linear)]
    hidden = 0.0
    for norm in norms[:-1]:
        hidden = float(norm) * hidden + T * 2.0**-12
    bound = float(norms[-1]) * hidden
    error = (got - expected).abs().max().item()
    assert 0 < error <= bound, (error, bound)
    agree = (got[-1].argmax(-1) == expected[-1].argmax(-1)).double().mean().item()
    assert agree >= 0.99
    assert (got[-1].argmax(-1) == labels).double().mean().item() > 0.85


def test_fixed_point_network_equals_lava_processes_transcribed(digits_mlp: tuple, tmp_path) -> None:
    net, images, _ = digits_mlp
    theta = 2 / 64
    sdnn, _ = to_sigma_delta(net, theta, input_threshold=1 / 64)
    path = export_netx(sdnn, tmp_path / "s.net", (64,))
    fixed = import_netx(path)
    q = torch.round(_fade_in(images[:6]) * 64).long()
    out = fixed(q).numpy()
    with h5py.File(path, "r") as f:
        vth_in = int(f["layer/0/neuron/vThMant"][()])
        dense = [
            (
                f[f"layer/{i}/weight"][()],
                f[f"layer/{i}/bias"][()] if "bias" in f[f"layer/{i}"] else None,
                int(f[f"layer/{i}/neuron/vThMant"][()]),
            )
            for i in (1, 2)
        ]
    assert vth_in == 1 and dense[0][2] == 2 and dense[1][1] is None
    dense[1] = (dense[1][0], None, 0)
    for b in range(q.shape[1]):
        lava = _lava_sdnn(q[:, b].numpy(), vth_in, dense)
        assert np.array_equal(out[:, b], lava), b
    assert np.abs(out).max() > UNIT // 16  # outputs of a real size


def test_file_layout_is_lava_dl_sdnn_export(tmp_path) -> None:
    torch.manual_seed(2)
    conv = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 10, bias=False)
    )
    sdnn, _ = to_sigma_delta(conv, 1 / 64)
    path = export_netx(sdnn, tmp_path / "c.net", (1, 8, 8))
    with h5py.File(path, "r") as f:
        assert sorted(f["layer"]) == ["0", "1", "2", "3"]
        kinds = [f[f"layer/{i}/type"][()] for i in range(4)]
        assert all(k.dtype == np.dtype("S10") and k.shape == (1,) for k in kinds)
        assert [k[0].decode() for k in kinds] == ["input", "conv", "flatten", "dense"]
        for i in (0, 1, 3):
            neuron = f[f"layer/{i}/neuron"]
            assert neuron["type"][()].decode("ascii") == "SDNN"
            assert neuron["activation"][()].decode("ascii") == "relu"
            assert neuron["vThMant"].dtype.kind in "iu" and neuron["vThMant"].shape == ()
        assert set(f["layer/0/neuron"]) == {"type", "activation", "vThMant"}
        assert set(f["layer/1/neuron"]) == {"type", "activation", "vThMant"}
        assert bool(f["layer/3/neuron/sigma_output"][()]) is True
        assert int(f["layer/0/neuron/vThMant"][()]) == 1
        assert f["layer/0/shape"][()].tolist() == [1, 8, 8]
        assert f["layer/1/shape"][()].tolist() == [3, 8, 8]
        assert f["layer/2/shape"][()].tolist() == [192, 1, 1]
        bias = f["layer/1/bias"][()]
        assert bias.dtype.kind == "f"
        assert np.array_equal(bias, np.round(conv[0].bias.detach().numpy() * 64))
        weight = f["layer/3/weight"][()]
        assert weight.dtype.kind == "f" and weight.shape == (10, 192)
        assert np.array_equal(weight.astype(int), lava_dl_weights(conv[3].weight).numpy())
    # an imported network writes the same file back
    again = export_netx(import_netx(path), tmp_path / "again.net", (1, 8, 8))
    with h5py.File(path, "r") as a, h5py.File(again, "r") as b:
        names: list[str] = []
        a.visit(names.append)
        for name in names:
            if isinstance(a[name], h5py.Dataset):
                assert np.array_equal(a[name][()], b[name][()]), name
    # on the grids, the fixed-point convolution network computes the float one's numbers
    _check_on_the_grids_reads_back(conv, (conv[0], conv[3]), (1, 8, 8), tmp_path / "grid.net")


def _check_on_the_grids_reads_back(
    ann: nn.Sequential, weighted: tuple[nn.Module, ...], input_shape: tuple[int, ...], path
) -> None:
    """Put ``ann``'s weights (of ``weighted``; the first one's bias too) on Loihi's
    grids, convert and export it: the file read back computes the float SDNN's numbers."""
    with torch.no_grad():
        for layer in weighted:
            layer.weight.copy_(lava_dl_weights(layer.weight).float() / 64)
        weighted[0].bias.copy_(torch.round(weighted[0].bias * 64) / 64)
    sdnn, _ = to_sigma_delta(ann, 1 / 64)
    fixed = import_netx(export_netx(sdnn, path, input_shape))
    x = torch.round(torch.rand(6, 3, *input_shape) * 64) / 64
    with torch.no_grad():
        expected = sdnn(x).double()
    got = fixed(torch.round(x * 64).long()).double() / UNIT
    assert torch.equal(got, expected) and expected.abs().max() > 0.01


def test_flatten_after_the_input_layer_reads_back(tmp_path) -> None:
    # netx flattens its Delta input for the dense layer (hdf5.py: the dense block's
    # input is layers[-2].out.transpose([2, 1, 0]).flatten(), the input block's WHC as
    # CHW), so an image SDNN starting with a Flatten is a file netx runs: it reads
    # back and, on the grids, computes the float network's numbers
    torch.manual_seed(3)
    ann = nn.Sequential(
        nn.Flatten(), nn.Linear(2 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3, bias=False)
    )
    _check_on_the_grids_reads_back(ann, (ann[1], ann[3]), (2, 4, 4), tmp_path / "flat.net")


def test_import_of_a_lava_dl_style_file(tmp_path) -> None:
    """A file written as Lava-DL's blocks write it, with two hidden layers (the second
    one's graded spikes lose bits to the ``>> 6``, which its reference does not keep) and
    hidden biases."""
    path = tmp_path / "lava.net"
    rng = np.random.default_rng(0)
    weights = [rng.integers(-128, 128, shape) * 2 for shape in ((6, 4), (5, 6), (3, 5))]
    biases = [rng.integers(-300, 300, 6), rng.integers(-300, 300, 5), None]
    weights[2] = weights[2] // 16 * 2  # the output sigma inside Loihi's 24 bits
    with h5py.File(path, "w") as f:
        f.create_dataset("layer/0/type", (1,), "S10", [b"input"])
        f.create_dataset("layer/0/shape", data=np.array([4]))
        for key, value in {"type": "SDNN", "activation": "relu", "vThMant": 1}.items():
            f.create_dataset(f"layer/0/neuron/{key}", data=value)
        for i, (w, b) in enumerate(zip(weights, biases), start=1):
            f.create_dataset(f"layer/{i}/type", (1,), "S10", [b"dense"])
            f.create_dataset(f"layer/{i}/shape", data=np.array([w.shape[0]]))
            f.create_dataset(f"layer/{i}/inFeatures", data=w.shape[1])
            f.create_dataset(f"layer/{i}/outFeatures", data=w.shape[0])
            f.create_dataset(f"layer/{i}/weight", data=w.astype(np.float32))
            neuron = {"type": "SDNN", "activation": "relu", "vThMant": 3}
            if b is None:
                neuron["sigma_output"] = True
            else:
                f.create_dataset(f"layer/{i}/bias", data=b.astype(np.float32))
            for key, value in neuron.items():
                f.create_dataset(f"layer/{i}/neuron/{key}", data=value)
    net = import_netx(path)
    q = torch.from_numpy(rng.integers(0, 64, (T, 1, 4)))
    out = net(q).numpy()[:, 0]
    dense = [(weights[0], biases[0], 3), (weights[1], biases[1], 3), (weights[2], None, 0)]
    lava = _lava_sdnn(q[:, 0].numpy(), 1, dense)
    assert np.array_equal(out, lava)
    assert np.abs(out).max() > 0
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/activation"]
        f.create_dataset("layer/1/neuron/activation", data="tanh")
    with pytest.raises(DataFormatError, match=r"layer/1/neuron/activation.*ReLU only"):
        import_netx(path)
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/activation"]
        f.create_dataset("layer/3/bias", data=np.ones(3, np.float32))
    with pytest.raises(DataFormatError, match=r"layer/3/bias.*Sigma output adds no bias"):
        import_netx(path)


def test_export_refusals(tmp_path) -> None:
    def sdnn(*modules: nn.Module) -> nn.Sequential:
        return nn.Sequential(layers.DeltaEncoder(0.0), *modules)

    relu = layers.SigmaDelta(nn.ReLU())
    linear, out = nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)
    theta4 = layers.DeltaEncoder(torch.tensor([0.1, 0.2, 0.1, 0.1]))
    cases = [
        (sdnn(nn.Linear(4, 3), layers.SigmaDecoder()), "added once"),
        (sdnn(layers.DeltaSynapse(nn.Linear(4, 3)), layers.SigmaDecoder()), "Sigma output"),
        (sdnn(linear, layers.SigmaDelta(nn.Tanh())), "ReLU"),
        (sdnn(linear, relu), "must end with"),
        (sdnn(linear, layers.SigmaDelta(nn.ReLU(), 0.1, cum_error=True), out), "cum_error"),
        (sdnn(linear, nn.ReLU()), "followed by a SigmaDelta"),
        (nn.Sequential(theta4, linear, layers.SigmaDecoder()), "one vThMant"),
    ]
    for model, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            export_netx(model, tmp_path / "x.net", (4,))
    assert not (tmp_path / "x.net").exists()


def test_loihi_sigma_delta_checks() -> None:
    with pytest.raises(ConfigurationError, match=r"bias must be in \[-2\^11"):
        LoihiSigmaDelta(1, torch.tensor([1 << 11]))
    with pytest.raises(ConfigurationError, match="vth must be an integer"):
        LoihiSigmaDelta(-1)


def test_sigma_delta_reference_is_the_activation_sent() -> None:
    # PySigmaDeltaModelFixed by hand: the inputs 100, 100 sum to 100, 200; step 0 sends
    # 100 >> 6 = 1 and its reference becomes the activation 100 (residue 0: the 36
    # floored away is lost), step 1 sends (200 - 100) >> 6 = 1. (The corrected model
    # keeps the receiver's 64 and sends (200 - 64) >> 6 = 2 at step 1.)
    out = LoihiSigmaDelta(0)(torch.tensor([[[100]], [[100]]]))
    assert out.flatten().tolist() == [1, 1]
    # vThMant = 1 (4096): the sums 5000, 8000, 11000 send 5000 >> 6, hold 3000, then
    # send 11000 - 5000 = 6000 as 6000 >> 6 = 93
    out = LoihiSigmaDelta(1)(torch.tensor([[[5000]], [[3000]], [[3000]]]))
    assert out.flatten().tolist() == [78, 0, 93]
