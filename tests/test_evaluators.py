"""Each evaluator against numbers computed by hand on a tiny case that exercises its special rules, and
the LVIS evaluator on real LVIS ground truth (../shared/fixtures)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from scaledet.detector.evaluation import (CocoEvaluator, GroundTruth, LvisEvaluator, OpenImagesEvaluator,
                                          suite_summaries)

LVIS_FIXTURE = REPO.parent / "shared" / "fixtures" / "lvis_v0.5_val_100.json"


def _det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


# --------------------------------------------------------------------------- LVIS federated rules
TINY_LVIS = {
    "categories": [{"id": 1, "name": "a", "frequency": "f"}, {"id": 2, "name": "b", "frequency": "c"},
                   {"id": 3, "name": "c", "frequency": "r"}],
    "images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg", "neg_category_ids": [2],
                "not_exhaustive_category_ids": [1]},
               {"id": 2, "width": 100, "height": 100, "file_name": "2.jpg", "neg_category_ids": [1],
                "not_exhaustive_category_ids": []}],
    "annotations": [  # no iscrowd, as in LVIS
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [20, 20, 30, 30], "area": 900},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [60, 60, 30, 30], "area": 900}],
}
TINY_LVIS_RESULTS = [
    _det(1, 1, [10, 10, 30, 30], 0.9),   # true positive
    _det(1, 1, [60, 60, 20, 20], 0.8),   # unmatched, but class 1 is not exhaustive on image 1: ignored
    _det(1, 3, [0, 0, 10, 10], 0.95),    # class 3 neither present nor verified absent on image 1: ignored
    _det(2, 1, [0, 0, 10, 10], 0.95),    # class 1 verified absent on image 2: a false positive, ranked first
    _det(2, 2, [20, 20, 30, 30], 0.9),   # true positive
    _det(2, 3, [60, 60, 30, 30], 0.9),   # true positive
]


def test_lvis_federated_rules_by_hand():
    metrics = LvisEvaluator().evaluate(GroundTruth(Path("tiny.json"), TINY_LVIS), TINY_LVIS_RESULTS)
    # class 1: FP (0.95) before its TP (0.9): precision 0.5 at every recall → AP 50; classes 2, 3: AP 100
    assert metrics["APf"] == pytest.approx(50.0, abs=0.01)
    assert metrics["APc"] == pytest.approx(100.0, abs=0.01) and metrics["APr"] == pytest.approx(100.0, abs=0.01)
    assert metrics["AP"] == pytest.approx(250 / 3, abs=0.01)


def test_coco_counts_what_lvis_ignores_and_needs_no_iscrowd():
    metrics = CocoEvaluator().evaluate(GroundTruth(Path("tiny.json"), TINY_LVIS), TINY_LVIS_RESULTS)
    # plain COCO: class 1 has FPs at 0.95 and 0.8 around its TP → 50; class 3 an FP (0.95) before its TP → 50
    assert metrics["AP"] == pytest.approx(200 / 3, abs=0.01)


@pytest.fixture(scope="module")
def lvis_fixture():
    if not LVIS_FIXTURE.is_file():
        pytest.skip(f"real LVIS ground truth not present at {LVIS_FIXTURE} (a checkout without ../shared)")
    return json.loads(LVIS_FIXTURE.read_text())


def test_lvis_evaluator_on_real_lvis_ground_truth(lvis_fixture):
    ground_truth = GroundTruth(LVIS_FIXTURE, lvis_fixture)
    perfect = [_det(a["image_id"], a["category_id"], a["bbox"], 1.0) for a in lvis_fixture["annotations"]]
    metrics = LvisEvaluator().evaluate(ground_truth, perfect)
    assert metrics["AP"] == pytest.approx(100.0) and metrics["APf"] == pytest.approx(100.0)
    # one confident detection of an unverified class on every image changes nothing under federated rules
    image = lvis_fixture["images"][0]
    verified = {a["category_id"] for a in lvis_fixture["annotations"] if a["image_id"] == image["id"]}
    verified |= set(image["neg_category_ids"])
    unverified = next(c["id"] for c in lvis_fixture["categories"] if c["id"] not in verified
                      and any(a["category_id"] == c["id"] for a in lvis_fixture["annotations"]))
    noisy = perfect + [_det(image["id"], unverified, [0, 0, 50, 50], 2.0)]
    assert LvisEvaluator().evaluate(ground_truth, noisy)["AP"] == pytest.approx(100.0)
    # … while a detection of a verified-absent class is a false positive
    negative = next(c for img in lvis_fixture["images"] for c in img["neg_category_ids"]
                    if any(a["category_id"] == c for a in lvis_fixture["annotations"]))
    image_id = next(img["id"] for img in lvis_fixture["images"] if negative in img["neg_category_ids"])
    assert LvisEvaluator().evaluate(ground_truth, perfect + [_det(image_id, negative, [0, 0, 50, 50], 2.0)])["AP"] < 100


# --------------------------------------------------------------------------- OpenImages challenge rules
OID_PARENTS = {"/m/animal": [], "/m/dog": ["/m/animal"], "/m/cat": ["/m/animal"], "/m/car": []}
TINY_OID = {
    "categories": [{"id": 1, "name": "Animal", "mid": "/m/animal"}, {"id": 2, "name": "Dog", "mid": "/m/dog"},
                   {"id": 3, "name": "Cat", "mid": "/m/cat"}, {"id": 4, "name": "Car", "mid": "/m/car"}],
    "images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg", "pos_category_ids": [2, 3],
                "neg_category_ids": [4]},
               {"id": 2, "width": 100, "height": 100, "file_name": "2.jpg", "pos_category_ids": [],
                "neg_category_ids": [2]}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 50], "isgroupof": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 50, 50], "isgroupof": 1, "iscrowd": 1}],
}
TINY_OID_RESULTS = [
    _det(1, 2, [0, 0, 50, 50], 0.9),     # dog TP (oid-expanded: also an animal TP)
    _det(1, 3, [55, 55, 20, 20], 0.8),   # inside the group-of cat box: the group's one TP
    _det(1, 3, [60, 60, 20, 20], 0.6),   # also inside: ignored, not a false positive
    _det(1, 4, [0, 0, 10, 10], 0.7),     # car verified absent on image 1: FP (car has no boxes: no AP)
    _det(2, 2, [0, 0, 10, 10], 0.95),    # dog verified absent on image 2: FP ranked first
    _det(2, 4, [0, 0, 10, 10], 0.99),    # car not verified on image 2: ignored
]


def test_openimages_challenge_rules_by_hand():
    evaluator = OpenImagesEvaluator(parents=OID_PARENTS)
    ground_truth = GroundTruth(Path("tiny.json"), TINY_OID)
    per_class = evaluator.per_class_ap(ground_truth, TINY_OID_RESULTS)
    # dog: FP 0.95 then TP 0.9 → 0.5; cat: the group-of TP → 1; animal: 2 boxes by expansion of the ground
    # truth, but no detection of animal itself (detections are not expanded) → 0
    assert per_class == {1: pytest.approx(0.0), 2: pytest.approx(0.5), 3: pytest.approx(1.0), 4: None}
    assert evaluator.evaluate(ground_truth, TINY_OID_RESULTS)["AP50"] == pytest.approx(50.0, abs=0.01)


def test_openimages_expanded_detections_is_a_named_option():
    from scaledet.detector.evaluation import OpenImagesExpandedEvaluator, build_evaluator

    evaluator = OpenImagesExpandedEvaluator(parents=OID_PARENTS)
    per_class = evaluator.per_class_ap(GroundTruth(Path("tiny.json"), TINY_OID), TINY_OID_RESULTS)
    # animal: dog 0.9 TP on the dog box, cat 0.8 / 0.6 inside the group-of cat box → 2 of 2 → 1
    assert per_class == {1: pytest.approx(1.0), 2: pytest.approx(0.5), 3: pytest.approx(1.0), 4: None}
    assert build_evaluator("oid").protocol == "openimages-challenge"
    assert "not the challenge" in build_evaluator("oid-expanded").protocol


def test_openimages_hierarchy_must_know_every_class():
    from scaledet.labelspace.io.errors import ScaledetError

    with pytest.raises(ScaledetError, match="not in the OpenImages hierarchy"):
        OpenImagesEvaluator(parents={"/m/dog": []}).evaluate(GroundTruth(Path("t.json"), TINY_OID), TINY_OID_RESULTS)


def test_openimages_bundled_hierarchy_expands_real_classes():
    from scaledet.detector.evaluation.oid import bundled_oid_parents

    parents = bundled_oid_parents()
    assert len(parents) == 601 and "/m/0jbk" not in parents["/m/0bt9lr"]  # Dog ⊂ Carnivore ⊂ Mammal ⊂ Animal
    # Carnivore and Mammal are not in this file: the expansion still climbs through them to Animal
    document = {"categories": [{"id": 1, "name": "Dog", "mid": "/m/0bt9lr"}, {"id": 2, "name": "Animal", "mid": "/m/0jbk"}],
                "images": [{"id": 1, "width": 10, "height": 10, "file_name": "x.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]}
    results = [_det(1, 1, [0, 0, 5, 5], 1.0), _det(1, 2, [0, 0, 5, 5], 0.5)]
    per_class = OpenImagesEvaluator().per_class_ap(GroundTruth(Path("d.json"), document), results)
    assert per_class == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}


def test_odinw_summary_row():
    rows = suite_summaries({"odinw/Aquarium": {"AP": 10.0, "AP50": 20.0}, "odinw/pothole": {"AP": 30.0, "AP50": 40.0},
                            "coco": {"AP": 99.0}})
    assert rows == {"odinw (mean of 2)": {"AP": 20.0, "AP50": 30.0}}


# --------------------------------------------------------------------------- the command line
def test_eval_results_of_any_detector(tmp_path):
    annotations, results = tmp_path / "gt.json", tmp_path / "r.json"
    annotations.write_text(json.dumps(TINY_LVIS))
    results.write_text(json.dumps(TINY_LVIS_RESULTS))
    done = run_cli("scaledet", "eval", "--results", str(results), "--annotations", str(annotations),
                   "--evaluator", "lvis", "--json")
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert set(metrics) == {"protocol", "AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf"}
    assert metrics["protocol"] == "lvis-federated"
    assert metrics["APf"] == pytest.approx(50.0, abs=0.01)
    done = run_cli("scaledet", "eval", "--results", str(results), "--annotations", str(annotations), "--evaluator", "coco")
    assert done.returncode == 0 and "66.7" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("change,expected", [
    (lambda r: r[0].update(image_id=999), "image_id 999 (result #0) is not in"),
    (lambda r: r[0].update(category_id=77), "category_id 77"),
    (lambda r: r[0].update(bbox=[1, 2]), "expected [x, y, width, height]"),
])
def test_eval_results_that_do_not_belong(tmp_path, change, expected):
    annotations, results = tmp_path / "gt.json", tmp_path / "r.json"
    annotations.write_text(json.dumps(TINY_LVIS))
    bad = json.loads(json.dumps(TINY_LVIS_RESULTS))
    change(bad)
    results.write_text(json.dumps(bad))
    done = run_cli("scaledet", "eval", "--results", str(results), "--annotations", str(annotations), "--evaluator", "lvis")
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_lvis_fixed_ap_against_the_standard_per_image_cap(tmp_path):
    """Fixed AP (Dave et al. 2021) by hand. One image with a box of 'rare' and one of 'frequent'; 300
    confident false detections of 'frequent' fill the standard per-image cap of 300, so the correct 'rare'
    detection (score 0.1) is cut: standard AP of 'rare' 0. Fixed AP keeps each category's 10,000 best over
    the dataset, so 'rare' scores 1.0, and the output names which protocol it is."""
    document = {"images": [{"id": 1, "width": 1000, "height": 1000, "file_name": "a.jpg", "neg_category_ids": [],
                            "not_exhaustive_category_ids": []}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100], "area": 10000},
                                {"id": 2, "image_id": 1, "category_id": 2, "bbox": [500, 500, 100, 100], "area": 10000}],
                "categories": [{"id": 1, "name": "rare", "frequency": "r"}, {"id": 2, "name": "frequent", "frequency": "f"}]}
    results = [_det(1, 2, [500, 500, 100, 100], 0.99)]
    results += [_det(1, 2, [900 - i, 900 - i, 20, 20], 0.9) for i in range(300)]
    results += [_det(1, 1, [10, 10, 100, 100], 0.1)]
    (tmp_path / "gt.json").write_text(json.dumps(document))
    (tmp_path / "results.json").write_text(json.dumps(results))
    printed = {}
    for protocol in ("standard", "fixed"):
        done = run_cli("scaledet", "eval", "--results", str(tmp_path / "results.json"), "--annotations",
                       str(tmp_path / "gt.json"), "--evaluator", "lvis", "--protocol", protocol, "--json")
        assert done.returncode == 0, done.stderr
        printed[protocol] = json.loads(done.stdout)
    assert printed["standard"]["protocol"] == "lvis-federated" and printed["standard"]["APr"] == pytest.approx(0.0)
    assert printed["fixed"]["protocol"].startswith("lvis-fixed-ap") and printed["fixed"]["APr"] == pytest.approx(100.0)
    done = run_cli("scaledet", "eval", "--results", str(tmp_path / "results.json"), "--annotations",
                   str(tmp_path / "gt.json"), "--evaluator", "coco", "--protocol", "fixed")
    assert done.returncode == 2 and "--protocol 'fixed' with --evaluator coco" in done.stderr


# --------------------------------------------------------------------------- one library, pycocotools' numbers
def _pycocotools_stats(document: dict, results: list[dict]) -> list[float]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(document))
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [None if v < 0 else round(100 * float(v), 3) for v in evaluator.stats[:6]]


def _jittered_detections(document: dict, rng, per_image_noise: int) -> list[dict]:
    """Detections near the ground truth (moved, resized, some relabelled) plus random boxes."""
    categories = [c["id"] for c in document["categories"]]
    results = []
    for annotation in document["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = annotation["bbox"]
        results.append(_det(annotation["image_id"],
                            annotation["category_id"] if rng.random() < 0.8 else rng.choice(categories),
                            [x + rng.uniform(-0.2, 0.2) * w, y + rng.uniform(-0.2, 0.2) * h,
                             w * rng.uniform(0.7, 1.3), h * rng.uniform(0.7, 1.3)], round(rng.random(), 4)))
    for image in document["images"]:
        for _ in range(per_image_noise):
            w, h = rng.uniform(5, image["width"] / 2), rng.uniform(5, image["height"] / 2)
            results.append(_det(image["id"], rng.choice(categories),
                                [rng.uniform(0, image["width"] - w), rng.uniform(0, image["height"] - h), w, h],
                                round(rng.random(), 4)))
    return results


@pytest.mark.parametrize("seed", range(4))
def test_coco_numbers_are_pycocotools_numbers(lvis_fixture, seed):
    """faster-coco-eval (the one library at run time) against pycocotools (the official evaluator, a dev
    extra) on the LVIS API's real 100-image ground truth, as a COCO file, with jittered detections."""
    import random

    rng = random.Random(seed)
    document = json.loads(json.dumps(lvis_fixture))
    for annotation in document["annotations"]:
        annotation["iscrowd"] = 1 if rng.random() < 0.03 else 0  # crowd regions too: they are ignored alike
    results = _jittered_detections(document, rng, per_image_noise=3)
    ours = CocoEvaluator().evaluate(GroundTruth(LVIS_FIXTURE, document), results)
    assert [ours[name] for name in CocoEvaluator.metric_names] == _pycocotools_stats(document, results)


def test_coco_in_category_groups_is_the_one_pass_result(lvis_fixture):
    """Memory bounded by evaluating categories in groups: the numbers of 1-category, 7-category and
    one-pass groups are the same, on real ground truth."""
    import random

    rng = random.Random(7)
    document = json.loads(json.dumps(lvis_fixture))
    for annotation in document["annotations"]:
        annotation["iscrowd"] = 0  # (pycocotools requires the field; LVIS files leave it out)
    results = _jittered_detections(document, rng, per_image_noise=2)
    ground_truth = GroundTruth(LVIS_FIXTURE, document)
    images = len(document["images"])
    one_pass = CocoEvaluator().evaluate(ground_truth, results)
    assert one_pass == _pycocotools_stats_dict(document, results)
    for per_pass in (1, 7):
        assert CocoEvaluator(pairs_per_pass=images * per_pass).evaluate(ground_truth, results) == one_pass


def _pycocotools_stats_dict(document: dict, results: list[dict]) -> dict:
    return dict(zip(CocoEvaluator.metric_names, _pycocotools_stats(document, results)))


def test_lvis_in_category_groups_is_the_librarys_one_pass_summary(lvis_fixture):
    """The LVIS evaluator's grouped passes and its own APr / APc / APf against faster-coco-eval's one-pass
    ``summarize`` (``stats_as_dict``), on the LVIS API's real ground truth with jittered detections."""
    import contextlib
    import io
    import random

    from faster_coco_eval import COCO, COCOeval_faster

    rng = random.Random(11)
    document = json.loads(json.dumps(lvis_fixture))
    results = _jittered_detections(document, rng, per_image_noise=2)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json.loads(json.dumps(document)))
        library = COCOeval_faster(gt, gt.loadRes(json.loads(json.dumps(results))), iouType="bbox", lvis_style=True,
                                  print_function=lambda *a, **k: None)
        library.params.maxDets = [300]
        library.evaluate()
        library.accumulate()
        library.summarize()
    names = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
             "APl": "AP_large", "APr": "APr", "APc": "APc", "APf": "APf"}
    expected = {name: (None if library.stats_as_dict[key] < 0 else round(100 * float(library.stats_as_dict[key]), 3))
                for name, key in names.items()}
    ground_truth = GroundTruth(LVIS_FIXTURE, document)
    for per_pass in (None, 1, 13):
        evaluator = LvisEvaluator() if per_pass is None else LvisEvaluator(pairs_per_pass=len(document["images"]) * per_pass)
        assert evaluator.evaluate(ground_truth, results) == expected


def test_ground_truth_with_an_annotation_id_twice_is_refused(tmp_path):
    """Two files concatenated by hand repeat annotation ids; evaluators index annotations by id and keep one,
    so the AP would silently change: ``scaledet eval`` refuses the file in one line instead."""
    import json

    from conftest import run_cli

    ground_truth = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
                                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0}],
                    "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    done = run_cli("scaledet", "eval", "--results", str(tmp_path / "r.json"), "--annotations", str(tmp_path / "gt.json"),
                   "--evaluator", "coco")
    assert done.returncode == 2 and "annotation id 1 appears twice" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
