"""``scaledet-labels unify`` on real-format files: the LVIS API's own 100-image file (also in LVIS v1's
layout, without ``file_name``), a COCO file written field by field whose images overlap it (LVIS annotates
COCO's images), and a YOLO dataset folder. The outputs are read by their consumers: the real LVIS API
(``pip install lvis``) and Ultralytics (``check_det_dataset``, ``YOLODataset``, ``YOLOMultiModalDataset``),
both in the dev extra; detectron2's ``load_lvis_json`` and Detic's ``custom_load_lvis_json`` path rules,
replicated (neither installs from the registries); faster-coco-eval's LVIS mode through ``scaledet eval``."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from conftest import LVIS_FIXTURE, run_cli


def _lvis():
    return json.loads(LVIS_FIXTURE.read_text())


def _bed_box(lvis: dict) -> list[float]:
    bed = next(c["id"] for c in lvis["categories"] if c["name"] == "bed")
    return next(a["bbox"] for a in lvis["annotations"] if a["image_id"] == 66523 and a["category_id"] == bed)


def _coco_file(lvis: dict, with_bed_box: bool) -> dict:
    """COCO's own annotation of two of the LVIS file's images (its sizes, COCO's file names), each with a
    person, plus one image only COCO has, with a dog; ``with_bed_box`` adds the bed box LVIS also gives."""
    size = {i["id"]: {"width": i["width"], "height": i["height"]} for i in lvis["images"]}
    boxes = [(66523, 1, [5.0, 5.0, 40.0, 90.0]), *([(66523, 65, _bed_box(lvis))] if with_bed_box else []),
             (266409, 1, [100.0, 50.0, 80.0, 200.0]), (999999, 18, [10.0, 10.0, 100.0, 80.0])]
    return {"images": [{"id": i, "file_name": f"{i:012d}.jpg", **size[i]} for i in (66523, 266409)]
            + [{"id": 999999, "file_name": "000000999999.jpg", "width": 320, "height": 240}],
            "annotations": [{"id": n, "image_id": image, "category_id": category, "bbox": box,
                             "area": box[2] * box[3], "iscrowd": 0}
                            for n, (image, category, box) in enumerate(boxes, start=1)],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                           {"id": 18, "name": "dog", "supercategory": "animal"},
                           {"id": 65, "name": "bed", "supercategory": "furniture"}]}


@pytest.fixture(scope="module")
def sources(lvis_coco_oid_build, tmp_path_factory):
    """COCO's own naming of two of the LVIS file's images, plus one image of its own:
    000000066523 (LVIS: bed, blanket, headboard, pillow) with a person and the same bed box as LVIS;
    000000266409 (LVIS: ski, ski_pole) with a person; 000000999999 only in COCO, with a dog."""
    root = tmp_path_factory.mktemp("unify")
    lvis = _lvis()
    coco = _coco_file(lvis, with_bed_box=True)
    (root / "coco.json").write_text(json.dumps(coco))
    for folder, names in (("lvis-images", [i["file_name"] for i in lvis["images"]]),
                          ("coco-images", [i["file_name"] for i in coco["images"]])):
        (root / folder).mkdir()
        for name in names:
            (root / folder / name).write_bytes(b"stand-in: unify links images, it never decodes them")
    return root


def _unify(build: Path, root: Path, to: str, *extra: str):
    return run_cli("scaledet-labels", "unify", "--labelspace", str(build), "--annotations", f"lvis={LVIS_FIXTURE}",
                   f"coco={root / 'coco.json'}", "--images", f"lvis={root / 'lvis-images'}",
                   f"coco={root / 'coco-images'}", "--out", str(root / to), *extra)


def _by_label(document: dict) -> dict[str, dict]:
    return {c["labels"][0]: c for c in document["categories"]}


def test_unify_explicit_lvis_file(lvis_coco_oid_build, sources):
    done = _unify(lvis_coco_oid_build, sources, "explicit")  # full lists are the default
    assert done.returncode == 0, done.stderr
    assert "2 annotated by two sources" in done.stdout and "1 duplicates kept once" in done.stdout
    document = json.loads((sources / "explicit" / "unified.json").read_text())
    category = _by_label(document)
    assert len(document["images"]) == 101 and document["scaledet"]["explicit_negatives"] is True
    assert set(category) >= {"coco/person", "lvis/baby", "lvis/bed", "coco/bed"} and "oid/Cat" not in category
    assert category["lvis/bed"]["labels"] == ["lvis/bed"] and "bed" in category["lvis/bed"]["synonyms"]
    # names are words, never global ids; where two would coincide, a word from the taxonomy tells them apart
    assert category["coco/dog"]["name"] == "dog (animal)" and category["lvis/dog"]["name"] == "dog (LVIS)"
    assert category["lvis/baby"]["name"] == "baby" and not any("/" in c["name"] for c in document["categories"])
    name_of = {c["id"]: c["labels"][0] for c in document["categories"]}
    image = {Path(i["file_name"]).stem.split("_")[-1]: i for i in document["images"]}
    anns = defaultdict(list)
    for a in document["annotations"]:
        anns[a["image_id"]].append(name_of[a["category_id"]])
    shared = image["000000066523"]
    assert shared["sources"] == ["lvis", "coco"]
    # the bed box both give is kept once (LVIS's, read first); COCO's person box is added
    assert sorted(anns[shared["id"]]).count("lvis/bed") + sorted(anns[shared["id"]]).count("coco/bed") == 1
    assert "coco/person" in anns[shared["id"]]
    negatives = {name_of[c] for c in shared["neg_category_ids"]}
    partial = {name_of[c] for c in shared["not_exhaustive_category_ids"]}
    assert "coco/dog" in negatives and "lvis/dog" in negatives   # COCO is exhaustive: no dog, in either space
    assert "lvis/baby" in partial and "coco/bed" in partial     # present (lvis/baby ≡ coco/person), no box of its own
    assert "lvis/acorn" not in negatives | partial                # unknown: in neither list
    only_lvis = image["000000087470"]
    negatives = {name_of[c] for c in only_lvis["neg_category_ids"]}
    assert "lvis/lizard" in negatives and "coco/dog" not in negatives  # LVIS's absence says nothing of dogs
    assert "lvis/cow" in {name_of[c] for c in only_lvis["not_exhaustive_category_ids"]}


def test_unified_file_loads_as_the_lvis_api_and_detectron2_read_it(lvis_coco_oid_build, sources):
    """The LVIS API indexes ``images`` / ``annotations`` / ``categories`` by id and LVISEval groups
    categories by ``frequency`` in r/c/f; detectron2's ``load_lvis_json`` takes the path from ``coco_url``'s
    last two parts under ``image_root + folder``, keeps ``neg_category_ids`` / ``not_exhaustive_category_ids``,
    maps ``category_id - 1`` to a contiguous index and asserts unique ids and non-empty polygons."""
    path = sources / "explicit" / "unified.json"
    if not path.exists():
        assert _unify(lvis_coco_oid_build, sources, "explicit").returncode == 0
    dataset = json.loads(path.read_text())
    assert type(dataset) == dict  # noqa: E721 - the LVIS API's own check
    imgs = {img["id"]: img for img in dataset["images"]}
    anns = {ann["id"]: ann for ann in dataset["annotations"]}
    cats = {cat["id"]: cat for cat in dataset["categories"]}
    img_ann_map = defaultdict(list)
    for ann in dataset["annotations"]:
        img_ann_map[ann["image_id"]].append(ann)
        assert ann["category_id"] in cats and ann["image_id"] in imgs and ann["area"] > 0
    assert len(anns) == len(dataset["annotations"])
    assert all(cat["frequency"] in ("r", "c", "f") for cat in cats.values())
    assert sorted(cats) == list(range(1, len(cats) + 1))
    image_root = str(sources / "explicit" / "images") + "/"
    for img_id in sorted(imgs):
        img = imgs[img_id]
        split_folder, file_name = img["coco_url"].split("/")[-2:]
        resolved = os.path.join(image_root + split_folder, file_name)
        assert os.path.isfile(resolved), resolved
        assert Path(resolved).resolve().parent.name in ("lvis-images", "coco-images")  # a link, not a copy
        assert Path(sources / "explicit" / img["file_name"]).is_file()
        for key in ("not_exhaustive_category_ids", "neg_category_ids"):
            assert all(c in cats for c in img.get(key, []))
        for anno in img_ann_map[img_id]:
            assert anno["image_id"] == img_id and 0 <= anno["category_id"] - 1 < len(cats)
            segm = anno["segmentation"]
            assert len(segm) > 0 and all(len(poly) % 2 == 0 and len(poly) >= 6 for poly in segm)


def test_unified_file_scores_with_the_lvis_evaluator(lvis_coco_oid_build, sources):
    path = sources / "explicit" / "unified.json"
    if not path.exists():
        assert _unify(lvis_coco_oid_build, sources, "explicit").returncode == 0
    document = json.loads(path.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in document["annotations"]]
    (sources / "perfect.json").write_text(json.dumps(perfect))
    done = run_cli("scaledet", "eval", "--results", str(sources / "perfect.json"), "--annotations", str(path),
                   "--evaluator", "lvis", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["AP50"] == pytest.approx(100.0)


def test_unify_compact_and_concepts(lvis_coco_oid_build, sources):
    done = _unify(lvis_coco_oid_build, sources, "concepts", "--space", "concepts", "--compact")
    assert done.returncode == 0, done.stderr
    assert "note: --compact: the LVIS API, faster-coco-eval, detectron2" in done.stderr
    document = json.loads((sources / "concepts" / "unified.json").read_text())
    assert document["scaledet"]["explicit_negatives"] is False and document["scaledet"]["space"] == "concepts"
    assert document["scaledet"]["sources"]["lvis"]["protocol"] == "federated"
    assert document["scaledet"]["sources"]["coco"]["protocol"] == "exhaustive"
    person = next(c for c in document["categories"] if "coco/person" in c["labels"])
    assert "lvis/baby" in person["labels"]
    only_lvis = next(i for i in document["images"] if i["file_name"].endswith("000000087470.jpg"))
    lizard = next(c["id"] for c in document["categories"] if "lvis/lizard" in c["labels"])
    assert lizard in only_lvis["neg_category_ids"]  # the source's own list, kept in compact form
    coco_only = next(i for i in document["images"] if i["file_name"].endswith("000000999999.jpg"))
    assert coco_only["neg_category_ids"] == []      # compact: the exhaustive negatives are not spelled out


def test_unify_to_yolo_and_from_yolo(lvis_coco_oid_build, sources):
    done = _unify(lvis_coco_oid_build, sources, "yolo", "--format", "yolo")
    assert done.returncode == 0, done.stderr
    assert "only partly annotated" in done.stdout
    out = sources / "yolo"
    assert "names:" in (out / "data.yaml").read_text()
    partial = (out / "partial_classes.txt").read_text().split("\n")
    assert "bed (LVIS)" in partial and "person" in partial  # LVIS is federated; COCO does not cover all
    assert "names:" in (out / "data.yaml").read_text() and "/" not in "".join(partial)
    label = out / "labels" / "coco" / "000000999999.txt"
    cls, cx, cy, w, h = label.read_text().split()
    assert (float(cx), float(cy), float(w), float(h)) == pytest.approx((60 / 320, 50 / 240, 100 / 320, 80 / 240), abs=1e-6)
    assert (out / "images" / "coco" / "000000999999.jpg").is_symlink()
    # a YOLO dataset folder as a source: Ultralytics' layout, classes by name
    yolo = sources / "yolo-source"
    (yolo / "images" / "train").mkdir(parents=True)
    (yolo / "labels" / "train").mkdir(parents=True)
    (yolo / "data.yaml").write_text("names:\n  0: person\n  1: dog\n")
    Image.new("RGB", (200, 100)).save(yolo / "images" / "train" / "a.jpg")
    (yolo / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations", f"coco={yolo}",
                   "--out", str(sources / "from-yolo"))
    assert done.returncode == 0, done.stderr
    document = json.loads((sources / "from-yolo" / "unified.json").read_text())
    (annotation,) = document["annotations"]
    assert annotation["bbox"] == [50.0, 25.0, 100.0, 50.0]
    assert document["categories"][annotation["category_id"] - 1]["labels"] == ["coco/dog"]
    (yolo / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.5 0.5\n")
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations", f"coco={yolo}",
                   "--out", str(sources / "from-yolo"))
    assert done.returncode == 2 and "a.txt:1: class 7 out of range" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # a segmentation label (Ultralytics' polygon lines): its box is the polygon's extent, as Ultralytics reads it
    (yolo / "labels" / "train" / "a.txt").write_text("1 0.25 0.25 0.75 0.25 0.75 0.75 0.5 0.9 0.25 0.75\n")
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations", f"coco={yolo}",
                   "--out", str(sources / "from-yolo"))
    assert done.returncode == 0, done.stderr
    (annotation,) = json.loads((sources / "from-yolo" / "unified.json").read_text())["annotations"]
    assert annotation["bbox"] == pytest.approx([50.0, 25.0, 100.0, 65.0])
    (yolo / "labels" / "train" / "a.txt").write_bytes(b"1 0.5 0.5 0.5 0.5 \xff\xfe\n")
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations", f"coco={yolo}",
                   "--out", str(sources / "from-yolo"))
    assert done.returncode == 2 and "a.txt: not UTF-8 text" in done.stderr and "Traceback" not in done.stderr


def test_unify_bad_inputs_are_one_line(lvis_coco_oid_build, tmp_path):
    bad_class = {"images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}], "annotations": [],
                 "categories": [{"id": 1, "name": "spaceship"}]}
    absent_id = {"images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}],
                 "categories": [{"id": 1, "name": "person"}]}
    for name, document, expected in (("class", bad_class, "'spaceship' is not a label of dataset 'coco'"),
                                     ("id", absent_id, "category_id 9, which is not in 'categories'")):
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
        done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                       f"coco={tmp_path / f'{name}.json'}", "--out", str(tmp_path / f"out-{name}"))
        assert done.returncode == 2 and expected in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / f"out-{name}" / "unified.json").exists()
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"o365={tmp_path / 'class.json'}", "--out", str(tmp_path / "out-key"))
    assert done.returncode == 2 and "'o365' is not a dataset of" in done.stderr


def test_unify_on_a_full_disk_names_the_file_and_leaves_nothing(lvis_coco_oid_build, sources, tmp_path):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root in a container that allows mounts)")
    try:
        done = _unify(lvis_coco_oid_build, sources, str(disk / "unified"))
        assert done.returncode == 2 and "unified.json: cannot be written (no space left" in done.stderr, done.stderr
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def test_a_failed_unify_into_an_earlier_output_leaves_its_files_as_they_were(lvis_coco_oid_build, sources, tmp_path):
    """Every file of a run is staged and renamed into place together: a run into an earlier output's folder
    that fails after unified.json is made (here coverage.csv cannot be written) leaves the earlier
    unified.json, byte for byte, and no temporaries."""
    done = _unify(lvis_coco_oid_build, sources, str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    before = (tmp_path / "out" / "unified.json").read_bytes()
    (tmp_path / "out" / "coverage.csv").unlink()
    (tmp_path / "out" / "coverage.csv").mkdir()
    done = _unify(lvis_coco_oid_build, sources, str(tmp_path / "out"), "--space", "concepts")
    assert done.returncode != 0 and "coverage.csv: is a directory" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "out" / "unified.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".unified")) == []


def test_train_and_eval_on_a_compact_unified_file(shapes_world, tmp_path):
    """A unified file is a dataset of its own (``labelspace_key: unified``): its categories map by their
    ``labels``, each image's states come from its sources' coverage, so a compact file still gives
    shapesb's exhaustive negatives; training (federated) and evaluation run on it."""
    from scaledet.detector.config import load_config
    from scaledet.detector.engine import Trainer
    from scaledet.labelspace.label_states import NEGATIVE, POSITIVE, UNKNOWN

    from conftest import write_train_config

    unified = tmp_path / "unified"
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(shapes_world / "labelspace"), "--annotations",
                   *(f"{n}={shapes_world / n / 'train' / 'annotations.json'}" for n in ("shapesa", "shapesb")),
                   "--images", *(f"{n}={shapes_world / n / 'train' / 'images'}" for n in ("shapesa", "shapesb")),
                   "--out", str(unified))
    assert done.returncode == 0, done.stderr
    entry = {"name": "all", "annotations": str(unified / "unified.json"), "images": str(unified),
             "labelspace_key": "unified"}
    config = load_config(write_train_config(shapes_world, tmp_path / "run", datasets=[entry],
                                            eval_datasets=[{**entry, "evaluator": "lvis"}],
                                            schedule={"iterations": 2, "batch_size": 2, "lr": 0.01,
                                                      "warmup_iterations": 1, "checkpoint_every": 2, "log_every": 1}),
                         ["model.hard_loss_scope=federated"])
    trainer = Trainer(config, show_progress=False)
    dataset = trainer.datasets[0]
    ids = trainer.labelspace.global_ids
    box, circle = ids.index("shapesb/box"), ids.index("shapesa/circle")
    sources = dataset.index.meta["sources"]
    for image in dataset.images:
        image = int(image)
        states, own = dataset.label_states(image), dataset.own_labels(image)
        if int(dataset.index.source_bits[image]) == 1 << sources.index("shapesb") and states[box] != POSITIVE:
            assert states[box] == NEGATIVE and states[circle] == UNKNOWN and bool(own[box]) and not bool(own[circle])
            break
    else:
        pytest.fail("no shapesb image without a box")
    trainer.train()
    done = run_cli("scaledet", "eval", "--config", str(tmp_path / "run.yaml"), "model.hard_loss_scope=federated", "-q")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "eval" / "model_final" / "metrics.json").read_text())
    assert record["protocols"] == {"all": "lvis-federated"} and "AP" in record["metrics"]["all"]


@pytest.fixture(scope="module")
def lvis_v1_world(tmp_path_factory):
    """The LVIS API's 100-image file in LVIS v1's layout (no ``file_name``: ``coco_url`` names COCO's split
    folder), a COCO-format file written from two of its images plus one of COCO's own, and a COCO image
    root in COCO's layout (``ROOT/val2017/NAME``) holding real, small JPEGs of the sizes the files give."""
    root = tmp_path_factory.mktemp("lvis-v1")
    lvis = _lvis()
    for image in lvis["images"]:
        del image["file_name"]
    (root / "lvis_v1_val.json").write_text(json.dumps(lvis))
    coco = _coco_file(lvis, with_bed_box=False)
    (root / "coco_val.json").write_text(json.dumps(coco))
    folder = root / "coco" / "val2017"
    folder.mkdir(parents=True)
    for image in [*lvis["images"], coco["images"][-1]]:
        name = image.get("file_name") or image["coco_url"].split("/")[-1]
        Image.new("RGB", (image["width"], image["height"])).save(folder / name, quality=50)
    return root


def _unify_v1(build: Path, world: Path, to: str, *extra: str):
    return run_cli("scaledet-labels", "unify", "--labelspace", str(build),
                   "--annotations", f"lvis={world / 'lvis_v1_val.json'}", f"coco={world / 'coco_val.json'}",
                   "--images", f"lvis={world / 'coco'}", f"coco={world / 'coco' / 'val2017'}", "--out", str(world / to), *extra)


def _lvis_api():
    import numpy as np

    np.float = float  # the LVIS API (0.5.3) still uses NumPy's removed alias
    lvis = pytest.importorskip("lvis", reason="the LVIS API is in the dev extra")
    return lvis


def test_lvis_v1_unified_file_reads_right_in_the_lvis_api_and_the_loaders(lvis_coco_oid_build, lvis_v1_world):
    """The default file of LVIS v1-layout ground truth plus a COCO file: every image path resolves by the
    real loaders' rules; LVIS's categories keep their r / c / f, image counts, synsets and synonym order; a
    false positive of each COCO category that a COCO image lacks lowers the LVIS API's AP below 100, and
    ``scaledet eval`` gives the LVIS API's number."""
    lvis_api = _lvis_api()
    done = _unify_v1(lvis_coco_oid_build, lvis_v1_world, "unified")
    assert done.returncode == 0, done.stderr
    out = lvis_v1_world / "unified"
    path = out / "unified.json"
    document = json.loads(path.read_text())
    # paths: detectron2 load_lvis_json (image_root + coco_url's split folder), Detic custom_load_lvis_json
    # (image_root joined with file_name, a 'COCO…' name cut to its last 16 characters), Ultralytics (file_name)
    for image in document["images"]:
        split_folder, name = image["coco_url"].split("/")[-2:]
        assert os.path.isfile(os.path.join(str(out / "images") + "/" + split_folder, name))
        detic_name = image["file_name"][-16:] if image["file_name"].startswith("COCO") else image["file_name"]
        assert os.path.isfile(os.path.join(str(out), detic_name))
        assert Path(out / image["file_name"]).resolve().parent == lvis_v1_world / "coco" / "val2017"
    # source facts kept
    source = {f"lvis/{c['name']}": c for c in _lvis()["categories"]}
    kept = [c for c in document["categories"] if c["labels"][0] in source]
    assert len(kept) == 1230
    for category in kept:
        original = source[category["labels"][0]]
        assert (category["frequency"], category["image_count"], category["synset"], category["synonyms"]) == \
            (original["frequency"], original["image_count"], original["synset"], original["synonyms"])
    coco_dog = next(c for c in document["categories"] if c["labels"] == ["coco/dog"])
    assert (coco_dog["image_count"], coco_dog["frequency"]) == (1, "r") and "synset" not in coco_dog  # computed
    # the LVIS API's own index and evaluation
    gt = lvis_api.LVIS(str(path))
    assert len(gt.get_img_ids()) == 101 and len(gt.get_cat_ids()) == len(document["categories"])
    coco_categories = [c["id"] for c in document["categories"] if c["labels"][0].startswith("coco/")]
    boxed = defaultdict(set)
    for annotation in document["annotations"]:
        boxed[annotation["image_id"]].add(annotation["category_id"])
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
               for a in document["annotations"]]
    results += [{"image_id": i["id"], "category_id": c, "bbox": [1.0, 1.0, 30.0, 30.0], "score": 0.9}
                for i in document["images"] if "coco" in i["sources"] for c in coco_categories if c not in boxed[i["id"]]]
    (lvis_v1_world / "false_positives.json").write_text(json.dumps(results))
    evaluation = lvis_api.LVISEval(gt, lvis_api.LVISResults(gt, str(lvis_v1_world / "false_positives.json")), "bbox")
    evaluation.run()
    assert evaluation.results["AP"] < 0.999
    done = run_cli("scaledet", "eval", "--results", str(lvis_v1_world / "false_positives.json"), "--annotations",
                   str(path), "--evaluator", "lvis", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["AP"] == pytest.approx(100 * evaluation.results["AP"], abs=1e-3)
    # a compact file: the LVIS API loses COCO's negatives (AP 100); scaledet completes them from its sources
    done = _unify_v1(lvis_coco_oid_build, lvis_v1_world, "compact", "--compact")
    assert done.returncode == 0 and "note: --compact" in done.stderr, done.stderr
    gt = lvis_api.LVIS(str(lvis_v1_world / "compact" / "unified.json"))
    compact = lvis_api.LVISEval(gt, lvis_api.LVISResults(gt, str(lvis_v1_world / "false_positives.json")), "bbox")
    compact.run()
    assert compact.results["AP"] == pytest.approx(1.0)
    done = run_cli("scaledet", "eval", "--results", str(lvis_v1_world / "false_positives.json"), "--annotations",
                   str(lvis_v1_world / "compact" / "unified.json"), "--evaluator", "lvis", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["AP"] == pytest.approx(100 * evaluation.results["AP"], abs=1e-3)


ULTRALYTICS_READ = """
import json, sys
from ultralytics.data.dataset import YOLODataset, YOLOMultiModalDataset
from ultralytics.data.utils import check_det_dataset
data = check_det_dataset(sys.argv[1])
dataset = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False, imgsz=320)
texts = YOLOMultiModalDataset(img_path=data["train"], data=data, task="detect", augment=False,
                              imgsz=320).update_labels_info(dict(dataset.labels[0]))["texts"]
print(json.dumps({"nc": data["nc"], "names": [data["names"][i] for i in range(data["nc"])],
                  "images": len(dataset.labels), "boxes": sum(len(l["cls"]) for l in dataset.labels), "texts": texts}))
"""


def test_lvis_v1_yolo_dataset_reads_in_ultralytics(lvis_coco_oid_build, lvis_v1_world):
    """``--format yolo`` from LVIS v1-layout files, read by Ultralytics' own ``check_det_dataset``,
    ``YOLODataset`` and, for YOLO-World training, ``YOLOMultiModalDataset``, whose class texts are the
    names split at '/': each must be one plain name. Ultralytics runs in its own process: importing it
    patches ``PIL.Image.open`` for the whole process."""
    import subprocess
    import sys

    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:  # not imported here: it patches PIL.Image.open
        pytest.skip("Ultralytics is in the dev extra")
    done = _unify_v1(lvis_coco_oid_build, lvis_v1_world, "yolo", "--format", "yolo")
    assert done.returncode == 0, done.stderr
    read = subprocess.run([sys.executable, "-c", ULTRALYTICS_READ, str(lvis_v1_world / "yolo" / "data.yaml")],
                          capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert read.returncode == 0, read.stderr[-2000:]
    found = json.loads(read.stdout.strip().splitlines()[-1])
    assert found["nc"] == 1230 + 80 and found["names"][0] == "person"
    assert found["images"] == 101 and found["boxes"] == 977 + 3  # every box of both files
    unified = lvis_v1_world / "unified" / "unified.json"
    if unified.exists():
        assert [c["name"] for c in json.loads(unified.read_text())["categories"]] == found["names"]
    texts = found["texts"]
    assert all(len(t) == 1 and "/" not in t[0] for t in texts) and texts[0] == ["person"]
    assert ["dog (animal)"] in texts and ["dog (LVIS)"] in texts


def test_unify_paths_are_checked_and_a_failed_run_leaves_nothing(lvis_coco_oid_build, lvis_v1_world, tmp_path):
    """An image root of another layout is one line naming the image, and a failed run leaves no folder;
    names that leave the image root and images that already lie in the output folder are refused."""
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build),
                   "--annotations", f"lvis={lvis_v1_world / 'lvis_v1_val.json'}",
                   "--images", f"lvis={lvis_v1_world}", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "not found (looked for" in done.stderr and "val2017/000000" in done.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build),
                   "--annotations", f"lvis={lvis_v1_world / 'lvis_v1_val.json'}",
                   "--images", f"lvis={lvis_v1_world}", "--out", str(tmp_path / "empty"))
    assert done.returncode == 2 and list((tmp_path / "empty").iterdir()) == []
    escape = {"images": [{"id": 1, "file_name": "../../../../etc/hostname", "width": 10, "height": 10}],
              "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "escape.json").write_text(json.dumps(escape))
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"coco={tmp_path / 'escape.json'}", "--images", f"coco={lvis_v1_world / 'coco'}", "--out",
                   str(tmp_path / "escape"))
    assert done.returncode == 2 and "is not a path inside the image folder" in done.stderr
    assert not (tmp_path / "escape").exists()
    # images copied into OUT/images/coco (no longer links) and unified again from there: refused, kept
    out = tmp_path / "again"
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"coco={lvis_v1_world / 'coco_val.json'}", "--images", f"coco={lvis_v1_world / 'coco' / 'val2017'}",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    for link in (out / "images" / "coco").iterdir():
        data = link.read_bytes()
        link.unlink()
        link.write_bytes(data)
    before = {p.name: p.read_bytes() for p in (out / "images" / "coco").iterdir()}
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"coco={lvis_v1_world / 'coco_val.json'}", "--images", f"coco={out / 'images' / 'coco'}",
                   "--out", str(out))
    assert done.returncode == 2 and "already lies in the output folder" in done.stderr
    assert {p.name: p.read_bytes() for p in (out / "images" / "coco").iterdir()} == before
    assert not any(p.is_symlink() for p in (out / "images" / "coco").iterdir())


def test_names_of_the_four_dataset_union_read_as_text_and_differ(builtin_union):
    """The rule of ``category_names.py`` on the 2,249 labels of LVIS + COCO + Objects365 + OpenImages (373
    names shared by two or more labels): every name distinct, none a global id or holding '/', and the
    qualifier each shared name gets comes from the label's own taxonomy where it tells the label apart."""
    from scaledet.labelspace.category_names import label_qualifiers, unique_names
    from scaledet.labelspace.outputs import LabelSpaceOutput

    output = LabelSpaceOutput.load(builtin_union.out_dir, with_embeddings=False)
    table = output.labels
    names = unique_names(table.column("name").to_pylist(), label_qualifiers(output), table.column("dataset").to_pylist(),
                         [str(x) for x in table.column("local_id").to_pylist()])
    assert len(names) == 2249 and len({n.casefold() for n in names}) == 2249
    assert not any("/" in n for n in names)
    name = dict(zip(output.global_ids, names))
    assert name["oid/Mouse"] == "Mouse (Mammal)" and name["coco/mouse"] == "mouse (electronic)"  # hierarchy, supercategory
    assert name["o365/Mouse"] == "Mouse (Objects365)"      # no taxonomy word: who annotates it
    assert name["lvis/aerosol_can"] == "aerosol can" and name["o365/Moniter/TV"] == "Moniter or TV"
    assert name["coco/bus"] == "bus (vehicle, COCO)" and name["lvis/bus_(vehicle)"] == "bus (vehicle, LVIS)"


@pytest.mark.parametrize("change, expected", [
    ({"bbox": [10.0, 10.0, 0.0, 5.0]}, "of zero or negative size"),
    ({"bbox": [10.0, 10.0, -4.0, 5.0]}, "of zero or negative size"),
    ({"bbox": [300.0, 10.0, 50.0, 5.0]}, "outside its 320×240 image"),
    ({"bbox": [1e300, 10.0, 5.0, 5.0]}, "outside its 320×240 image"),  # would be Infinity once written
    ({"iscrowd": 2}, "has iscrowd 2; expected 0 or 1"),
])
def test_unify_refuses_what_training_refuses(lvis_coco_oid_build, tmp_path, change, expected):
    """The boxes and flags that training's annotation index refuses are refused by unify too, by the same
    rules (``labelspace/box_checks.py``), in one line, with no output written."""
    document = {"images": [{"id": 1, "file_name": "a.jpg", "width": 320, "height": 240}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0],
                                 "area": 400.0, "iscrowd": 0, **change}],
                "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "coco.json").write_text(json.dumps(document))
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"coco={tmp_path / 'coco.json'}", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_unify_reports_the_first_bad_box_in_file_order_and_accepts_the_tolerance_edge(lvis_coco_oid_build,
                                                                                      tmp_path):
    """The box rules run on whole columns, and suspects are checked again one by one: a box exactly at the
    1 px tolerance (x + w = width + 1, float32 would round near it) is accepted; with a box outside its image
    at annotations[4] and an unknown image at annotations[2], the error names annotations[2], as a check of
    each record in turn does; an integer far beyond the image is the same one line."""
    def unify(annotations: list[dict], to: str):
        document = {"images": [{"id": 1, "file_name": "a.jpg", "width": 320, "height": 240}],
                    "annotations": [{"id": n, "image_id": 1, "category_id": 1, "area": 1.0, "iscrowd": 0, **a}
                                    for n, a in enumerate(annotations, start=1)],
                    "categories": [{"id": 1, "name": "person"}]}
        (tmp_path / f"{to}.json").write_text(json.dumps(document))
        return run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                       f"coco={tmp_path / f'{to}.json'}", "--out", str(tmp_path / to))

    good = [{"bbox": [10.0, 10.0, 20.0, 20.0]}] * 2
    edge = unify(good + [{"bbox": [300.1, 10.0, 20.9, 20.0]}, {"bbox": [-1, 0, 5, 5]}], "edge")
    assert edge.returncode == 0, edge.stderr
    boxes = [a["bbox"] for a in json.loads((tmp_path / "edge" / "unified.json").read_text())["annotations"]]
    assert boxes[2] == [300.1, 10.0, 20.9, 20.0] and boxes[3] == [-1.0, 0.0, 5.0, 5.0]
    done = unify(good + [{"bbox": [10.0, 10.0, 20.0, 20.0], "image_id": 7}, good[0],
                         {"bbox": [300.2, 10.0, 21.0, 20.0]}], "order")
    assert done.returncode == 2 and "annotations[2] refers to image id 7" in done.stderr, done.stderr
    done = unify(good + [{"bbox": [300.2, 10.0, 21.0, 20.0]}, {"bbox": [10, 10, 0, 5]}], "outside")
    assert done.returncode == 2 and "annotations[2] (image 1) has bbox [300.2, 10.0, 21.0, 20.0], outside" in done.stderr
    done = unify(good + [{"bbox": [10, 10, 10**18, 5]}], "huge")
    assert done.returncode == 2 and "annotations[2] (image 1) has bbox [10, 10, 1000000000000000000, 5], outside " \
        "its 320×240 image" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unify_counts_each_concepts_states_per_source_in_coverage_csv(lvis_coco_oid_build, sources):
    """coverage.csv from the label states: COCO (exhaustive) knows in each of its 3 images whether a dog is
    there; LVIS (federated) leaves the dog unknown except where its lists speak; box counts are the sources'."""
    from scaledet.labelspace.coverage import mostly_unknown, read_coverage

    path = sources / "explicit" / "coverage.csv"
    if not path.exists():
        assert _unify(lvis_coco_oid_build, sources, "explicit").returncode == 0
    rows = read_coverage(path)
    for row in rows:
        assert row.positive + row.partial + row.negative + row.unknown == row.images
    dog = {r.dataset: r for r in rows if r.concept == "coco/dog" or r.name == "dog"}
    assert (dog["coco"].images, dog["coco"].positive, dog["coco"].negative, dog["coco"].unknown) == (3, 1, 2, 0)
    assert dog["coco"].boxes == 1 and dog["lvis"].images == 100 and dog["lvis"].unknown > 50
    lvis = _lvis()
    assert sum(r.boxes for r in rows if r.dataset == "lvis") == len(lvis["annotations"])
    assert sum(r.boxes for r in rows if r.dataset == "coco") == 4
    flagged = mostly_unknown(rows)
    assert any(r.dataset == "lvis" and r.name == dog["lvis"].name for r in flagged)
    assert dog["coco"] not in flagged  # COCO says where its own concepts are, in every image


def test_report_shows_coverage_as_a_heat_map_and_a_sortable_table(lvis_coco_oid_build, sources):
    path = sources / "explicit" / "coverage.csv"
    if not path.exists():
        assert _unify(lvis_coco_oid_build, sources, "explicit").returncode == 0
    done = run_cli("scaledet-labels", "report", "--labelspace", str(lvis_coco_oid_build), "--coverage", str(path),
                   "--out", str(sources / "report"))
    assert done.returncode == 0, done.stderr
    page = (sources / "report" / "report.html").read_text()
    assert "Coverage: which dataset says what, where" in page and "<table class=sortable>" in page
    assert (sources / "report" / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    unknown = page.split("Unknown in most of a dataset")[1].split("</table>")[0]
    # LVIS's concepts that COCO has no label of: unknown in all 3 COCO images, boxed in LVIS's
    assert "<td>coco</td><td>100 % of 3</td>" in unknown
    (sources / "bad.csv").write_text("a,b\n1,2\n")
    done = run_cli("scaledet-labels", "report", "--labelspace", str(lvis_coco_oid_build), "--coverage",
                   str(sources / "bad.csv"), "--out", str(sources / "report2"))
    assert done.returncode != 0 and "not a coverage.csv" in done.stderr and "Traceback" not in done.stderr


def test_box_checks_in_blocks_find_what_one_pass_finds(monkeypatch):
    """The column checks run a block of boxes at a time (bounded temporaries at Objects365 scale); with
    blocks of 7 boxes they find the same suspects and image positions as with one block for all."""
    import numpy as np

    from scaledet.labelspace import unify_sources

    rng = np.random.default_rng(0)
    image_ids = rng.permutation(np.arange(1, 41) * 3)  # 40 images, ids in file order
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    widths, heights = rng.integers(50, 200, 40).astype(np.int32), rng.integers(50, 200, 40).astype(np.int32)
    raw_ids = image_ids[rng.integers(0, 40, 100)]
    xywh = np.column_stack([rng.uniform(0, 30, 100), rng.uniform(0, 30, 100), rng.uniform(1, 40, 100),
                            rng.uniform(1, 40, 100)]).astype(np.float32)
    xywh[[5, 50]] = [[0, 0, 500, 10], [np.inf, 0, 1, 1]]  # outside every image; not finite
    raw_ids[[13, 99]] = [2, 10_000]  # images that do not exist
    known = np.ones(100, dtype=bool)
    known[[13, 99]] = False
    whole = unify_sources._check_columns(raw_ids, xywh, sorted_ids, order, widths, heights)
    monkeypatch.setattr(unify_sources, "_CHECK_BLOCK", 7)
    blocked = unify_sources._check_columns(raw_ids, xywh, sorted_ids, order, widths, heights)
    assert {5, 13, 50, 99} <= set(whole[0].tolist())
    assert whole[0].tolist() == blocked[0].tolist()
    assert whole[1][known].tolist() == blocked[1][known].tolist()
    assert (image_ids[whole[1][known]] == raw_ids[known]).all()


def _random_lists(rng, images: int, labels: int, most: int):
    """One random list of union indices per image, in CSR form (offsets, values), and as a list of arrays."""
    import numpy as np

    per_image = [rng.choice(labels, size=rng.integers(0, most + 1), replace=False) for _ in range(images)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in per_image])]).astype(np.int64)
    values = np.concatenate(per_image).astype(np.int64) if per_image else np.zeros(0, np.int64)
    return (offsets, values), per_image


def test_block_states_lists_and_coverage_equal_the_per_image_rules(lvis_coco_oid_build):
    """unify computes states, LVIS lists and coverage for thousands of images at once; on random images of
    every protocol (the build's real hierarchy and merge) each row is what the image alone gives (states,
    categories' states and lists), and coverage counts each concept's best member state per image."""
    import numpy as np

    from scaledet.labelspace.coverage import CoverageCounter, concept_names
    from scaledet.labelspace.label_states import PROTOCOLS, STATE_RANK, relations_for_build
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.unify import category_states, output_space, state_lists
    from scaledet.labelspace.unify_blocks import (ImageBlock, block_category_states, block_state_lists,
                                                  boxed_categories)

    output = LabelSpaceOutput.load(lvis_coco_oid_build, with_embeddings=False)
    relations = relations_for_build(output)
    labels = len(relations.global_ids)
    rng = np.random.default_rng(7)
    names = [str(n) for n in output.labels.column("name").to_pylist()]
    space = output_space(output, relations, relations.datasets, "concepts", names)
    for dataset in relations.datasets:
        own = np.flatnonzero(relations.dataset_of == relations.datasets.index(dataset))
        for protocol in PROTOCOLS:
            coverage = relations.coverage(dataset, protocol)
            boxes, boxed = _random_lists(rng, 40, labels, 6)
            boxes = (boxes[0], own[boxes[1] % len(own)])  # a source boxes its own labels
            boxed = [own[b % len(own)] for b in boxed]
            negatives, negative_lists = _random_lists(rng, 40, labels, 30)
            partial, partial_lists = _random_lists(rng, 40, labels, 4)
            present, present_lists = _random_lists(rng, 40, labels, 4)
            block = coverage.block_states(boxes, negatives, partial, present)
            rows = np.stack([coverage.states(boxed[i], negative_lists[i], partial_lists[i], present_lists[i])
                             for i in range(40)])
            assert (block == rows).all(), (dataset, protocol)
            counted = CoverageCounter(relations, concept_names(relations, names))
            counted.start(dataset)
            counted.add_block(dataset, block)
            expected = np.zeros((1, int(relations.concept.max()) + 1, 4), dtype=np.int64)
            for row in rows:  # a concept's state in an image: its members' best
                for concept in range(expected.shape[1]):
                    expected[0, concept, STATE_RANK[row[relations.concept == concept]].max()] += 1
            assert (counted.table() == expected).all()
            categories = space.category_of[boxes[1]]
            image_block = ImageBlock([[dataset]] * 40, [""] * 40, [None] * 40, np.zeros(40), np.zeros(40), boxes[0],
                                     np.zeros((len(categories), 4), np.float32), boxes[1], categories,
                                     np.zeros(len(categories), np.uint8), {}, block)
            category_block = block_category_states(block, space.category_of, len(space.names))
            negative_text, partial_text = block_state_lists(category_block,
                                                            boxed_categories(image_block, len(space.names)))
            for i in range(40):
                expected = category_states(rows[i], space)
                assert (category_block[i] == expected).all()
                lists = state_lists(expected, np.unique(space.category_of[boxed[i]]))
                assert (json.loads(f"[{negative_text[i]}]"), json.loads(f"[{partial_text[i]}]")) == lists


def test_box_records_written_from_columns_read_as_the_per_box_text():
    """The box records are formatted a block at a time from NumPy columns; parsed, they hold exactly the
    values the per-box f-string held (bbox and area as round(value, 2) gives them, ids, flags), corners
    within float rounding (the columns add hundredths exactly, where floats gave 0.30000000000000004)."""
    import numpy as np

    from scaledet.labelspace.unify_blocks import ImageBlock, _annotation_records_one_by_one, annotation_records

    rng = np.random.default_rng(3)
    count = 5000
    boxes = np.column_stack([rng.uniform(-2, 1500, count), rng.uniform(-2, 900, count),
                             rng.uniform(0.001, 800, count), rng.uniform(0.001, 600, count)])
    boxes[:8] = [[0.125, 0.375, 0.005, 0.015], [-0.004, -0.005, 2.675, 0.285], [0, 0, 1, 1], [1e-3, 5e-3, 0.25, 0.5],
                 [99.995, 0.1, 0.2, 0.3], [-0.0, 12.345, 1024, 768], [3999.99, 2999.99, 0.01, 0.01],
                 [0.1, 0.2, 0.1, 0.2]]
    boxes = boxes.astype(np.float32)
    box_offsets = np.array([0, 3, 3, 2000, count], dtype=np.int64)
    block = ImageBlock([["a"]] * 4, ["a"] * 4, [None] * 4, np.full(4, 4000), np.full(4, 3000), box_offsets, boxes,
                       np.zeros(count, np.int64), rng.integers(0, 1203, count),
                       rng.integers(0, 2, count).astype(np.uint8),
                       {}, np.zeros((4, 1), np.int8))
    columns = json.loads("[" + annotation_records(block, 17, 1001).decode() + "]")
    per_box = json.loads("[" + _annotation_records_one_by_one(block, 17, 1001).decode() + "]")
    assert len(columns) == count and [a["id"] for a in columns] == list(range(1001, 1001 + count))
    assert [a["image_id"] for a in columns][:4] == [17, 17, 17, 19]
    for mine, theirs in zip(columns, per_box):
        segmentation, expected = mine.pop("segmentation"), theirs.pop("segmentation")
        assert mine == theirs
        assert np.allclose(segmentation, expected, rtol=0, atol=1e-9)
    import re  # parsed, -0.0 equals 0.0: the texts themselves must match too (repr writes "-0.0")

    fields = re.compile(r'"bbox":\[[^]]*\],"area":[^,]*')
    assert fields.findall(annotation_records(block, 17, 1001).decode()) == \
        fields.findall(_annotation_records_one_by_one(block, 17, 1001).decode())
    assert '"bbox":[-0.0,-0.0,2.67,0.28]' in annotation_records(block, 17, 1001).decode()


def test_a_large_file_is_read_by_its_top_level_spans_with_the_same_result(lvis_coco_oid_build, tmp_path,
                                                                           monkeypatch):
    """A file over json_sections.SCAN_MIN_BYTES is read span by span (one tokenization instead of one per
    key). On a COCO file written with its categories last, escaped quotes and brackets in its strings, the
    unified file is byte for byte the one a whole-file read gives, and a truncated copy fails with the
    whole-file read's one-line error."""
    import random

    from scaledet.labelspace.io import json_sections
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.io.text_files import stream_json_items
    from scaledet.labelspace.unify import unify

    rng = random.Random(5)
    images = [{"id": i, "file_name": f'{i:012d} "copy" [{i % 7}]\\{{x}}.jpg', "width": 640, "height": 480}
              for i in range(1, 4001)]
    annotations = []
    for n in range(1, 45_001):
        x, y = rng.uniform(0, 600), rng.uniform(0, 440)
        annotations.append({"id": n, "image_id": rng.randint(1, 4000), "category_id": rng.choice([1, 18, 65]),
                            "bbox": [round(x, 2), round(y, 2), round(rng.uniform(1, 640 - x), 2),
                                     round(rng.uniform(1, 480 - y), 2)], "area": 1.0, "iscrowd": 0})
    document = {"info": {"description": 'brackets ]} and a quote \\" in a string'}, "images": images,
                "annotations": annotations, "licenses": [],
                "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 65, "name": "bed"}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    assert path.stat().st_size >= json_sections.SCAN_MIN_BYTES
    sections = json_sections.json_sections(path)
    assert sections is not None and list(sections.spans) == ["info", "images", "annotations", "licenses",
                                                             "categories"]
    assert list(stream_json_items(path, "images.item")) == images
    for folder in ("by-spans", "whole"):
        (tmp_path / folder).mkdir()
    unify(lvis_coco_oid_build, [("coco", path)], {}, tmp_path / "by-spans")
    monkeypatch.setattr(json_sections, "SCAN_MIN_BYTES", 1 << 62)
    unify(lvis_coco_oid_build, [("coco", path)], {}, tmp_path / "whole")
    for name in ("unified.json", "coverage.csv"):
        assert (tmp_path / "by-spans" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ScaledetError) as whole_file_error:
        list(stream_json_items(truncated, "annotations.item"))
    monkeypatch.setattr(json_sections, "SCAN_MIN_BYTES", 0)
    assert json_sections.json_sections(truncated) is None
    broken = tmp_path / "broken.json"  # well-formed around the spans, broken inside one
    broken.write_bytes(path.read_bytes().replace(b'"iscrowd": 0}', b'"iscrowd": 0,,}', 1))
    assert json_sections.json_sections(broken) is not None
    with pytest.raises(ScaledetError) as by_spans:
        list(stream_json_items(broken, "annotations.item"))
    monkeypatch.setattr(json_sections, "SCAN_MIN_BYTES", 1 << 62)
    with pytest.raises(ScaledetError) as whole:
        list(stream_json_items(broken, "annotations.item"))
    assert str(by_spans.value) == str(whole.value) and "\n" not in str(whole.value)
    assert "truncated" in str(whole_file_error.value) or "JSON" in str(whole_file_error.value)
