"""SpeechCommandsWaveforms yields SpikingJelly's SPEECHCOMMANDS waveforms and labels.

The release layout is written in a temporary folder with 16 kHz WAV files whose audio
is the real FSDD recordings of the shared data; SpikingJelly 2.0's own dataset module
reads the same folder (its torchaudio/torchvision imports stubbed: the WAVs are read by
the standard library's ``wave``, as torchaudio scales int16, over 32768).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from spikeflow.data import SpeechCommands, SpeechCommandsWaveforms
from spikeflow.errors import ConfigurationError, DataFormatError

FSDD = SHARED_DATA / "event-files" / "fsdd-wav"
LABELS = {"no": 0, "up": 1, "yes": 2, "_silence_": 3}


def _read_int16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _write(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """SpikingJelly's root holding a small release: three words, lists, noise."""
    if not FSDD.is_dir():
        pytest.skip(f"shared FSDD recordings not found in {FSDD}")
    clips = [_read_int16(p) for p in sorted(FSDD.glob("*.wav"))]
    folder = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
    names = []
    for k, clip in enumerate(clips[:15]):
        word = ("yes", "no", "up")[k % 3]
        audio = np.concatenate(clips[k : k + 5]) if k == 5 else clip[: len(clip) - k % 2]
        name = f"{word}/{k:08x}_nohash_{k % 2}.wav"
        _write(folder / name, audio)
        names.append(name)
    _write(folder / "up" / "notahash.wav", clips[0])  # not a recording SJ lists for train
    _write(folder / "_background_noise_" / "a.wav", np.concatenate(clips))
    _write(folder / "_background_noise_" / "b.wav", np.concatenate(clips[::-1]))
    (folder / "validation_list.txt").write_text("\n".join([names[7], names[2], names[9]]) + "\n")
    (folder / "testing_list.txt").write_text("\n".join([names[11], names[4], names[0]]) + "\n")
    return tmp_path


def _spikingjelly(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    spikingjelly = pytest.importorskip("spikingjelly", reason="spikingjelly is a test-only peer")
    torchaudio = types.ModuleType("torchaudio")

    def load(path: str) -> tuple[torch.Tensor, int]:
        samples = torch.from_numpy(_read_int16(Path(path)).astype(np.float32) / 32768.0)
        return samples[None], 16000

    torchaudio.load = load
    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_url = utils.extract_archive = None
    utils.verify_str_arg = lambda value, name, allowed: value
    for name, module in (("torchaudio", torchaudio), ("torchvision", types.ModuleType("tv")),
                         ("torchvision.datasets", types.ModuleType("tvd")),
                         ("torchvision.datasets.utils", utils)):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, module)
    path = Path(spikingjelly.__file__).parent / "datasets" / "speechcommands.py"
    spec = importlib.util.spec_from_file_location("_sj_speechcommands", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pad(wave_: torch.Tensor, size: int = 16000) -> torch.Tensor:
    """SpikingJelly's example ``Pad`` transform."""
    left = (size - wave_.shape[-1]) // 2
    return torch.nn.functional.pad(wave_, (left, size - wave_.shape[-1] - left))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_equals_spikingjelly(release, monkeypatch, split):
    sj = _spikingjelly(monkeypatch)
    ours = SpeechCommandsWaveforms(release, split, label_dict=LABELS, silence_count=2)
    theirs = sj.SPEECHCOMMANDS(LABELS, str(release), silence_cnt=2, split=split, transform=_pad)
    assert len(ours) == len(theirs) == len(theirs._walker) + 2
    assert ours.files == theirs._walker
    for i in range(len(theirs._walker)):
        (x, y), (x_sj, y_sj) = ours[i], theirs[i]
        assert y == y_sj
        assert x.shape == (1, 16000) and x.dtype == torch.float32
        torch.testing.assert_close(x, x_sj, rtol=0, atol=0)
    if split == "train":  # SJ wrote training_list.txt: read back, same order
        torch.testing.assert_close(ours.weights, theirs.weights, rtol=1e-15, atol=0)
        again = SpeechCommandsWaveforms(release, split, label_dict=LABELS, silence_count=2)
        assert again.files == ours.files
    for i in range(len(theirs._walker), len(theirs)):
        (x, y), (x_sj, y_sj) = ours[i], theirs[i]
        assert y == y_sj == 3 and x.shape == x_sj.shape == (1, 16000)


def test_order_padding_and_default_labels(release):
    root = release / "SpeechCommands" / "speech_commands_v0.02"
    data = SpeechCommandsWaveforms(root, "train")
    listed = set((root / "validation_list.txt").read_text().split()) | set(
        (root / "testing_list.txt").read_text().split()
    )
    expected = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("[nuy]*/*_nohash_*.wav"))
    assert data.files == [f for f in expected if f not in listed]
    assert data.targets == [data.label_dict[f.split("/")[0]] for f in data.files]
    words = SpeechCommands.classes
    assert list(words) == sorted(words) and len(words) == 35
    assert data.label_dict["yes"] == words.index("yes") and data.label_dict["_silence_"] == 35
    assert SpeechCommandsWaveforms(root, "valid").files == (
        (root / "validation_list.txt").read_text().split()
    )
    for i, name in enumerate(data.files):
        raw = _read_int16(root / name).astype(np.float64) / 32768.0
        raw = raw / np.abs(raw).max()
        left = (16000 - len(raw)) // 2
        x = data[i][0][0].double().numpy()
        if left >= 0:
            assert np.array_equal(x[left : left + len(raw)], raw.astype(np.float32))
            assert not x[:left].any() and not x[left + len(raw) :].any()
        else:  # a clip over one second: the middle second, one more sample off the left
            assert np.array_equal(x, raw[-left : -left + 16000].astype(np.float32))
    assert any(len(_read_int16(root / n)) > 16000 for n in data.files)
    unpadded = SpeechCommandsWaveforms(root, "train", length=None)
    assert unpadded[0][0].shape == (1, len(_read_int16(root / data.files[0])))


def test_silence_is_a_random_window_of_the_noise(release):
    root = release / "SpeechCommands" / "speech_commands_v0.02"
    data = SpeechCommandsWaveforms(root, "test", silence_count=3, silence_size=8000, length=None)
    torch.manual_seed(5)
    x, y = data[4]
    torch.manual_seed(5)
    which = int(torch.randint(2, ()))
    noise = _read_int16(data.noise_files[which]).astype(np.float64) / 32768.0
    start = int(torch.randint(len(noise) - 8000, ()))
    window = noise[start : start + 8000]
    assert y == data.label_dict["_silence_"] and x.shape == (1, 8000)
    np.testing.assert_allclose(x[0].numpy(), window / np.abs(window).max(), rtol=1e-6)


def test_bad_arguments_and_files_are_named(release, tmp_path):
    root = release / "SpeechCommands" / "speech_commands_v0.02"
    with pytest.raises(ConfigurationError, match=r"no label for \['up'\]"):
        SpeechCommandsWaveforms(root, "train", label_dict={"yes": 0, "no": 1})
    words = {"yes": 0, "no": 1, "up": 2}
    assert len(SpeechCommandsWaveforms(root, "train", label_dict=words)) > 0  # no silence
    with pytest.raises(ConfigurationError, match=r"no label for \['_silence_'\]"):
        SpeechCommandsWaveforms(root, "train", label_dict=words, silence_count=1)
    with pytest.raises(ConfigurationError, match="split must be one of"):
        SpeechCommandsWaveforms(root, "training")
    with pytest.raises(ConfigurationError, match="silence_count"):
        SpeechCommandsWaveforms(root, "train", silence_count=-1)
    with pytest.raises(ConfigurationError, match="length"):
        SpeechCommandsWaveforms(root, "train", length=0)
    _write(root / "yes" / "slow_nohash_0.wav", np.zeros(100), rate=8000)
    data = SpeechCommandsWaveforms(root, "train")
    index = data.files.index("yes/slow_nohash_0.wav")
    with pytest.raises(DataFormatError, match=r"slow_nohash_0\.wav is sampled at 8000 Hz"):
        data[index]
    (root / "validation_list.txt").write_bytes(b"\xff\xfey\x00")  # before: UnicodeDecodeError
    with pytest.raises(DataFormatError, match=r"validation_list\.txt: byte offset 0: not UTF-8"):
        SpeechCommandsWaveforms(root, "valid")
    os.remove(root / "testing_list.txt")
    with pytest.raises(FileNotFoundError, match=r"testing_list\.txt"):
        SpeechCommandsWaveforms(root, "test")
