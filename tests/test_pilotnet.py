"""PilotNet: the driving dataset's on-disk layout as Lava-DL's tutorial reads it (files
built here in that layout: the real dataset is not downloaded), the SDNN and LIF
models' shapes and parameter counts against Lava-DL's definitions, and a short
``spikeflow train --dataset pilotnet`` run."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.pilotnet import PilotNetDriving
from spikeflow.errors import ConfigurationError
from spikeflow.models import create_model

Image = pytest.importorskip("PIL.Image")


def _driving_dataset(root: Path, angles: list[float], size: tuple[int, int] = (24, 64)) -> Path:
    """``root/driving_dataset`` with one JPEG per angle and data.txt ("<file> <angle>")."""
    folder = root / "driving_dataset"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, angle in enumerate(angles):
        pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
        lines.append(f"{i}.jpg {angle:.6f}\n")
    (folder / "data.txt").write_text("".join(lines))
    return folder


def test_split_angles_and_glitches_as_lava_dl(tmp_path):
    """Runs of ``sequence`` frames permuted by RandomState(42): the first
    int(frames / sequence * 0.8) train, the last int(frames / sequence * 0.2) test;
    angles in radians; a zero angle inside a run is its neighbours' mean (Lava-DL's
    pilotnet_dataset.py, transcribed here)."""
    angles = list(np.round(np.linspace(-30, 30, 43), 3))
    angles[9] = 0.0  # inside a run of 4 (index 1 of run 2): replaced
    angles[12] = 0.0  # the first of run 3: kept
    _driving_dataset(tmp_path, angles)
    train = PilotNetDriving(tmp_path, True, sequence=4, image_size=(12, 32))
    test = PilotNetDriving(tmp_path, False, sequence=4, image_size=(12, 32))
    runs = 43 // 4
    order = np.random.RandomState(seed=42).permutation(runs)
    assert train.starts == list(order[: int(43 / 4 * 0.8)] * 4)
    assert test.starts == list(order[-int(43 / 4 * 0.2) :] * 4)
    for split in (train, test):
        for index, start in enumerate(split.starts):
            _, got = split[index]
            want = []
            for i in range(4):
                line = start + i
                value = angles[line]
                if abs(value) < 1e-5 and i != 0:
                    value = 0.5 * (angles[line - 1] + angles[line + 1])
                want.append(value * math.pi / 180)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    assert 9 in [s + i for s in train.starts + test.starts for i in range(4)]


@pytest.mark.parametrize(("frames", "sequence", "n_train"), [(23, 2, 9), (45406, 16, 2270)])
def test_split_shares_are_of_frames_over_sequence(tmp_path, frames, sequence, n_train):
    """Lava-DL takes int(frames / sequence * 0.8) runs for training, a fractional count
    of runs: 23 frames in runs of 2 give 9 training runs (not int(11 * 0.8) = 8), the
    real dataset's 45406 frames in runs of 16 give 2270 (not 2269); the test split is
    the last int(frames / sequence * 0.2) runs of the permutation."""
    folder = tmp_path / "driving_dataset"
    folder.mkdir()
    (folder / "data.txt").write_text("".join(f"{i}.jpg 1.0\n" for i in range(frames)))
    train = PilotNetDriving(tmp_path, True, sequence=sequence)
    test = PilotNetDriving(tmp_path, False, sequence=sequence)
    order = np.random.RandomState(seed=42).permutation(frames // sequence)
    n_test = int(frames / sequence * 0.2)
    assert len(train) == n_train
    assert train.starts == list(order[:n_train] * sequence)
    assert test.starts == list(order[-n_test:] * sequence)
    assert not set(train.starts) & set(test.starts)


def test_too_few_runs_for_a_test_split_is_refused(tmp_path):
    """4 runs of 2: int(8 / 2 * 0.2) = 0 test runs (Lava-DL's slice [-0:] would test
    on every run, the training runs included): the test split is refused by name."""
    _driving_dataset(tmp_path, [1.0] * 8)
    assert len(PilotNetDriving(tmp_path, True, sequence=2, image_size=(12, 32))) == 3
    with pytest.raises(ConfigurationError, match="too few for a test run"):
        PilotNetDriving(tmp_path, False, sequence=2, image_size=(12, 32))


def test_frames_resized_and_scaled_to_minus_one_one(tmp_path):
    """Each frame: bilinear resize to (H, W), [0, 255] -> [-1, 1], channels first."""
    folder = _driving_dataset(tmp_path, [1.0] * 8)
    data = PilotNetDriving(tmp_path, True, sequence=2, image_size=(12, 32))
    frames, _ = data[0]
    assert frames.shape == (2, 3, 12, 32) and frames.dtype == torch.float32
    start = data.starts[0]
    with Image.open(folder / f"{start + 1}.jpg") as img:
        resized = np.asarray(img.convert("RGB").resize((32, 12), Image.BILINEAR), np.float64)
    np.testing.assert_allclose(frames[1].numpy(), resized.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_bad_layout_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"data\.txt"):
        PilotNetDriving(tmp_path)
    folder = _driving_dataset(tmp_path, [0.5] * 4)
    (folder / "data.txt").write_text("0.jpg 0.5\n1.jpg 0.1,2018-07-01\n")
    with pytest.raises(ConfigurationError, match=r"data\.txt line 2"):
        PilotNetDriving(tmp_path, sequence=1)
    for bad in ("nan", "inf", "-Infinity"):  # float() parses them: a target the loss turns NaN
        (folder / "data.txt").write_text(f"0.jpg 0.5\n1.jpg 0.1\n2.jpg {bad}\n")
        with pytest.raises(ConfigurationError, match=r"data\.txt line 3.*finite"):
            PilotNetDriving(tmp_path, sequence=1)
    (folder / "data.txt").write_text("0.jpg 0.5\n")
    with pytest.raises(ConfigurationError, match="fewer than one sequence"):
        PilotNetDriving(tmp_path, sequence=4)


#: Lava-DL's layer tables (netx ``print(net)``: W, H, C per layer) of the two networks.
SDNN_TABLE = [(49, 16, 24), (24, 7, 36), (22, 4, 64), (20, 2, 64)]
LIF_TABLE = [(99, 32, 24), (49, 15, 36), (24, 7, 48), (22, 4, 64), (20, 2, 64)]


def _conv_shapes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """(W, H, C) after each conv of ``model.blocks``, as Lava-DL's tables list them."""
    shapes = []
    for block in model.blocks:
        x = block(x)
        if isinstance(getattr(block, "layer", block), torch.nn.Conv2d):
            shapes.append((x.shape[4], x.shape[3], x.shape[2]))
    return shapes


@pytest.mark.parametrize(
    ("name", "size", "table", "weights", "extra"),
    [
        # SDNN: weights; weight norm's g per output; a learned θ per unit and the input
        ("pilotnet_sdnn", (33, 100), SDNN_TABLE,
         3 * 24 * 9 + 24 * 36 * 9 + 36 * 64 * 9 + 64 * 64 * 9 + 2560 * 100 + 100 * 50 + 500 + 10,
         (24 + 36 + 64 + 64 + 100 + 50 + 10 + 1) + 8),
        # LIF: bias-free weights only (the neurons' parameters are fixed)
        ("pilotnet_lif", (66, 200), LIF_TABLE,
         3 * 24 * 9 + 24 * 36 * 9 + 36 * 48 * 9 + 48 * 64 * 9 + 64 * 64 * 9 + 2560 * 100
         + 100 * 50 + 500 + 10, 0),
    ],
)  # fmt: skip
def test_models_match_lava_dl_layouts(name, size, table, weights, extra):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.rand(2, 1, 3, *size)
    assert _conv_shapes(model, x) == table
    out = model(x)
    assert out.shape == (2, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == weights + extra
    flat = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert flat.in_features == 64 * 40  # Lava-DL's Dense(64*40, 100)


def test_sdnn_matches_its_ann_with_zero_thresholds():
    """With θ = 0 and no dropout the SDNN's accumulated output is the ANN's of each
    step's input (a sigma-delta network loses nothing), in float64."""
    torch.manual_seed(0)
    model = (
        create_model("pilotnet_sdnn", threshold=0.0, dropout=0.0, learn_threshold=False)
        .double()
        .eval()
    )
    x = torch.rand(3, 2, 3, 33, 100, dtype=torch.float64)
    out = model(x)
    for t in range(3):
        step = model(x[t : t + 1].expand(3, -1, -1, -1, -1))[-1]  # a constant input
        torch.testing.assert_close(out[t], step, rtol=1e-9, atol=1e-9)


def test_train_pilotnet_per_step_run(tmp_path):
    """``spikeflow train --dataset pilotnet`` on frames in the tutorial's layout: a
    per-step regression run writes its metrics, and ``best.pt`` is the lowest test loss."""
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_trainer import trainer_for

    angles = list(np.sin(np.arange(60) / 5.0) * 20)
    _driving_dataset(tmp_path / "data", angles, size=(20, 60))
    config = TrainConfig(
        dataset="pilotnet", data_dir=str(tmp_path / "data"), T=3, batch_size=4, epochs=2,
        output_dir=str(tmp_path / "run"), progress=False, threads=1,
    )  # fmt: skip
    result = trainer_for(config, log=None).fit()
    rows = result.history
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["test_mse"]) and math.isfinite(r["train_r2"]) for r in rows)
    assert result.best_test_acc == min(r["test_loss"] for r in rows)
    if importlib.util.find_spec("h5py") is not None:  # spikeflow export --to netx of the run
        from spikeflow.interop.export_run import export_trained_run

        exported = export_trained_run(tmp_path / "run", "netx", tmp_path / "run.net")
        assert (exported.nodes, exported.input_shape) == (10, (3, 33, 100))
    with pytest.raises(ConfigurationError, match=r"sequence=\.\.\.: set by --T"):
        trainer_for(
            TrainConfig(dataset="pilotnet", data_dir=str(tmp_path / "data"),
                        dataset_kwargs={"sequence": 4}, output_dir=str(tmp_path / "r2")),
            log=None,
        ).fit()  # fmt: skip


def test_export_forms_of_both_networks_compute_what_they_do(tmp_path):
    """prepare_for_export flattens both PilotNets; the SDNN's mean-only batch norms
    become its synapses' biases (b − running mean: a DeltaSynapse sends its bias once
    and the sigma carries it), the same outputs in float64; its netx file holds those
    biases as round(64 b), as Lava-DL's export writes a norm; the LIF network's NIR
    graph is written."""
    h5py = pytest.importorskip("h5py")
    from spikeflow.functional import reset_net
    from spikeflow.interop import export_netx, prepare_for_export
    from spikeflow.layers.sigma_delta import DeltaSynapse, SigmaDelta

    torch.manual_seed(0)
    net = create_model("pilotnet_sdnn", input_size=(33, 100)).double().eval()
    means = [m.running_mean for m in net.modules() if type(m).__name__ == "MeanOnlyBatchNorm"]
    assert len(means) == 7
    for mean in means:
        mean.uniform_(-0.3, 0.3)
    x = torch.rand(4, 2, 3, 33, 100, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        want = net(x)
        prepared = prepare_for_export(net, x)
        reset_net(prepared)
        got = prepared(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    units = [m for m in prepared if isinstance(m, SigmaDelta)]
    assert len(units) == 7 and all(isinstance(u.activation, torch.nn.ReLU) for u in units)
    synapses = [m for m in prepared if isinstance(m, DeltaSynapse)]
    for synapse, mean in zip(synapses, means):
        torch.testing.assert_close(synapse.bias.detach(), -mean)
    path = export_netx(prepared.float(), tmp_path / "sdnn.net", (3, 33, 100))
    with h5py.File(path) as h5:
        assert len(h5["layer"]) == 10  # input, 4 conv, flatten, 3 dense, output
        stored = [h5[f"layer/{i}/bias"][()] for i in (1, 2, 3, 4, 6, 7, 8)]
    for bias, mean in zip(stored, means):
        np.testing.assert_array_equal(bias, np.round(-64 * mean.numpy()))
    nir = pytest.importorskip("nir")
    from spikeflow.interop import export_to_nir

    lif = create_model("pilotnet_lif", input_size=(66, 200)).eval()
    image = torch.rand(2, 1, 3, 66, 200)
    graph = export_to_nir(prepare_for_export(lif, image), image)
    assert isinstance(graph, nir.NIRGraph) and len(graph.nodes) >= 9


def test_train_pilotnet_lif_on_the_default_frame_size_names_the_fix(tmp_path):
    """pilotnet_lif needs larger frames than the dataset's default 33x100: the error
    names the model's reason and the dataset option that resizes the frames (not a
    square-inputs-only claim, which is not the reason here)."""
    from spikeflow.training import TrainConfig
    from spikeflow.training.detection_trainer import trainer_for

    _driving_dataset(tmp_path / "data", [0.0] * 40, size=(20, 60))
    config = TrainConfig(dataset="pilotnet", data_dir=str(tmp_path / "data"), T=4,
                         model="pilotnet_lif", output_dir=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"too small.*33x100.*image_size") as info:
        trainer_for(config, log=None).fit()
    assert "square inputs only" not in str(info.value)
