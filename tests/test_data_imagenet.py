"""ImageFolder and ImageNet (spikeflow.data.datasets.image_folder / imagenet) on real
JPEG and PNG files written here with Pillow (300x200, ImageNet's typical size), in the
layouts of the ILSVRC-2012 release: 1,000 WNID class folders, the flat official
validation folder labelled by a devkit (meta.mat written by scipy, as MATLAB structs,
read in place from ILSVRC2012_devkit_t12.tar.gz or extracted), and valprep.sh's class
folders. No real ImageNet file is in ../shared/data."""

from __future__ import annotations

import csv
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeflow.cli import main
from spikeflow.data import ImageFolder, ImageNet
from spikeflow.data.cache import CacheCorruptionWarning
from spikeflow.data.datasets import DatasetNotFoundError
from spikeflow.data.datasets import image_folder as image_folder_module
from spikeflow.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD
from spikeflow.errors import ConfigurationError, DataFormatError, MissingExtraError
from spikeflow.training.config import TrainConfig, resolve
from spikeflow.training.data import build_datasets, dataset_shape

Image = pytest.importorskip("PIL.Image", reason="Pillow is the extra 'images'")
sio = pytest.importorskip("scipy.io", reason="scipy writes the devkit's meta.mat")

#: 1,000 WNID-like names; the devkit numbers them in another order than sorted.
WNIDS = sorted(f"n{1440764 + 7919 * k:08d}" for k in range(1000))
ID_OF = {wnid: 1 + (k * 337) % 1000 for k, wnid in enumerate(WNIDS)}  # 337 is prime to 1000


def colour(label: int) -> tuple[int, int, int]:
    return (label * 37 % 256, label * 91 % 256, 255 - label * 53 % 256)


def write_image(path: Path, label: int, size: tuple[int, int] = (300, 200)) -> None:
    """A ``size`` (W, H) image of the label's colour (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(label)).save(path)


def coordinate_png(path: Path, height: int = 200, width: int = 300) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    array = np.stack([cols % 256, rows % 256, (rows * 3 + cols) % 256], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def normalised(array: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        3, 1, 1
    )


# -- ImageFolder ----------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """train/ and val/ of three classes, created in unsorted order, with nested, hidden
    and non-image entries that must be skipped."""
    root = tmp_path / "pets"
    for name, label in (("zebra", 2), ("Mole", 0), ("ant", 1)):
        for i in (2, 0, 1):
            write_image(root / "train" / name / f"img{i}.jpg", label)
        write_image(root / "val" / name / f"v{label}.PNG", label)
    write_image(root / "train" / "ant" / "deeper" / "a.jpeg", 1)
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    (root / "train" / "ant" / "._img0.jpg").write_bytes(b"AppleDouble junk")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    return root


def test_classes_labels_and_order_follow_sorted_folders(folders):
    train = ImageFolder(folders, train=True)
    assert train.classes == ("Mole", "ant", "zebra")  # code-point order, as sorted()
    assert train.class_to_idx == {"Mole": 0, "ant": 1, "zebra": 2}
    names = [str(train.path(i).relative_to(folders / "train")) for i in range(len(train))]
    assert names == ["Mole/img0.jpg", "Mole/img1.jpg", "Mole/img2.jpg", "ant/img0.jpg",
                     "ant/img1.jpg", "ant/img2.jpg", "ant/deeper/a.jpeg", "zebra/img0.jpg",
                     "zebra/img1.jpg", "zebra/img2.jpg"]  # fmt: skip
    assert train.targets == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    for i in range(len(train)):  # each JPEG decodes to its class's colour
        pixel = np.asarray(train.load_image(i))[100, 150].astype(int)
        assert np.abs(pixel - colour(train.targets[i])).max() <= 3
    val = ImageFolder(folders, train=False)
    assert val.split == "test" and val.targets == [0, 1, 2] and len(val) == 3
    every = ImageFolder(folders / "train")  # train=None: the root's own class folders
    assert every.split is None and every.targets == train.targets


def test_a_png_goes_through_the_eval_pipeline_pixel_for_pixel(tmp_path):
    array = coordinate_png(tmp_path / "d" / "only" / "x.png")
    # Shorter side 200 already: no resize; the 200x200 centre crop starts at column 50.
    dataset = ImageFolder(tmp_path / "d", image_size=200, resize_size=200)
    x, label = dataset[0]
    assert label == 0 and x.shape == (3, 200, 200) and x.dtype == torch.float32
    torch.testing.assert_close(x, normalised(array[:, 50:250]))
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(grey).save(tmp_path / "d" / "only" / "y.jpg", quality=100)  # mode L
    Image.new("RGBA", (10, 6), (9, 99, 199, 7)).save(tmp_path / "d" / "only" / "z.png")
    small = ImageFolder(tmp_path / "d", image_size=(6, 10), resize_size=6, mean=None, std=None)
    as_rgb = small[1][0]  # the grey JPEG: three equal channels
    assert as_rgb.shape == (3, 6, 10) and torch.equal(as_rgb[0], as_rgb[2])
    assert (as_rgb[1] * 255 - torch.from_numpy(grey)).abs().max() <= 3
    assert small.load_image(2).mode == "RGB" and (small[2][0][:, 0, 0] * 255).round().tolist() == [
        9.0, 99.0, 199.0]  # the RGBA PNG: alpha dropped  # fmt: skip
    raw = ImageFolder(tmp_path / "d", image_size=(200, 300), resize_size=200, mean=None,
                      std=None)[0][0]  # fmt: skip
    torch.testing.assert_close(raw, torch.from_numpy(array / 255).permute(2, 0, 1).float())


def test_the_training_augmentation_crops_flips_and_normalises(tmp_path):
    array = coordinate_png(tmp_path / "d" / "only" / "x.png")
    dataset = ImageFolder(tmp_path / "d", augment=True, image_size=(50, 60))
    crop, flip = dataset.pipeline.transforms[:2]
    crop.get_params = lambda height, width: (30, 70, 50, 60)  # the output size: exact
    flip._rand = lambda: 0.0  # < 1/2: flipped
    torch.testing.assert_close(dataset[0][0], normalised(array[30:80, 70:130][:, ::-1].copy()))
    flip._rand = lambda: 0.5  # not flipped
    torch.testing.assert_close(dataset[0][0], normalised(array[30:80, 70:130]))
    torch.manual_seed(0)
    fresh = ImageFolder(tmp_path / "d", augment=True)
    shapes = {tuple(fresh[0][0].shape) for _ in range(3)}
    assert shapes == {(3, 224, 224)}


def test_the_psn_policy_adds_trivial_augment_and_erasing(tmp_path):
    """augment="psn": crop, flip, TrivialAugment-wide (bilinear) on the PIL image,
    normalise, then erase a box to 0 with p = 0.1; checked pixel for pixel with the draws
    fixed (Solarize at 128: levels >= 128 inverted)."""
    from spikeflow.data.image_augment import RandomErasing, TrivialAugmentWide

    array = coordinate_png(tmp_path / "d" / "only" / "x.png")
    dataset = ImageFolder(tmp_path / "d", augment="psn", image_size=(50, 60))
    assert dataset.augment and dataset.augment_policy == "psn"
    assert "augment='psn'" in repr(dataset)
    crop, flip, trivial, _, _, erase = dataset.pipeline.transforms
    assert isinstance(trivial, TrivialAugmentWide) and trivial.interpolation == "bilinear"
    assert isinstance(erase, RandomErasing) and erase.p == 0.1 and erase.value == 0.0
    crop.get_params = lambda height, width: (30, 70, 50, 60)
    flip._rand = lambda: 0.0  # flipped
    trivial.get_params = lambda: ("Solarize", 128.0)
    erase._rand, erase.get_params = (lambda: 0.0), (lambda height, width: (5, 7, 10, 12))
    want = array[30:80, 70:130][:, ::-1].copy()
    want = np.where(want >= 128, 255 - want, want).astype(np.uint8)
    want = normalised(want)
    want[:, 5:15, 7:19] = 0.0
    torch.testing.assert_close(dataset[0][0], want)
    erase._rand = lambda: 0.1  # not below p: no box
    assert (dataset[0][0][:, 5:15, 7:19] != 0).any()
    standard = ImageFolder(tmp_path / "d", augment="standard")
    assert standard.augment_policy == "standard" and len(standard.pipeline.transforms) == 4
    assert ImageFolder(tmp_path / "d", augment=True).augment_policy == "standard"
    assert ImageFolder(tmp_path / "d").augment_policy is None
    with pytest.raises(ConfigurationError, match=r"ImageFolder: augment must be True, False "
                       r"\(true, false on the command line\) or one of 'standard', 'psn'; "
                       r"got 'trivial'"):  # fmt: skip
        ImageFolder(tmp_path / "d", augment="trivial")
    with pytest.raises(ConfigurationError, match="augment='psn' and image_transform"):
        ImageFolder(tmp_path / "d", augment="psn", image_transform=lambda image: image)
    for split in ("train", "val"):
        write_image(tmp_path / "tv" / split / "only" / "x.png", 0)
    config = TrainConfig(dataset="imagefolder", data_dir=str(tmp_path / "tv"),
                         dataset_kwargs={"augment": "psn"})  # fmt: skip
    train, test, _ = build_datasets(config)
    assert train.augment_policy == "psn" and test.augment_policy is None


def test_transforms_and_a_pipeline_of_ones_own(folders):
    val = ImageFolder(folders, train=False, transform=lambda x: x.sum(),
                      target_transform=lambda y: f"c{y}")  # fmt: skip
    x, y = val[2]
    assert y == "c2" and x.dim() == 0
    own = ImageFolder(folders, train=False, image_transform=lambda image: image.size)
    assert own[0] == ((300, 200), 0)
    with pytest.raises(ConfigurationError, match="augment=True and image_transform"):
        ImageFolder(folders, augment=True, image_transform=lambda image: image)


def test_a_test_split_is_labelled_by_the_training_classes(folders):
    (folders / "val" / "ant" / "v1.PNG").unlink()
    (folders / "val" / "ant").rmdir()
    val = ImageFolder(folders, train=False)
    assert val.classes == ("Mole", "ant", "zebra") and val.targets == [0, 2]
    write_image(folders / "val" / "wolf" / "w.png", 5)
    with pytest.raises(DataFormatError, match=r"\['wolf'\] are not among the 3 classes"):
        ImageFolder(folders, train=False)


def test_missing_and_empty_folders_are_named(folders, tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"no folder .*/val or .*/test.*Expected layout"):
        ImageFolder(tmp_path / "nothing", train=False)
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "a.jpg", 0)
    with pytest.raises(DatasetNotFoundError, match="holds no class folder"):
        ImageFolder(tmp_path / "flat")
    (folders / "train" / "yak").mkdir()
    (folders / "train" / "yak" / "readme.txt").write_text("no images")
    with pytest.raises(DataFormatError, match=r"\['yak'\] hold no image"):
        ImageFolder(folders, train=True)


def test_corrupt_images_are_named(folders):
    path = folders / "train" / "zebra" / "img1.jpg"
    path.write_bytes(path.read_bytes()[:400])  # truncated JPEG
    dataset = ImageFolder(folders, train=True)
    index = [dataset.path(i) for i in range(len(dataset))].index(path)
    with pytest.raises(DataFormatError, match=f"{path}: cannot decode the image"):
        dataset[index]
    path.write_bytes(b"GIF89a but not really" * 10)
    with pytest.raises(DataFormatError, match=r"img1\.jpg: cannot decode the image"):
        dataset[index]


def test_without_pillow_the_extra_is_named(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'spikeflow\[images\]'"):
        ImageFolder(folders, train=True)


def test_bad_arguments_are_named(folders):
    with pytest.raises(ConfigurationError, match="train must be True or False"):
        ImageFolder(folders, train="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="extensions must be a sequence of endings"):
        ImageFolder(folders, extensions=".jpg")
    with pytest.raises(ConfigurationError, match="image_size must be an int or"):
        ImageFolder(folders, image_size=0)
    with pytest.raises(IndexError, match="index 99 is out of range for 10"):
        ImageFolder(folders, train=True)[99]


def backdate(root: Path) -> None:
    """Folders last changed a minute ago (a listing of folders changed just now is not
    cached: they may still be changing)."""
    past = time.time() - 60
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (past, past))


def test_the_listing_cache_is_used_until_a_folder_changes(folders, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    backdate(folders)
    first = ImageFolder(folders, train=True, cache_dir=cache)
    written = list((cache / "image-lists").glob("*.npz"))
    assert len(written) == 1
    calls = []
    real = image_folder_module.list_class_folders
    monkeypatch.setattr(image_folder_module, "list_class_folders",
                        lambda *a: calls.append(a) or real(*a))  # fmt: skip
    again = ImageFolder(folders, train=True, cache_dir=cache)
    assert calls == [] and again.targets == first.targets
    assert [again.path(i) for i in range(len(again))] == [first.path(i) for i in range(len(first))]
    write_image(folders / "train" / "zebra" / "img3.jpg", 2)
    os.utime(folders / "train" / "zebra", (time.time() - 30, time.time() - 30))
    grown = ImageFolder(folders, train=True, cache_dir=cache)
    assert len(calls) == 1 and len(grown) == len(first) + 1
    written[0].write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(CacheCorruptionWarning, match="unreadable"):
        assert ImageFolder(folders, train=True, cache_dir=cache).targets == grown.targets
    # A listing just made (folders changed now) is used but not cached.
    fresh_root = tmp_path / "fresh"
    write_image(fresh_root / "a" / "x.png", 0)
    ImageFolder(fresh_root, cache_dir=tmp_path / "cache2")
    assert not (tmp_path / "cache2").exists()


# -- ImageNet: the release's layouts -----------------------------------------------------------


def meta_mat_bytes(wnids: list[str] = WNIDS) -> bytes:
    """The devkit's meta.mat: 1,000 leaf synsets (IDs in ID_OF's order) after two
    parent synsets with children (IDs 1001 and 1002), as the real file holds them."""
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
              ("num_children", "O"), ("children", "O"), ("wordnet_height", "O"),
              ("num_train_images", "O")]  # fmt: skip
    synsets = np.zeros((len(wnids) + 2, 1), dtype=fields)
    synsets[0, 0] = (1001.0, "n00001740", "entity", "that which exists", 2.0,
                     np.array([[1002.0, 1003.0]]), 18.0, 0.0)  # fmt: skip
    synsets[1, 0] = (1002.0, "n00002137", "abstraction", "a concept", 1.0,
                     np.array([[5.0]]), 17.0, 0.0)  # fmt: skip
    for k, wnid in enumerate(sorted(wnids, key=lambda w: ID_OF.get(w, 0))):
        synsets[k + 2, 0] = (float(ID_OF[wnid]), wnid, f"thing {wnid[-4:]}, alias", "a gloss",
                             0.0, np.zeros((1, 0)), 0.0, 1300.0)  # fmt: skip
    buffer = io.BytesIO()
    sio.savemat(buffer, {"synsets": synsets}, do_compression=True)
    return buffer.getvalue()


def write_devkit(root: Path, val_labels: list[int], extracted: bool = False,
                 meta: bytes | None = None) -> None:  # fmt: skip
    """The devkit with ground truth ``val_labels`` (class indices, i.e. sorted WNIDs)."""
    truth = "".join(f"{ID_OF[WNIDS[label]]}\n" for label in val_labels).encode()
    members = {"data/meta.mat": meta if meta is not None else meta_mat_bytes(),
               "data/ILSVRC2012_validation_ground_truth.txt": truth}  # fmt: skip
    if extracted:
        for name, data in members.items():
            (root / "ILSVRC2012_devkit_t12" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "ILSVRC2012_devkit_t12" / name).write_bytes(data)
        return
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


#: The validation images of the flat folder: ILSVRC2012_val_<n> has label VAL_LABELS[n-1].
VAL_LABELS = [417, 3, 999, 0, 56, 3, 781, 250, 12, 640]
#: The training classes that hold real JPEGs (the others an empty placeholder file).
REAL_TRAIN = (0, 3, 999)


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    for label, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        if label in REAL_TRAIN:
            for i in (10026, 10027):
                write_image(folder / f"{wnid}_{i}.JPEG", label)
        else:
            (folder / f"{wnid}_1.JPEG").touch()
    for n, label in enumerate(VAL_LABELS, start=1):
        write_image(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG", label, (250 + n, 200))
    return root


def check_validation_split(val: ImageNet) -> None:
    assert val.classes == tuple(WNIDS) and len(val) == len(VAL_LABELS)
    assert val.targets == VAL_LABELS
    for i in range(len(val)):  # each image is its label's colour: image and label agree
        pixel = np.asarray(val.load_image(i))[100, 120].astype(int)
        assert np.abs(pixel - colour(val.targets[i])).max() <= 3, i


@pytest.mark.parametrize("extracted", [False, True])
def test_flat_validation_is_labelled_by_the_devkit(imagenet_root, extracted):
    write_devkit(imagenet_root, VAL_LABELS, extracted=extracted)
    val = ImageNet(imagenet_root, train=False)
    check_validation_split(val)
    assert [val.path(i).name for i in range(2)] == ["ILSVRC2012_val_00000001.JPEG",
                                                    "ILSVRC2012_val_00000002.JPEG"]  # fmt: skip
    assert val.class_names is not None and val.class_names[0] == f"thing {WNIDS[0][-4:]}, alias"
    x, y = val[2]
    assert x.shape == (3, 224, 224) and y == 999


def test_valprep_class_folders_give_the_same_labels(imagenet_root):
    write_devkit(imagenet_root, VAL_LABELS)
    flat = ImageNet(imagenet_root, train=False)
    for n, label in enumerate(VAL_LABELS, start=1):  # what valprep.sh does
        source = imagenet_root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG"
        (imagenet_root / "val" / WNIDS[label]).mkdir(exist_ok=True)
        source.rename(imagenet_root / "val" / WNIDS[label] / source.name)
    for label, wnid in enumerate(WNIDS):  # every class has validation images
        if label not in VAL_LABELS:
            (imagenet_root / "val" / wnid).mkdir()
            write_image(imagenet_root / "val" / wnid / "ILSVRC2012_val_00099999.JPEG", label,
                        (16, 16))  # fmt: skip
    sorted_val = ImageNet(imagenet_root, train=False)
    pairs = {sorted_val.path(i).name: sorted_val.targets[i] for i in range(len(sorted_val))}
    assert all(pairs[flat.path(i).name] == flat.targets[i] for i in range(len(flat)))
    (imagenet_root / "ILSVRC2012_devkit_t12.tar.gz").unlink()  # the folders suffice
    assert ImageNet(imagenet_root, train=False).class_names is None


def test_training_split_without_and_with_the_devkit(imagenet_root):
    train = ImageNet(imagenet_root, train=True, augment=True)
    assert len(train) == 1000 + len(REAL_TRAIN) and train.classes == tuple(WNIDS)
    assert train.targets[:3] == [0, 0, 1] and train.targets[-1] == 999
    x, y = train[1]
    assert x.shape == (3, 224, 224) and y == 0
    assert repr(train).startswith("ImageNet(root=") and "samples=1003" in repr(train)
    write_devkit(imagenet_root, VAL_LABELS)
    named = ImageNet(imagenet_root, train=True)
    assert named.class_names is not None and len(named.class_names) == 1000
    with pytest.raises(DataFormatError, match="cannot decode the image"):
        named[2]  # an empty placeholder file is no image


def test_imagenet_layout_errors_are_named(imagenet_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="flat official layout needs the devkit"):
        ImageNet(imagenet_root, train=False)
    write_devkit(imagenet_root, VAL_LABELS[:-1])
    with pytest.raises(DataFormatError, match="10 validation images, the devkit's ground truth "
                                              "labels 9"):  # fmt: skip
        ImageNet(imagenet_root, train=False)
    (imagenet_root / "val" / "ILSVRC2012_val_00000010.JPEG").rename(
        imagenet_root / "val" / "picture.JPEG")  # fmt: skip
    with pytest.raises(DataFormatError, match=r"picture\.JPEG: not an official validation"):
        ImageNet(imagenet_root, train=False)
    (imagenet_root / "val" / "picture.JPEG").unlink()
    (imagenet_root / "val" / WNIDS[5]).mkdir()
    write_image(imagenet_root / "val" / WNIDS[5] / "x.JPEG", 5)
    with pytest.raises(DataFormatError, match=r"no image of class\(es\)"):
        ImageNet(imagenet_root, train=False)  # class folders, most of them missing
    extra = imagenet_root / "train" / "n99999999"
    write_image(extra / "x.JPEG", 0)
    with pytest.raises(DataFormatError, match="expected 1000 class folders, found 1001"):
        ImageNet(imagenet_root, train=True)
    extra.joinpath("x.JPEG").unlink()
    extra.rmdir()
    (imagenet_root / "train" / WNIDS[7]).rename(imagenet_root / "train" / "n00000007")
    with pytest.raises(DataFormatError, match="not the devkit's 1,000 WNIDs"):
        ImageNet(imagenet_root, train=True)
    with pytest.raises(DatasetNotFoundError, match="ImageNet needs a manual download"):
        ImageNet(tmp_path / "empty", train=True)
    with pytest.raises(ConfigurationError, match="train must be True or False"):
        ImageNet(imagenet_root, train=None)  # type: ignore[arg-type]


def test_loose_images_beside_class_folders_are_an_interrupted_valprep(imagenet_root):
    write_devkit(imagenet_root, VAL_LABELS)
    for label, wnid in enumerate(WNIDS):
        write_image(imagenet_root / "val" / wnid / f"{wnid}.JPEG", label, (8, 8))
    with pytest.raises(DataFormatError, match=r"10 loose image.*interrupted sorting"):
        ImageNet(imagenet_root, train=False)


@pytest.mark.parametrize(
    ("meta", "truth", "message"),
    [
        (b"MATLAB" + bytes(50), None, "truncated: 56 bytes"),
        (lambda: meta_mat_bytes(WNIDS[:999]), None, "expected 1000 leaf synsets"),
        (None, b"1\n2\nx3\n", "line 3: 'x3' is not an ILSVRC2012_ID"),
        (None, b"1\n1001\n", "line 2: '1001' is not an ILSVRC2012_ID"),
    ],
)
def test_a_malformed_devkit_is_named(imagenet_root, meta, truth, message):
    write_devkit(imagenet_root, VAL_LABELS, meta=meta() if callable(meta) else meta)
    if truth is not None:
        with tarfile.open(imagenet_root / "ILSVRC2012_devkit_t12.tar.gz") as tar:
            meta_bytes = tar.extractfile("ILSVRC2012_devkit_t12/data/meta.mat").read()
        (imagenet_root / "ILSVRC2012_devkit_t12.tar.gz").unlink()
        write_devkit(imagenet_root, [], extracted=True, meta=meta_bytes)
        gt = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"
        (imagenet_root / gt).write_bytes(truth)
    with pytest.raises(DataFormatError, match=message):
        ImageNet(imagenet_root, train=False)


def test_a_damaged_devkit_archive_is_named(imagenet_root):
    (imagenet_root / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(DataFormatError, match=r"ILSVRC2012_devkit_t12\.tar\.gz: cannot read"):
        ImageNet(imagenet_root, train=False)
    with tarfile.open(imagenet_root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("ILSVRC2012_devkit_t12/readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataFormatError, match=r"no member ILSVRC2012_devkit_t12/data/meta\.mat"):
        ImageNet(imagenet_root, train=False)


# -- the command line ---------------------------------------------------------------------------


def test_imagenet_defaults_and_datasets_for_the_trainer(imagenet_root, tmp_path):
    assert dataset_shape("imagenet") == (1000, (3, 224, 224))
    assert dataset_shape("ImageFolder") == (None, (3, 224, 224))
    write_devkit(imagenet_root, VAL_LABELS)
    backdate(imagenet_root)  # so that --cache-dir caches the training listing
    config = resolve(TrainConfig(dataset="imagenet", data_dir=str(imagenet_root),
                                 optimizer="sgd", cache_dir=str(tmp_path / "c")))  # fmt: skip
    assert (config.model, config.T, config.batch_size, config.loss, config.lr) == (
        "sew_resnet18", 4, 256, "ce", 0.1)  # fmt: skip
    train, test, info = build_datasets(config)
    assert (info.num_classes, info.in_channels, info.input_size, info.static) == (
        1000, 3, (224, 224), True)  # fmt: skip
    assert train.augment and not test.augment and test.targets == VAL_LABELS
    assert len(list((tmp_path / "c" / "image-lists").glob("*.npz"))) == 1  # --cache-dir
    small = TrainConfig(dataset="imagenet", data_dir=str(imagenet_root), model="sew_resnet18",
                        dataset_kwargs={"image_size": 64, "augment": False})  # fmt: skip
    train, _, info = build_datasets(small, with_train=True)
    assert info.input_size == (64, 64) and not train.augment and train[1][0].shape == (3, 64, 64)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"data_dir": None}, ConfigurationError, "needs --data-dir"),
        ({"download": True}, ConfigurationError, "image-net.org needs a login"),
        ({"split_by": "time"}, ConfigurationError, "no events to split"),
        ({"dataset_kwargs": {"image_transform": 1}}, ConfigurationError, "Python only"),
        (
            {"dataset_kwargs": {"augment": "yes"}},
            ConfigurationError,
            r"ImageNet \(--dataset-kwargs\): augment must be True, False \(true, false on the "
            r"command line\) or one of 'standard', 'psn'; got 'yes'",
        ),
        ({"dataset_kwargs": {"size": 64}}, ConfigurationError, "takes no argument"),
        ({"data_dir": "/nonexistent/imagenet"}, DatasetNotFoundError, "--data-dir /nonexistent"),
    ],
)
def test_bad_options_for_imagenet_are_named(imagenet_root, changes, error, message):
    values = {"dataset": "imagenet", "data_dir": str(imagenet_root), "model": "sew_resnet18",
              **changes}  # fmt: skip
    with pytest.raises(error, match=message):
        build_datasets(TrainConfig(**values))


def test_command_line_learns_class_folders_and_evaluates(tmp_path):
    """Four colours, one per class, in 300x200 JPEGs with noise: a run that paired
    images and labels wrongly would stay at chance (25%)."""
    rng = np.random.default_rng(0)
    colours = {"blue": (30, 40, 220), "green": (40, 200, 50), "red": (220, 30, 40),
               "yellow": (230, 220, 40)}  # fmt: skip
    root = tmp_path / "data"
    for split, count in (("train", 12), ("val", 5)):
        for name, rgb in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                noisy = np.asarray(rgb)[None, None] + rng.normal(0, 25, (200, 300, 3))
                Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
                    root / split / name / f"{i:03d}.jpg", quality=90)  # fmt: skip
    out = tmp_path / "run"
    args = ["train", "--dataset", "imagefolder", "--data-dir", str(root), "--model",
            "sew_resnet18", "--model-kwargs", "base_width=8", "--dataset-kwargs",
            "image_size=32", "-T", "2", "--epochs", "6", "--batch-size", "8", "--loss", "ce",
            "--lr", "0.02", "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out),
            "--no-progress", "--plots", "off", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["test_acc"]) >= 0.9, rows[-1]
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data-dir", str(root),
                 "--no-progress"]) == 0  # fmt: skip
