"""``spikeflow eval --operations --neurobench`` of a detection run (a tiny
nmnist_detection run on real N-MNIST events): the counts are those of the detector's
forward passes over the test canvases, equal to an independent count of the same
canvases; the energy is the hand formula of the counts; ``--early-exit`` is refused with
its reason."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import require_shared_data
from spikeflow.cli import main
from spikeflow.energy import E_AC, E_MAC, NeuroBenchCounter, count_operations
from spikeflow.functional import reset_net
from spikeflow.training import load_trained_model
from test_detection_train import tiny_args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = str(require_shared_data("nmnist-small"))
    out = tmp_path_factory.mktemp("det") / "run"
    assert main(tiny_args(root, out, "--epochs", "1", "--threads", "1")) == 0
    return out


@pytest.mark.parametrize("spike_counts", [False, True])
def test_detection_operations_equal_an_independent_count(run, tmp_path, capsys, spike_counts):
    report = tmp_path / "eval.json"
    extra = ["--spike-counts"] if spike_counts else []
    assert main(["eval", "--checkpoint", str(run), "--no-progress", "--operations",
                 "--neurobench", *extra, "--json", str(report)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    result = json.loads(report.read_text())
    ops = result["operations"]
    # the same model on the same 8 canvases, counted here in one call
    trained = load_trained_model(run)
    frames, _ = trained.batch(result["samples"])
    assert result["samples"] == 8 and frames.shape[1] == 8
    expected = count_operations(trained.model, frames, spike_counts=spike_counts)
    assert ops["acs_per_sample"] == pytest.approx(expected.acs, rel=1e-12)
    assert ops["macs_per_sample"] == pytest.approx(expected.macs, rel=1e-12)
    assert [(r["name"], r["acs"], r["macs"]) for r in ops["layers"]] == [
        (r.name, r.acs, r.macs) for r in expected.layers
    ]
    assert ops["acs_per_sample"] > 0 and (ops["macs_per_sample"] > 0) != spike_counts
    assert ops["energy_per_sample_j"] == pytest.approx(
        E_AC * ops["acs_per_sample"] + E_MAC * ops["macs_per_sample"], rel=1e-12
    )
    # the first convolution reads the frames of event counts: MACs, or with
    # --spike-counts as many ACs as the counts' sum reaches
    first = ops["layers"][0]
    assert (first["acs"] > 0) == spike_counts and (first["macs"] > 0) != spike_counts
    # NeuroBench's workload metrics of the same forward passes
    reset_net(trained.model)
    with NeuroBenchCounter(trained.model) as counter, torch.no_grad():
        trained.model(frames)
    nb = counter.results()
    synops = result["neurobench"]["SynapticOperations"]
    assert synops["Effective_ACs"] == nb.effective_acs
    assert synops["Effective_MACs"] == nb.effective_macs
    assert synops["Dense"] == nb.dense
    assert result["neurobench"]["MembraneUpdates"] == nb.membrane_updates
    assert "ClassificationAccuracy" not in result["neurobench"]  # the mAP scores detection
    assert "per sample:" in text and "NeuroBench metrics" in text and "COCO mAP" in text


def test_early_exit_on_a_detection_run_is_refused_with_the_reason(run, capsys):
    assert main(["eval", "--checkpoint", str(run), "--early-exit", "confidence:0.5"]) == 2
    err = capsys.readouterr().err
    assert "--early-exit: not for detection runs" in err
    assert "a detector outputs boxes" in err


def test_energy_neuromc_on_a_detection_run_is_refused(run, capsys):
    assert main(["eval", "--checkpoint", str(run), "--energy", "neuromc"]) == 2
    err = capsys.readouterr().err
    assert "--energy: not priced for detection runs yet" in err
    assert "--operations and --neurobench count a detection run's inference" in err
