"""SpikingJelly ``train_classify``'s optimizer and schedule options in ``spikeflow train``
(``--optimizer rmsprop``, ``--nesterov``, ``--schedule exponential``, ``--lr-min``,
``--warmup-method linear|constant``, ``--warmup-factor``): the learning rate of every
epoch equals SpikingJelly's composition of torch's schedulers (rebuilt here from its
``set_lr_scheduler``, and that function's installed source itself, run without the
module, which imports torchvision) and the hand-derived formulas; the weights after N
steps equal torch's optimizers built as SJ's ``set_optimizer`` builds them (rebuilt and
installed); a resume mid-schedule continues the same rates; bad combinations are
refused by name."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch

from spikeflow.cli import build_parser
from spikeflow.errors import ConfigurationError
from spikeflow.training import TrainConfig, Trainer, config_for_resume, load_checkpoint
from spikeflow.training.loop import epoch_learning_rates, make_lr_scheduler
from spikeflow.training.run_optimizer import build_run_optimizer
from spikeflow.training.train_config import resolve
from train_runs import tiny

LR = 0.1


def _sj_rates(
    epochs: int,
    scheduler: str,
    warmup: int,
    method: str,
    decay: float,
    gamma: float = 0.1,
    step: int = 30,
    lr_min: float = 0.0,
) -> list[float]:
    """SpikingJelly's ``set_lr_scheduler`` (torch's classes in its order; ``lr_min``
    as torchvision's ``eta_min``), stepped once per epoch as its ``main`` loop does."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    S = torch.optim.lr_scheduler
    main = {
        "step": lambda: S.StepLR(optimizer, step_size=step, gamma=gamma),
        "cosa": lambda: S.CosineAnnealingLR(optimizer, T_max=epochs - warmup, eta_min=lr_min),
        "exp": lambda: S.ExponentialLR(optimizer, gamma=gamma),
    }[scheduler]()
    if warmup > 0:
        first = (
            S.LinearLR(optimizer, start_factor=decay, total_iters=warmup)
            if method == "linear"
            else S.ConstantLR(optimizer, factor=decay, total_iters=warmup)
        )
        main = S.SequentialLR(optimizer, schedulers=[first, main], milestones=[warmup])
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        main.step()
    return rates


def _config(**changes: object) -> SimpleNamespace:
    values = {"lr": LR, "epochs": 9, "schedule": "cosine", "warmup_epochs": 0,
              "warmup_method": "ramp", "warmup_factor": None, "lr_min": 0.0,
              "step_size": 30, "gamma": 0.1, **changes}  # fmt: skip
    return SimpleNamespace(**values)


SJ_NAMES = {"cosine": "cosa", "step": "step", "exponential": "exp"}


@pytest.mark.parametrize(
    ("schedule", "lr_min"),
    [("cosine", 0.0), ("cosine", 0.004), ("step", 0.0), ("exponential", 0.0)],
)
@pytest.mark.parametrize("method", ["linear", "constant"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_every_epochs_rate_is_spikingjellys(schedule, lr_min, method, warmup):
    factor = None if method == "linear" else 0.25  # None: SJ's default decay 0.01
    config = _config(schedule=schedule, warmup_epochs=warmup, gamma=0.7, step_size=2,
                     lr_min=lr_min,
                     warmup_method=method if warmup else "ramp", warmup_factor=factor)  # fmt: skip
    expected = _sj_rates(9, SJ_NAMES[schedule], warmup, method,
                         0.01 if factor is None else factor, gamma=0.7, step=2,
                         lr_min=config.lr_min)  # fmt: skip
    assert epoch_learning_rates(config) == pytest.approx(expected, rel=1e-12)


def _spikingjellys_builders() -> dict:
    """SpikingJelly's own ``set_lr_scheduler`` and ``set_optimizer`` (their source, read
    from the installed recipe and run: the module imports torchvision, absent here)."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or spec.origin is None:
        pytest.skip("spikingjelly is not installed")
    path = Path(spec.origin).parent / "activation_based/examples/common/train_classify.py"
    if not path.is_file():
        pytest.skip(f"no {path}")
    wanted = ("set_lr_scheduler", "set_optimizer")
    found = [n for n in ast.walk(ast.parse(path.read_text()))
             if isinstance(n, ast.FunctionDef) and n.name in wanted]  # fmt: skip
    assert sorted(n.name for n in found) == sorted(wanted), path
    names: dict = {"torch": torch}
    exec(compile(ast.Module(found, type_ignores=[]), str(path), "exec"), names)
    return names


@pytest.mark.parametrize("schedule", ["cosine", "step", "exponential"])
@pytest.mark.parametrize("method", ["linear", "constant"])
def test_every_epochs_rate_is_that_of_spikingjellys_installed_code(schedule, method):
    """The rates of SpikingJelly's installed ``set_lr_scheduler`` itself, stepped per
    epoch as its ``main`` does, for warm-ups of 0, 1 and 4 epochs and three factors."""
    build = _spikingjellys_builders()["set_lr_scheduler"]
    for warmup in (0, 1, 4):
        for factor in (0.01, 0.3, 1.0):
            args = SimpleNamespace(lr_scheduler=SJ_NAMES[schedule], lr_step_size=3, lr_gamma=0.8,
                                   epochs=10, lr_warmup_epochs=warmup,
                                   lr_warmup_method=method, lr_warmup_decay=factor)  # fmt: skip
            optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
            scheduler, theirs = build(None, args, optimizer), []
            for _ in range(10):
                theirs.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
            config = _config(schedule=schedule, epochs=10, step_size=3, gamma=0.8,
                             warmup_epochs=warmup, warmup_method=method if warmup else "ramp",
                             warmup_factor=factor if warmup else None)  # fmt: skip
            rates = epoch_learning_rates(config)
            assert rates == pytest.approx(theirs, rel=1e-12), (warmup, factor)


def test_the_rates_follow_the_hand_derived_formulas():
    # linear warm-up over 3 epochs from 0.01 x lr, then lr x 0.5**k
    rates = epoch_learning_rates(_config(schedule="exponential", gamma=0.5, warmup_epochs=3,
                                         warmup_method="linear"))  # fmt: skip
    warm = [LR * (0.01 + 0.99 * k / 3) for k in range(3)]
    assert rates == pytest.approx([*warm, *(LR * 0.5**k for k in range(6))], rel=1e-12)
    # constant warm-up at 0.2 x lr, then the cosine from lr down to its floor over 6 epochs
    rates = epoch_learning_rates(_config(warmup_epochs=3, warmup_method="constant",
                                         warmup_factor=0.2, lr_min=0.01))  # fmt: skip
    cosine = [0.01 + (LR - 0.01) * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert rates == pytest.approx([0.2 * LR] * 3 + cosine, rel=1e-12)
    # no main schedule: the warm-up, then lr (SpikingJelly's code cannot run this one)
    rates = epoch_learning_rates(_config(schedule="none", warmup_epochs=2,
                                         warmup_method="linear", warmup_factor=0.5))  # fmt: skip
    assert rates == pytest.approx([0.05, 0.075, *[LR] * 7], rel=1e-12)


@pytest.mark.parametrize("method", ["ramp", "linear", "constant"])
def test_the_cosine_floor_keeps_every_groups_share_of_the_rate(method):
    """A group at ``s x lr`` (synaptic delays, a model's own groups) falls to ``s x
    lr_min``, as every schedule keeps the groups' ratios: torch's single ``eta_min``
    would pull a group below ``lr_min`` up to it, and train a frozen group (lr 0)."""
    config = _config(lr_min=0.004, warmup_epochs=3, warmup_method=method,
                     warmup_factor=None if method == "ramp" else 0.2)  # fmt: skip
    weights = [torch.zeros(1, requires_grad=True) for _ in range(3)]
    optimizer = torch.optim.SGD([{"params": weights[:1]},
                                 {"params": weights[1:2], "lr": LR / 50},
                                 {"params": weights[2:], "lr": 0.0}], lr=LR)  # fmt: skip
    scheduler = make_lr_scheduler(optimizer, config)
    run = epoch_learning_rates(config)  # the run's rate: one group at lr
    for epoch in range(config.epochs):
        rates = [group["lr"] for group in optimizer.param_groups]
        assert rates == pytest.approx([run[epoch], run[epoch] / 50, 0.0], rel=1e-12), epoch
        optimizer.step()
        scheduler.step()
    assert run[-1] > 0.004 and run[-1] == pytest.approx(
        0.004 + (LR - 0.004) * (1 + math.cos(math.pi * 5 / 6)) / 2, rel=1e-12
    )


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], n: int) -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        optimizer.step()


@pytest.mark.parametrize("installed", [False, True])
@pytest.mark.parametrize("name", ["rmsprop", "sgd_nesterov"])
def test_weights_after_n_steps_equal_spikingjellys_optimizer(name, installed):
    """SJ's ``set_optimizer``: RMSprop(momentum, weight_decay, eps=0.0316, alpha=0.9);
    SGD(momentum, weight_decay, nesterov=True); rebuilt here, or the installed one."""
    torch.manual_seed(0)
    ours = torch.nn.Linear(6, 4).double()
    theirs = [p.detach().clone().requires_grad_(True) for p in ours.parameters()]
    options = {"optimizer": "rmsprop"} if name == "rmsprop" else {"optimizer": "sgd",
                                                                   "nesterov": True}  # fmt: skip
    config = TrainConfig(lr=0.01, momentum=0.8, weight_decay=1e-3, **options)
    config.validate()
    if installed:
        arguments = SimpleNamespace(opt=name, lr=0.01, momentum=0.8, weight_decay=1e-3)
        reference = _spikingjellys_builders()["set_optimizer"](None, arguments, theirs)
    elif name == "rmsprop":
        reference = torch.optim.RMSprop(theirs, lr=0.01, momentum=0.8, weight_decay=1e-3,
                                        eps=0.0316, alpha=0.9)  # fmt: skip
    else:
        reference = torch.optim.SGD(theirs, lr=0.01, momentum=0.8, weight_decay=1e-3,
                                    nesterov=True)  # fmt: skip
    optimizer = build_run_optimizer(config, ours)
    assert type(optimizer) is type(reference)
    _steps(optimizer, list(ours.parameters()), 6)
    _steps(reference, theirs, 6)
    for p, q in zip(ours.parameters(), theirs):
        assert torch.equal(p.detach(), q.detach())


def test_rmsprops_first_step_by_hand():
    """v = (1 - alpha) g^2, buf = g / (sqrt(v) + eps), p -= lr buf (alpha 0.9, eps 0.0316)."""
    p = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.3, -0.02, 1.5], dtype=torch.float64)
    config = TrainConfig(optimizer="rmsprop", lr=0.01).validate()
    optimizer = build_run_optimizer(config, torch.nn.ParameterList([torch.nn.Parameter(p)]))
    before = optimizer.param_groups[0]["params"][0].detach().clone()
    optimizer.param_groups[0]["params"][0].grad = g.clone()
    optimizer.step()
    expected = before - 0.01 * g / ((0.1 * g**2).sqrt() + 0.0316)
    torch.testing.assert_close(optimizer.param_groups[0]["params"][0].detach(), expected)


def _logged_rates(run) -> list[float]:
    with open(run / "metrics.csv") as fh:
        return [float(row["lr"]) for row in csv.DictReader(fh)]


_COSINE_END = 1e-4 + (1e-3 - 1e-4) / 2  # the floored cosine's second epoch of two

#: (options, stop after epochs, the next epoch's rate, every epoch's rate): a stop
#: inside the linear warm-up; a stop at the SequentialLR milestone, into the floored
#: cosine's first epoch (with SGD's Nesterov momentum).
_RUNS = [
    ({"optimizer": "rmsprop", "schedule": "exponential", "gamma": 0.5, "warmup_method": "linear",
      "warmup_factor": 0.1}, 1, 0.55e-3, [1e-4, 0.55e-3, 1e-3, 0.5e-3]),
    ({"optimizer": "sgd", "nesterov": True, "schedule": "cosine", "lr_min": 1e-4,
      "warmup_method": "constant", "warmup_factor": 0.2}, 2, 1e-3,
     [0.2e-3, 0.2e-3, 1e-3, _COSINE_END]),
]  # fmt: skip


@pytest.mark.parametrize(("options", "stop", "saved", "expected"), _RUNS)
def test_a_run_logs_the_rates_and_resumes_mid_schedule(tmp_path, options, stop, saved, expected):
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    options = {**options, "epochs": 4, "warmup_epochs": 2, "lr": 1e-3}
    Trainer(tiny(tmp_path, "full", **options), log=None).fit()
    Trainer(tiny(tmp_path, "split", stop_after=stop, **options), log=None).fit()
    payload = load_checkpoint(tmp_path / "split" / "last.pt")
    assert payload["optimizer"]["param_groups"][0]["lr"] == pytest.approx(saved)
    Trainer(config_for_resume(payload, {}), resume=payload, log=None).fit()
    assert _logged_rates(tmp_path / "full") == pytest.approx(expected)
    assert _logged_rates(tmp_path / "split") == pytest.approx(expected)
    full, split = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in ("full", "split"))
    for key in full:
        assert torch.equal(full[key], split[key]), key


def test_the_command_line_options_reach_the_config():
    args = build_parser().parse_args(
        ["train", "--optimizer", "sgd", "--nesterov", "--schedule", "exponential",
         "--gamma", "0.9", "--warmup-epochs", "2", "--warmup-method", "constant",
         "--warmup-factor", "0.3"])  # fmt: skip
    assert (args.optimizer, args.nesterov, args.schedule, args.warmup_method,
            args.warmup_factor) == ("sgd", True, "exponential", "constant", 0.3)  # fmt: skip
    args = build_parser().parse_args(["train", "--optimizer", "rmsprop", "--lr-min", "1e-5"])
    assert (args.optimizer, args.lr_min) == ("rmsprop", 1e-5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nesterov": True}, "nesterov is SGD's Nesterov momentum: optimizer must be 'sgd', "
         "got 'adam'"),
        ({"nesterov": True, "optimizer": "sgd", "momentum": 0.0}, "nesterov needs a momentum > 0"),
        ({"lr_min": 1e-4, "schedule": "step"}, "lr_min is the floor of the 'cosine' schedule"),
        ({"lr_min": 0.1, "lr": 0.01}, r"lr_min \(0.1\) must be below lr \(0.01\)"),
        ({"lr_min": -1.0}, "lr_min must be a finite number >= 0"),
        ({"warmup_method": "linear"}, "warmup_method 'linear' needs warmup_epochs > 0"),
        ({"warmup_method": "cosine", "warmup_epochs": 1}, "warmup_method"),
        ({"warmup_factor": 0.1, "warmup_epochs": 1}, "warmup_factor is the 'linear' or"),
        ({"warmup_factor": 0.0, "warmup_epochs": 1, "warmup_method": "linear"},
         r"warmup_factor must be in \(0, 1\], got 0.0"),
        ({"warmup_factor": 1.5, "warmup_epochs": 1, "warmup_method": "constant"},
         r"warmup_factor must be in \(0, 1\], got 1.5"),
        ({"schedule": "exponential", "gamma": 0.0}, "gamma must be > 0 with schedule"),
        ({"optimizer": "rmsprop", "prune": "grad_r"}, "optimizer"),
    ],
)  # fmt: skip
def test_bad_combinations_are_refused_by_name(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        TrainConfig(**changes).validate()


@pytest.mark.parametrize(
    ("options", "named"),
    [({"optimizer": "rmsprop"}, "optimizer 'rmsprop' is not one NeuroMC prices"),
     ({"optimizer": "sgd", "nesterov": True}, "Nesterov momentum \\(--nesterov\\)")],
)  # fmt: skip
def test_eval_energy_neuromc_refuses_the_optimizers_it_does_not_price(options, named):
    from spikeflow.training.neuromc_eval import trained_optimizer

    model = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigurationError, match=named):
        trained_optimizer(TrainConfig(lr=0.01, **options).validate(), model)
    trained_optimizer(TrainConfig(lr=0.01, optimizer="sgd").validate(), model)  # priced


@pytest.mark.parametrize(
    ("options", "named"),
    [({"optimizer": "rmsprop"}, "optimizer 'rmsprop' is not one NeuroMC prices"),
     ({"optimizer": "sgd", "nesterov": True}, "Nesterov momentum \\(--nesterov\\)")],
)  # fmt: skip
def test_eval_energy_neuromc_refuses_the_optimizer_before_the_test_pass(options, named):
    # refuse_unpriced_training runs before the test split is evaluated (it used to be
    # the optimizer's build, after the whole test pass)
    from spikeflow.training.neuromc_eval import refuse_unpriced_training

    with pytest.raises(ConfigurationError, match=named):
        refuse_unpriced_training(TrainConfig(lr=0.01, **options).validate())
    refuse_unpriced_training(TrainConfig(lr=0.01, optimizer="sgd").validate())  # priced


def _spikingjellys_lr_gamma_default() -> float:
    """The default of ``--lr-gamma`` in SpikingJelly's installed ``train_classify.py``."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or spec.origin is None:
        pytest.skip("spikingjelly is not installed")
    path = Path(spec.origin).parent / "activation_based/examples/common/train_classify.py"
    for node in ast.walk(ast.parse(path.read_text())):
        call = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        if call and node.args and getattr(node.args[0], "value", None) == "--lr-gamma":
            return next(k.value.value for k in node.keywords if k.arg == "default")
    raise AssertionError(f"no --lr-gamma in {path}")


def test_exponential_with_the_default_gamma_warns(tmp_path):
    # SpikingJelly's --lr-scheduler exp with its default --lr-gamma (also 0.1) falls
    # tenfold every epoch too: spikeflow keeps the same default and says so.
    import warnings

    from spikeflow.training.train_config import warn_exponential_default

    assert TrainConfig().gamma == _spikingjellys_lr_gamma_default() == 0.1
    with pytest.warns(UserWarning, match=r"tenfold every epoch, to 1e-39 of lr in the last "
                      r"epoch \(40\) .* pass --gamma"):  # fmt: skip
        config = resolve(TrainConfig(schedule="exponential", epochs=40))
        warn_exponential_default(config)
    assert epoch_learning_rates(config)[-1] == pytest.approx(config.lr * 0.1**39, rel=1e-9)
    # The run warns (the trainer); an evaluation, which resolves the run's config too,
    # does not; nor one epoch (no decay), another gamma or another schedule.
    with pytest.warns(UserWarning, match="tenfold every epoch, to 1e-01 of lr"):
        Trainer(tiny(tmp_path, "run", schedule="exponential", epochs=2), log=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve(TrainConfig(schedule="exponential", epochs=40))
        for changes in (dict(epochs=1), dict(gamma=0.9), dict(schedule="step")):
            warn_exponential_default(resolve(TrainConfig(**{"schedule": "exponential",
                                                            "epochs": 40, **changes})))  # fmt: skip
