"""COCODetection and BDD100KDetection on small layouts in the official schemas (real
JPEG files, tests/coco_layouts.py): the class mapping, the boxes after the letterbox
against hand-computed values, crowd regions, empty images, the ground truth in the
images' own pixels, and the errors that name the file and the annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coco_layouts import bdd_frames, coco_annotations, write_bdd, write_coco
from spikeflow.data import BDD100KDetection, COCODetection
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.datasets.frame_detection import letterbox_geometry
from spikeflow.detection import Detections, MeanAveragePrecision
from spikeflow.errors import ConfigurationError, DataFormatError


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"))


def by_id(dataset):
    return {r.image_id: i for i, r in enumerate(dataset.records)}


def test_categories_map_to_classes_in_the_json_order(coco_root):
    d = COCODetection(coco_root, "train", image_size=(48, 64))
    assert d.classes == ("car", "person", "toothbrush")
    assert d.category_ids == (3, 1, 90)
    assert len(d) == 4 and d.sensor_size == (64, 48, 3)


def test_boxes_after_the_letterbox_equal_hand_computed_values(coco_root):
    d = COCODetection(coco_root, "train", image_size=(48, 64))  # H 48, W 64
    index = by_id(d)
    # 61x37: scale min(48/37, 64/61) = 64/61 -> 64x39 (38.82 rounded), left 0, top
    # (48 - 39) // 2 = 4; x scaled by 64/61, y by 39/37 (the rounded size's own scale)
    image, target = d[index[139]]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32
    expected = [
        [0, 10 * 64 / 61, 5 * 39 / 37 + 4, 30 * 64 / 61, 15 * 39 / 37 + 4],  # car
        [2, 40.5 * 64 / 61, 20.25 * 39 / 37 + 4, 52.5 * 64 / 61, 28.25 * 39 / 37 + 4],
    ]
    np.testing.assert_allclose(target.numpy(), expected, rtol=0, atol=1e-4)
    # the padding rows are YOLO's gray 114, the image rows the JPEG's colour
    assert torch.allclose(image[:, :4], torch.tensor(114 / 255), atol=1e-6)
    assert torch.allclose(image[:, 44:], torch.tensor(114 / 255), atol=1e-6)
    assert abs(float(image[0, 20, 30]) - 200 / 255) < 0.03
    # 40x80 portrait: scale 0.6 -> 24x48, left (64 - 24) // 2 = 20; the crowd region
    # (annotation 1004) is left out of the target
    _, target = d[index[285]]
    np.testing.assert_allclose(target.numpy(), [[1, 20, 0, 44, 48]], atol=1e-5)
    # 50x50: scale 0.96, left 8; the box overshooting by 0.5 px is clipped to x_max 50
    _, target = d[index[724]]
    np.testing.assert_allclose(target.numpy(), [[1, 46.4, 38.4, 56, 48]], atol=1e-4)
    # the image without annotations: an empty [0, 5] target
    _, target = d[index[632]]
    assert target.shape == (0, 5) and target.dtype == torch.float32


def test_stretch_resizes_without_padding(coco_root):
    d = COCODetection(coco_root, "train", image_size=(48, 64), resize="stretch")
    _, target = d[by_id(d)[285]]  # 40x80 -> 64x48: x times 1.6, y times 0.6
    np.testing.assert_allclose(target.numpy(), [[1, 0, 0, 64, 48]], atol=1e-5)
    assert letterbox_geometry(40, 80, (48, 64), "stretch") == (64, 48, 0, 0)


def test_keep_empty_false_drops_images_without_annotations(coco_root):
    d = COCODetection(coco_root, "val", image_size=32, keep_empty=False)
    assert sorted(r.image_id for r in d.records) == [139, 285, 724]
    # an image with only a crowd region is not empty: kept, with an empty target
    root = write_coco(coco_root.parent / "crowd_only", splits=("val",), annotations=[
        {"id": 7, "image_id": 139, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 20,
         "iscrowd": 1}])  # fmt: skip
    d = COCODetection(root, "val", image_size=32, keep_empty=False)
    assert [r.image_id for r in d.records] == [139] and d[0][1].shape == (0, 5)


def test_ground_truth_is_in_the_images_own_pixels_with_crowd_and_areas(coco_root):
    d = COCODetection(coco_root, "val", image_size=(48, 64))
    i = by_id(d)[285]
    truth = d.ground_truth(i)
    np.testing.assert_allclose(truth["boxes"].numpy(), [[0, 0, 40, 80], [5, 10, 35, 40]])
    assert truth["labels"].tolist() == [1, 1] and truth["iscrowd"].tolist() == [0, 1]
    assert truth["area"].tolist() == [2900.0, 700.0]  # the annotations' (masks') areas
    # the ground truth keeps the json's box as pycocotools reads it (724's overshoots
    # its 50x50 image by half a pixel), the training target clips it
    assert d.ground_truth(by_id(d)[724])["boxes"].tolist() == [[40, 40, 50.5, 50]]
    # to_original undoes the letterbox: the target's boxes go back to the json's (clipped)
    for j in range(len(d)):
        target = d.target(j)
        back = d.to_original(j, target[:, 1:].double())
        plain = d.ground_truth(j)
        r = d.records[j]
        boxes = plain["boxes"][plain["iscrowd"] == 0].numpy()
        clipped = np.clip(boxes, 0, [r.width, r.height, r.width, r.height])
        np.testing.assert_allclose(back.numpy(), clipped, atol=1e-4)


def test_a_zero_area_box_counts_in_the_recall_as_pycocotools_counts_it(tmp_path):
    # COCO train2017 has two zero-height boxes: pycocotools keeps them as objects no
    # detection can match (IoU 0). Add one of person (class 1) to image 724 and feed the
    # training targets back as detections: person has 3 objects (1003, 1005, the zero
    # box; 1004 is a crowd region), 2 found with precision 1, so its AP is 67/101 (the
    # recall points 0..0.66), the others' 1 (pycocotools 2.0.11: map 0.8878, AR 0.8889)
    anns = coco_annotations()
    anns.append({"id": 1006, "image_id": 724, "category_id": 1, "bbox": [5, 5, 10, 0.0],
                 "area": 0.0, "iscrowd": 0})  # fmt: skip
    d = COCODetection(write_coco(tmp_path / "c", splits=("val",), annotations=anns), "val")
    truth = d.ground_truth(by_id(d)[724])
    assert truth["boxes"].tolist() == [[40, 40, 50.5, 50], [5, 5, 15, 5]]
    assert d.target(by_id(d)[724]).shape == (1, 5)  # nothing to learn from it
    metric = MeanAveragePrecision()
    for i in range(len(d)):
        t = d.target(i)
        boxes = d.to_original(i, t[:, 1:].double())
        metric.update([Detections(boxes, torch.ones(len(t)), t[:, 0].long())], [d.ground_truth(i)])
    out = metric.compute()
    assert out["map_per_class"][1] == pytest.approx(67 / 101)
    assert out["map"] == pytest.approx((2 + 67 / 101) / 3)
    assert out["mar_100"] == pytest.approx((2 + 2 / 3) / 3)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"instances_train2017\.json"):
        COCODetection(tmp_path, "train")
    root = write_coco(tmp_path / "c", splits=("train",))
    (root / "train2017" / "000000000285.jpg").unlink()
    missing = r"image id 285 \(annotation id 1003\).*000000000285\.jpg"
    with pytest.raises(DatasetNotFoundError, match=missing):
        COCODetection(root, "train")
    (root / "train2017" / "000000000632.jpg").unlink()  # the empty image's file
    (root / "train2017" / "000000000285.jpg").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=r"image id 632 \(no annotation\)"):
        COCODetection(root, "train")
    # without the empty images, its file is not needed; the empty JPEG fails when read
    d = COCODetection(root, "train", keep_empty=False)
    with pytest.raises(DataFormatError, match=r"000000000285\.jpg: image id 285: cannot decode"):
        d[by_id(d)[285]]


def _with_annotation(tmp_path, change):
    anns = coco_annotations()
    anns[2] = {**anns[2], **change}  # annotation 1003 of image 285 (40x80)
    return write_coco(tmp_path / "bad", splits=("train",), annotations=anns)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category_id": 2}, r"annotation id 1003: category_id 2 is not in the categories"),
        ({"image_id": 999}, r"annotation id 1003: image_id 999 is not in the images list"),
        ({"bbox": [0, 0, 41.5, 80]}, r"annotation id 1003 \(image 000000000285.jpg\).*outside"),
        ({"bbox": [-2, 0, 10, 10]}, r"annotation id 1003 .*outside the 40x80 image"),
        ({"bbox": [0, 0, -1, 10]}, r"annotation id 1003 .*negative width"),
        ({"bbox": [0, 0, 10]}, r"annotation id 1003: bbox must be \[x, y, width, height\]"),
        ({"bbox": [0, 0, float("nan"), 1]}, r"annotation id 1003 .*not finite"),
        ({"bbox": [0, 0, True, 1]}, r"annotation id 1003: bbox must be \[x, y, width, height\]"),
        ({"category_id": [1]}, r"annotation id 1003: image_id and category_id must be numbers"),
        # pycocotools compares the area with the ranges and reads iscrowd as a truth value:
        # a string, null, NaN or negative area and a flag "0" or 2 are errors, not guesses
        ({"area": "2900"}, r"annotation id 1003: area must be a finite number >= 0"),
        ({"area": None}, r"annotation id 1003: area must be a finite number >= 0"),
        ({"area": float("nan")}, r"annotation id 1003: area must be a finite number >= 0"),
        ({"area": -1.0}, r"annotation id 1003: area must be a finite number >= 0"),
        ({"iscrowd": "0"}, r"annotation id 1003: iscrowd must be 0 or 1; got '0'"),
        ({"iscrowd": 2}, r"annotation id 1003: iscrowd must be 0 or 1; got 2"),
        ({"id": 1001}, r"annotation id 1001 is used twice \(annotations\[2\]"),
        ({"id": [1003]}, r"annotations\[2\]: id must be a number or a string; got \[1003\]"),
    ],
)
def test_bad_annotations_name_the_json_and_the_annotation(tmp_path, change, message):
    root = _with_annotation(tmp_path, change)
    with pytest.raises(DataFormatError, match=message) as info:
        COCODetection(root, "train")
    assert "instances_train2017.json" in str(info.value)


def test_an_annotation_without_area_or_iscrowd_takes_the_boxs_area_and_is_no_crowd(tmp_path):
    anns = coco_annotations()
    del anns[2]["area"], anns[2]["iscrowd"]  # annotation 1003: [0, 0, 40, 80]
    d = COCODetection(write_coco(tmp_path / "c", splits=("train",), annotations=anns), "train")
    truth = d.ground_truth(by_id(d)[285])
    assert truth["area"].tolist() == [3200.0, 700.0] and truth["iscrowd"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file_name", None, r"images\[1\] \(id 285\): file_name must be a file name; got None"),
        ("width", True, r"images\[1\] \(id 285\): width and height must be positive ints"),
        ("id", [285], r"images\[1\]: id must be an int or a string; got \[285\]"),
    ],
)
def test_bad_images_name_the_json_and_the_image(tmp_path, field, value, message):
    root = write_coco(tmp_path / "c", splits=("train",))
    path = root / "annotations" / "instances_train2017.json"
    doc = json.loads(path.read_text())
    doc["images"][1][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=message):
        COCODetection(root, "train")


def test_a_category_id_that_is_not_an_int_or_string_is_named(tmp_path):
    root = write_coco(tmp_path / "c", splits=("train",))
    path = root / "annotations" / "instances_train2017.json"
    doc = json.loads(path.read_text())
    doc["categories"][2]["id"] = [90]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"categories\[2\]: id must be an int or a string"):
        COCODetection(root, "train")


def test_malformed_json_and_arguments_are_named(tmp_path):
    root = write_coco(tmp_path / "c", splits=("train",))
    path = root / "annotations" / "instances_train2017.json"
    path.write_text('{"images": [')
    with pytest.raises(
        DataFormatError, match=r"instances_train2017.json: not valid JSON at line 1"
    ):
        COCODetection(root, "train")
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataFormatError, match="no 'categories' list"):
        COCODetection(root, "train")
    with pytest.raises(ConfigurationError, match="split must be 'train' or 'val'"):
        COCODetection(root, "test")
    with pytest.raises(ConfigurationError, match="resize must be one of letterbox, stretch"):
        COCODetection(root, "train", resize="crop")
    with pytest.raises(ConfigurationError, match="keep_empty"):
        COCODetection(root, "train", keep_empty="no")


def test_grayscale_cmyk_png_and_exif_rotated_files_are_read_as_stored_rgb(tmp_path):
    # COCO holds grayscale and CMYK JPEGs; a PNG behind a .jpg name decodes by content;
    # an EXIF orientation is not applied (COCO's boxes are in the stored pixels, as
    # torchvision's CocoDetection and pycocotools read them)
    from PIL import Image

    root = write_coco(tmp_path / "c", splits=("train",))
    folder = root / "train2017"
    Image.new("L", (61, 37), 51).save(folder / "000000000139.jpg", "JPEG")
    Image.new("CMYK", (40, 80), (0, 0, 0, 0)).save(folder / "000000000285.jpg", "JPEG")
    Image.new("RGB", (33, 47), (10, 20, 30)).save(folder / "000000000632.jpg", "PNG")
    rotated = Image.new("RGB", (50, 50), (0, 0, 0))
    rotated.paste((255, 255, 255), (0, 0, 50, 10))  # the stored top rows white
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated.save(folder / "000000000724.jpg", "JPEG", exif=exif.tobytes(), quality=100)
    d = COCODetection(root, "train", image_size=(50, 50), resize="stretch")
    index = by_id(d)
    gray = d.load_image(index[139])
    assert gray.mode == "RGB" and gray.getpixel((5, 5)) == (51, 51, 51)
    assert d[index[285]][0].shape == (3, 50, 50)
    assert d.load_image(index[285]).getpixel((20, 40)) == (255, 255, 255)  # no ink
    assert d.load_image(index[632]).getpixel((3, 3)) == (10, 20, 30)
    image, _ = d[index[724]]
    assert float(image[:, :8].mean()) > 0.9 and float(image[:, 12:].mean()) < 0.1


def test_an_image_of_another_size_than_its_json_says_is_named(tmp_path):
    root = write_coco(tmp_path / "c", splits=("train",))
    from PIL import Image

    Image.new("RGB", (60, 37)).save(root / "train2017" / "000000000139.jpg", "JPEG")
    d = COCODetection(root, "train")
    with pytest.raises(DataFormatError, match=r"000000000139.jpg: image id 139 is 60x37 .* 61x37"):
        d[by_id(d)[139]]


# -- BDD100K ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bdd_root(tmp_path_factory):
    return write_bdd(tmp_path_factory.mktemp("bdd"))


def test_bdd100k_classes_ignored_categories_and_letterbox(bdd_root):
    d = BDD100KDetection(bdd_root, "val", image_size=(192, 320))
    assert d.classes[2] == "car" and len(d.classes) == 10 and len(d) == 3
    # 1280x720 into 320x192: scale 0.25 -> 320x180, top (192 - 180) // 2 = 6
    image, target = d[0]
    assert image.shape == (3, 192, 320)
    expected = [[2, 25, 56, 75, 106], [8, 1125.9 / 4, 133.2 / 4 + 6, 1156.9 / 4, 210.8 / 4 + 6]]
    np.testing.assert_allclose(target.numpy(), expected, atol=1e-4)
    truth = d.ground_truth(0)  # "other vehicle": an ignored region of class car
    assert truth["labels"].tolist() == [2, 2, 8] and truth["iscrowd"].tolist() == [0, 1, 0]
    # the 2018 name "person" is pedestrian (0); the lane (no box2d) is skipped
    assert d.target(1).tolist() == [[0, 0, 6, 320, 186]]
    assert d.target(2).shape == (0, 5)  # labels: null
    assert len(BDD100KDetection(bdd_root, "val", keep_empty=False)) == 2


@pytest.mark.parametrize(
    ("label", "error", "message"),
    [
        ({"id": "9", "category": "tram", "box2d": {"x1": 0, "y1": 0, "x2": 5, "y2": 5}},
         DataFormatError, r"frame 'x.jpg': label id '9': category 'tram' is not one of"),
        ({"id": "9", "category": "car", "box2d": {"x1": 0, "y1": 0, "x2": 1290, "y2": 5}},
         DataFormatError, r"frame 'x.jpg': label id '9'.*outside the 1280x720 image"),
        ({"id": "9", "category": "car", "box2d": {"x1": 0, "y1": 0}},
         DataFormatError, r"label id '9': box2d must hold numbers x1, y1, x2, y2"),
        ({"id": "9", "category": "car", "box2d": {"x1": True, "y1": 0, "x2": 5, "y2": 5}},
         DataFormatError, r"label id '9': box2d must hold numbers x1, y1, x2, y2"),
        # a detection class without a box is an error (only lanes / drivable areas lack one)
        ({"id": "9", "category": "car", "poly2d": []},
         DataFormatError, r"frame 'x.jpg': label id '9': category 'car' has no box2d"),
        ({"id": "9", "category": "car", "attributes": ["crowd"],
          "box2d": {"x1": 0, "y1": 0, "x2": 5, "y2": 5}},
         DataFormatError, r"label id '9': attributes must be an object"),
    ],
)  # fmt: skip
def test_bdd100k_bad_labels_name_the_json_frame_and_label(tmp_path, label, error, message):
    frames = [{"name": "x.jpg", "labels": [label]}]
    root = write_bdd(tmp_path, frames=frames, size=(8, 8), splits=("train",))
    with pytest.raises(error, match=message) as info:
        BDD100KDetection(root, "train")
    assert "det_train.json" in str(info.value)


@pytest.mark.parametrize(
    ("labels", "message"),
    [({}, r"frame 'x.jpg': 'labels' must be a list \(or null\); got dict"),
     (0, r"frame 'x.jpg': 'labels' must be a list \(or null\); got int")],
)  # fmt: skip
def test_bdd100k_labels_that_are_not_a_list_are_named(tmp_path, labels, message):
    root = write_bdd(tmp_path, frames=[{"name": "x.jpg", "labels": labels}], size=(8, 8),
                     splits=("train",))  # fmt: skip
    with pytest.raises(DataFormatError, match=message):
        BDD100KDetection(root, "train")


def test_bdd100k_reads_caravan_and_van_as_car_as_its_detection_config_does(tmp_path):
    # BDD100K's configs/det.toml maps caravan and van to car (name_mapping)
    box = {"x1": 0, "y1": 0, "x2": 5, "y2": 5}
    labels = [{"id": str(k), "category": c, "box2d": box} for k, c in enumerate(["caravan", "van"])]
    root = write_bdd(tmp_path, frames=[{"name": "x.jpg", "labels": labels}], size=(8, 8),
                     splits=("train",))  # fmt: skip
    d = BDD100KDetection(root, "train")
    assert d.records[0].classes.tolist() == [2, 2] and not d.records[0].crowd.any()


def test_bdd100k_a_frame_listed_twice_is_named(tmp_path):
    frames = bdd_frames()
    root = write_bdd(tmp_path, frames=[*frames, frames[0]], size=(8, 8), splits=("train",))
    with pytest.raises(
        DataFormatError, match=r"frame 'b1c66a42-6f7d68ca.jpg' \(frame \[3\]\) is listed twice"
    ):
        BDD100KDetection(root, "train")


def test_bdd100k_reads_the_2018_release_label_file_when_det_20_is_absent(tmp_path):
    root = write_bdd(tmp_path / "b", splits=("val",))
    labels = root / "labels"
    (labels / "det_20" / "det_val.json").rename(labels / "bdd100k_labels_images_val.json")
    d = BDD100KDetection(root, "val", image_size=64)
    assert d.label_file == labels / "bdd100k_labels_images_val.json" and len(d) == 3
    assert d.target(1)[:, 0].tolist() == [0]  # the 2018 name "person": pedestrian
    with pytest.raises(DatasetNotFoundError, match=r"bdd100k_labels_images_train.json"):
        BDD100KDetection(root, "train")


def test_bdd100k_missing_files_and_wrong_image_sizes_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"labels/det_20/det_val.json"):
        BDD100KDetection(tmp_path, "val")
    root = write_bdd(tmp_path / "b", frames=bdd_frames()[:2], size=(64, 36), splits=("train",))
    d = BDD100KDetection(root, "train")
    with pytest.raises(DataFormatError, match=r"b1c66a42-6f7d68ca.jpg: image id .* is 64x36"):
        d[0]
    (root / "images" / "100k" / "train" / "b1c81faa-3df17267.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"\(label id '7'\).*b1c81faa-3df17267.jpg"):
        BDD100KDetection(root, "train")


def test_lava_dls_layout_with_the_images_under_images_is_read(tmp_path):
    root = write_coco(tmp_path / "c", splits=("val",))
    (root / "images").mkdir()
    (root / "val2017").rename(root / "images" / "val2017")
    d = COCODetection(root, "val", image_size=32)
    assert d.image_folder == root / "images" / "val2017" and d[0][0].shape == (3, 32, 32)
