"""The spiking S4D block (spikeflow.layers.SpikingS4DBlock) and the sequence classifiers
of spikeflow.models.spiking_ssm: the block's wiring, streaming in chunks and single
steps, the pixel-sequence reading, errors, and one training run through the Trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.layers import S4D, SpikingS4DBlock
from spikeflow.models import create_model
from spikeflow.models.spiking_ssm import RecurrentLIFSequenceNet, SpikingSSM
from spikeflow.neurons import IFNode, LIFNode

T, B, H = 12, 3, 6


def _block(**kwargs) -> SpikingS4DBlock:
    torch.manual_seed(0)
    block = SpikingS4DBlock(H, d_state=8, ssm_kwargs={"dt_min": 0.05, "dt_max": 0.5}, **kwargs)
    return block.double()


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 2 * torch.randn(T, B, H, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("prenorm", [False, True])
@pytest.mark.parametrize("mixer", ["glu", "linear"])
def test_block_is_s4d_then_neuron_then_mixing_residual_and_norm(mixer, prenorm):
    block, x = _block(mixer=mixer, prenorm=prenorm), _x()
    assert isinstance(block.neuron, LIFNode)  # the default neuron
    # the same computation from fresh parts with the block's weights
    ssm, neuron = S4D(H, 8).double(), LIFNode()
    ssm.load_state_dict(block.ssm.state_dict())
    norm = block.norm
    if mixer == "glu":
        w, b = block.mix[0].weight, block.mix[0].bias

        def mix(s):
            a, g = (s @ w.T + b).chunk(2, -1)
            return a * torch.sigmoid(g)
    else:

        def mix(s):
            return s @ block.mix.weight.T + block.mix.bias

    z = ssm(norm(x) if prenorm else x)
    spikes = neuron(z)
    assert 0 < spikes.mean() < 1 and set(spikes.unique().tolist()) <= {0.0, 1.0}
    out = x + mix(spikes)
    expected = out if prenorm else norm(out)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=1e-10)


def test_block_takes_any_neuron_module():
    block = SpikingS4DBlock(H, neuron=IFNode(v_threshold=0.5), d_state=4)
    assert isinstance(block.neuron, IFNode)
    assert block(torch.randn(5, 2, H)).shape == (5, 2, H)


def test_block_streams_in_chunks_and_single_steps_as_one_call():
    x = _x()
    whole_block, chunk_block, step_block = _block(), _block(), _block(step_mode="s")
    whole = whole_block(x)
    with F.streaming(chunk_block):
        chunks = torch.cat([chunk_block(part) for part in x.split([5, 2, 5])])
    assert step_block.ssm.step_mode == "s" and step_block.neuron.step_mode == "s"
    with F.streaming(step_block):
        steps = torch.stack([step_block(x[t]) for t in range(T)])
    torch.testing.assert_close(chunks, whole, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(steps, whole, atol=1e-12, rtol=1e-10)
    first, state = F.run(whole_block, x[:5])  # explicit state: S4D's and the neuron's
    second, _ = F.run(whole_block, x[5:], state)
    assert sorted(state) == ["neuron", "ssm"]
    torch.testing.assert_close(torch.cat([first, second]), whole, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mixer": "mlp"}, "mixer must be 'glu' or 'linear'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"neuron": "lif"}, "neuron must be an nn.Module"),
    ],
)
def test_block_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        SpikingS4DBlock(H, **kwargs)


def test_pixel_mode_reads_pixel_t_at_step_t():
    torch.manual_seed(0)
    model = SpikingSSM(in_channels=2, input_mode="pixels", d_model=8, d_state=4, n_layers=1)
    frames = torch.randn(12, B, 2, 3, 4)  # T = 3·4 frames (a repeated image, or not)
    seq = model.sequence(frames)
    expected = torch.stack([frames[t, :, :, t // 4, t % 4] for t in range(12)])
    assert torch.equal(seq, expected)
    pooled = model.core(model.embed(seq)).mean(0)  # mean over the steps, then classify
    torch.testing.assert_close(model(frames), model.classifier(pooled).unsqueeze(0))
    with pytest.raises(ShapeError, match=r"T = H·W \(pass -T H·W"):
        model(torch.randn(5, B, 2, 3, 4))
    with pytest.raises(DTypeError, match=r"floating-point tensor, got torch\.int64"):
        model(torch.zeros(12, B, 2, 3, 4, dtype=torch.long))


def test_frame_and_column_modes_and_their_errors():
    kwargs = {"d_model": 8, "d_state": 4, "n_layers": 1, "input_mode": "frames"}
    frames = SpikingSSM(in_channels=2, input_size=5, **kwargs)
    assert frames.in_features == 50 and frames(torch.rand(4, B, 2, 5, 5)).shape == (1, B, 10)
    with pytest.raises(ShapeError, match="50 values per step"):
        frames(torch.rand(4, B, 2, 5, 4))
    columns = RecurrentLIFSequenceNet(in_channels=3, input_size=(4, 7), input_mode="columns")
    assert columns.static_input == "columns" and columns.in_features == 12
    assert columns(torch.rand(7, B, 3, 4)).shape == (1, B, 10)
    with pytest.raises(ConfigurationError, match="input_mode must be one of"):
        SpikingSSM(in_features=4, input_mode="rows")
    with pytest.raises(ConfigurationError, match="needs in_features, or in_channels"):
        SpikingSSM(input_mode="frames")
    with pytest.raises(ConfigurationError, match="in_features is for input_mode='frames'"):
        SpikingSSM(in_features=4)
    assert SpikingSSM().in_features == 1  # default: pixels, one channel


def test_zoo_builds_both_models_with_their_arguments():
    ssm = create_model("spiking_ssm", in_channels=3, d_model=16, n_layers=3, mixer="linear")
    blocks = [m for m in ssm.modules() if isinstance(m, SpikingS4DBlock)]
    assert len(blocks) == 3 and isinstance(blocks[0].mix, nn.Linear)
    assert blocks[0].ssm.lr == 1e-3 and blocks[0].ssm.d_state == 64
    tuned = create_model("spiking_ssm", d_state=4, ssm_lr=None, init="inv",
                         dt_min=0.5, dt_max=0.5)  # fmt: skip
    ssm = tuned.core[1].ssm
    assert ssm.lr is None and ssm.init == "inv" and ssm.d_state == 4
    assert torch.allclose(ssm.log_dt.exp(), torch.full((64,), 0.5))
    rlif = create_model("recurrent_lif_seq", in_channels=3, hidden=20, n_layers=2)
    cells = [m for m in rlif.modules() if isinstance(m, LIFNode)]
    assert len(cells) == 2 and all(c.step_mode == "s" for c in cells)
    kinds = [type(m).__name__ for m in rlif.core]
    assert kinds == ["LayerNorm", "Recurrent", "Linear", "LayerNorm", "Recurrent"]
    plain = create_model("recurrent_lif_seq", hidden=20, n_layers=1, norm=False)
    assert [type(m).__name__ for m in plain.core] == ["Recurrent"]


@pytest.mark.parametrize("model", ["spiking_ssm", "recurrent_lif_seq"])
def test_the_trainer_trains_the_models_on_the_digit_pixel_sequence(tmp_path, model):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    from spikeflow.training import Trainer, load_checkpoint
    from train_runs import tiny

    width = {"d_model": 16, "d_state": 8} if model == "spiking_ssm" else {"hidden": 16}
    config = tiny(tmp_path, "run", model=model, loss="ce", T=64, epochs=1, lr=1e-2,
                  model_kwargs={"input_mode": "pixels", "n_layers": 1, **width},
                  train_samples=64, test_samples=32)  # fmt: skip
    start: dict[str, torch.Tensor] = {}

    class Recording(Trainer):  # keeps the model's initial weights
        def _build_model(self) -> nn.Module:
            built = super()._build_model()
            start.update({k: v.clone() for k, v in built.state_dict().items()})
            return built

    Recording(config, log=None).fit()
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert trained.keys() == start.keys()
    changed = {k for k in start if not torch.equal(trained[k], start[k])}
    assert {"embed.weight", "classifier.weight"} <= changed
    if model == "spiking_ssm":  # the SSM's own parameters learn too
        assert {"core.0.ssm.log_dt", "core.0.ssm.a_imag", "core.0.ssm.c"} <= changed
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2 and "nan" not in metrics[1]
