"""Small COCO and BDD100K layouts built in a test's folder: real JPEG files written with
Pillow and label files in the exact official schemas (COCO's instances json, BDD100K's
det_20 frame list), for the camera-image detection tests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

#: The categories in the json's order (not sorted by id): classes car 0, person 1,
#: toothbrush 2.
COCO_CATEGORIES = [
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
]
#: image id -> (file name, width, height); odd sizes, one portrait.
COCO_IMAGES = {
    139: ("000000000139.jpg", 61, 37),
    285: ("000000000285.jpg", 40, 80),
    632: ("000000000632.jpg", 33, 47),  # no annotation
    724: ("000000000724.jpg", 50, 50),
}


def coco_annotations() -> list[dict]:
    """The annotations: plain boxes, a crowd region, a box overshooting its image by half a
    pixel (clipped), and image 632 without any."""
    return [
        {"id": 1001, "image_id": 139, "category_id": 3, "bbox": [10, 5, 20, 10],
         "area": 150.0, "iscrowd": 0, "segmentation": [[10, 5, 30, 5, 30, 15]]},
        {"id": 1002, "image_id": 139, "category_id": 90, "bbox": [40.5, 20.25, 12, 8],
         "area": 80.0, "iscrowd": 0, "segmentation": [[40.5, 20.25, 52.5, 28.25, 40.5, 28.25]]},
        {"id": 1003, "image_id": 285, "category_id": 1, "bbox": [0, 0, 40, 80],
         "area": 2900.0, "iscrowd": 0, "segmentation": [[0, 0, 40, 0, 40, 80, 0, 80]]},
        {"id": 1004, "image_id": 285, "category_id": 1, "bbox": [5, 10, 30, 30],
         "area": 700.0, "iscrowd": 1, "segmentation": {"counts": [0, 900], "size": [80, 40]}},
        {"id": 1005, "image_id": 724, "category_id": 1, "bbox": [40, 40, 10.5, 10],
         "area": 100.0, "iscrowd": 0, "segmentation": [[40, 40, 50, 40, 50, 50]]},
    ]  # fmt: skip


def write_coco(root: Path, splits=("train", "val"), annotations=None, images=None) -> Path:
    """The COCO 2017 layout under ``root`` (each split the same images and annotations)."""
    images = COCO_IMAGES if images is None else images
    annotations = coco_annotations() if annotations is None else annotations
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in splits:
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        for k, (name, width, height) in enumerate(images.values()):
            Image.new("RGB", (width, height), (200, 40 * k, 90)).save(folder / name, "JPEG")
        doc = {
            "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
            "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4,
                          "name": "Attribution License"}],
            "images": [{"license": 4, "file_name": name, "height": height, "width": width,
                        "id": image_id, "date_captured": "2013-11-14 17:02:52"}
                       for image_id, (name, width, height) in images.items()],
            "annotations": annotations,
            "categories": COCO_CATEGORIES,
        }  # fmt: skip
        path = root / "annotations" / f"instances_{split}2017.json"
        path.write_text(json.dumps(doc))
    return root


#: BDD100K frames: a name and its labels (det_20 schema).
def bdd_frames() -> list[dict]:
    """Frames with plain boxes, an ignored ``other vehicle``, a 2018-release name
    (``person``), a lane label without ``box2d``, and a frame whose labels are null."""
    return [
        {"name": "b1c66a42-6f7d68ca.jpg", "attributes": {"weather": "overcast",
         "timeofday": "daytime", "scene": "city street"}, "timestamp": 10000,
         "labels": [
             {"id": "0", "attributes": {"occluded": False, "truncated": False,
              "trafficLightColor": "NA"}, "category": "car",
              "box2d": {"x1": 100.0, "y1": 200.0, "x2": 300.0, "y2": 400.0}},
             {"id": "1", "attributes": {"occluded": True, "truncated": False,
              "trafficLightColor": "NA"}, "category": "other vehicle",
              "box2d": {"x1": 600.0, "y1": 300.0, "x2": 700.0, "y2": 360.0}},
             {"id": "2", "attributes": {"occluded": False, "truncated": False,
              "trafficLightColor": "G"}, "category": "traffic light",
              "box2d": {"x1": 1125.9, "y1": 133.2, "x2": 1156.9, "y2": 210.8}},
         ]},
        {"name": "b1c81faa-3df17267.jpg", "attributes": {}, "timestamp": 10000,
         "labels": [
             {"id": "7", "category": "person",
              "box2d": {"x1": 0.0, "y1": 0.0, "x2": 1280.0, "y2": 720.0}},
             {"id": "8", "category": "lane", "poly2d": [{"vertices": [[0, 1], [5, 9]],
              "types": "LL", "closed": False}]},
         ]},
        {"name": "b1d0091f-75824d0d.jpg", "attributes": {}, "timestamp": 10000, "labels": None},
    ]  # fmt: skip


def write_bdd(root: Path, frames=None, size=(1280, 720), splits=("train", "val")) -> Path:
    """The BDD100K 100K layout under ``root`` (each split the same frames)."""
    frames = bdd_frames() if frames is None else frames
    (root / "labels" / "det_20").mkdir(parents=True, exist_ok=True)
    for split in splits:
        folder = root / "images" / "100k" / split
        folder.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            Image.new("RGB", size, (30, 60, 90)).save(folder / frame["name"], "JPEG")
        (root / "labels" / "det_20" / f"det_{split}.json").write_text(json.dumps(frames))
    return root
