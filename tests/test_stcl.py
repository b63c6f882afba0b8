"""STCL, the Siamese TCL (Qiu et al. 2023): the loss against a loop over its anchors and
``gradcheck``, the two augmented views the trainer makes, and a ``--loss stcl`` run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import get_loss, loss_readout, stcl_loss, tcl_loss
from spikeflow.training.views import TwoViews


def _stcl_by_hand(out: torch.Tensor, target: torch.Tensor, lamb: float, tau: float) -> float:
    """The mean over views of CE(time-mean, y), plus ``lamb`` times the supervised
    contrast over every (view, step, sample): positives all the others of its label
    (the other view of the same sample included), the denominator all the others."""
    steps, total, _ = out.shape
    batch = len(target)
    ce = sum(-F.log_softmax(out[:, i].mean(0), dim=0)[int(target[i % batch])].item()
             for i in range(total)) / total  # fmt: skip
    items = [(out[t, i] / out[t, i].norm(), int(target[i % batch]))
             for t in range(steps) for i in range(total)]  # fmt: skip
    contrast, anchors = 0.0, 0
    for a, (z, label) in enumerate(items):
        others = [j for j in range(len(items)) if j != a]
        positives = [j for j in others if items[j][1] == label]
        if not positives:
            continue
        denominator = sum(math.exp(float(z @ items[j][0]) / tau) for j in others)
        contrast -= sum(math.log(math.exp(float(z @ items[p][0]) / tau) / denominator)
                        for p in positives) / len(positives)  # fmt: skip
        anchors += 1
    return ce + lamb * contrast / anchors


@pytest.mark.parametrize(("steps", "lamb", "tau"), [(1, 1.0, 0.1), (3, 0.5, 0.2)])
def test_stcl_by_hand(steps, lamb, tau):
    g = torch.Generator().manual_seed(steps)
    target = torch.tensor([0, 1, 1, 2, 3])  # class 3 alone: positives only in its other view
    out = torch.randn(steps, 10, 4, generator=g, dtype=torch.float64)
    got = stcl_loss(out, target, lamb=lamb, temperature=tau).item()
    assert got == pytest.approx(_stcl_by_hand(out, target, lamb, tau), rel=1e-10)


def test_stcl_gradcheck_float64():
    target = torch.tensor([0, 1, 0])
    out = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o: stcl_loss(o, target, 0.7, 0.3), (out,))


def test_one_view_is_tcl_and_the_second_view_counts():
    g = torch.Generator().manual_seed(5)
    target = torch.tensor([0, 1, 2, 1])
    one = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    assert stcl_loss(one, target) == tcl_loss(one, target)
    two = torch.cat([one, torch.randn(3, 4, 3, generator=g, dtype=torch.float64)], dim=1)
    assert stcl_loss(two, target) != tcl_loss(one, target)
    same = torch.cat([one, one], dim=1)  # identical views: same CE, other positives
    ce = F.cross_entropy(one.mean(0), target)
    assert stcl_loss(same, target, lamb=0.0) == pytest.approx(ce.item(), rel=1e-12)


def test_registry_and_errors():
    assert loss_readout("stcl") == "rate"
    out, target = torch.randn(2, 6, 3), torch.tensor([0, 1, 2])
    assert get_loss("stcl", lamb=0.2)(out, target) == stcl_loss(out, target, lamb=0.2)
    with pytest.raises(ShapeError, match=r"one or two views of the B = 3 samples .* got 5"):
        stcl_loss(torch.randn(2, 5, 3), target)
    with pytest.raises(DTypeError, match="stcl_loss: target must be integer class labels"):
        stcl_loss(out, torch.rand(3))
    with pytest.raises(ConfigurationError, match="temperature"):
        get_loss("stcl", temperature=0.0)


def _shift_of(view: torch.Tensor, sample: torch.Tensor) -> tuple[int, int] | None:
    """The shift within reach that moves ``sample`` to ``view`` (zeros coming in), or
    None if none does."""
    height, width = sample.shape[-2:]
    padded = F.pad(sample, (width, width, height, height))
    for dy in range(-(height // 8), height // 8 + 1):
        for dx in range(-(width // 8), width // 8 + 1):
            window = padded[..., height - dy : 2 * height - dy, width - dx : 2 * width - dx]
            if torch.equal(view, window):
                return dy, dx
    return None


@pytest.mark.parametrize("shape", [(6, 3, 16, 16), (5, 3, 2, 8, 8)])
def test_two_views_shift_each_sample(shape):
    """Each view of a sample is the sample shifted (the same shift at every step of a
    frame sequence), the two views drawn independently, the shifts spread over the
    reach, no mirror."""
    x = torch.rand(shape) + 0.1  # no zeros of its own: a shift is seen exactly
    g = torch.Generator().manual_seed(0)
    views = TwoViews()(x, g)
    assert views.shape == (2 * shape[0], *shape[1:])
    shifts = [_shift_of(views[i], x[i % shape[0]]) for i in range(2 * shape[0])]
    assert None not in shifts
    assert len({dy for dy, _ in shifts}) > 1 and len({dx for _, dx in shifts}) > 1
    assert shifts[: shape[0]] != shifts[shape[0] :]
    again = TwoViews()(x, torch.Generator().manual_seed(0))
    assert torch.equal(views, again)  # the generator decides
    with pytest.raises(ShapeError, match=r"images \[B, C, H, W\] or frames"):
        TwoViews()(torch.rand(4, 10, 20), g)


def test_two_views_of_a_one_row_input_shift_along_the_row_only():
    """A 1-D sensor's frames ``[B, T, 1, 1, C]``: no row shift (one of a single row
    left the sample all zeros), shifts along ``C`` up to ``C // 8``; an input shorter
    than 8 on both axes is refused, not given two identical views."""
    x = torch.rand(16, 3, 1, 1, 40) + 0.1
    views = TwoViews()(x, torch.Generator().manual_seed(1))
    shifts = [_shift_of(views[i], x[i % 16]) for i in range(32)]
    assert None not in shifts and {dy for dy, _ in shifts} == {0}
    assert len({dx for _, dx in shifts}) > 3 and all(abs(dx) <= 5 for _, dx in shifts)
    assert bool((views.flatten(1) != 0).any(dim=1).all())  # no view blanked
    with pytest.raises(ShapeError, match=r"H x W = 4 x 7 .* cannot be shifted"):
        TwoViews()(torch.rand(2, 1, 4, 7), torch.Generator().manual_seed(0))


def test_each_process_takes_its_share_of_the_global_batchs_views():
    """Process ``r`` of ``W`` holds the global samples ``j·W + r`` (a DistributedSampler's
    split): with the same generator state, its views are those one process makes of the
    whole batch, so no two processes shift their samples alike."""
    x = torch.rand(12, 2, 16, 16) + 0.1
    whole = TwoViews()(x, torch.Generator().manual_seed(7))
    shares = [TwoViews()(x[r::3], torch.Generator().manual_seed(7), r, 3) for r in range(3)]
    for r, share in enumerate(shares):
        torch.testing.assert_close(share[:4], whole[:12][r::3], rtol=0, atol=0)
        torch.testing.assert_close(share[4:], whole[12:][r::3], rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"rank 3 is not in \[0, world_size = 3\)"):
        TwoViews()(x, torch.Generator(), 3, 3)


def _loop_views(x, generator, rank=0, world_size=1):
    """The views as the first TwoViews made them: a loop over samples, each shifted by
    slicing into zeros, the same draws in the same order."""
    height, width = x.shape[-2:]
    reach_y, reach_x = height // 8, width // 8
    views, drawn = [], (world_size * len(x),)
    for _ in range(2):
        dy = torch.randint(-reach_y, reach_y + 1, drawn, generator=generator)[rank::world_size]
        dx = torch.randint(-reach_x, reach_x + 1, drawn, generator=generator)[rank::world_size]
        for sample, a, b in zip(x, dy.tolist(), dx.tolist(), strict=True):
            out = torch.zeros_like(sample)
            out[..., max(a, 0) : height + min(a, 0), max(b, 0) : width + min(b, 0)] = sample[
                ..., max(-a, 0) : height + min(-a, 0), max(-b, 0) : width + min(-b, 0)
            ]
            views.append(out)
    return torch.stack(views)


@pytest.mark.parametrize(
    "shape,dtype",
    [((16, 4, 2, 64, 48), torch.float32), ((6, 3, 16, 16), torch.float64),
     ((9, 3, 1, 1, 40), torch.float32), ((5, 2, 9, 30), torch.bool)],
)  # fmt: skip
def test_two_views_equal_the_per_sample_loop(shape, dtype):
    """The vectorised views equal the old loop's, value for value, for the same seed
    (and each process's share), with infinities and NaNs moved like any value."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    x = x > 0 if dtype == torch.bool else x.to(dtype)
    if x.is_floating_point():
        x[0, ..., 0, 5], x[-1, ..., -1, -4] = float("inf"), float("nan")
    for rank, world in [(0, 1), (0, 2), (1, 2)]:
        expect = _loop_views(x, torch.Generator().manual_seed(11), rank, world)
        got = TwoViews()(x, torch.Generator().manual_seed(11), rank, world)
        assert got.dtype == dtype and got.shape == expect.shape
        torch.testing.assert_close(got, expect, rtol=0, atol=0, equal_nan=True)


def test_a_stcl_run_trains_on_two_views(tmp_path, monkeypatch):
    """``--loss stcl``: every training batch reaches the model as 2B samples (``tcl``:
    B), and the run ends with finite losses."""
    pytest.importorskip("sklearn", reason="scikit-learn (the 'examples' extra) is needed")
    from spikeflow.training import Trainer, trainer_steps
    from train_runs import tiny

    seen: list[int] = []
    original = trainer_steps.to_time_major

    def recording(x, *args):
        seen.append(x.shape[0])
        return original(x, *args)

    monkeypatch.setattr(trainer_steps, "to_time_major", recording)
    for loss, size in (("stcl", 64), ("tcl", 32)):  # batch 32
        seen.clear()
        config = tiny(tmp_path, loss, loss=loss, epochs=1, train_samples=64, test_samples=32,
                      model_kwargs={"channels": 8, "hidden": 32, "dropout": 0.0,
                                    "spiking_output": False})  # fmt: skip
        result = Trainer(config, log=None).fit()
        assert set(seen) == {size}, loss
        assert all(math.isfinite(row["train_loss"]) for row in result.history)


def test_a_stcl_run_on_audio_features_is_refused_before_training(tmp_path, monkeypatch):
    """SHD's frames ``[T, 700]`` batch to ``[B, T, 700]``, which the two views cannot
    shift: ``Trainer`` refuses the run at setup with the message the first step gave
    (that of TwoViews on a real batch of the dataset), having trained nothing."""
    pytest.importorskip("h5py", reason="SHD files need h5py")
    import numpy as np

    from spikeflow.data import SHD
    from spikeflow.training import Trainer, trainer_steps
    from test_data_datasets_audio_numpy import audio_samples, write_spiking_audio
    from train_runs import tiny

    root = tmp_path / "shd"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        samples, labels = audio_samples(rng, n, 20)
        write_spiking_audio(root / f"shd_{split}.h5", samples, labels, SHD.classes)
    config = tiny(tmp_path, "run", dataset="shd", data_dir=str(root), model="rsnn",
                  loss="stcl", T=12, epochs=1, batch_size=4, train_samples=None,
                  test_samples=None, model_kwargs={"hidden": 8, "hidden_layers": 1})  # fmt: skip

    def no_step(*args):
        raise AssertionError("a training step ran: the run was not refused at setup")

    monkeypatch.setattr(trainer_steps.StepsMixin, "_train_step", no_step)
    with pytest.raises(ShapeError) as refused:
        Trainer(config, log=None).fit()
    data = SHD(root, train=True, data_type="frame", frames_number=12, split_by="number")
    batch = torch.stack([data[i][0] for i in range(4)])
    with pytest.raises(ShapeError) as at_step:
        TwoViews()(batch, torch.Generator().manual_seed(0))
    assert str(refused.value) == str(at_step.value)
    assert "got a batch of shape (4, 12, 700)" in str(refused.value)
    assert not (tmp_path / "run" / "last.pt").exists()
