"""Concept merges (``scaledet-labels merge``) on the real built-in taxonomies with the real encoder."""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from scaledet.labelspace.merge import MergeSettings, merge_labels
from scaledet.labelspace.outputs import LabelSpaceOutput
from scaledet.labelspace.senses import is_modified_form, label_terms, singular


@pytest.fixture(scope="module")
def four_datasets(tmp_path_factory, minilm) -> LabelSpaceOutput:
    """coco + o365 + oid500 + lvis: the label spaces of the references in benchmarks/merges.py."""
    from scaledet.labelspace import build_labelspace, load_taxonomies

    out = tmp_path_factory.mktemp("merge") / "labelspace"
    build_labelspace(load_taxonomies(["coco", "o365", "oid500", "lvis"], []), minilm, out)
    return LabelSpaceOutput.load(out)


@pytest.fixture(scope="module")
def merged(four_datasets):
    result = merge_labels(four_datasets)
    return {gid: result.global_ids[result.concept_of[i]] for i, gid in enumerate(result.global_ids)}, result


def test_terms_singulars_and_alternatives():
    assert singular("skis") == "ski" and singular("cherries") == "cherry" and singular("glasses") == "glasses"
    names, wider = label_terms("Orange/Tangerine")
    assert {"orange tangerine", "orange"} <= names and wider == {"tangerine"}
    assert "bat" in label_terms("bat_(animal)")[0]  # the LVIS sense qualifier is context, not name
    assert is_modified_form("table", "side table") and is_modified_form("table tennis", "table tennis racket")
    assert not is_modified_form("table", "tablet")


def test_names_written_other_ways():
    """Two words as one, an LVIS qualifier as a modifier, and one-word alternatives sharing a head word."""
    assert "hotdog" in label_terms("hot dog")[0] and "hot dog" in label_terms("hot dog")[0]
    assert "american football" in label_terms("football_(American)")[0]
    assert "mouse" in label_terms("mouse_(computer_equipment)")[0]  # a qualifier of two words stays context
    names, wider = label_terms("Cutting/chopping Board")
    assert "cutting board" in names and wider == {"chopping board"}
    assert "bowlbasin" not in label_terms("Bowl/Basin")[0]  # a joined ``/`` name is not closed up


def test_compounds_that_wordnet_spells_otherwise():
    """WordNet lists ``table-tennis racquet`` / ``pingpong paddle`` and ``trash bin`` / ``trash can``; a wrong
    synonym of a single word (``sign`` ~ ``mark``, ``sign`` ~ ``signal``) never makes a compound."""
    from scaledet.labelspace.senses import SenseResolver
    from scaledet.labelspace.wordnet import load_wordnet

    wordnet = load_wordnet()
    resolver = SenseResolver(wordnet)
    racquet = set(wordnet.noun_senses("table-tennis racquet"))
    assert resolver.term_senses("table tennis racket") == racquet == resolver.term_senses("table tennis paddle")
    assert resolver.term_senses("trash bin can") == set(wordnet.noun_senses("trash can"))
    for term in ("stop sign", "traffic sign", "wild bird", "cigar cigarette", "potted plant"):
        assert resolver.term_senses(term) == set(), term


def test_compounds_spelled_otherwise_merge(merged):
    concept_of, _ = merged
    assert concept_of["o365/Table Teniis paddle"] == concept_of["oid500/Table tennis racket"]
    assert concept_of["o365/Trash bin Can"] == concept_of["lvis/trash_can"]
    assert concept_of["oid500/Table tennis racket"] != concept_of["lvis/tennis_racket"]


def test_a_modifier_that_narrows_nothing_merges(merged):
    """COCO's sports ball is COCO's only ball: it is LVIS's ball (the LVIS API maps both to ball.n.01).
    Objects365's Side Table sits beside its other tables: it stays a kind of table."""
    concept_of, result = merged
    assert concept_of["coco/sports ball"] == concept_of["lvis/ball"]
    assert concept_of["o365/American Football"] == concept_of["lvis/football_(American)"]
    assert concept_of["o365/Side Table"] != concept_of["lvis/table"]
    assert concept_of["o365/Other Fish"] != concept_of["lvis/fish"]  # a catch-all never merges this way


def test_at_most_one_label_per_dataset_per_concept(merged):
    concept_of, result = merged
    counts = Counter((concept, gid.split("/")[0]) for gid, concept in concept_of.items())
    assert max(counts.values()) == 1
    assert all(concept_of[concept] == concept for concept in concept_of.values())  # named by its first label


def test_same_names_merge_and_finer_labels_stay_parents(merged):
    concept_of, result = merged
    assert len({concept_of[g] for g in ("coco/person", "o365/Person", "oid500/Person", "lvis/person")}) == 1
    assert concept_of["oid500/Boy"] != concept_of["oid500/Person"]  # a coarser label is a parent
    assert concept_of["coco/tv"] != concept_of["o365/Moniter/TV"]  # Monitor/TV is wider than a tv
    outcomes = {(result.global_ids[c.a], result.global_ids[c.b]): c.outcome for c in result.candidates}
    assert outcomes[("o365/Side Table", "lvis/table")].startswith("coarser")
    monitor = "lvis/monitor_(computer_equipment) computer_monitor"  # (LVIS v1's name)
    assert concept_of["o365/Moniter/TV"] != concept_of[monitor]  # close prompts, but Monitor/TV is two things
    assert outcomes[("o365/Moniter/TV", monitor)].startswith("a / name is several things")
    assert concept_of[monitor] == concept_of["oid500/Computer monitor"]


def test_senses_keep_same_names_apart(merged):
    concept_of, _ = merged
    mouse = concept_of["coco/mouse"]
    assert concept_of["lvis/mouse_(computer_equipment)"] == mouse
    assert concept_of["oid500/Mouse [/m/04rmv]"] != mouse  # the animal (its hierarchy says Animal)
    assert concept_of["oid500/Bat"] == concept_of["lvis/bat_(animal)"] != concept_of["lvis/baseball_bat"]
    assert concept_of["coco/baseball bat"] == concept_of["lvis/baseball_bat"]
    assert concept_of["coco/hair drier"] == concept_of["lvis/hair_dryer"]  # WordNet synonyms
    assert concept_of["oid500/Bench [/m/0cvnqh]"] == concept_of["coco/bench"]  # the furniture one
    # the cases the graph's clusters got wrong
    assert concept_of["lvis/birdfeeder"] != concept_of["coco/bird"] != concept_of["lvis/birdcage"]
    assert concept_of["oid500/Tennis ball"] != concept_of["coco/tennis racket"]


def test_without_wordnet_names_still_merge(four_datasets):
    result = merge_labels(four_datasets, MergeSettings(use_wordnet=False))
    concept_of = {gid: result.global_ids[result.concept_of[i]] for i, gid in enumerate(result.global_ids)}
    assert not result.wordnet
    assert concept_of["coco/person"] == concept_of["o365/Person"] == concept_of["lvis/person"]


def test_merge_command_writes_parquet_unified_csv_and_applies_decisions(four_datasets, tmp_path):
    build = tmp_path / "labelspace"
    shutil.copytree(four_datasets.directory, build)
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(build))
    assert done.returncode == 0, done.stderr
    assert "concepts" in done.stdout and "largest concepts" in done.stdout
    table = pq.read_table(build / "merge" / "merged.parquet")
    assert table.column_names == ["global_id", "dataset", "name", "concept", "concept_name", "why"]
    assert table.column("global_id").to_pylist() == four_datasets.global_ids
    why = dict(zip(table.column("global_id").to_pylist(), table.column("why").to_pylist()))
    assert "same name 'person'" in why["o365/Person"]
    with open(build / "merge" / "unified.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["key", "coco_id", "coco_name", "o365_id", "o365_name", "oid500_id", "oid500_name",
                             "lvis_id", "lvis_name"]
    person = next(r for r in rows if r["coco_name"] == "person")
    assert person["key"] == "person" and person["o365_name"] == "Person" and person["oid500_id"] == "/m/01g317"

    # the user rejects one merge and accepts another in the review file; the next merge applies both
    review = build / "merge" / "review.csv"
    with open(review, newline="", encoding="utf-8") as handle:
        reviewed = list(csv.DictReader(handle))
    for row in reviewed:
        if (row["a"], row["b"]) == ("coco/person", "o365/Person"):
            row["decision"] = "reject"
    reviewed.append({"a": "coco/potted plant", "b": "oid500/Houseplant", "decision": "Accept"})
    reviewed.append({"a": "coco/car", "b": "lvis/person", "decision": "reject"})  # never a candidate: stays apart
    with open(review, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(reviewed[0]))
        writer.writeheader()
        writer.writerows(reviewed)
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(build), "--decisions", str(review))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(build / "merge" / "merged.parquet").to_pylist()
    concept = {r["global_id"]: r["concept"] for r in table}
    assert concept["coco/person"] != concept["o365/Person"]
    assert concept["coco/potted plant"] == concept["oid500/Houseplant"]
    assert concept["coco/car"] != concept["lvis/person"]
    assert concept["lvis/person"] in (concept["coco/person"], concept["o365/Person"])
    with open(review, newline="", encoding="utf-8") as handle:
        kept = {(r["a"], r["b"]): r["decision"] for r in csv.DictReader(handle)}
    assert kept[("coco/person", "o365/Person")] == "reject"  # decisions survive into the new review file


def test_merge_refuses_bad_decisions_and_foreign_directories(four_datasets, tmp_path):
    build = tmp_path / "labelspace"
    shutil.copytree(four_datasets.directory, build)
    bad = tmp_path / "decisions.csv"
    bad.write_text("a,b,decision\ncoco/person,o365/Nobody,accept\n", encoding="utf-8")
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(build), "--decisions", str(bad))
    assert done.returncode == 2 and "decisions.csv:2" in done.stderr and "o365/Nobody" in done.stderr
    bad.write_text("a,b,decision\ncoco/person,o365/Person,maybe\n", encoding="utf-8")
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(build), "--decisions", str(bad))
    assert done.returncode == 2 and "'maybe'" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(build), "--out", str(mine))
    assert done.returncode == 2 and "--force" in done.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and not (mine / "merged.parquet").exists()


def test_fold_detections_keeps_one_box_per_concept():
    from scaledet.detector.concepts import fold_detections

    concepts = {"a/circle": ("a/circle", "circle"), "b/round disk": ("a/circle", "circle"), "a/square": ("a/square", "square")}
    detections = [{"label": "a/circle", "score": 0.6, "box": [0, 0, 10, 10], "category_id": 1},
                  {"label": "b/round disk", "score": 0.9, "box": [1, 0, 11, 10], "category_id": 4},
                  {"label": "a/square", "score": 0.8, "box": [0, 0, 10, 10], "category_id": 2},
                  {"label": "a/circle", "score": 0.5, "box": [50, 50, 60, 60], "category_id": 1}]
    folded = fold_detections(detections, concepts)
    assert [(d["label"], d["score"], d["labels"]) for d in folded] == [
        ("circle", 0.9, ["a/circle", "b/round disk"]), ("square", 0.8, ["a/square"]), ("circle", 0.5, ["a/circle"])]


def test_predict_reports_one_detection_per_concept(shapes_world, trained_checkpoint, tmp_path):
    build = tmp_path / "labelspace"
    shutil.copytree(shapes_world / "labelspace", build)
    image = shapes_world / "shapesa" / "val" / "images" / "shapesa_00001.png"
    arguments = ["scaledet", "predict", str(image), "--checkpoint", str(trained_checkpoint),
                 "--labelspace", str(build), "--score-threshold", "0"]
    done = run_cli(*arguments, "--per-concept", "--out", str(tmp_path / "p0"))
    assert done.returncode == 2 and "scaledet-labels merge" in done.stderr  # no merges yet: one line says how
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("a,b,decision\nshapesa/circle,shapesb/round disk,accept\nshapesa/square,shapesb/box,accept\n")
    assert run_cli("scaledet-labels", "merge", "--labelspace", str(build), "--decisions", str(decisions)).returncode == 0
    per_label = run_cli(*arguments, "--out", str(tmp_path / "p1"))
    per_concept = run_cli(*arguments, "--per-concept", "--out", str(tmp_path / "p2"))
    assert per_label.returncode == 0 and per_concept.returncode == 0, per_concept.stderr
    import json

    (by_label,) = json.loads((tmp_path / "p1" / "detections.json").read_text())
    (by_concept,) = json.loads((tmp_path / "p2" / "detections.json").read_text())
    assert {d["label"] for d in by_label["detections"]} <= {"shapesa/circle", "shapesa/square", "shapesa/triangle",
                                                          "shapesb/round disk", "shapesb/box"}
    assert by_concept["detections"] and {d["label"] for d in by_concept["detections"]} <= {"circle", "square", "triangle"}
    assert len(by_concept["detections"]) < len(by_label["detections"])
    assert all(d["concept"].startswith("shapesa/") and d["labels"] for d in by_concept["detections"])


def test_merges_benchmark_scores_against_the_references(four_datasets, tmp_path):
    """benchmarks/merges.py on this build: the table it prints, and a floor well below today's scores
    (UniDet 0.966 / 0.977, COCO ↔ LVIS 1.000 / 0.987, docs/labelspace.md) so a regression shows."""
    import subprocess
    import sys

    from conftest import REPO

    references = REPO.parent / "shared" / "references"
    if not (references / "unidet_manual_dev.csv").is_file():
        pytest.skip(f"reference label spaces not present at {references} (a checkout without ../shared)")
    build = tmp_path / "labelspace"
    shutil.copytree(four_datasets.directory, build)
    assert run_cli("scaledet-labels", "merge", "--labelspace", str(build)).returncode == 0
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "merges.py"), "--build", str(build)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("UniDet manual (COCO", "LVIS API COCO"))}
    unidet, synsets = rows["UniDet manual (COCO + O365 + OID)"], rows["LVIS API COCO → synset (COCO ↔ LVIS)"]
    assert float(unidet[-2]) >= 0.93 and float(unidet[-1]) >= 0.93
    assert float(synsets[-2]) >= 0.95 and float(synsets[-1]) >= 0.95
    assert "missed pairs" in done.stdout and "left out because" in done.stdout


def test_bundled_wordnet_facts_are_what_the_script_makes_of_the_database(tmp_path):
    """data/wordnet/nouns.json.gz holds exactly what data/make_wordnet_facts.py writes from a WordNet 3.0
    database (Debian's wordnet-base); every machine then merges with the same facts, database or not."""
    import gzip
    import json
    import subprocess
    import sys
    from pathlib import Path

    from conftest import REPO
    from scaledet.labelspace.wordnet import load_wordnet

    wordnet = load_wordnet()
    shoe = wordnet.offset("shoe.n.01")
    assert shoe is not None and "footwear" in {w for o in wordnet.ancestors(shoe) for w in wordnet.words(o)}
    assert wordnet.lexicographer_file(wordnet.offset("dog.n.01")) == 5  # noun.animal
    source = Path("/usr/share/wordnet")
    if not (source / "index.noun").is_file():
        pytest.skip("no WordNet database at /usr/share/wordnet to regenerate the facts from (Debian's wordnet-base)")
    done = subprocess.run([sys.executable, str(REPO / "data" / "make_wordnet_facts.py"), "--source", str(source),
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert gzip.decompress((tmp_path / "nouns.json.gz").read_bytes()) == gzip.decompress(
        (REPO / "data" / "wordnet" / "nouns.json.gz").read_bytes())
    assert (tmp_path / "LICENSE").read_text() == (REPO / "data" / "wordnet" / "LICENSE").read_text()
    assert json.loads(gzip.decompress((tmp_path / "nouns.json.gz").read_bytes()))["schema"] == "scaledet.wordnet-nouns/1"
