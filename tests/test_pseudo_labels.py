"""``scaledet pseudo-label`` on a hand-built unified file: the LVIS API's own 100-image file (real
``neg_category_ids`` and ``not_exhaustive_category_ids``), a COCO file written field by field whose images
overlap it, and an OpenImages-style file (``mid`` categories, verified-present and verified-absent labels).
The output is read by the real LVIS API and pycocotools; training on it runs through the real trainer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LVIS_FIXTURE, run_cli
from test_unify import _coco_file, _lvis

OID_IMAGE = 5_000_001


def _oid_file() -> dict:
    """One OpenImages-style image: a boxed person, a dog verified present without a box, a car verified
    absent (the shape of ``scaledet convert-oid``'s output)."""
    categories = [{"id": 1, "name": "Person", "mid": "/m/01g317"}, {"id": 2, "name": "Dog", "mid": "/m/0bt9lr"},
                  {"id": 3, "name": "Car", "mid": "/m/0k4j"}]
    return {"images": [{"id": OID_IMAGE, "file_name": "oid-0001.jpg", "width": 640, "height": 480,
                        "pos_category_ids": [1, 2], "neg_category_ids": [3]}],
            "annotations": [{"id": 1, "image_id": OID_IMAGE, "category_id": 1, "bbox": [20.0, 30.0, 100.0, 200.0],
                             "area": 20000.0, "iscrowd": 0}],
            "categories": categories}


@pytest.fixture(scope="module")
def unified(lvis_coco_oid_build, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pseudo")
    (root / "coco.json").write_text(json.dumps(_coco_file(_lvis(), with_bed_box=True)))
    (root / "oid.json").write_text(json.dumps(_oid_file()))
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(lvis_coco_oid_build), "--annotations",
                   f"lvis={LVIS_FIXTURE}", f"coco={root / 'coco.json'}", f"oid={root / 'oid.json'}",
                   "--out", str(root / "unified"))
    assert done.returncode == 0, done.stderr
    return root / "unified" / "unified.json"


def _cells(document: dict) -> dict[int, dict]:
    """image id → {"negative", "partial", "boxed"}: sets of category ids, as the file's lists say."""
    boxed: dict[int, set] = {}
    for annotation in document["annotations"]:
        boxed.setdefault(annotation["image_id"], set()).add(annotation["category_id"])
    return {i["id"]: {"negative": set(i["neg_category_ids"]), "partial": set(i["not_exhaustive_category_ids"]),
                      "boxed": boxed.get(i["id"], set())} for i in document["images"]}


def _grid_box(category: int) -> list[float]:
    """A 4 × 4 box of its own for each category (no two overlap), inside a 320 × 240 image."""
    return [float(4 * (category % 80)), float(4 * (category // 80)), 4.0, 4.0]


def _pick_images(document: dict) -> dict[str, int]:
    by_stem = {Path(i["file_name"]).stem.split("_")[-1]: i["id"] for i in document["images"]}
    return {"lvis only": by_stem["000000087470"], "lvis + coco": by_stem["000000066523"],
            "coco only": by_stem["000000999999"], "oid": by_stem["oid-0001"]}


def test_pseudo_boxes_fill_exactly_the_cells_the_rules_allow(unified, tmp_path):
    """A detection of every category on four images (an LVIS image, an image LVIS and COCO share, a
    COCO-only image, an OpenImages image), each category at a spot of its own: a pseudo box lands in every
    unknown and partial cell and in no negative or exhaustively boxed one; filled cells become partial."""
    document = json.loads(unified.read_text())
    label_of = {c["id"]: c["labels"][0] for c in document["categories"]}
    id_of = {label: c for c, label in label_of.items()}
    chosen = _pick_images(document)
    results = [{"image_id": image, "category_id": c, "bbox": _grid_box(c), "score": 0.99}
               for image in chosen.values() for c in label_of]
    # a partial cell with a box: the same box again is a duplicate; 
    shared = next(i for i in document["images"] if i["id"] == chosen["lvis only"])
    partial_boxed = next(a for a in document["annotations"] if a["image_id"] == shared["id"]
                         and a["category_id"] in shared["not_exhaustive_category_ids"])
    results.append({"image_id": shared["id"], "category_id": partial_boxed["category_id"],
                    "bbox": partial_boxed["bbox"], "score": 0.98})
    # on the LVIS image, lvis/dog and coco/dog (one concept of the build's merge) are both unknown
    results += [{"image_id": shared["id"], "category_id": id_of["coco/dog"], "bbox": [200.0, 100.0, 50.0, 60.0],
                 "score": 0.96},
                {"image_id": shared["id"], "category_id": id_of["lvis/dog"], "bbox": [201.0, 101.0, 50.0, 60.0],
                 "score": 0.97}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    done = run_cli("scaledet", "pseudo-label", "--unified", str(unified), "--results", str(tmp_path / "results.json"),
                   "--out", str(tmp_path / "out"), "--threshold", "0.5", "-q")
    assert done.returncode == 0, done.stderr
    output = json.loads((tmp_path / "out" / "unified.json").read_text())
    before, after = _cells(document), _cells(output)
    pseudo = [a for a in output["annotations"] if a.get("pseudo")]
    assert all(isinstance(a["score"], float) for a in pseudo)
    assert [a for a in output["annotations"] if not a.get("pseudo")] == document["annotations"]
    grid = {(a["image_id"], a["category_id"]) for a in pseudo if a["bbox"] == _grid_box(a["category_id"])}
    for name, image in chosen.items():
        cells = before[image]
        for category in label_of:
            exhaustive = category in cells["negative"] or (category in cells["boxed"]
                                                           and category not in cells["partial"])
            assert ((image, category) in grid) != exhaustive, (name, label_of[category])
            if (image, category) in grid:  # a filled cell is partial now: present, not every instance boxed
                assert category in after[image]["partial"] and category not in after[image]["negative"]
    # the cells named by the issue, one by one
    lvis_only, oid, both = before[chosen["lvis only"]], before[chosen["oid"]], before[chosen["lvis + coco"]]
    assert id_of["lvis/lizard"] in lvis_only["negative"] and (chosen["lvis only"], id_of["lvis/lizard"]) not in grid
    assert id_of["lvis/cow"] in lvis_only["partial"] and (chosen["lvis only"], id_of["lvis/cow"]) in grid
    assert (chosen["lvis only"], id_of["lvis/acorn"]) in grid and (chosen["lvis only"], id_of["coco/dog"]) in grid
    assert id_of["oid/Dog"] in oid["partial"] and id_of["oid/Dog"] not in oid["boxed"]
    assert (chosen["oid"], id_of["oid/Dog"]) in grid            # verified present, no box: partial
    assert (chosen["oid"], id_of["oid/Car"]) not in grid        # verified absent
    assert (chosen["oid"], id_of["oid/Person"]) not in grid     # boxed: every instance is
    assert (chosen["lvis + coco"], id_of["coco/dog"]) not in grid  # COCO is exhaustive: no dog
    assert id_of["coco/person"] in both["boxed"] and (chosen["lvis + coco"], id_of["coco/person"]) not in grid
    assert (chosen["coco only"], id_of["coco/cat"]) not in grid and (chosen["coco only"], id_of["lvis/acorn"]) in grid
    # duplicates: the partial cell's own box is not added again; one dog gets one box, the better-scored
    again = [a for a in pseudo if a["image_id"] == shared["id"] and a["bbox"] == partial_boxed["bbox"]]
    assert again == []
    dog = [a for a in pseudo if a["image_id"] == shared["id"] and a["bbox"][2:] == [50.0, 60.0]]
    assert [label_of[a["category_id"]] for a in dog] == ["lvis/dog"] and dog[0]["score"] == 0.97
    assert output["scaledet"]["pseudo_labels"]["boxes"] == len(pseudo)


def test_thresholds_come_from_a_calibration_file_when_one_is_given(unified, shapes_pseudo, tmp_path):
    """With --calibration, the thresholds are measured on that file's exhaustive cells with the teacher's
    results there: with no detection there, no category gets a threshold and nothing is added, whatever the
    input file's own cells would say. A calibration file of other categories is one line."""
    document = json.loads(unified.read_text())
    cells = _cells(document)
    # a teacher that finds every annotated box, and detects every category where nothing is known
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.99}
               for a in document["annotations"]]
    for image in _pick_images(document).values():
        known = cells[image]["negative"] | (cells[image]["boxed"] - cells[image]["partial"])
        results += [{"image_id": image, "category_id": c["id"], "bbox": _grid_box(c["id"]), "score": 0.99}
                    for c in document["categories"] if c["id"] not in known]
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "none.json").write_text("[]")
    base = ["scaledet", "pseudo-label", "--unified", str(unified), "--results", str(tmp_path / "results.json")]
    done = run_cli(*base, "--out", str(tmp_path / "own"), "-q")
    assert done.returncode == 0 and "give --calibration" in done.stdout, done.stderr
    assert json.loads((tmp_path / "own" / "unified.json").read_text())["scaledet"]["pseudo_labels"]["boxes"] > 0
    done = run_cli(*base, "--calibration", str(unified), "--calibration-results", str(tmp_path / "none.json"),
                   "--out", str(tmp_path / "held-out"), "-q")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "held-out" / "unified.json").read_text())["scaledet"]["pseudo_labels"]
    assert record["boxes"] == 0 and record["calibrated_on"] == str(unified.resolve())
    import csv

    rows = list(csv.DictReader((tmp_path / "held-out" / "pseudo_labels.csv").open()))
    assert {r["status"] for r in rows} <= {"no teacher detections on its exhaustive images", "no exhaustive images"}
    done = run_cli(*base, "--calibration", str(shapes_pseudo / "unified" / "unified.json"), "--calibration-results",
                   str(tmp_path / "none.json"), "--out", str(tmp_path / "other"))
    assert done.returncode != 0 and "its categories are not those of" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli(*base, "--calibration", str(unified), "--out", str(tmp_path / "other"))
    assert done.returncode != 0 and "--calibration-results goes with" in done.stderr


def _iou(a, b) -> float:
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def test_thresholds_reach_the_named_precision_on_the_exhaustive_images(unified, tmp_path):
    """A teacher that finds each exhaustively boxed instance (score 0.3–1) and adds false positives (score
    0–0.9) on exhaustive cells: each calibrated category's threshold keeps precision ≥ 0.8 there, measured
    here from the file's own lists, and the next lower score would not (the threshold is the lowest)."""
    document = json.loads(unified.read_text())
    cells = _cells(document)
    rng = np.random.default_rng(0)
    results, boxes_of = [], {}
    for a in document["annotations"]:
        boxes_of.setdefault((a["image_id"], a["category_id"]), []).append(a["bbox"])
    for image, cell in cells.items():
        exhaustive = (cell["boxed"] - cell["partial"]) | cell["negative"]
        for category in sorted(exhaustive):
            for box in boxes_of.get((image, category), []):
                results.append({"image_id": image, "category_id": category, "bbox": box,
                                "score": float(rng.uniform(0.3, 1.0))})
            for _ in range(int(rng.integers(0, 2))):
                results.append({"image_id": image, "category_id": category, "bbox": _grid_box(category),
                                "score": float(rng.uniform(0.0, 0.9))})
    (tmp_path / "results.json").write_text(json.dumps(results))
    done = run_cli("scaledet", "pseudo-label", "--unified", str(unified), "--results", str(tmp_path / "results.json"),
                   "--out", str(tmp_path / "out"), "--precision", "0.8", "-q")
    assert done.returncode == 0, done.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "out" / "pseudo_labels.csv").open()))
    calibrated = [r for r in rows if r["status"] == "calibrated"]
    assert len(calibrated) >= 20
    assert any(r["status"] == "no exhaustive images" for r in rows)
    for row in calibrated:
        category, threshold = int(row["category_id"]), float(row["threshold"])
        mine = [r for r in results if r["category_id"] == category]
        hits = [any(_iou(r["bbox"], b) >= 0.5 for b in boxes_of.get((r["image_id"], category), [])) for r in mine]
        kept = [h for r, h in zip(mine, hits) if r["score"] >= threshold]
        assert sum(kept) / len(kept) >= 0.8 - 1e-9
        assert abs(sum(kept) / len(kept) - float(row["precision"])) < 1e-3
        lower = [r["score"] for r in mine if r["score"] < threshold - 1e-6]
        if lower:
            next_score = max(lower)
            wider = [h for r, h in zip(mine, hits) if r["score"] >= next_score]
            assert sum(wider) / len(wider) < 0.8
    # every pseudo box is a detection above its category's threshold, in a cell that may receive it
    threshold_of = {int(r["category_id"]): float(r["threshold"]) if r["threshold"] else None for r in rows}
    output = json.loads((tmp_path / "out" / "unified.json").read_text())
    for a in (a for a in output["annotations"] if a.get("pseudo")):
        assert threshold_of[a["category_id"]] is not None and a["score"] >= threshold_of[a["category_id"]] - 1e-4


def _lvis_api():
    np.float = float  # the LVIS API (0.5.3) still uses NumPy's removed alias
    return pytest.importorskip("lvis", reason="the LVIS API is in the dev extra")


def test_a_pseudo_labelled_file_reads_in_the_lvis_api_and_pycocotools(unified, tmp_path):
    """The real readers index the new file; each pseudo box keeps ``pseudo`` and ``score`` there, and the
    images' lists still name only the file's categories."""
    from pycocotools.coco import COCO

    document = json.loads(unified.read_text())
    chosen = _pick_images(document)
    results = [{"image_id": chosen["lvis only"], "category_id": c["id"], "bbox": _grid_box(c["id"]), "score": 0.9}
               for c in document["categories"][:40]]
    (tmp_path / "results.json").write_text(json.dumps(results))
    done = run_cli("scaledet", "pseudo-label", "--unified", str(unified), "--results", str(tmp_path / "results.json"),
                   "--out", str(tmp_path / "out"), "--threshold", "0.5", "-q")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "out" / "unified.json"
    lvis = _lvis_api().LVIS(str(path))
    coco = COCO(str(path))
    for reader in (lvis, coco):
        pseudo = [a for a in reader.dataset["annotations"] if a.get("pseudo")]
        assert pseudo and all(0.5 <= a["score"] <= 1 for a in pseudo)
        ids = reader.get_ann_ids(img_ids=[chosen["lvis only"]]) if reader is lvis else \
            reader.getAnnIds(imgIds=[chosen["lvis only"]])
        loaded = reader.load_anns(ids) if reader is lvis else reader.loadAnns(ids)
        assert sum(1 for a in loaded if a.get("pseudo") is True) == len(pseudo)
    image = lvis.load_imgs([chosen["lvis only"]])[0]
    assert {a["category_id"] for a in pseudo} <= set(image["not_exhaustive_category_ids"])


def test_pseudo_label_bad_inputs_are_one_line(unified, tmp_path):
    """A results file of another file's images or categories, a compact unified file, and two teachers are
    one-line errors; nothing is left in --out."""
    document = json.loads(unified.read_text())
    cases = {
        "not in": [{"image_id": 123456789, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}],
        "not a category": [{"image_id": document["images"][0]["id"], "category_id": 99999, "bbox": [1, 1, 5, 5],
                            "score": 0.9}],
        "bbox": [{"image_id": document["images"][0]["id"], "category_id": 1, "bbox": [1, 1, 5], "score": 0.9}],
        "JSON list": {"image_id": 1},
    }
    for expected, results in cases.items():
        (tmp_path / "results.json").write_text(json.dumps(results))
        done = run_cli("scaledet", "pseudo-label", "--unified", str(unified), "--results",
                       str(tmp_path / "results.json"), "--out", str(tmp_path / "out"))
        assert done.returncode != 0 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    done = run_cli("scaledet", "pseudo-label", "--unified", str(unified), "--results", str(tmp_path / "results.json"),
                   "--checkpoint", str(tmp_path / "x.pth"), "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "exactly one of --checkpoint and --results" in done.stderr
    compact = json.loads(unified.read_text())
    compact["scaledet"]["explicit_negatives"] = False
    (tmp_path / "compact.json").write_text(json.dumps(compact))
    done = run_cli("scaledet", "pseudo-label", "--unified", str(tmp_path / "compact.json"), "--results",
                   str(tmp_path / "results.json"), "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "unify again without --compact" in done.stderr


# --------------------------------------------------------------------------- training on pseudo boxes
@pytest.fixture(scope="module")
def shapes_pseudo(shapes_world, tmp_path_factory):
    """The shapes world unified (shapesb's images hold triangles it never labels), and pseudo boxes of
    ``shapesa/triangle`` on shapesb's images from a results file: one confident (0.9), one not (0.6)."""
    root = tmp_path_factory.mktemp("shapes-pseudo")
    done = run_cli("scaledet-labels", "unify", "--labelspace", str(shapes_world / "labelspace"), "--annotations",
                   *(f"{n}={shapes_world / n / 'train' / 'annotations.json'}" for n in ("shapesa", "shapesb")),
                   "--images", *(f"{n}={shapes_world / n / 'train' / 'images'}" for n in ("shapesa", "shapesb")),
                   "--out", str(root / "unified"))
    assert done.returncode == 0, done.stderr
    document = json.loads((root / "unified" / "unified.json").read_text())
    triangle = next(c["id"] for c in document["categories"] if c["labels"] == ["shapesa/triangle"])
    results = []
    for image in document["images"]:
        if image["sources"] == ["shapesb"]:
            results += [{"image_id": image["id"], "category_id": triangle, "bbox": [8.0, 8.0, 40.0, 40.0], "score": 0.9},
                        {"image_id": image["id"], "category_id": triangle, "bbox": [70.0, 70.0, 30.0, 30.0],
                         "score": 0.6}]
    (root / "results.json").write_text(json.dumps(results))
    done = run_cli("scaledet", "pseudo-label", "--unified", str(root / "unified" / "unified.json"), "--results",
                   str(root / "results.json"), "--out", str(root / "pseudo"), "--threshold", "0.5", "-q")
    assert done.returncode == 0, done.stderr
    return root


def _entry(root: Path) -> dict:
    return {"name": "all", "annotations": str(root / "pseudo" / "unified.json"), "images": str(root / "pseudo"),
            "labelspace_key": "unified"}


def _trainer(shapes_world, root: Path, out: Path, iterations: int = 4, **pseudo):
    from scaledet.detector.config import load_config
    from scaledet.detector.engine import Trainer

    from conftest import write_train_config

    config = write_train_config(shapes_world, out, datasets=[_entry(root)],
                                schedule={"iterations": iterations, "batch_size": 2, "lr": 0.01, "warmup_iterations": 1,
                                          "checkpoint_every": 2, "log_every": 1},
                                pseudo_labels=pseudo)
    return lambda resume=False: Trainer(load_config(config, ["model.hard_loss_scope=federated"]), resume=resume,
                                        show_progress=False)


def test_training_weights_pseudo_regions_as_configured(shapes_world, shapes_pseudo, tmp_path):
    """Targets carry each box's weight (pseudo boxes ``hard_weight``, those under ``min_score`` left out),
    and the hard loss of one batch is affine in the weight: L(0.5) = (L(0) + L(1)) / 2, L(0) ≠ L(1)."""
    import torch

    trainer = _trainer(shapes_world, shapes_pseudo, tmp_path / "w", hard_weight=0.25, min_score=0.7)()
    dataset = trainer.datasets[0]
    shapesb = [k for k in range(len(dataset))
               if int(dataset.index.source_bits[int(dataset.images[k])]) == 1 << dataset.index.meta["sources"].index("shapesb")]
    _, target = dataset[shapesb[0]]
    pseudo = np.asarray(dataset.index.pseudo_scores[dataset._box_slice(int(dataset.images[shapesb[0]]))])
    assert sorted(pseudo[~np.isnan(pseudo)].tolist()) == pytest.approx([0.6, 0.9])
    assert sorted(target["box_weights"].tolist()).count(0.25) == 1  # the 0.6 box is under min_score
    assert len(target["boxes"]) == int(np.isnan(pseudo).sum()) + 1

    model = trainer.model
    model.train()
    batch = [dataset[k] for k in shapesb[:2]]
    losses = []
    for weight in (0.0, 0.5, 1.0):
        dataset.use_pseudo_labels(weight, 0.0)
        batch = [dataset[k] for k in shapesb[:2]]
        torch.manual_seed(0)
        from scaledet.detector.data import to_float

        out = model([to_float(image) for image, _ in batch], [target for _, target in batch])
        losses.append(float(out["loss_hard"].detach()))
    assert losses[0] != pytest.approx(losses[2])
    assert losses[1] == pytest.approx((losses[0] + losses[2]) / 2, rel=1e-4)


@pytest.fixture(scope="module")
def straight_run(shapes_world, shapes_pseudo, tmp_path_factory) -> Path:
    """Four iterations on the pseudo-labelled file (pseudo regions at weight 0.5), uninterrupted: the
    reference a resumed run must equal, and the teacher checkpoint of the teacher test."""
    out = tmp_path_factory.mktemp("pseudo-straight") / "run"
    _trainer(shapes_world, shapes_pseudo, out, hard_weight=0.5)().train()
    return out


def test_training_on_pseudo_boxes_resumes_exactly(shapes_world, shapes_pseudo, straight_run, tmp_path):
    import torch

    make = _trainer(shapes_world, shapes_pseudo, tmp_path / "resumed", hard_weight=0.5)
    make().train(stop_after=2)
    resumed = make(resume=True)
    assert resumed.start_iteration == 2
    resumed.train()
    a = torch.load(straight_run / "model_final.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=False)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    config = torch.load(straight_run / "model_final.pth", weights_only=False)["config"]
    assert config["pseudo_labels"] == {"hard_weight": 0.5, "min_score": 0.0}


def test_a_checkpoint_teacher_resumes_without_redoing_finished_images(shapes_pseudo, straight_run, tmp_path):
    """A scaledet checkpoint detects the file's images in chunks through the DataLoader; after a lost chunk
    (a killed run), a second call detects only that chunk's images and gets the same detections. The
    command then writes the file with thresholds calibrated on the teacher's own exhaustive cells."""
    import torch

    from scaledet.detector.pseudo_labels.run import UnifiedFile
    from scaledet.detector.pseudo_labels.teacher import teacher_results

    checkpoint = straight_run / "model_final.pth"
    source = shapes_pseudo / "unified" / "unified.json"
    images = len(json.loads(source.read_text())["images"])
    read = UnifiedFile.read(source)
    parts, detected = teacher_results(read, checkpoint, source.parent, tmp_path / "a", torch.device("cpu"),
                                      chunk_images=4)
    assert detected == images and len(parts) == (images + 3) // 4
    first = [p.read_text() for p in parts]
    assert sum(len(json.loads(text)) for text in first) > 0
    parts[1].unlink()
    again, detected = teacher_results(read, checkpoint, source.parent, tmp_path / "a", torch.device("cpu"),
                                      chunk_images=4)
    assert detected == 4 and [p.read_text() for p in again] == first
    done = run_cli("scaledet", "pseudo-label", "--unified", str(source), "--checkpoint", str(checkpoint),
                   "--calibration", str(source), "--out", str(tmp_path / "cli"), "--precision", "0.5", "-q")
    assert done.returncode == 0, done.stderr
    assert f"teacher: detected {images} images of unified.json" in done.stdout
    assert sorted(p.name for p in (tmp_path / "cli").iterdir() if p.name.startswith("teacher")) == \
        ["teacher", "teacher-calibration"]
    assert (tmp_path / "cli" / "unified.json").is_file() and (tmp_path / "cli" / "pseudo_labels.csv").is_file()


def test_yolo_output_writes_pseudo_boxes_as_boxes_and_reads_in_ultralytics(shapes_pseudo, tmp_path):
    """``--format yolo``: every box, ordinary and pseudo, is a label line (YOLO has no ignore, and the
    command says so); Ultralytics' own dataset reader counts them all. Ultralytics runs in its own process."""
    import importlib.util
    import os
    import subprocess
    import sys

    from test_unify import ULTRALYTICS_READ

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("Ultralytics is in the dev extra")
    done = run_cli("scaledet", "pseudo-label", "--unified", str(shapes_pseudo / "unified" / "unified.json"),
                   "--results", str(shapes_pseudo / "results.json"), "--out", str(tmp_path / "yolo"),
                   "--threshold", "0.5", "--format", "yolo", "-q")
    assert done.returncode == 0, done.stderr
    assert "YOLO has no ignore" in done.stdout
    document = json.loads((shapes_pseudo / "pseudo" / "unified.json").read_text())
    read = subprocess.run([sys.executable, "-c", ULTRALYTICS_READ, str(tmp_path / "yolo" / "data.yaml")],
                          capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert read.returncode == 0, read.stderr[-2000:]
    found = json.loads(read.stdout.strip().splitlines()[-1])
    assert found["images"] == len(document["images"])
    assert found["boxes"] == sum(1 for a in document["annotations"] if not a.get("iscrowd"))
    assert any(a.get("pseudo") for a in document["annotations"])
