"""SpecAugment masks against torchaudio's formulas written out (given the same
``torch.rand`` draws), and ``mel_scale_delta`` against SpikingJelly's ``MelScaleDelta``
(its example module loaded with its unused torchaudio/torchvision/sklearn imports
stubbed) and scipy's ``savgol_filter``, in float64."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data.audio_augment import stft
from spikeflow.data.io import read_wav
from spikeflow.data.spec_augment import (
    FrequencyMasking,
    MelScaleDelta,
    TimeMasking,
    mask_along_axis,
    mel_scale_delta,
    savgol_derivative,
)
from spikeflow.errors import ConfigurationError, ShapeError


def _torchaudio_mask(spec, mask_param, mask_value, axis, p, iid):
    """torchaudio's mask_along_axis(_iid), written out with torch's global generator."""
    size = spec.shape[axis]
    if p < 1.0:
        mask_param = min(mask_param, int(size * p))
    if mask_param < 1:
        return spec.clone()
    out = spec.clone()
    lead = spec.shape[:-2] if iid else ()
    if iid:  # mask_along_axis_iid: draws in the spectrogram's dtype
        value = torch.rand(lead, dtype=spec.dtype) * mask_param
        min_value = torch.rand(lead, dtype=spec.dtype) * (size - value)
    else:  # mask_along_axis: a bare torch.rand(1), torch's default dtype
        value = torch.rand(1) * mask_param
        min_value = torch.rand(1) * (size - value)
    starts, ends = min_value.long(), min_value.long() + value.long()
    for idx in np.ndindex(*lead) if iid else [None]:
        s, e = (int(starts[idx]), int(ends[idx])) if iid else (int(starts), int(ends))
        target = out[idx] if iid else out
        if axis % spec.dim() == spec.dim() - 2:
            target[..., s:e, :] = mask_value
        else:
            target[..., s:e] = mask_value
    return out


@pytest.mark.parametrize("axis", [-2, -1])
@pytest.mark.parametrize("iid", [False, True])
@pytest.mark.parametrize("p", [1.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_masks_equal_torchaudio_formulas(axis, iid, p, dtype):
    spec = torch.rand(4, 2, 80, 101, dtype=dtype) + 1.0
    for seed in range(20):
        torch.manual_seed(seed)
        ref = _torchaudio_mask(spec, 35, -1.5, axis, p, iid)
        gen = torch.Generator().manual_seed(seed)
        ours = mask_along_axis(spec, 35, axis, mask_value=-1.5, p=p, iid_masks=iid, generator=gen)
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert torch.equal(spec >= 1.0, torch.ones_like(spec, dtype=torch.bool))  # input kept


def test_shared_mask_of_float64_spec_drawn_in_float32():
    """torch.manual_seed(0); torch.rand(1), torch.rand(1) are 0.4963, 0.7682 (float32):
    width floor(0.4963 * 35) = 17 from floor(0.7682 * (101 - 17.37)) = 64, as torchaudio's
    mask_along_axis gives for any spectrogram dtype (float64 draws would give 33 frames)."""
    spec = torch.ones(2, 80, 101, dtype=torch.float64)
    out = mask_along_axis(spec, 35, -1, generator=torch.Generator().manual_seed(0))
    frames = torch.nonzero((out == 0).all(dim=-2).all(dim=0)).flatten().tolist()
    assert frames == list(range(64, 81))


def test_mask_widths_cover_range_and_numpy_in_out():
    spec = np.ones((80, 101))
    gen = torch.Generator().manual_seed(0)
    widths = set()
    for _ in range(400):
        out = mask_along_axis(spec, 15, -2, generator=gen)
        assert isinstance(out, np.ndarray) and out.shape == spec.shape
        rows = np.flatnonzero((out == 0).all(axis=1))
        assert (out == 0).sum() == rows.size * 101  # whole rows only
        if rows.size:
            assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))  # one band
        widths.add(rows.size)
    assert widths == set(range(15))  # floor(u * 15): 0..14, never 15
    assert (spec == 1).all()


def test_numpy_views_and_byte_order():
    """Flipped views (negative strides) and big-endian arrays are masked like a copy."""
    base = np.random.default_rng(2).random((40, 100)).astype(np.float32)
    for view in (base[::-1], base[:, ::-2], base.astype(">f4"), base.T):
        out = mask_along_axis(view, 30, -1, generator=torch.Generator().manual_seed(4))
        ref = mask_along_axis(view.copy().astype(np.float32), 30, -1,
                              generator=torch.Generator().manual_seed(4))  # fmt: skip
        assert out.dtype == np.float32 and np.array_equal(out, ref) and (out == 0).any()
    flipped = base[:, ::-1].astype(">f8")
    mel = mel_scale_delta(flipped, 1, n_mels=8)
    assert torch.equal(mel, mel_scale_delta(flipped.astype(np.float64), 1, n_mels=8))
    with pytest.raises(ConfigurationError, match="numpy dtype int16"):
        mask_along_axis(np.ones((4, 5), dtype=np.int16), 2, -1)


def test_time_mask_p_limits_width():
    spec = torch.ones(1, 40, 50)
    for seed in range(200):
        out = TimeMasking(35, p=0.1, seed=seed)(spec)
        assert int((out[0] == 0).all(dim=0).sum()) < 5  # at most int(0.1 * 50) - 1


def test_transforms_seeded_and_iid():
    spec = torch.ones(3, 40, 60)
    a = FrequencyMasking(15, iid_masks=True, seed=3)
    b = FrequencyMasking(15, iid_masks=True, seed=3)
    outs = [a(spec) for _ in range(5)]
    assert all(torch.equal(x, b(spec)) for x in outs)
    assert not all(torch.equal(outs[0], x) for x in outs[1:])
    per_channel = [tuple((outs[k][c] == 0).all(dim=1).tolist()) for k in range(5) for c in range(3)]
    assert len(set(per_channel)) > 3  # channels masked independently
    shared = TimeMasking(35, seed=1)(spec)
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[1], shared[2])


class _Masked(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.mask = TimeMasking(20, seed=7)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.mask(torch.ones(1, 8, 40))


def test_dataloader_workers_reproducible_and_distinct():
    def run() -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            _Masked(), batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(5)
        )
        return torch.cat(list(loader))

    first, second = run(), run()
    assert torch.equal(first, second)
    masks = {tuple((x[0] == 0).all(dim=0).tolist()) for x in first}
    assert len(masks) > 2  # the workers do not repeat one stream


def test_mask_errors():
    with pytest.raises(ShapeError, match="axis"):
        mask_along_axis(torch.ones(2, 3, 4), 2, 0)
    with pytest.raises(ShapeError, match="iid_masks"):
        mask_along_axis(torch.ones(3, 4), 2, -1, iid_masks=True)
    with pytest.raises(ConfigurationError, match="dtype"):
        mask_along_axis(torch.ones(3, 4, dtype=torch.int64), 2, -1)
    with pytest.raises(ConfigurationError, match="TimeMasking: p"):
        TimeMasking(3, p=1.5)
    with pytest.raises(ConfigurationError, match="max_width"):
        FrequencyMasking(-1)


def _sj_example(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    spikingjelly = pytest.importorskip("spikingjelly", reason="spikingjelly is a test-only peer")
    pytest.importorskip("scipy.signal")
    stubs = {"torchvision": {}, "torchvision.transforms": {}, "sklearn": {},
             "sklearn.metrics": {"confusion_matrix": None},
             "torch.utils.tensorboard": {"SummaryWriter": None},
             "torchaudio": {}, "torchaudio.transforms": {"Spectrogram": None},
             "tqdm": {"tqdm": None},
             "spikingjelly.datasets.speechcommands": {"SPEECHCOMMANDS": None}}  # fmt: skip
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    path = Path(spikingjelly.__file__).parent / "activation_based/examples/speech_commands.py"
    spec = importlib.util.spec_from_file_location("_sj_speech_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_delta_equals_spikingjelly(monkeypatch, scale):
    sj = _sj_example(monkeypatch)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # SJ's filterbank in float64
    try:
        rng = np.random.default_rng(0)
        spec = torch.from_numpy(rng.random((201, 81)) ** 2)
        for order in (0, 1, 2, 3):
            ref = sj.MelScaleDelta(order, n_mels=40, sample_rate=16000, f_min=20, f_max=4000,
                                   dct_type=scale)(spec)  # fmt: skip
            ours = MelScaleDelta(order, n_mels=40, sample_rate=16000, f_min=20, f_max=4000,
                                 scale=scale)(spec)  # fmt: skip
            assert ref.shape == (1, *ours.shape) == (1, order + 1, 81, 40)
            torch.testing.assert_close(ours, ref[0], rtol=1e-12, atol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_mel_scale_delta_equals_spikingjelly_on_fsdd(monkeypatch):
    """Real recordings (FSDD, 8 kHz): their power spectrograms through both."""
    sj = _sj_example(monkeypatch)
    folder = require_shared_data("event-files", "fsdd-wav")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for path in sorted(folder.glob("*.wav"))[:6]:
            samples = read_wav(path).samples[0].astype(np.float64)
            spec = torch.from_numpy(np.abs(stft(samples, n_fft=256, hop_length=80)) ** 2)
            ref = sj.MelScaleDelta(2, n_mels=40, sample_rate=8000, f_min=20, f_max=4000)(spec)
            ours = mel_scale_delta(spec, 2, n_mels=40, sample_rate=8000, f_min=20, f_max=4000)
            torch.testing.assert_close(ours, ref[0], rtol=1e-12, atol=1e-12)
            mels = ours.transpose(1, 2)  # [order + 1, n_mels, T]
            masked = TimeMasking(35, seed=0)(FrequencyMasking(15, seed=0)(mels))
            assert masked.shape == mels.shape and (masked == 0).any()
    finally:
        torch.set_default_dtype(old)


def test_savgol_derivative_equals_scipy():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(1).standard_normal((5, 30))
    for order in (1, 2, 3):
        ref = signal.savgol_filter(x, 9, order, deriv=order, axis=-1, mode="interp")
        np.testing.assert_allclose(savgol_derivative(x, order), ref, rtol=1e-10, atol=1e-10)
    # a cubic's third derivative is 6 everywhere, ends included
    t = np.arange(20.0)
    np.testing.assert_allclose(savgol_derivative(t**3, 3), np.full(20, 6.0), atol=1e-9)


def test_mel_scale_delta_errors_and_silence():
    out = mel_scale_delta(torch.zeros(1, 201, 20), 1, n_mels=40)
    assert out.shape == (2, 20, 40) and not out.any()
    with pytest.raises(ShapeError, match="spec"):
        mel_scale_delta(torch.ones(2, 201, 20), 1)
    with pytest.raises(ShapeError, match="window=9"):
        mel_scale_delta(torch.ones(201, 5), 1)
    with pytest.raises(ConfigurationError, match="scale"):
        MelScaleDelta(1, scale="mfcc")
    with pytest.raises(ConfigurationError, match="f_min"):
        mel_scale_delta(torch.ones(201, 20), 0, f_min=5000.0, f_max=4000.0)
    # An unhashable scale is named too (the filterbank cache would raise a TypeError).
    for scale in (["slaney"], "mfcc"):
        with pytest.raises(ConfigurationError, match="mel_scale_delta: scale must be 'htk'"):
            mel_scale_delta(torch.ones(201, 20), 0, scale=scale)


def test_mel_filterbank_is_built_once_per_setting(monkeypatch):
    """As SpikingJelly's module keeps its ``fb`` buffer after the first call, the
    filterbank is built once per (bins, f_min, f_max, n_mels, sample rate, scale), not at
    every call; the features stay SpikingJelly's (one instance of each reused)."""
    from spikeflow.data import spec_augment

    sj = _sj_example(monkeypatch)
    built = []
    real = spec_augment.sj_mel_filterbank

    def counting(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(spec_augment, "sj_mel_filterbank", counting)
    # A setting no other test uses, so that the count starts at 0.
    setting = dict(n_mels=37, sample_rate=11025, f_min=30.0, f_max=5000.0)
    ours = MelScaleDelta(1, **setting)
    rng = np.random.default_rng(1)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # SJ's filterbank in float64
    try:
        theirs = sj.MelScaleDelta(1, **setting)
        for _ in range(4):
            spec = torch.from_numpy(rng.random((201, 30)) ** 2)
            torch.testing.assert_close(ours(spec), theirs(spec)[0], rtol=1e-12, atol=1e-12)
    finally:
        torch.set_default_dtype(old)
    assert built == [201]
    other = torch.from_numpy(rng.random((129, 30)))
    mel_scale_delta(other, 1, **setting)
    ours(other)
    assert built == [201, 129]
    fb = spec_augment.cached_mel_filterbank(201, 30.0, 5000.0, 37, 11025, "slaney")
    assert not fb.flags.writeable  # shared: no caller may change it
    np.testing.assert_array_equal(fb, real(201, 30.0, 5000.0, 37, 11025, "slaney"))
