"""What `spikeflow train` uses for each dataset when the run leaves it open
(spikeflow.training.defaults): the model, T, batch size and split_by.

Every dataset resolves; each default model builds and runs on a tensor of its dataset's
frame shape with one output per class, and so does every model the error names for a
dataset without a default; split_by is "time" for the audio datasets unless the run
says otherwise, and the resolved value reaches the frames, the frame-cache key, the
recorded config.toml, --resume and spikeflow eval, while a run saved with
split_by = "number" (as every run was before) resumes as it ran. FSDD runs read tone
bursts written here in FSDD's layout; SHD runs a file written in its HDF5 layout;
ST-MNIST and N-TIDIGITS18 run trees written in their release layouts
(test_data_datasets_tactile_audio.py); the N-MNIST test reads the real subset and the
N-CARS test the real N-CARS recordings in ../shared/data (skipped when absent).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import config_for_resume, load_checkpoint, load_config_file
from spikeflow.training.build import build_model
from spikeflow.training.config import DATASET_DEFAULTS, TrainConfig, config_to_dict, resolve
from spikeflow.training.data import (
    DataInfo,
    _folder_classes,
    _image_classes,
    _neuromorphic_classes,
    build_datasets,
    dataset_shape,
    list_datasets,
)
from spikeflow.training.evaluation import evaluate_checkpoint
from spikeflow.training.metric_logs import read_csv
from test_train_dataset_kwargs import write_tone

#: Datasets framed by time by default: audio, tactile, and N-CARS (its recipe's bins).
BY_TIME = ("fsdd", "ncars", "ntidigits18", "shd", "smnist", "speechcommands", "ssc", "stmnist")

#: dataset -> (model, T, batch size, split_by): the recipes docs/training.md tables.
EXPECTED = {
    "digits": ("plif_digits", 4, 32, "number"),
    "nmnist": ("plif_nmnist", 10, 16, "number"),
    "mnist": ("plif_mnist", 8, 16, "number"),
    "fashionmnist": ("plif_fashion_mnist", 8, 16, "number"),
    "kmnist": ("plif_mnist", 8, 16, "number"),
    "cifar10": ("plif_cifar10", 8, 16, "number"),
    "dvs128gesture": ("plif_dvsgesture", 20, 16, "number"),
    "cifar10dvs": ("plif_cifar10dvs", 20, 16, "number"),
    "shd": ("rsnn", 100, 128, "time"),
    "ssc": ("rsnn", 100, 128, "time"),
    "speechcommands": ("rsnn", 100, 128, "time"),
    "fsdd": ("rsnn", 25, 16, "time"),
    "stmnist": ("rsnn", 100, 128, "time"),
    "smnist": ("rsnn", 100, 128, "time"),
    "ntidigits18": ("rsnn", 100, 128, "time"),
    "ncaltech101": ("spiking_vgg11_bn", 10, 16, "number"),
    "ncars": ("spiking_vgg11_bn", 5, 64, "time"),
    "imagenet": ("sew_resnet18", 4, 256, "number"),
}
_ANY_SIZE = ("sew_resnet18", "spiking_resnet18", "ms_resnet18")
#: dataset without a default model -> the models its error names.
_RECTANGULAR = ("asldvs", "bullying10k", "esimagenet", "hardvs", "navgesture", "nomniglot")
ALTERNATIVES = {
    **dict.fromkeys(_RECTANGULAR, _ANY_SIZE),
    "dvslip": ("plif_dvsgesture", "sew_dvsgesture", "spikformer_dvs", "sew_resnet18"),
    "pokerdvs": ("plif_nmnist", "sew_resnet18"),
    "cifar100": ("plif_cifar10", "spiking_vgg11_bn", *_ANY_SIZE),
    "imagefolder": _ANY_SIZE,
}
WITHOUT_DEFAULT = sorted(ALTERNATIVES)
#: The class count the models are built for on ImageFolder (its folders decide).
FOLDER_CLASSES = 5


def class_info(name: str) -> DataInfo:
    """The DataInfo the trainer derives from a dataset (its sensor's (W, H, P) and
    classes), here from the class alone."""
    if name == "digits":
        return DataInfo(10, 1, (8, 8), static=True)
    if name in _image_classes():
        image_cls = _image_classes()[name]
        return DataInfo(len(image_cls.classes), image_cls.channels, image_cls.image_size, True)
    if name in _folder_classes():  # ImageFolder's classes are its folders': say 5
        folder_cls = _folder_classes()[name]
        return DataInfo(folder_cls.num_classes or FOLDER_CLASSES, folder_cls.channels,
                        folder_cls.default_image_size, True)  # fmt: skip
    cls = _neuromorphic_classes()[name]
    width, height, polarities = cls.sensor_size
    return DataInfo(len(cls.classes), polarities, (height, width), static=False)


def run_forward(config: TrainConfig, steps: int, batch: int = 2) -> torch.Tensor:
    """The model of ``config`` built for its dataset, on ``[steps, batch, *frame]``."""
    _, step_shape = dataset_shape(config.dataset)
    torch.manual_seed(0)
    model = build_model(config, class_info(config.dataset)).eval()
    with torch.no_grad():
        return model(torch.rand(steps, batch, *step_shape))


def test_every_dataset_has_an_entry():
    assert sorted(DATASET_DEFAULTS) == list_datasets() == sorted([*EXPECTED, *ALTERNATIVES])
    assert set(WITHOUT_DEFAULT) == {n for n, d in DATASET_DEFAULTS.items() if d.model is None}
    for name, models in ALTERNATIVES.items():
        assert DATASET_DEFAULTS[name].alternatives == models


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_default_resolves_to_the_recipe(name):
    config = resolve(TrainConfig(dataset=name))
    assert (config.model, config.T, config.batch_size, config.split_by) == EXPECTED[name]
    assert resolve(TrainConfig(dataset=name.upper())).model == EXPECTED[name][0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_default_model_runs_on_the_datasets_frames(name):
    config = resolve(TrainConfig(dataset=name))
    classes, step_shape = dataset_shape(name)
    # The whole T where a step is small; 2 steps of the 128x128 frames (a CPU budget).
    steps = config.T if math.prod(step_shape) <= 4096 else 2
    out = run_forward(config, steps)
    assert out.shape == (steps, 2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", WITHOUT_DEFAULT)
def test_a_dataset_without_a_default_model_names_the_models_that_fit(name):
    alternatives = ALTERNATIVES[name]
    classes, step_shape = dataset_shape(name)
    with pytest.raises(ConfigurationError) as info:
        resolve(TrainConfig(dataset=name))
    message = str(info.value)
    assert f"dataset {name!r} has no default model" in message
    assert "x".join(map(str, step_shape)) in message
    assert (f"{classes} classes" in message) == (classes is not None)  # ImageFolder: None
    assert all(model in message for model in alternatives)
    # With a model, the dataset's other defaults apply: the PLIF recipe's T = 8 for
    # CIFAR-100's static images, ImageNet's T = 4 and a GPU's share of its batch for
    # ImageFolder.
    config = resolve(TrainConfig(dataset=name, model=alternatives[0]))
    T, batch = {"cifar100": (8, 16), "imagefolder": (4, 32)}.get(name, (10, 16))
    assert (config.T, config.batch_size, config.split_by) == (T, batch, "number")


@pytest.mark.parametrize(
    ("name", "model"),
    [(name, model) for name, models in ALTERNATIVES.items() for model in models],
)
def test_each_model_the_error_names_runs_on_the_datasets_frames(name, model):
    with pytest.raises(ConfigurationError, match=f"pass --model, e.g. .*{model}"):
        resolve(TrainConfig(dataset=name))
    out = run_forward(resolve(TrainConfig(dataset=name, model=model, T=2)), steps=2, batch=1)
    assert out.shape == (2, 1, class_info(name).num_classes)


def test_audio_tactile_and_ncars_split_by_time_the_others_by_number():
    for name in list_datasets():
        config = resolve(TrainConfig(dataset=name, model="rsnn"))
        assert config.split_by == ("time" if name in BY_TIME else "number"), name


@pytest.mark.parametrize(
    ("name", "given"),
    [("shd", "number"), ("fsdd", "number"), ("nmnist", "time"), ("dvs128gesture", "time")],
)
def test_an_explicit_split_by_overrides_the_dataset_default(name, given):
    assert resolve(TrainConfig(dataset=name, split_by=given)).split_by == given


def test_a_bad_split_by_is_named():
    message = "split_by must be one of number, time; got 'count'"
    with pytest.raises(ConfigurationError, match=message):
        resolve(TrainConfig(dataset="shd", split_by="count"))


# -- FSDD in its layout, from tone bursts -----------------------------------------------


@pytest.fixture
def fsdd_root(tmp_path: Path) -> Path:
    """Digit d is a 0.25 s tone at 300 + 250 d Hz, by two "speakers", indices 0 (test)
    and 5 (train): ON events at its onset, OFF events at its end, so frames by time and
    by event count differ."""
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for digit in range(10):
        for speaker, shift in (("low", 0.0), ("high", 60.0)):
            for index in (0, 5):
                write_tone(folder / f"{digit}_{speaker}_{index}.wav", 300 + 250 * digit + shift)
    return tmp_path / "fsdd"


@pytest.mark.parametrize("resolved", [True, False])
def test_the_default_split_by_reaches_the_frames_and_the_cache_key(fsdd_root, tmp_path, resolved):
    def test_split(**changes):
        config = TrainConfig(dataset="fsdd", data_dir=str(fsdd_root), T=6,
                             cache_dir=str(tmp_path / "cache"), **changes)  # type: ignore[arg-type]  # fmt: skip
        return build_datasets(resolve(config) if resolved else config)[1]

    by_time, by_number = test_split(split_by="time"), test_split(split_by="number")
    assert not torch.equal(by_time[0][0], by_number[0][0])  # the choice shows in the frames
    default = test_split()  # split_by None: resolved, or filled by build_datasets itself
    assert default.cache.directory == by_time.cache.directory != by_number.cache.directory
    assert torch.equal(default[0][0], by_time[0][0])


def fsdd_run(root: Path, out: Path, *extra: str) -> int:
    return main(["train", "--dataset", "fsdd", "--data-dir", str(root), "--model-kwargs",
                 "hidden=8", "hidden_layers=1", "--loss", "ce", "--output-dir", str(out),
                 "--no-progress", "--plots", "off", "--device", "cpu", *extra])  # fmt: skip


def test_a_default_audio_run_records_time_and_eval_and_resume_use_it(fsdd_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert fsdd_run(fsdd_root, out, "--epochs", "2", "--stop-after", "1") == 0
    assert "T=25 (frames split by time)" in capsys.readouterr().out
    config = load_config_file(out / "config.toml")
    assert (config["model"], config["T"], config["batch_size"], config["split_by"]) == (
        "rsnn", 25, 16, "time")  # fmt: skip
    assert load_checkpoint(out / "last.pt")["config"]["split_by"] == "time"
    # spikeflow eval rebuilds the frames as the run cut them: the run's test loss.
    row = read_csv(out / "metrics.csv")[0]
    result = evaluate_checkpoint(out / "last.pt")
    assert result["test_loss"] == pytest.approx(float(row["test_loss"]), rel=1e-6)
    assert result["test_acc"] == pytest.approx(float(row["test_acc"]))
    # --resume keeps "time"; asking for "number" changes the run and is refused.
    assert fsdd_run(fsdd_root, out, "--resume", str(out), "--split-by", "number") == 2
    assert "fixed ['split_by']" in capsys.readouterr().err
    assert fsdd_run(fsdd_root, out, "--resume", str(out), "--split-by", "time") == 0
    assert len(read_csv(out / "metrics.csv")) == 2
    assert load_config_file(out / "config.toml")["split_by"] == "time"


def test_an_old_audio_run_saved_with_split_by_number_resumes_as_it_ran(fsdd_root, tmp_path):
    # Before per-dataset split_by, every run saved split_by = "number": such a folder.
    old, whole = tmp_path / "old", tmp_path / "whole"
    by_number = ("--epochs", "2", "--split-by", "number")
    assert fsdd_run(fsdd_root, old, *by_number, "--stop-after", "1") == 0
    assert load_config_file(old / "config.toml")["split_by"] == "number"
    assert fsdd_run(fsdd_root, old, "--resume", str(old)) == 0
    assert load_config_file(old / "config.toml")["split_by"] == "number"
    assert load_checkpoint(old / "last.pt")["config"]["split_by"] == "number"
    # It continued with frames by event count: the uninterrupted run's numbers exactly.
    assert fsdd_run(fsdd_root, whole, *by_number) == 0
    assert untimed_metrics(old) == untimed_metrics(whole)


def untimed_metrics(run: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_csv(run / "metrics.csv")
    ]


def test_a_resume_override_of_none_means_the_datasets_default():
    # A YAML/JSON config file may say split_by: null (the dataset's) next to --resume.
    new = {"config": config_to_dict(resolve(TrainConfig(dataset="fsdd")))}
    assert config_for_resume(new, {"split_by": None, "model": None, "T": None}).split_by == "time"
    old = {"config": config_to_dict(resolve(TrainConfig(dataset="fsdd", split_by="number")))}
    assert config_for_resume(old, {"T": None}).split_by == "number"
    with pytest.raises(ConfigurationError, match=r"fixed \['split_by'\]"):
        config_for_resume(old, {"split_by": None})


def test_a_json_config_with_split_by_null_trains_with_the_datasets(fsdd_root, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"split_by": None, "epochs": 1}))
    out = tmp_path / "run"
    assert fsdd_run(fsdd_root, out, "--config", str(path)) == 0
    assert load_config_file(out / "config.toml")["split_by"] == "time"


def test_digits_resolve_to_number_and_refuse_time(tmp_path, capsys):
    assert resolve(TrainConfig()).split_by == "number"
    code = main(["train", "--split-by", "time", "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "--split-by time was given" in capsys.readouterr().err


# -- the datasets' own frames -----------------------------------------------------------


def test_shd_frames_default_to_100_steps_by_time_and_run_the_default_model(tmp_path):
    pytest.importorskip("h5py", reason="SHD files need h5py")
    from spikeflow.data import SHD
    from test_data_datasets_audio_numpy import audio_samples, write_spiking_audio

    root = tmp_path / "shd"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 3)):
        samples, labels = audio_samples(rng, n, 20)
        write_spiking_audio(root / f"shd_{split}.h5", samples, labels, SHD.classes)
    config = resolve(TrainConfig(dataset="shd", data_dir=str(root)))
    train, _, info = build_datasets(config)
    assert info == class_info("shd")
    x = torch.stack([train[i][0] for i in range(2)], dim=1)  # [T, B, 700]
    assert x.shape == (100, 2, *dataset_shape("shd")[1])
    explicit = SHD(root, split="train", data_type="frame", frames_number=100, split_by="time")
    assert torch.equal(train[0][0], explicit[0][0])
    model = build_model(config, info).eval()
    with torch.no_grad():
        assert model(x).shape == (100, 2, 20)


def test_fsdd_frames_have_the_shape_the_tests_use(fsdd_root):
    train, _, info = build_datasets(resolve(TrainConfig(dataset="fsdd", data_dir=str(fsdd_root))))
    assert info == class_info("fsdd")
    assert train[0][0].shape == (25, *dataset_shape("fsdd")[1])


def test_the_real_nmnist_subset_runs_the_default_recipe():
    from conftest import require_shared_data

    root = require_shared_data("nmnist-small")
    config = resolve(TrainConfig(dataset="nmnist", data_dir=str(root), test_samples=2))
    _, test, info = build_datasets(config, with_train=False)
    assert info == class_info("nmnist")
    x = torch.stack([test[i][0] for i in range(2)], dim=1)  # [T, B, 2, 34, 34]
    assert x.shape == (10, 2, *dataset_shape("nmnist")[1])
    torch.manual_seed(0)
    model = build_model(config, info).eval()
    with torch.no_grad():
        assert model(x).shape == (10, 2, 10)


def test_a_dataset_class_without_an_entry_gets_the_generic_defaults(monkeypatch):
    # A user's dataset class added to spikeflow.data.datasets: no model, T 10, batch 16.
    from spikeflow.data import datasets as datasets_module

    class TinyFrames(datasets_module.NeuromorphicDataset):
        sensor_size = (6, 5, 2)
        num_classes = 3

    monkeypatch.setattr(datasets_module, "TinyFrames", TinyFrames, raising=False)
    assert "tinyframes" in list_datasets() and "tinyframes" not in DATASET_DEFAULTS
    message = (
        r"dataset 'tinyframes' has no default model \(.*its frames are 2x5x6 per step, "
        r"3 classes\): pass --model \(spikeflow.models.list_models\(\) lists them\)"
    )
    with pytest.raises(ConfigurationError, match=message):
        resolve(TrainConfig(dataset="tinyframes"))
    config = resolve(TrainConfig(dataset="tinyframes", model="sew_resnet18"))
    assert (config.T, config.batch_size, config.split_by) == (10, 16, "number")


@pytest.mark.parametrize(
    ("name", "model", "loss", "lr"),
    [
        ("shd", None, "ce", 1e-2),
        ("ssc", None, "ce", 1e-2),
        ("speechcommands", None, "ce", 1e-2),
        ("fsdd", None, "ce", 1e-2),
        ("nmnist", None, "mse", 1e-3),
        ("digits", None, "mse", 1e-3),
        ("fsdd", "plif_nmnist", "mse", 1e-3),  # not the recipe's model: not its loss
        ("nmnist", "rsnn", "mse", 1e-3),
        ("ncars", "sew_resnet18", "mse", 1e-3),
        ("stmnist", None, "ce", 1e-2),
        ("smnist", None, "ce", 1e-2),
        ("ntidigits18", None, "ce", 1e-2),
        ("ncaltech101", None, "ce", 6.25e-5),  # NDA's 1e-3 * batch / 256 at batch 16
        ("ncars", None, "ce", 5e-3),
        ("ncaltech101", "sew_resnet18", "mse", 1e-3),
        ("imagenet", None, "ce", 1e-3),  # SGD's 0.1 is not for the default Adam
    ],
)
def test_the_loss_and_lr_are_the_recipes_with_its_model_only(name, model, loss, lr):
    config = resolve(TrainConfig(dataset=name, model=model))
    assert (config.loss, config.lr) == (loss, lr)


def test_imagenets_lr_is_the_recipes_with_its_optimizer_only():
    # methods.md 3.3: SGD lr 0.1. --optimizer is the run's (Adam unless given), so the
    # recipe's rate comes with --optimizer sgd only; Adam gets the global 1e-3.
    sgd = resolve(TrainConfig(dataset="imagenet", optimizer="sgd"))
    assert (sgd.model, sgd.loss, sgd.lr, sgd.momentum, sgd.weight_decay) == (
        "sew_resnet18", "ce", 0.1, 0.9, 0.0)  # fmt: skip
    assert resolve(TrainConfig(dataset="imagenet", optimizer="adamw")).lr == 1e-3
    assert (
        resolve(TrainConfig(dataset="imagenet", model="sew_resnet34", optimizer="sgd")).lr == 1e-3
    )
    saved = {"config": config_to_dict(sgd)}
    assert config_for_resume(saved, {"lr": None}).lr == 0.1  # None: the recipe's, kept


def test_an_explicit_loss_and_lr_override_the_recipe_and_resume_keeps_them():
    config = resolve(TrainConfig(dataset="shd", loss="tet", lr=0.5))
    assert (config.loss, config.lr) == ("tet", 0.5)
    saved = {"config": config_to_dict(resolve(TrainConfig(dataset="fsdd")))}
    assert (saved["config"]["loss"], saved["config"]["lr"]) == ("ce", 1e-2)
    resumed = config_for_resume(saved, {"loss": None, "lr": None})
    assert (resumed.loss, resumed.lr) == ("ce", 1e-2)
    old = {"config": config_to_dict(resolve(TrainConfig(dataset="fsdd", loss="mse")))}
    assert config_for_resume(old, {}).loss == "mse"  # a run saved with mse goes on with it
    with pytest.raises(ConfigurationError, match=r"fixed \['loss'\]"):
        config_for_resume(old, {"loss": None})


# -- ST-MNIST, N-TIDIGITS18 and N-CARS runs ------------------------------------------------


def recipe_run(name: str, root: Path, out: Path, *extra: str) -> int:
    return main(["train", "--dataset", name, "--data-dir", str(root), "--output-dir",
                 str(out), "--no-progress", "--plots", "off", "--device", "cpu", "--epochs",
                 "1", *extra])  # fmt: skip


def test_a_default_stmnist_run_records_its_recipe(tmp_path, capsys):
    from test_data_datasets_tactile_audio import random_spiketrain, write_stmnist

    rng = np.random.default_rng(0)
    root = tmp_path / "stmnist"
    for digit in range(10):
        for i in range(5):
            spikes = random_spiketrain(rng, 40)
            write_stmnist(root / "data_submission" / str(digit) / f"s{i}.mat", spikes)
    out = tmp_path / "run"
    assert recipe_run("stmnist", root, out, "--model-kwargs", "hidden=8", "hidden_layers=1") == 0
    assert "T=100 (frames split by time)" in capsys.readouterr().out
    config = load_config_file(out / "config.toml")
    recorded = tuple(config[k] for k in ("model", "T", "batch_size", "split_by", "loss", "lr"))
    assert recorded == ("rsnn", 100, 128, "time", "ce", 0.01)
    row = read_csv(out / "metrics.csv")[0]
    assert math.isfinite(float(row["train_loss"])) and 0.0 <= float(row["test_acc"]) <= 1.0
    train, test, info = build_datasets(resolve(TrainConfig(dataset="stmnist", data_dir=str(root))))
    assert (len(train), len(test)) == (40, 10) and info == class_info("stmnist")
    assert train[0][0].shape == (100, *dataset_shape("stmnist")[1])


def test_a_default_ntidigits_run_records_its_recipe_and_refuses_sequences(tmp_path, capsys):
    from test_data_datasets_tactile_audio import KEYS, ntidigits_samples, write_ntidigits

    root = tmp_path / "nt"
    root.mkdir()
    rng = np.random.default_rng(2)
    splits = {split: ntidigits_samples(rng, keys) for split, keys in KEYS.items()}
    write_ntidigits(root / "n-tidigits.hdf5", splits)
    out = tmp_path / "run"
    assert (
        recipe_run("ntidigits18", root, out, "--model-kwargs", "hidden=8", "hidden_layers=1") == 0
    )
    config = load_config_file(out / "config.toml")
    recorded = tuple(config[k] for k in ("model", "T", "batch_size", "split_by", "loss", "lr"))
    assert recorded == ("rsnn", 100, 128, "time", "ce", 0.01)
    train, _, info = build_datasets(resolve(TrainConfig(dataset="ntidigits18", data_dir=str(root))))
    assert info == DataInfo(11, 1, (1, 64), static=False) == class_info("ntidigits18")
    assert train[0][0].shape == (100, 64) == (100, *dataset_shape("ntidigits18")[1])
    sequences = TrainConfig(dataset="ntidigits18", data_dir=str(root),
                            dataset_kwargs={"single_digits": False})  # fmt: skip
    with pytest.raises(ConfigurationError, match="labels such as '1' are not class numbers"):
        build_datasets(resolve(sequences))


@pytest.fixture
def ncars_root(tmp_path: Path) -> Path:
    """The two real N-CARS recordings in the release's layout (labels arbitrary)."""
    from conftest import require_shared_data

    folder = require_shared_data("event-files", "prophesee-dat")
    root = tmp_path / "ncars"
    for split in ("train", "test"):
        for label, name in (
            ("background", "sample_ncars.dat"),
            ("cars", "NCARS_obj_004397_td.dat"),
        ):
            target = root / f"n-cars_{split}" / label / name
            target.parent.mkdir(parents=True)
            target.write_bytes((folder / name).read_bytes())
    return root


def test_the_real_ncars_recordings_make_the_recipes_frames_and_run_its_model(ncars_root):
    from spikeflow.data import to_frames
    from spikeflow.data.io import read_dat

    config = resolve(TrainConfig(dataset="ncars", data_dir=str(ncars_root)))
    train, test, info = build_datasets(config)
    assert info == class_info("ncars") and len(train) == len(test) == 2
    x = torch.stack([train[i][0] for i in range(2)], dim=1)  # [T, B, 2, 100, 120]
    assert x.shape == (5, 2, *dataset_shape("ncars")[1])
    for i in range(2):  # 5 bins of equal duration (Cordone et al.'s 20 ms of 100 ms)
        rec = read_dat(train.samples[i][0], (120, 100))
        np.testing.assert_array_equal(x[:, i].numpy(), to_frames(rec, 5, split_by="time"))
        assert x[:, i].sum().item() == len(rec)
    torch.manual_seed(0)
    model = build_model(config, info).eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (5, 2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_a_config_file_that_is_not_utf8_names_the_file_and_offset(tmp_path, suffix):
    """Before: a bare UnicodeDecodeError (e.g. a file saved as UTF-16 or Latin-1)."""
    path = tmp_path / f"run{suffix}"
    path.write_bytes(b'model = "x"\n# caf\xe9\n')
    with pytest.raises(ConfigurationError, match=rf"config file {path} is not UTF-8 text: byte "
                       r"offset 17 \(b'\\xe9\\n'\)"):  # fmt: skip
        load_config_file(path)
    path.write_bytes("model = 'x'  # café\n".encode() if suffix == ".toml" else b"{}")
    assert load_config_file(path) in ({"model": "x"}, {})
