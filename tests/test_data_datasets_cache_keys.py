"""Frame-cache keys of the datasets: every argument that changes a sample is in the key.

A dataset's cached frames are keyed by ``cache_namespace()`` (dataset, split, sensor
size, ``sample_options``, representation, event transform, cache version) plus the
source file's identity. A constructor option that changes a sample's events but is
left out of that key makes two datasets sharing a ``cache_dir`` read each other's
frames (CIFAR10-DVS's ``orientation`` once did). The generic test below makes every
constructor argument of every dataset class either a declared ``sample_option`` (so it
is in the key) or one of the arguments listed here with the reason it cannot change a
sample: adding an argument without that decision fails it.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import spikeflow.data.datasets as datasets_module
from spikeflow.data import CIFAR10DVS, DVS128Gesture, NeuromorphicDataset
from test_data_datasets_helpers import write_aedat2_dvs128, write_aedat31

#: Constructor arguments that cannot change a sample's events or frames, and why.
NOT_SAMPLE_CONTENT = {
    "root": "selects files; an entry is keyed by its file's identity (resolved path)",
    "train": "selects files (the split); a file's frames do not depend on its split",
    "split": "selects files or the HDF5 split file (keyed by its identity and row)",
    "train_ratio": "selects files (the per-class ratio split)",
    "split_rule": "selects files (CIFAR10-DVS's split rules)",
    "variant": "selects files (NavGesture walk/sit recordings)",
    "speakers": "selects files (FSDD's speakers)",
    "version": "selects files (the Speech Commands release: its word folders and lists)",
    "silence_hop": "selects windows (Speech Commands kws12 silence): keyed by their first frame",
    "single_digits": "selects samples (N-TIDIGITS18); an entry is keyed by its sample key",
    "data_type": "events are never cached; frames use the representation key",
    "frames_number": "part of the representation's cache_key()",
    "split_by": "part of the representation's cache_key()",
    "duration": "part of the representation's cache_key()",
    "custom_integrate_function": "part of the representation's cache_key()",
    "custom_integrated_frames_dir_name": "SpikingJelly's frames folder: must be None",
    "event_transform": "keyed by callable_key(event_transform)",
    "transform": "applied after the cache, never cached",
    "target_transform": "labels are not cached",
    "cache_dir": "where the cache lives",
    "cache_identity": "how a file's identity is computed (both identify the same bytes)",
    "download": "how the official files are obtained (MD5-checked), not what they hold",
    "cut_cache_dir": "where DVS128 Gesture's and N-Omniglot's cut samples live",
    "workers": "parallelism of the cut, same result",
    "progress": "a progress bar",
}


def dataset_classes() -> list[type[NeuromorphicDataset]]:
    found = [getattr(datasets_module, name) for name in datasets_module.__all__]
    base = NeuromorphicDataset
    # (an alias under a second name, SpikingSpeechCommands = SSC, counts once)
    classes = [c for c in found if isinstance(c, type) and issubclass(c, base) and c is not base]
    return list(dict.fromkeys(classes))


def constructor_arguments(cls: type) -> set[str]:
    """Every named argument a user can pass: the ``__init__`` of each class in the MRO
    (subclasses forward ``**kwargs`` up to NeuromorphicDataset)."""
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or not issubclass(klass, NeuromorphicDataset):
            continue
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.add(p.name)
    return names


def test_all_nineteen_dataset_classes_are_audited():
    assert len(dataset_classes()) == 20


@pytest.mark.parametrize("cls", dataset_classes(), ids=lambda c: c.__name__)
def test_every_constructor_argument_is_keyed_or_cannot_change_a_sample(cls):
    options = set(cls.sample_options)
    unknown = constructor_arguments(cls) - options - set(NOT_SAMPLE_CONTENT)
    assert not unknown, (
        f"{cls.__name__} has argument(s) {sorted(unknown)}: if they change a sample's events "
        "add them to its sample_options (then they are in the frame-cache key), else list "
        "them in NOT_SAMPLE_CONTENT with the reason"
    )
    assert not options & set(NOT_SAMPLE_CONTENT), "an option cannot be both"
    for name in options:  # each option names an attribute the key can read
        assert hasattr(cls, name) or name in constructor_arguments(cls), name


# -- the bug this guards against, end to end -------------------------------------------
HEADER = b"#!AER-DAT2.0\r\n# This is a raw AE data file created by a test\r\n"


@pytest.fixture
def cifar_root(tmp_path):
    rng = np.random.default_rng(7)
    root = tmp_path / "cifar"
    for name in CIFAR10DVS.classes:
        for i in range(2):
            n = 40
            write_aedat2_dvs128(
                root / name / f"cifar10_{name}_{i}.aedat",
                HEADER,
                np.sort(rng.integers(0, 10**6, n)),
                rng.integers(0, 128, n),
                rng.integers(0, 20, n),  # low rows: the two orientations differ
                rng.integers(0, 2, n),
            )
    return root


def test_cifar10dvs_orientation_is_in_the_cache_key(cifar_root, tmp_path):
    cache = tmp_path / "cache"
    kw = {"train": None, "data_type": "frame", "frames_number": 2}
    upright = CIFAR10DVS(cifar_root, orientation="spikingjelly", cache_dir=cache, **kw)
    sensor = CIFAR10DVS(cifar_root, orientation="sensor", cache_dir=cache, **kw)
    assert upright.cache.directory != sensor.cache.directory
    assert upright.preprocess(workers=1, progress=False) == len(upright)
    assert sensor.preprocess(workers=1, progress=False) == len(sensor)  # all misses
    for orientation, cached in (("spikingjelly", upright), ("sensor", sensor)):
        plain = CIFAR10DVS(cifar_root, orientation=orientation, **kw)
        for i in (0, 7, 19):
            assert torch.equal(cached[i][0], plain[i][0]), (orientation, i)
    assert not torch.equal(upright[0][0], sensor[0][0])


def test_gesture_cut_version_is_in_both_cache_keys(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    folder = tmp_path / "g" / "DvsGesture"
    n = 200
    t = np.sort(rng.integers(0, 2_000_000, n))
    write_aedat31(folder / "user01_led.aedat", t, rng.integers(0, 128, n),
                  rng.integers(0, 128, n), rng.integers(0, 2, n))  # fmt: skip
    (folder / "user01_led_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n1,0,1000000\n2,1000000,2000000\n"
    )
    (folder / "trials_to_train.txt").write_text("user01_led.aedat\n")
    kw = {"cut_cache_dir": tmp_path / "cut", "progress": False, "data_type": "frame"}
    first = DVS128Gesture(tmp_path / "g", frames_number=2, cache_dir=tmp_path / "c", **kw)
    monkeypatch.setattr(DVS128Gesture, "cut_version", DVS128Gesture.cut_version + 1)
    second = DVS128Gesture(tmp_path / "g", frames_number=2, cache_dir=tmp_path / "c", **kw)
    assert first.cache.directory != second.cache.directory
    assert first.cut_cache.directory != second.cut_cache.directory
    assert torch.equal(first[1][0], second[1][0])


def _log_frames(r, T=10):
    return np.log1p(r)


def _sqrt_frames(r, T=10):
    return np.sqrt(r)


def _log_frames_20(r, T=20):
    return np.log1p(r)


class _Scaled:
    def __init__(self, k: int) -> None:
        self.k = k

    def frames(self, r):
        return r * self.k


def test_callable_keys_see_edits_defaults_instances_and_array_contents():
    import functools

    from spikeflow.data.representations import callable_key

    def key(fn):
        return callable_key(fn)

    # Same bytecode shape, another function called: np.log1p vs np.sqrt.
    assert key(_log_frames)["code_sha256"] != key(_sqrt_frames)["code_sha256"]
    # Another default argument.
    assert key(_log_frames)["code_sha256"] != key(_log_frames_20)["code_sha256"]
    # The same method on two instances with different settings.
    assert key(_Scaled(10).frames) != key(_Scaled(20).frames)
    assert key(_Scaled(10).frames) == key(_Scaled(10).frames)
    # Large arrays in a partial differ by content (their repr elides the middle).
    a, b = np.zeros(2000), np.zeros(2000)
    b[1000] = 1
    assert key(functools.partial(_log_frames, T=a)) != key(functools.partial(_log_frames, T=b))

    # A closure's value.
    def make(scale):
        return lambda r: r * scale

    assert key(make(2)) != key(make(3))


def test_callable_keys_are_built_for_awkward_values_and_stable_across_processes(
    keys_across_processes,
):
    from spikeflow.data.representations import callable_key

    def make_recursive():
        def walk(r, depth=0):
            return r if depth > 2 else walk(r, depth + 1)

        return walk

    def over(value):
        return lambda r: (value, r)

    bf16 = torch.ones(3, dtype=torch.bfloat16)

    def f_bf16(r, w=bf16):
        return r

    class Slotted:
        __slots__ = ("k",)

        def __init__(self, k):
            self.k = k

        def rep(self, r):
            return r * self.k

    for fn in (make_recursive(), over(np.log1p), over(abs), over(np.float32),
               over(torch.nn.ReLU()), f_bf16):  # fmt: skip
        callable_key(fn)  # no RecursionError, TypeError or ConfigurationError
    assert callable_key(Slotted(10).rep) != callable_key(Slotted(20).rep)
    # Reprs with addresses and set order must not make keys differ between processes
    # (conftest._KEYS_ACROSS_PROCESSES).
    keys = {found["address_and_set"] for found in keys_across_processes}
    assert len(keys) == 1, keys
