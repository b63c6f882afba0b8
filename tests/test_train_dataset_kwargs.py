"""`--dataset-kwargs` (the config's ``dataset_kwargs``): further dataset arguments,
checked against the dataset class, on an FSDD-layout folder of generated tones."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from spikeflow.cli import main
from spikeflow.errors import ConfigurationError
from spikeflow.training import load_config_file
from spikeflow.training.config import TrainConfig
from spikeflow.training.data import build_datasets


def write_tone(path: Path, freq: float, rate: int = 8000, seconds: float = 0.25) -> None:
    t = np.arange(int(rate * seconds)) / rate
    ramp = np.clip(np.minimum(t, seconds - t) / 0.02, 0.0, 1.0)
    pcm = (0.4 * np.sin(2 * np.pi * freq * t) * ramp * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@pytest.fixture
def fsdd_root(tmp_path: Path) -> Path:
    """Digit d is a tone at 300 + 250 d Hz, by two "speakers", indices 0 (test), 5 (train)."""
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for digit in range(10):
        for speaker, shift in (("low", 0.0), ("high", 60.0)):
            for index in (0, 5):
                write_tone(folder / f"{digit}_{speaker}_{index}.wav", 300 + 250 * digit + shift)
    return tmp_path / "fsdd"


def config(root: Path, **changes: object) -> TrainConfig:
    values = {"dataset": "fsdd", "data_dir": str(root), "T": 5, "split_by": "time", **changes}
    return TrainConfig(**values).validate()  # type: ignore[arg-type]


def test_dataset_kwargs_reach_the_dataset(fsdd_root):
    kwargs = {"audio_to_events": {"n_mels": 16, "threshold_db": 3.0}, "speakers": ["low"]}
    train, test, info = build_datasets(config(fsdd_root, dataset_kwargs=kwargs))
    assert len(train) == len(test) == 10  # one speaker, one recording per digit and split
    assert (info.in_channels, info.input_size, info.num_classes) == (2, (1, 16), 10)
    x, label = train[3]
    assert tuple(x.shape) == (5, 2, 1, 16) and label == 3
    assert train.audio_to_events.threshold_db == 3.0
    default_train, _, default_info = build_datasets(config(fsdd_root))
    assert len(default_train) == 20 and default_info.input_size == (1, 40)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames_number": 8}, "frames_number=...: set by --T"),
        ({"root": "x"}, "root=...: set by --data-dir"),
        ({"split": "test"}, "split=...: set by the run"),
        ({"transform": "x"}, "transform=...: Python only"),
        ({"duration": 1000}, "duration=...: set by --T"),
        ({"n_mels": 16}, r"FSDD takes no argument \['n_mels'\]; it takes .*audio_to_events"),
        ({"audio_to_events": {"bands": 16}}, "audio_to_events .*bands"),
        ({"speakers": ["nobody"]}, r"speaker\(s\) \['nobody'\] have no recordings"),
    ],
)
def test_bad_dataset_kwargs_are_named(fsdd_root, kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        build_datasets(config(fsdd_root, dataset_kwargs=kwargs))


def test_the_digits_take_no_dataset_kwargs():
    with pytest.raises(ConfigurationError, match="--dataset-kwargs was given"):
        build_datasets(TrainConfig(dataset_kwargs={"speakers": ["a"]}).validate())


def test_command_line_trains_with_dataset_kwargs_and_records_them(fsdd_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "fsdd", "--data-dir", str(fsdd_root), "--model", "rsnn",
            "--model-kwargs", "hidden=16", "--T", "5", "--split-by", "time", "--epochs", "1",
            "--batch-size", "10", "--loss", "ce", "--output-dir", str(out), "--no-progress",
            "--plots", "off", "--device", "cpu",
            "--dataset-kwargs", "audio_to_events={n_mels = 16}", 'speakers=["high"]']  # fmt: skip
    assert main(args) == 0
    saved = load_config_file(out / "config.toml")["dataset_kwargs"]
    assert saved == {"audio_to_events": {"n_mels": 16}, "speakers": ["high"]}
    # Evaluation rebuilds the test split with the run's dataset arguments.
    args = ["eval", "--checkpoint", str(out / "best.pt"), "--data-dir", str(fsdd_root)]
    assert main([*args, "--no-progress"]) == 0
