"""``scaledet-labels translate`` and ``scaledet eval --from``: the LVIS API's own 100-image file and results
made from it, translated into COCO's categories through a real build (bundled COCO and OpenImages
taxonomies, the file's LVIS categories, their ``merge``), and read back by pycocotools and the real LVIS API."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LVIS_FIXTURE, run_cli


@pytest.fixture(scope="module")
def build_output(lvis_coco_oid_build):
    from scaledet.labelspace.outputs import LabelSpaceOutput

    return LabelSpaceOutput.load(lvis_coco_oid_build, with_embeddings=False)


def _rows(translator) -> dict[str, tuple[str, str]]:
    return {source: (target, how) for source, target, how, _ in translator.rows()}


def test_each_label_maps_to_its_concept_else_the_nearest_coarser_label_never_a_finer_one(build_output):
    from scaledet.labelspace.translate import COARSER, SAME, UNMAPPED, make_translator

    translator = make_translator(build_output, "lvis", "coco")
    rows = _rows(translator)
    assert rows["lvis/airplane"] == ("coco/airplane", SAME)
    assert rows["lvis/goose"] == ("coco/bird", COARSER)       # OpenImages: Goose → Bird ≡ coco/bird
    assert rows["lvis/limousine"] == ("coco/car", COARSER)    # ≡ oid/Limousine → oid/Car ≡ coco/car
    assert rows["lvis/apron"] == ("", UNMAPPED)
    relations = translator.relations
    index = {g: j for j, g in enumerate(relations.global_ids)}
    for source, (target, how) in rows.items():
        j = index[source]
        ancestors = set(relations.ancestors.of(np.asarray([j])).tolist())
        coco_ancestors = [a for a in ancestors if relations.global_ids[a].startswith("coco/")]
        same = [t for t in translator.target_labels if relations.concept[t] == relations.concept[j]]
        if how == SAME:
            assert relations.concept[index[target]] == relations.concept[j]
        elif how == COARSER:
            assert not same and index[target] in ancestors
        else:
            assert not same and not coco_ancestors
    # the other way nothing is coarser: a COCO bird is not a goose
    back = _rows(make_translator(build_output, "coco", "oid"))
    assert back["coco/bird"] == ("oid/Bird", SAME)
    assert all(how != COARSER or target not in ("oid/Goose", "oid/Duck") for target, how in back.values())


def test_translated_annotations_and_results_score_in_coco_as_they_were_made(lvis_coco_oid_build, tmp_path):
    """The command as a user runs it: LVIS ground truth and results into COCO's categories; pycocotools
    reads the file; the pre-translated results and ``eval --from`` give the same numbers; a goose
    detection is scored as a bird."""
    from pycocotools.coco import COCO

    lvis = json.loads(LVIS_FIXTURE.read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in lvis["annotations"]]
    (tmp_path / "lvis_results.json").write_text(json.dumps(results))
    done = run_cli("scaledet-labels", "translate", str(LVIS_FIXTURE), "--labelspace", str(lvis_coco_oid_build),
                   "--from", "lvis", "--to", "coco", "--out", str(tmp_path / "gt" / "coco_gt.json"))
    assert done.returncode == 0, done.stderr
    assert "to a coarser label" in done.stdout and "unmapped (dropped)" in done.stdout
    table = (tmp_path / "gt" / "translation.csv").read_text().splitlines()
    assert table[0] == "from,to,how,boxes" and "lvis/goose,coco/bird,coarser,4" in table
    assert sum(int(row.rsplit(",", 1)[1]) for row in table[1:]) == len(lvis["annotations"])
    gt = COCO(str(tmp_path / "gt" / "coco_gt.json"))
    document = json.loads((tmp_path / "gt" / "coco_gt.json").read_text())
    bird = next(c["id"] for c in document["categories"] if c["name"] == "bird")
    to_bird = sum(int(row.rsplit(",", 1)[1]) for row in table[1:] if row.split(",")[1] == "coco/bird")
    assert bird == 16 and len(gt.getAnnIds(catIds=[bird])) == to_bird >= 4  # COCO's own id; geese and others
    assert [i["id"] for i in document["images"]] == [i["id"] for i in lvis["images"]]
    goose = next(c["id"] for c in lvis["categories"] if c["name"] == "goose")
    goose_images = {a["image_id"] for a in lvis["annotations"] if a["category_id"] == goose}
    for image in document["images"]:
        if image["id"] in goose_images:  # a bird is there, but LVIS boxed only the geese
            assert bird in image["not_exhaustive_category_ids"] and bird not in image["neg_category_ids"]
    done = run_cli("scaledet-labels", "translate", str(tmp_path / "lvis_results.json"), "--labelspace",
                   str(lvis_coco_oid_build), "--from", "lvis", "--to", "coco", "--out", str(tmp_path / "res" / "coco.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"results lvis → coco: {len(results)} detections")
    scores = []
    for extra in ([str(tmp_path / "res" / "coco.json")],
                  [str(tmp_path / "lvis_results.json"), "--labelspace", str(lvis_coco_oid_build), "--from", "lvis"]):
        done = run_cli("scaledet", "eval", "--results", *extra, "--annotations", str(tmp_path / "gt" / "coco_gt.json"),
                       "--evaluator", "coco", "--json")
        assert done.returncode == 0, done.stderr
        scores.append(json.loads(done.stdout))
    assert scores[0]["AP"] == pytest.approx(100.0) and scores[1]["AP"] == scores[0]["AP"]
    assert scores[1]["translation"]["coarser"] > 0 and scores[1]["translation"]["to"] == "coco"


def test_a_coco_file_in_lvis_categories_keeps_cocos_negatives_for_the_lvis_api(lvis_coco_oid_build, tmp_path):
    """COCO annotates exhaustively: translated into LVIS's categories, an image without a COCO bird says no
    bird and no goose either (a descendant of an absent concept), while LVIS labels that COCO does not cover
    stay unknown. The real LVIS API then counts a bird false positive there and ignores an apron one."""
    from scaledet.labelspace.translate import translate_file

    np.float = float  # the LVIS API (0.5.3) still uses NumPy's removed alias
    lvis_api = pytest.importorskip("lvis", reason="the LVIS API is in the dev extra")
    lvis = json.loads(LVIS_FIXTURE.read_text())
    ids = {c["name"]: c["id"] for c in lvis["categories"]}
    first, second = lvis["images"][:2]
    boxes = [(first, 1, [5.0, 5.0, 40.0, 90.0]), (second, 16, [20.0, 20.0, 60.0, 40.0])]
    coco = {"images": [{k: image[k] for k in ("id", "file_name", "width", "height")} for image in (first, second)],
            "annotations": [{"id": n, "image_id": image["id"], "category_id": category, "bbox": box,
                             "area": box[2] * box[3], "iscrowd": 0} for n, (image, category, box) in enumerate(boxes, 1)],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                           {"id": 16, "name": "bird", "supercategory": "animal"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    report = translate_file(lvis_coco_oid_build, "coco", "lvis", tmp_path / "coco.json", tmp_path / "lvis.json")
    assert report.counts == {"same concept": 2, "coarser": 0, "unmapped": 0}
    translated = json.loads((tmp_path / "lvis.json").read_text())
    listed = translated["images"][0]
    assert ids["bird"] in listed["neg_category_ids"] and ids["goose"] in listed["neg_category_ids"]
    assert ids["apron"] not in listed["neg_category_ids"] + listed["not_exhaustive_category_ids"]
    gt = lvis_api.LVIS(str(tmp_path / "lvis.json"))
    hits = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
            for a in translated["annotations"]]
    scores = {}
    for name in ("bird", "apron"):
        results = hits + [{"image_id": first["id"], "category_id": ids[name], "bbox": [100.0, 100.0, 50.0, 50.0],
                           "score": 0.9}]
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
        evaluation = lvis_api.LVISEval(gt, lvis_api.LVISResults(gt, str(tmp_path / f"{name}.json")), "bbox")
        evaluation.run()
        scores[name] = evaluation.results["AP"]
    assert scores["apron"] == pytest.approx(1.0) and scores["bird"] < 0.999


def test_translate_refuses_what_it_must_not_write_or_cannot_read(lvis_coco_oid_build, shapes_world, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text("[]")
    base = ["scaledet-labels", "translate", str(LVIS_FIXTURE), "--labelspace", str(lvis_coco_oid_build)]
    cases = [
        (["--from", "lvis", "--to", "coco", "--out", str(mine)], "exists and was not written by translate"),
        (["--from", "lvis", "--to", "coco", "--out", str(LVIS_FIXTURE), "--force"], "is the input itself"),
        (["--from", "lvis", "--to", "ade", "--out", str(tmp_path / "x.json")], "--to ade: not a dataset of"),
        (["--from", "coco", "--to", "coco", "--out", str(tmp_path / "x.json")], "name two datasets"),
    ]
    for extra, message in cases:
        done = run_cli(*base, *extra)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert mine.read_text() == "[]"
    done = run_cli("scaledet-labels", "translate", str(LVIS_FIXTURE), "--labelspace", str(shapes_world / "labelspace"),
                   "--from", "shapesa", "--to", "shapesb", "--out", str(tmp_path / "y.json"))
    assert done.returncode != 0 and "no concept merges" in done.stderr and not (tmp_path / "y.json").exists()


def test_an_eval_dataset_scored_in_the_vocabulary_the_model_predicts_in(shapes_world, tmp_path):
    """``predicts_in``: the model detects in shapesa's words, scored on shapesb's test set through the
    translation; with circle ≡ round disk accepted by hand, only round disks remain, in shapesb's ids."""
    from conftest import write_train_config
    from scaledet.detector.config import load_config
    from scaledet.detector.engine import Trainer

    decisions = tmp_path / "decisions.csv"
    decisions.write_text("a,b,decision\nshapesa/circle,shapesb/round disk,accept\n")
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(shapes_world / "labelspace"), "--out",
                   str(tmp_path / "merge"), "--decisions", str(decisions))
    assert done.returncode == 0, done.stderr
    entry = {"name": "b-in-a", "annotations": str(shapes_world / "shapesb" / "val" / "annotations.json"),
             "images": str(shapes_world / "shapesb" / "val" / "images"), "labelspace_key": "shapesb",
             "predicts_in": "shapesa"}
    config = load_config(write_train_config(shapes_world, tmp_path / "run", eval_datasets=[entry]),
                         [f"merge={tmp_path / 'merge' / 'merged.parquet'}", "schedule.iterations=2",
                          "model.score_thresh=0.0"])
    from scaledet.detector.evaluation.checkpoint_eval import evaluate_checkpoint

    trainer = Trainer(config, show_progress=False)
    final = trainer.train()
    _, folder = evaluate_checkpoint(config, final, trainer.device)
    record = json.loads((folder / "metrics.json").read_text())
    translation = record["translations"]["b-in-a"]
    assert (translation["from"], translation["to"]) == ("shapesa", "shapesb")
    assert translation["same_concept"] > 0 and translation["unmapped"] > 0 and translation["coarser"] == 0
    disk = next(c["id"] for c in json.loads(Path(entry["annotations"]).read_text())["categories"]
                if c["name"] == "round disk")
    results = json.loads((folder / "b-in-a.results.json").read_text())
    assert len(results) == translation["same_concept"] and {r["category_id"] for r in results} == {disk}
    assert "AP50" in record["metrics"]["b-in-a"]


def test_one_object_named_by_two_source_labels_is_one_target_detection(build_output):
    """``lvis/car_(automobile)`` and ``lvis/limousine`` both become ``coco/car``: a limousine detection on the
    car's box is the same object under the target's name and is merged into the better-scored one; one
    elsewhere stays, and two of one source label stay as the detector's NMS left them."""
    from scaledet.labelspace.translate import describe, make_translator, translated_detections

    lvis = json.loads(LVIS_FIXTURE.read_text())
    ids = {c["name"]: c["id"] for c in lvis["categories"]}
    translator = make_translator(build_output, "lvis", "coco")
    car, limousine = ids["car_(automobile)"], ids["limousine"]
    detections = [
        {"image_id": 1, "category_id": car, "bbox": [10.0, 10.0, 100.0, 50.0], "score": 0.9},
        {"image_id": 1, "category_id": limousine, "bbox": [12.0, 11.0, 100.0, 50.0], "score": 0.7},
        {"image_id": 1, "category_id": limousine, "bbox": [300.0, 10.0, 100.0, 50.0], "score": 0.6},
        {"image_id": 1, "category_id": car, "bbox": [14.0, 12.0, 100.0, 50.0], "score": 0.5},
        {"image_id": 2, "category_id": limousine, "bbox": [12.0, 11.0, 100.0, 50.0], "score": 0.7},
    ]
    out = list(translated_detections(translator, build_output, detections, "test"))
    assert [(d["image_id"], d["score"]) for d in out] == [(1, 0.9), (1, 0.6), (1, 0.5), (2, 0.7)]
    assert {d["category_id"] for d in out} == {3}  # COCO's car
    assert describe(translator)["duplicates_merged"] == 1
