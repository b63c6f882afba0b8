"""``spikeflow export RUN --to nir|netx --out FILE``: a trained digits run written as NIR
and read back computes the trained model's outputs on its test set; what NIR or netx
cannot carry, and a missing extra, are named."""

from __future__ import annotations

import sys

import pytest
import torch

from spikeflow.cli import main
from spikeflow.functional import reset_net
from spikeflow.interop import import_from_nir, import_netx, read_nir
from spikeflow.interop.export_run import export_trained_run, on_netx_grid
from spikeflow.neurons import ParametricLIFNode
from spikeflow.quant.loihi import LoihiCubaLIFNode
from spikeflow.training import Trainer, load_trained_model
from test_export_prepare import _spikes
from train_runs import TINY, tiny

pytest.importorskip("nirtorch")

#: TINY with 2x2 average pooling (NIR has no max pooling) and dropout (removed for export).
EXPORTABLE = {**TINY["model_kwargs"], "pooling": "avg", "dropout": 0.2}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    Trainer(tiny(tmp, "avg", model_kwargs=EXPORTABLE, epochs=2), log=None).fit()
    return tmp / "avg"


def _outputs(model, x):
    reset_net(model)
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nir_export_reads_back_as_the_trained_model(run_dir, tmp_path, dtype, capsys):
    out = tmp_path / "net.nir"
    argv = ["export", str(run_dir), "--to", "nir", "--out", str(out)]
    assert main(argv + (["--float64"] if dtype == torch.float64 else [])) == 0
    assert f"wrote {out} (nir, " in capsys.readouterr().out
    trained = load_trained_model(run_dir)
    x, _ = trained.batch(len(trained.test_set))
    assert x.shape == (2, 96, 1, 8, 8)
    expected = _outputs(trained.model.to(dtype), x.to(dtype))
    got = _outputs(import_from_nir(read_nir(out), dtype=dtype), x.to(dtype))
    assert expected.sum() > 0  # the output neurons fire
    # the voting layer's mean of 10 spikes: spikes identical, the mean to rounding
    assert torch.equal((got * 10).round(), (expected * 10).round())
    torch.testing.assert_close(
        got, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14
    )
    graph = read_nir(out)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert {"Conv2d", "AvgPool2d", "LIF", "Linear"} <= kinds  # PLIF as LIF, voting as Linear


def test_netx_export_of_a_plif_run_writes_each_plif_layer_as_lif(run_dir, tmp_path, capsys):
    """The PLIF run (average pooling, folded into the dense layer after it) exports: each
    PLIF layer is a LIF layer with Loihi's 12-bit decay round(4096 sigmoid(w)), its 1/tau
    folded into the synapse's weights; the file's spikes are the float chip's but for
    the grid's rounding."""
    pytest.importorskip("h5py")
    out = tmp_path / "net.net"
    assert main(["export", str(run_dir), "--to", "netx", "--out", str(out)]) == 0
    assert f"wrote {out} (netx, 5 netx layers" in capsys.readouterr().out
    parts = export_trained_run(run_dir, "netx", tmp_path / "again.net").parts
    plifs = [m for m in parts.chip if isinstance(m, ParametricLIFNode)]
    fixed = import_netx(out)
    decays = [m.v_decay for m in fixed if isinstance(m, LoihiCubaLIFNode)]
    assert len(plifs) == 3 and decays == [
        round(4096 * float(torch.sigmoid(m.w.detach().double()))) for m in plifs
    ]
    trained = load_trained_model(run_dir)
    x = trained.batch(len(trained.test_set))[0].double()
    spikes = _outputs(parts.encoder.double(), x)
    got = fixed(spikes.long()).double()
    chip = _outputs(parts.chip.double(), spikes)  # the float PLIF network
    assert chip.sum() > 0 and (got == chip).double().mean() > 0.95
    assert (got == _outputs(on_netx_grid(parts.chip), spikes)).double().mean() > 0.98


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [("ms_resnet18", {}), ("sew_resnet18", {"cnf": "IAND"})],
)
def test_nir_export_of_residual_runs_reads_back_as_the_trained_model(
    tmp_path, capsys, model, kwargs
):
    """MS-ResNet (membrane shortcuts) and SEW IAND (a Threshold of S - A) runs on the
    digits: the file read back gives the trained model's outputs (float64)."""
    model_kwargs = {"stem": "cifar", "base_width": 4, **kwargs}
    low = {"v_threshold": 0.1}  # (at the defaults one TINY epoch leaves the blocks silent)
    config = tiny(tmp_path, "run", model=model, model_kwargs=model_kwargs, neuron_kwargs=low, T=4)
    Trainer(config, log=None).fit()
    out = tmp_path / "net.nir"
    assert (
        main(["export", str(tmp_path / "run"), "--to", "nir", "--out", str(out), "--float64"]) == 0
    )
    assert f"wrote {out} (nir, " in capsys.readouterr().out
    trained = load_trained_model(tmp_path / "run")
    x = trained.batch(len(trained.test_set))[0].double()
    *layer_spikes, expected = _spikes(trained.model.double(), x)
    assert all(0 < spikes.mean() < 1 for spikes in layer_spikes)  # every layer fires
    got = _outputs(import_from_nir(read_nir(out), dtype=torch.float64), x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def if_run_dir(tmp_path_factory):
    """A TINY digits run Loihi can take: IF neurons firing on v > θ, sum pooling, batch
    norm (folded into the convolutions: a bias)."""
    tmp = tmp_path_factory.mktemp("export_if")
    changes = {
        "neuron": "if",
        "neuron_kwargs": {"v_threshold": 0.25, "strict_firing": True},
        "lr": 1e-2,
        "model_kwargs": {**TINY["model_kwargs"], "pooling": "sum", "dropout": 0.2},
        "epochs": 2,
    }
    Trainer(tiny(tmp, "if", **changes), log=None).fit()
    return tmp / "if"


def test_netx_export_of_an_if_run_gives_its_spikes_after_import(if_run_dir, tmp_path, capsys):
    pytest.importorskip("h5py")
    out = tmp_path / "net.net"
    assert main(["export", str(if_run_dir), "--to", "netx", "--out", str(out)]) == 0
    assert f"wrote {out} (netx, 5 netx layers, input [8, 8, 8] per step)" in capsys.readouterr().out
    result = export_trained_run(if_run_dir, "netx", tmp_path / "again.net")
    parts = result.parts
    trained = load_trained_model(if_run_dir)
    x = trained.batch(len(trained.test_set))[0].double()
    # the host's encoder (the first conv, its folded batch norm and IF neurons) makes spikes
    spikes = _outputs(parts.encoder.double(), x)
    assert set(spikes.unique().tolist()) == {0.0, 1.0}
    # the parts compute the trained network (sum pooling folded into the dense layer)
    chip = _outputs(parts.chip.double(), spikes)
    expected = _outputs(trained.model.double(), x)
    votes = _outputs(parts.readout.double(), chip)  # (its 1/10 weights are float32's)
    assert torch.equal((votes * 10).round(), (expected * 10).round())
    torch.testing.assert_close(votes, expected, rtol=0, atol=1e-7)
    # the file, read back, fires as the chip part on the grid it holds, spike for spike
    fixed = import_netx(out)
    assert isinstance(fixed[1], LoihiCubaLIFNode) and bool(fixed[1].bias_mant.ne(0).any())
    got = fixed(spikes.long()).double()
    reference = _outputs(on_netx_grid(parts.chip), spikes)
    assert got.sum() > 0 and torch.equal(got, reference)
    # the grid (weights in steps of 1/32, biases of 1/64) changes few of the float spikes
    assert (got == chip).double().mean() > 0.9


def test_max_pooling_run_is_refused_with_the_alternative(tmp_path, capsys):
    Trainer(tiny(tmp_path, "max", epochs=1), log=None).fit()
    out = tmp_path / "net.nir"
    assert main(["export", str(tmp_path / "max"), "--to", "nir", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "'features.6' (MaxPool2d): NIR has no max pooling" in error
    assert "plif_digits --model-kwargs pooling=avg" in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("to", "module", "extra"), [("nir", "nirtorch", "nir"), ("netx", "h5py", "loihi")]
)
def test_a_missing_extra_is_named(run_dir, tmp_path, monkeypatch, capsys, to, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    assert main(["export", str(run_dir), "--to", to, "--out", str(tmp_path / "f")]) == 2
    assert f"pip install 'spikeflow[{extra}]'" in capsys.readouterr().err


def test_bad_arguments_are_named(run_dir, tmp_path, capsys):
    missing = tmp_path / "no" / "net.nir"
    assert main(["export", str(run_dir), "--to", "nir", "--out", str(missing)]) == 2
    assert f"the folder {missing.parent} does not exist" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--to", "nir", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--to", "onnx", "--out", str(tmp_path / "f")])
    assert "invalid choice: 'onnx'" in capsys.readouterr().err


def test_a_sew_resnet_run_exports_and_reads_back_as_the_trained_model(tmp_path, capsys):
    """A residual zoo net (SEW ADD, cifar stem: no max pool) trained on digits: its
    blocks' sums export as edges into one node, its adaptive pool as the run's size."""
    sew = {"stem": "cifar", "base_width": 4}
    Trainer(tiny(tmp_path, "sew", model="sew_resnet18", model_kwargs=sew, epochs=1), log=None).fit()
    out = tmp_path / "sew.nir"
    argv = ["export", str(tmp_path / "sew"), "--to", "nir", "--out", str(out), "--float64"]
    assert main(argv) == 0
    assert f"wrote {out} (nir, " in capsys.readouterr().out
    trained = load_trained_model(tmp_path / "sew")
    x, _ = trained.batch(len(trained.test_set))
    x = x.to(torch.float64)
    expected = _outputs(trained.model.to(torch.float64), x)
    got = _outputs(import_from_nir(read_nir(out), dtype=torch.float64), x)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    edges = read_nir(out).edges
    assert any(sum(b == node for _, b in edges) >= 2 for _, node in edges)  # a sum
    # netx has no sums: the blocks are named (it named the stem's convolution only,
    # or failed in export_netx on the first block as 'expected a Linear or Conv2d')
    pytest.importorskip("h5py")
    netx = tmp_path / "sew.net"
    assert main(["export", str(tmp_path / "sew"), "--to", "netx", "--out", str(netx)]) != 0
    error = capsys.readouterr().err
    assert "residual blocks (the sum of a branch and a shortcut; a netx file is a chain" in error
    assert "'layer1_0' (ResidualBlockForExport), 'layer1_1' (ResidualBlockForExport)" in error
    assert "'stem_0'" not in error and "NIR export (--to nir) may take it" in error
    assert not netx.exists()
