"""Small fixes from the reviews, each checked against a hand-derived value or a second
way of computing it: the eval table's missing membrane statistics, DECOLLE's readout
and regularisation arguments, the store-recall example's thread count, detection's cell
centres for half-precision predictions, and LIFMCRecurrent's parameter dtype."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import load_example
from spikeflow.errors import ConfigurationError
from spikeflow.training.config import config_from_dict, resolve


def _result(layers: list[dict]) -> dict:
    return {
        "checkpoint": "run/best.pt", "run_folder": None, "dataset": "digits", "model": "m",
        "T": 4, "epoch": 1, "epochs": 1, "samples": 8, "split_samples": 8,
        "test_loss": 0.5, "test_acc": 0.75, "readout": "rate", "test_rate": 0.1,
        "layers": layers,
    }  # fmt: skip


def test_the_eval_table_shows_a_dash_for_a_missing_membrane():
    """A layer without membrane (a SpikeTap: NaN; None once read back from JSON) shows
    ``-`` in the v columns, right-aligned in their widths; a neuron shows its numbers."""
    from spikeflow.training.evaluation import format_evaluation

    row = {"firing_rate": 0.25, "spikes": 8.0, "spikes_per_sample": 1.0, "neurons": 4}
    text = format_evaluation(_result([
        {**row, "name": "taps.0", "v_mean": math.nan, "v_std": math.nan},
        {**row, "name": "taps.1", "v_mean": None, "v_std": None},
        {**row, "name": "lif", "v_mean": -0.125, "v_std": 0.5},
    ]))  # fmt: skip
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    for name in ("taps.0", "taps.1"):
        assert "nan" not in lines[name]
        assert lines[name].endswith(f"{'-':>8} {'-':>7}")
    assert lines["lif"].endswith("  -0.125   0.500")


def test_decolle_refuses_the_first_spike_readout_by_name(tmp_path):
    """DECOLLE's output is a real-valued readout: --readout first_spike is refused when
    the configuration is checked, before the trainer writes anything; rate is taken."""
    from spikeflow.training import Trainer

    run = {"dataset": "digits", "model": "decolle", "decolle": True, "T": 4}
    message = r"--readout first_spike cannot be combined with --decolle"
    with pytest.raises(ConfigurationError, match=message):
        resolve(config_from_dict({**run, "readout": "first_spike"}))
    assert resolve(config_from_dict({**run, "readout": "rate"})).readout == "rate"
    out = tmp_path / "run"
    cfg = config_from_dict({**run, "readout": "first_spike", "output_dir": str(out)})
    with pytest.raises(ConfigurationError, match=message):
        Trainer(cfg, log=None).fit()
    assert not out.exists()


def _decolle_net():
    from spikeflow.models import create_model

    return create_model("decolle", num_classes=10, in_channels=1, input_size=8,
                        channels=[4], kernel_size=3, hidden=[12])  # fmt: skip


def test_decolle_regularisation_arguments():
    """No layer: a ConfigurationError (not an IndexError); a 0-d tensor strength of
    DECOLLE counts as that number for every layer, a 1-d one as one per layer; the
    regularisation of U = 0 is λ · (mean(relu(0.01)) + 3e-3 · relu(0.1 − σ(0))) = 0.01 λ."""
    from spikeflow.learn import DECOLLE
    from spikeflow.learn.decolle import decolle_u_regularisation

    with pytest.raises(ConfigurationError, match="u_t holds no layer"):
        decolle_u_regularisation([], [])
    with pytest.raises(ConfigurationError, match="one value per layer"):
        decolle_u_regularisation([torch.zeros(2, 3)], torch.tensor(1.0))
    value = decolle_u_regularisation([torch.zeros(2, 3)], torch.tensor([2.0]))
    torch.testing.assert_close(value, torch.tensor(0.02))
    net = _decolle_net()
    assert DECOLLE(net, reg_u=torch.tensor(0.5)).reg_u == (0.5, 0.5)
    assert DECOLLE(net, reg_u=torch.tensor([0.5, 0.25])).reg_u == (0.5, 0.25)
    with pytest.raises(ConfigurationError, match=r"reg_u\[0\].*got True"):
        DECOLLE(net, reg_u=torch.tensor(True))


def test_the_store_recall_example_restores_the_thread_count():
    module = load_example("store_recall_alif")
    threads = torch.get_num_threads()
    tiny = ["--epochs", "1", "--train-samples", "8", "--test-samples", "4", "--seq-length",
            "2", "--seq-periods", "2", "--hidden", "4", "--batch-size", "8",
            "--threads", str(threads + 1)]  # fmt: skip
    module.main(tiny)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_decode_keeps_exact_cell_centres_for_half_predictions(dtype):
    """A 1 x 1100 map at stride 2: the centres are the odd pixels 1 ... 2199, which
    neither half type holds past 256 (bfloat16) or 2048 (float16); the boxes come out as
    float32 at the centres by hand ± softplus(0) · stride."""
    from spikeflow.detection import decode, decode_boxes

    width, stride = 1100, 2.0
    pred = torch.zeros(1, 6, 1, width)
    pred[:, 4:] = -20.0  # scores far below the threshold...
    pred[0, 4:, 0, width - 1] = 20.0  # ...but the last cell's
    pred = pred.to(dtype)
    boxes = decode_boxes(pred, stride)
    assert boxes.dtype == torch.float32
    half = stride * math.log1p(math.exp(0.0))  # softplus(0) · stride
    centres = (torch.arange(width, dtype=torch.float64) + 0.5) * stride
    y0, y1 = (
        torch.full_like(centres, stride / 2 - half),
        torch.full_like(centres, stride / 2 + half),
    )
    expected = torch.stack([centres - half, y0, centres + half, y1], -1)
    torch.testing.assert_close(boxes[0].double(), expected, rtol=0, atol=1e-4)
    (found,) = decode(pred, stride)
    torch.testing.assert_close(found.boxes.double(), expected[-1:], rtol=0, atol=1e-4)


def test_lifmc_recurrent_takes_its_dtype_from_g_coupling():
    """A float64 g_coupling makes a float64 layer (all its parameters), which runs on
    float64 input exactly as the float32 layer converted with .double() does."""
    from spikeflow import layers

    torch.manual_seed(0)
    for cls in (layers.LIFMCRecurrent, layers.LIFMCRefracRecurrent):
        g = torch.randn(5, 5, dtype=torch.float64) * 0.1
        layer = cls(3, 5, g, v_threshold=0.1)
        assert {p.dtype for p in layer.parameters()} == {torch.float64}
        reference = cls(3, 5, g.float(), v_threshold=0.1).double()
        reference.load_state_dict(layer.state_dict())
        x = torch.rand(6, 2, 3, dtype=torch.float64) * 4
        spikes = layer(x)
        assert spikes.dtype == torch.float64 and spikes.sum() > 0
        torch.testing.assert_close(spikes, reference(x), rtol=0, atol=0)
