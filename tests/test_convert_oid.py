"""OpenImages box CSVs → COCO JSON → a dataset the detector reads against the built-in ``oid`` labels."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import run_cli

CLASSES = "/m/01g317,Person\n/m/0k4j,Car\n/m/09j2d,Clothing\n"
BOXES = """ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside
img1,xclick,/m/01g317,1,0.1,0.5,0.2,0.9,0,0,0,0,0
img1,xclick,/m/0k4j,1,0.5,0.9,0.5,0.8,0,0,1,0,0
img2,xclick,/m/0k4j,1,0.0,0.25,0.0,0.5,0,0,0,0,0
img2,xclick,/m/zzzz,1,0.0,0.25,0.0,0.5,0,0,0,0,0
"""


def test_convert_oid_to_coco(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "img1.jpg")
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "img2.jpg")
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(BOXES)
    out = tmp_path / "oid.json"
    done = run_cli("scaledet", "convert-oid", "--boxes", str(tmp_path / "boxes.csv"), "--classes",
                   str(tmp_path / "classes.csv"), "--images", str(tmp_path / "images"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    coco = json.loads(out.read_text())
    assert [c["mid"] for c in coco["categories"]] == ["/m/01g317", "/m/0k4j", "/m/09j2d"]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [("img1.jpg", 200, 100), ("img2.jpg", 64, 64)]
    first = coco["annotations"][0]
    assert first["bbox"] == [20.0, 20.0, 80.0, 70.0] and first["category_id"] == 1
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1, 0]  # the unknown MID is skipped
    assert [a["isgroupof"] for a in coco["annotations"]] == [0, 1, 0]


def test_convert_oid_keeps_verified_image_labels_for_the_challenge_metric(tmp_path):
    from scaledet.detector.evaluation import OpenImagesEvaluator, read_ground_truth

    (tmp_path / "images").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "img1.jpg")
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "img2.jpg")
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(BOXES)
    (tmp_path / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\nimg1,verification,/m/01g317,1\n"
                                         "img1,verification,/m/09j2d,0\nimg2,verification,/m/01g317,0\n")
    out = tmp_path / "oid.json"
    done = run_cli("scaledet", "convert-oid", "--boxes", str(tmp_path / "boxes.csv"), "--classes",
                   str(tmp_path / "classes.csv"), "--images", str(tmp_path / "images"), "--out", str(out),
                   "--image-labels", str(tmp_path / "labels.csv"))
    assert done.returncode == 0, done.stderr
    coco = json.loads(out.read_text())
    assert [(i["pos_category_ids"], i["neg_category_ids"]) for i in coco["images"]] == [([1], [3]), ([], [1])]
    # scored with the bundled hierarchy: ground truth as detections is perfect
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in coco["annotations"]]
    assert OpenImagesEvaluator().evaluate(read_ground_truth(out), perfect)["AP50"] == 100.0


def test_convert_oid_reports_a_missing_image(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(BOXES)
    done = run_cli("scaledet", "convert-oid", "--boxes", str(tmp_path / "boxes.csv"), "--classes",
                   str(tmp_path / "classes.csv"), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "o.json"))
    assert done.returncode == 2 and "boxes.csv:2: image" in done.stderr and "img1.jpg not found" in done.stderr
    assert not (tmp_path / "o.json").exists()


def test_converted_openimages_maps_onto_the_builtin_oid_labels(tmp_path, builtin_union):
    from scaledet.detector.data import CocoDetectionDataset, DatasetSpec
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    test_convert_oid_to_coco(tmp_path)
    space = UnifiedLabelSpace(builtin_union.out_dir)
    dataset = CocoDetectionDataset(DatasetSpec("oid", str(tmp_path / "oid.json"), str(tmp_path / "images")), space)
    names = {space.global_ids[i] for i in dataset.category_union_indices()}
    assert names == {"oid/Person", "oid/Car", "oid/Clothing"}
    _, target = dataset[0]
    assert [space.global_ids[i - 1] for i in target["labels"].tolist()] == ["oid/Person"]  # the group box is crowd


@pytest.mark.parametrize("labels,expected", [
    ("ImageID,Source,LabelName\nimg1,verification,/m/01g317\n", "missing column Confidence"),
    ("ImageID,Source,LabelName,Confidence\nimg1,verification\n", "labels.csv:2: short row"),
    ("ImageID,Source,LabelName,Confidence\nimg1,verification,/m/01g317,0.5\n", "labels.csv:2: Confidence '0.5'"),
])
def test_convert_oid_image_labels_errors_are_one_line(tmp_path, labels, expected):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "img1.jpg")
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "img2.jpg")
    (tmp_path / "classes.csv").write_text(CLASSES)
    (tmp_path / "boxes.csv").write_text(BOXES)
    (tmp_path / "labels.csv").write_text(labels)
    done = run_cli("scaledet", "convert-oid", "--boxes", str(tmp_path / "boxes.csv"), "--classes",
                   str(tmp_path / "classes.csv"), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "o.json"),
                   "--image-labels", str(tmp_path / "labels.csv"))
    assert done.returncode == 2 and expected in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()
