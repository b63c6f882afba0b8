"""AugDiskCachedDataset (spikeflow.data.aug_cached_dataset): against Tonic's
Aug_DiskCachedDataset on real FSDD recordings (the same copy for the same copy index),
and its cache behaviour: hits, misses when the augmentations change, regeneration."""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from spikeflow.data import AugDiskCachedDataset
from spikeflow.data import audio_augment as G
from spikeflow.data.io import read_wav
from spikeflow.errors import ConfigurationError


class Clips(torch.utils.data.Dataset):
    """FSDD clips as float64 ``[1, N]`` with their digit, Tonic-style: ``transform``
    (which Tonic's class replaces) applied to the data."""

    def __init__(self, n: int) -> None:
        folder = require_shared_data("event-files", "fsdd-wav")
        self.files = sorted(folder.glob("*.wav"))[:n]
        self.transform = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        x = read_wav(self.files[i]).samples.astype(np.float64)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.files[i].name[0])


def _trim(x):
    return x[..., 1000:4000]


def _to_float32(x):
    return np.asarray(x, dtype=np.float32)


def _tonic_copies(monkeypatch, tmp_path, dataset, augmentation, copies):
    """Every copy Tonic's Aug_DiskCachedDataset makes, read back from its files."""
    tonic = pytest.importorskip("tonic", reason="Tonic is the reference")
    pytest.importorskip("librosa")
    from tonic.cached_dataset import load_from_disk_cache

    try:  # Tonic imports only its Compose
        from torchvision.transforms import Compose  # noqa: F401

        usable = True
    except Exception:  # not installed, or a broken import another test left behind
        usable = False
    if not usable:
        vision = types.ModuleType("torchvision")
        vision.transforms = types.ModuleType("torchvision.transforms")

        def compose(fns):
            def run(x):
                for fn in fns:
                    x = fn(x)
                return x

            return run

        vision.transforms.Compose = compose
        monkeypatch.setitem(sys.modules, "torchvision", vision)
        monkeypatch.setitem(sys.modules, "torchvision.transforms", vision.transforms)
    folder = tmp_path / "tonic"
    folder.mkdir(parents=True)  # Tonic's __post_init__ does not make it
    theirs = tonic.Aug_DiskCachedDataset(
        dataset=dataset, cache_path=str(folder), num_copies=copies,
        all_transforms={"pre_aug": [_trim], "augmentations": [augmentation],
                        "post_aug": [_to_float32]},
    )  # fmt: skip
    for i in range(len(dataset)):
        theirs.generate_all(i)
    dataset.transform = None
    return {(i, c): load_from_disk_cache(folder / f"{i}_{c}.hdf5")
            for i in range(len(dataset)) for c in range(copies)}  # fmt: skip


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large:UserWarning")  # librosa, short clip
def test_same_copies_as_tonic_on_real_recordings(tmp_path, monkeypatch):
    from tonic import audio_augmentations as TG

    dataset = Clips(2)
    cases = [
        (G.RandomAmplitudeScale(seed=0), TG.RandomAmplitudeScale(8000, caching=True), 11),
        (G.RandomTimeStretch(8000, 1, seed=0), TG.RandomTimeStretch(8000, 1, caching=True), 4),
    ]  # fmt: skip
    for k, (ours_aug, theirs_aug, copies) in enumerate(cases):
        theirs = _tonic_copies(monkeypatch, tmp_path / str(k), dataset, theirs_aug, copies)
        ours = AugDiskCachedDataset(dataset, tmp_path / "ours", ours_aug,
                                    pre_augment=_trim, post_augment=_to_float32)  # fmt: skip
        assert ours.num_copies == copies
        for i in range(len(dataset)):
            ours.generate_all(i)
            for c in range(copies):
                data, target = ours.cached_copy(i, c)
                want, want_target = theirs[(i, c)]
                assert data.dtype == want.dtype == np.float32 and data.shape == want.shape
                np.testing.assert_allclose(data, want, rtol=1e-6, atol=1e-7 * np.abs(want).max())
                assert target == want_target
        levels = [np.abs(ours.cached_copy(0, c)[0]).max() for c in range(copies)]
        if k == 0:  # copy c is at level factors[c]: 0.058, 0.068, ... V
            np.testing.assert_allclose(levels, ours_aug.factors, rtol=1e-6)
    assert dataset.transform is None  # left as it was


def test_reads_hits_misses_and_regeneration(tmp_path):
    dataset = Clips(2)
    noise = G.AddWhiteNoise(factors=[0.0, 0.5, 1.0], seed=3)
    seeded = torch.Generator().manual_seed(0)
    ds = AugDiskCachedDataset(dataset, tmp_path, noise, pre_augment=_trim,
                              transform=lambda x: 2 * x, generator=seeded)  # fmt: skip
    clean = _trim(dataset[1][0])
    np.testing.assert_array_equal(ds.cached_copy(1, 0)[0], clean)  # factor 0: no noise
    first = ds.cached_copy(1, 2)[0]
    assert np.std(first - clean) > 0.5 * np.std(clean)
    np.testing.assert_array_equal(ds.cached_copy(1, 2)[0], first)  # cached: the same draw
    seen = set()
    for _ in range(30):
        x, y = ds[1]
        match = [c for c in range(3) if np.array_equal(x, 2 * ds.cached_copy(1, c)[0])]
        assert len(match) == 1 and y == int(dataset.files[1].name[0])
        seen.add(match[0])
    assert seen == {0, 1, 2}
    again = ds.generate_copy(1, 2)[0]
    assert not np.array_equal(again, first)
    np.testing.assert_array_equal(ds.cached_copy(1, 2)[0], again)
    entries = [p for p in ds.cache.directory.rglob("*") if p.is_file()]
    assert not [p for p in entries if p.name.endswith(".tmp")]

    def fail(x):
        raise AssertionError("recomputed")

    reopened = AugDiskCachedDataset(dataset, tmp_path, noise, pre_augment=_trim)
    reopened.augmentations = [fail] * 3  # a hit never calls the augmentation
    np.testing.assert_array_equal(reopened.cached_copy(1, 2)[0], again)
    changed = AugDiskCachedDataset(dataset, tmp_path, G.AddWhiteNoise([0.0, 0.5, 2.0], seed=3),
                                   pre_augment=_trim)  # fmt: skip
    assert changed.cache.directory != ds.cache.directory
    other_pre = AugDiskCachedDataset(dataset, tmp_path, noise, pre_augment=_to_float32)
    assert other_pre.cache.directory != ds.cache.directory
    plain = AugDiskCachedDataset(dataset, tmp_path, [_trim, _to_float32])
    assert plain.cached_copy(0, 1)[0].dtype == np.float32 and plain.num_copies == 2


def test_bad_input_is_named(tmp_path):
    dataset = Clips(1)
    with pytest.raises(ConfigurationError, match=r"augmentations\[1\] is not callable"):
        AugDiskCachedDataset(dataset, tmp_path, [_trim, 3])
    with pytest.raises(ConfigurationError, match="empty"):
        AugDiskCachedDataset(dataset, tmp_path, [])
    with pytest.raises(ConfigurationError, match="post_augment must be callable"):
        AugDiskCachedDataset(dataset, tmp_path, [_trim], post_augment="x")
    ds = AugDiskCachedDataset(dataset, tmp_path, [_trim, _trim])
    with pytest.raises(ConfigurationError, match=r"copy must be an integer in \[0, 2\)"):
        ds.cached_copy(0, 2)
    with pytest.raises(ConfigurationError, match="index 4 is past the 4 factors"):
        G.RandomTimeStretch(8000, 1).at(4)
    fixed = G.RandomTimeStretch(8000, 1).at(2)
    assert fixed.factors == [1.1] and fixed.cache_key()["factors"] == [1.1]


class _Scale:
    """A user augmentation without cache_key() or repr: its instances repr alike."""

    def __init__(self, k: float) -> None:
        self.k = k

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.k


def test_augmentations_that_repr_alike_get_caches_of_their_own(tmp_path):
    """Reusing a cache folder with other augmentations is a miss, never a stale hit,
    also when the augmentations' reprs match (instances of a class without __repr__,
    partials of builtins, whose reprs hold addresses; modules with other weights)."""
    data = [(torch.arange(1.0, 4.0), 0), (torch.arange(4.0, 7.0), 1)]
    torch.manual_seed(0)
    linear_a, linear_b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    for first, second in (
        ([_Scale(2), _Scale(3)], [_Scale(5), _Scale(7)]),
        ([functools.partial(torch.mul, other=2)], [functools.partial(torch.mul, other=3)]),
        ([functools.partial(torch.mul, other=2)], [functools.partial(torch.add, other=2)]),
        ([linear_a], [linear_b]),
    ):
        for augmentations in (first, second):
            ds = AugDiskCachedDataset(data, tmp_path, augmentations)
            for i, (x, _) in enumerate(data):
                for c, fn in enumerate(augmentations):
                    with torch.no_grad():
                        torch.testing.assert_close(ds.cached_copy(i, c)[0], fn(x))
    again = AugDiskCachedDataset(data, tmp_path, [_Scale(2), _Scale(3)], post_augment=_Scale(-1))
    torch.testing.assert_close(again.cached_copy(1, 1)[0], -3 * data[1][0])


def test_dataloader_workers_read_the_copies_the_cache_holds(tmp_path):
    """Two DataLoader workers, each with its own copy draws (a torch.Generator is
    replaced by one of the worker's seed): every sample read is one of its cached
    copies (the workers' entries land in the shared folder), and the copies vary."""
    torch.manual_seed(0)
    data = [(torch.randn(1, 64), i) for i in range(24)]
    scales = [functools.partial(torch.mul, other=k) for k in (1.0, -2.0, 3.0)]
    ds = AugDiskCachedDataset(data, tmp_path, scales, generator=torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, shuffle=False)
    picked = []
    for x, i in loader:
        i = int(i)
        matches = [c for c in range(3) if torch.equal(x, ds.cached_copy(i, c)[0])]
        assert matches and torch.equal(x, data[i][0] * [1.0, -2.0, 3.0][matches[0]]), i
        picked.append(matches[0])
    assert len(picked) == 24 and len(set(picked)) == 3
