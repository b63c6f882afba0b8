"""Mixup, CutMix, gradient clipping and learning-rate warm-up in ``spikeflow train``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.training import TrainConfig, Trainer
from spikeflow.training.config import resolve
from spikeflow.training.loop import epoch_learning_rates
from spikeflow.training.mixing import BatchMixer
from train_runs import check_resume_is_exact, tiny


def _replay(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mixup_blends_inputs_and_targets_with_one_lambda():
    x, y = torch.rand(6, 4, 1, 5, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    mixed, target, lam = BatchMixer(5, mixup=0.4)(x, y, _replay(3))
    # The same draws by hand: λ ~ Beta(0.4, 0.4) as two gammas, then the permutation.
    g = _replay(3)
    gammas = torch._standard_gamma(torch.tensor([0.4, 0.4], dtype=torch.float64), generator=g)
    assert lam == pytest.approx(float(gammas[0] / gammas.sum()))
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    one_hot = torch.nn.functional.one_hot(y, 5).float()
    torch.testing.assert_close(target, lam * one_hot + (1 - lam) * one_hot[perm])
    torch.testing.assert_close(target.sum(1), torch.ones(6))
    # int32 labels (a dataset's numpy int32 targets, collated) mix alike
    assert torch.equal(BatchMixer(5, mixup=0.4)(x, y.int(), _replay(3))[1], target)


def test_cutmix_pastes_one_box_at_every_step_and_lambda_is_the_kept_area():
    x, y = torch.rand(8, 3, 2, 16, 20), torch.arange(8) % 4  # [B, T, C, H, W] frames
    for seed in range(20):
        mixed, target, lam = BatchMixer(4, cutmix=1.0)(x, y, _replay(seed))
        changed = (mixed != x).any(0).any(0).any(0)  # [H, W]: where any sample changed
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        if rows.numel():
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert changed.sum() == box  # one rectangle, the same at every step
            assert lam == pytest.approx(1 - float(box) / (16 * 20))
        assert 0 <= lam <= 1 and torch.allclose(target.sum(1), torch.ones(8))
        # Outside the box every sample is itself; inside, another sample of the batch.
        torch.testing.assert_close(mixed[..., ~changed], x[..., ~changed])


def test_beta_draws_have_the_beta_mean_and_variance():
    mixer = BatchMixer(2, mixup=0.2)
    x, y = torch.zeros(2, 1), torch.tensor([0, 1])
    g = _replay(0)
    lams = torch.tensor([mixer(x, y, g)[2] for _ in range(4000)])
    # Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1)) = 0.1786 for α = 0.2.
    assert abs(lams.mean() - 0.5) < 4 * math.sqrt(0.1786 / 4000)
    assert lams.var() == pytest.approx(1 / (4 * 1.4), rel=0.08)


def test_with_both_each_batch_uses_one_of_the_two():
    mixer = BatchMixer(3, mixup=1.0, cutmix=1.0)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    g = _replay(1)
    cutmix_batches = 0
    for _ in range(200):
        replay = torch.Generator().set_state(g.get_state())
        mixed, _, lam = mixer(x, y, g)
        cut = float(torch.rand((), generator=replay)) < 0.5  # the draw that chooses
        _beta_draw = torch._standard_gamma(torch.ones(2, dtype=torch.float64), generator=replay)
        perm = torch.randperm(4, generator=replay)
        if cut:  # pixels outside one box untouched
            cutmix_batches += 1
            assert ((mixed == x) | (mixed == x[perm])).all()
        else:  # every pixel blended with λ
            torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    assert 60 < cutmix_batches < 140


def test_bad_mixing_inputs_are_named():
    with pytest.raises(ShapeError, match=r"needs batches \[B, \.\.\., H, W\].*use mixup"):
        BatchMixer(3, cutmix=1.0)(torch.rand(4, 10, 700), torch.tensor([0, 1, 2, 0]), _replay(0))
    with pytest.raises(ShapeError, match="class labels"):
        BatchMixer(3, mixup=1.0)(torch.rand(4, 3), torch.rand(4, 3), _replay(0))
    with pytest.raises(DTypeError, match="integer class labels"):
        BatchMixer(3, mixup=1.0)(torch.rand(4, 3), torch.rand(4), _replay(0))
    with pytest.raises(ConfigurationError, match=r"BatchMixer: labels must lie in \[0, 2\]"):
        BatchMixer(3, cutmix=1.0)(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 3, 0]), _replay(0))
    with pytest.raises(ConfigurationError, match="mixup > 0 or cutmix > 0"):
        BatchMixer(3)
    with pytest.raises(ConfigurationError, match="finite number >= 0"):
        BatchMixer(3, mixup=-1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mixup": 0.2, "loss": "count"}, "loss must be one of mse, ce, tet, mse_membrane, "),
        ({"online": True, "loss": "ce_max_membrane"}, "ce_max_membrane the maximum over all"),
        (
            {"online": True, "loss": "spike_moid", "loss_kwargs": {"moving_window": 2}},
            "spike_moid to each step's output alone",
        ),
        ({"warmup_epochs": 3, "epochs": 3}, r"warmup_epochs \(3\) must be fewer than epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
        ({"clip_grad_norm": 0.0}, "clip_grad_norm must be > 0"),
        ({"mixup": -0.5}, "mixup must be a finite number >= 0"),
    ],
)
def test_bad_options_are_named(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(TrainConfig(**changes))


def test_mixing_takes_exactly_the_losses_that_take_a_class_distribution():
    """MIXABLE_LOSSES is the set of registered losses that accept a float [B, K]
    target, whichever way the name is spelt (get_loss ignores case and -/_)."""
    from spikeflow.losses import get_loss, list_losses
    from spikeflow.training.mixing import MIXABLE_LOSSES

    out, target = torch.rand(3, 2, 4), torch.softmax(torch.randn(2, 4), 1)
    needed = {"spike_rate": {"true_rate": 1.0, "false_rate": 0.0}}  # no defaults
    takes = []
    for name in list_losses():
        try:
            get_loss(name, **needed.get(name, {}))(out, target)
        except (DTypeError, ShapeError):
            continue
        takes.append(name)
    assert sorted(MIXABLE_LOSSES) == takes
    for name in takes:
        spelt = name.upper().replace("_", "-")
        assert resolve(TrainConfig(loss=spelt, cutmix=1.0)).loss == spelt
    assert resolve(TrainConfig(loss="MSE-Membrane", online=True, mixup=0.2)).online


def test_warmup_ramps_then_the_schedule_runs_over_the_rest():
    config = SimpleNamespace(lr=1.0, epochs=7, schedule="cosine", warmup_epochs=2,
                             step_size=2, gamma=0.5)  # fmt: skip
    rates = epoch_learning_rates(config)
    cosine = [0.5 * (1 + math.cos(math.pi * k / 5)) for k in range(5)]
    assert rates == pytest.approx([1 / 3, 2 / 3, *cosine])
    config.schedule = "step"
    assert epoch_learning_rates(config) == pytest.approx([1 / 3, 2 / 3, 1, 1, 0.5, 0.5, 0.25])


def test_clipping_bounds_the_first_update_to_lr_times_the_norm(tmp_path, monkeypatch):
    """SGD's first step moves the weights by lr x the (clipped) gradient: the total
    change has norm lr x clip when the gradient is larger than clip."""
    import spikeflow.training.trainer as trainer_module

    built = {}

    def build_and_keep(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built["model"], built["before"] = model, [p.detach().clone() for p in model.parameters()]
        return model

    build_model = trainer_module.build_model
    monkeypatch.setattr(trainer_module, "build_model", build_and_keep)
    moved = {}
    for clip in (None, 1e-5):
        config = tiny(tmp_path, f"clip{clip}", optimizer="sgd", lr=0.5, epochs=1,
                      train_samples=32, batch_size=32, clip_grad_norm=clip,
                      schedule="none")  # fmt: skip
        Trainer(config, log=None).fit()
        pairs = zip(built["model"].parameters(), built["before"])
        moved[clip] = float(torch.cat([(p.detach() - b).flatten() for p, b in pairs]).norm())
    grad_norm = moved[None] / 0.5  # the same seed: the same first gradient
    assert grad_norm > 10 * 1e-5  # so the clip acts
    # clip_grad_norm_ scales by clip / (norm + 1e-6); float32 weights: 1e-3
    assert moved[1e-5] == pytest.approx(0.5 * 1e-5 * grad_norm / (grad_norm + 1e-6), rel=1e-3)


def test_a_mixed_run_resumes_exactly_and_differs_from_an_unmixed_one(tmp_path):
    payload = check_resume_is_exact(tmp_path, mixup=0.4, cutmix=1.0, loss="ce",
                                    warmup_epochs=1, clip_grad_norm=5.0)  # fmt: skip
    assert payload["config"]["mixup"] == 0.4 and payload["config"]["warmup_epochs"] == 1
    Trainer(tiny(tmp_path, "plain", loss="ce", warmup_epochs=1, clip_grad_norm=5.0),
            log=None).fit()  # fmt: skip
    from spikeflow.training import load_checkpoint

    plain = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    mixed = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    assert any(not torch.equal(plain[k], mixed[k]) for k in plain)


@pytest.mark.parametrize("loss", ["ce", "spike_moid"])
def test_the_loss_receives_the_mixed_targets(tmp_path, monkeypatch, loss):
    """spike_moid (Lava-DL's SpikeMoid) takes the mixed distribution as per-class BCE
    targets: each recorded loss is the BCE of sigmoid((rate - theta)/alpha) against it."""
    from spikeflow.training import run_checks  # where the trainer gets its loss

    seen, made = [], []
    get_loss, mix = run_checks.get_loss, BatchMixer.__call__

    def recording_get_loss(*args, **kwargs):
        loss_fn = get_loss(*args, **kwargs)

        def recording(out, target):
            value = loss_fn(out, target)
            seen.append((target, out.detach(), value.detach()))
            return value

        return recording

    def recording_mix(self, x, y, generator):
        result = mix(self, x, y, generator)
        made.append(result[1])
        return result

    monkeypatch.setattr(run_checks, "get_loss", recording_get_loss)
    monkeypatch.setattr(BatchMixer, "__call__", recording_mix)
    kwargs = {"alpha": 0.25, "theta": 0.5} if loss == "spike_moid" else {}
    Trainer(tiny(tmp_path, "seen", loss=loss, loss_kwargs=kwargs, mixup=1.0, cutmix=1.0,
                 epochs=1), log=None).fit()  # fmt: skip
    train = [s for s in seen if s[0].dim() == 2]  # the evaluation passes labels
    assert len(train) == len(made) == 6
    for (got, out, value), expected in zip(train, made):
        assert torch.equal(got, expected)
        if loss == "spike_moid":  # by hand, summed over the samples and classes
            p = torch.sigmoid((out.double().mean(0) - 0.5) / 0.25)
            bce = -(got * p.log() + (1 - got) * (1 - p).log()).sum()
            assert value.item() == pytest.approx(bce.item(), rel=1e-5)


# -- online training (SLTT) with mixing ---------------------------------------------------


def test_online_mixup_is_a_hand_mixed_batch_fed_to_the_online_step(tmp_path, monkeypatch):
    """The first step of an online mixup run: its gradients are those of
    online_backward on the batch mixed by hand (λ from the two gammas and the
    permutation drawn from seed · 1_000_033 + step), with the mixed target."""
    import copy

    import spikeflow.training.trainer as trainer_module
    from spikeflow.losses import get_loss
    from spikeflow.training.online import online_backward

    seen = {}
    build_model, train_step = trainer_module.build_model, Trainer._train_step

    def build_and_keep(*args, **kwargs):
        model = build_model(*args, **kwargs)
        seen["initial"] = copy.deepcopy(model)
        return model

    def first_step(self, x, y, step, steps):
        seen["batch"] = (x.clone(), y.clone())
        return train_step(self, x, y, step, steps)

    monkeypatch.setattr(trainer_module, "build_model", build_and_keep)
    monkeypatch.setattr(Trainer, "_train_step", first_step)
    # One batch, one step (no dropout: its masks would be other draws here).
    config = tiny(tmp_path, "online", online=True, loss="ce", mixup=0.4, epochs=1,
                  train_samples=32, test_samples=32, seed=3,
                  model_kwargs={"channels": 8, "hidden": 32, "dropout": 0.0})  # fmt: skip
    trainer = Trainer(config, log=None)
    trainer.fit()
    grads = [p.grad for p in trainer.raw_model.parameters()]  # of the only step
    x, y = seen["batch"]
    g = _replay(3 * 1_000_033 + 0)  # the run's seed and its first step
    gammas = torch._standard_gamma(torch.tensor([0.4, 0.4], dtype=torch.float64), generator=g)
    lam = float(gammas[0] / gammas.sum())
    perm = torch.randperm(x.shape[0], generator=g)
    mixed = lam * x + (1 - lam) * x[perm]
    one_hot = torch.nn.functional.one_hot(y, 10).float()
    target = lam * one_hot + (1 - lam) * one_hot[perm]
    model = seen["initial"]
    online_backward(model, mixed.unsqueeze(0).expand(2, *mixed.shape), target, get_loss("ce"))
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(mixed, x)  # so the mixing acted


def test_mse_membrane_trains_online_as_its_own_per_step_form():
    """mse_membrane is a mean over steps of each step's squared error: its per-step form
    (what online training optimises and reports) is the loss itself."""
    from spikeflow.losses import get_loss
    from spikeflow.training.online import online_backward, per_step_loss

    torch.manual_seed(0)
    out, target = torch.randn(5, 4, 3), torch.softmax(torch.randn(4, 3), 1)
    loss = get_loss("mse_membrane", on_target=0.8, off_target=0.1)
    torch.testing.assert_close(per_step_loss(loss)(out, target), loss(out, target))
    net = torch.nn.Linear(3, 3)
    x = torch.randn(5, 4, 3)
    result = online_backward(net, x, target, loss)
    with torch.no_grad():  # a stateless net: the per-step gradients are BPTT's
        torch.testing.assert_close(result.loss, loss(net(x), target))
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    loss(net(x), target).backward()
    for got, want in zip(grads, (p.grad for p in net.parameters()), strict=True):
        torch.testing.assert_close(got, want)
    assert resolve(TrainConfig(online=True, loss="mse_membrane", mixup=0.2)).online


def test_a_model_that_takes_the_labels_is_not_trained_on_mixed_batches(tmp_path, monkeypatch):
    """The event-driven nets add a teacher spike for each sample's label: a mixed batch
    has none to give them, so mixing is refused before anything runs."""
    import spikeflow.training.trainer as trainer_module

    build_model = trainer_module.build_model

    def build_one_that_takes_labels(*args, **kwargs):
        model = build_model(*args, **kwargs)
        model.takes_target = True
        return model

    monkeypatch.setattr(trainer_module, "build_model", build_one_that_takes_labels)
    with pytest.raises(ConfigurationError, match="a mixed batch does not have"):
        Trainer(tiny(tmp_path, "teacher", loss="ce", cutmix=1.0), log=None).fit()
    assert not (tmp_path / "teacher").exists()


def test_clipping_under_gradient_scaling_clips_the_unscaled_gradients(tmp_path, monkeypatch):
    """--amp fp16's GradScaler (CUDA only in a run; here the CPU one, scale 2^16, exact
    in floating point): the gradients are unscaled before they are clipped, so the
    update equals the unscaled run's bit for bit (clipping the scaled gradients, or
    unscaling after the clip, moves the weights 2^16 times less)."""
    real_scaler = torch.amp.GradScaler
    weights = {}
    for scaled in (False, True):
        if scaled:
            monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real_scaler(
                "cpu", init_scale=2.0**16, enabled=True))  # fmt: skip
        config = tiny(tmp_path, f"scaled{scaled}", optimizer="sgd", lr=0.5, epochs=1,
                      train_samples=32, batch_size=32, clip_grad_norm=1e-4,
                      schedule="none", loss="ce")  # fmt: skip
        weights[scaled] = Trainer(config, log=None)
        weights[scaled].fit()
    assert weights[True].scaler.is_enabled() and not weights[False].scaler.is_enabled()
    plain, scaled = (w.raw_model.state_dict() for w in (weights[False], weights[True]))
    for key in plain:
        assert torch.equal(plain[key], scaled[key]), key
