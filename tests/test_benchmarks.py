"""The benchmark scripts at toy scale, so that they keep running (their real runs are documented)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_multidataset_benchmark_reports_paired_intervals(tmp_path):
    """Paired comparisons at toy scale: soft vs hard, and the geo model scored on things through
    translation vs given things' words as text. The intervals are recomputed here from the raw per-seed
    scores with scipy's Student t, independently of benchmarks/paired.py."""
    from scipy import stats

    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "multidataset.py"), "--seeds", "2",
                           "--runs", "0", "1", "2", "--iterations", "2", "--batch", "2", "--train-images", "4",
                           "--test-images", "3", "--size", "64", "--work", str(tmp_path / "work"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "multidataset.json").read_text())
    assert {"torch", "threads", "cpu"} <= set(report["settings"])
    by_run = {(r["run"], r["seed"]): r for r in report["results"]}

    def check(interval, differences):
        mean = sum(differences) / 2
        half = stats.t.ppf(0.975, df=1) * stats.tstd(differences) / 2 ** 0.5
        assert interval["differences"] == pytest.approx(differences)
        assert (interval["mean"], interval["low"], interval["high"]) == pytest.approx(
            (mean, mean - half, mean + half), abs=1e-3)

    check(report["paired"]["soft loss (hard + soft − hard only)"]["geo"],
          [by_run[("4 datasets, hard + soft", s)]["scores"]["geo"]["AP50"]
           - by_run[("4 datasets, hard only", s)]["scores"]["geo"]["AP50"] for s in range(2)])
    # the geo model reaches things (circle ≡ round disk, square ≡ box) and thermal (same names) through the
    # eval build's concepts, and nothing else; a 4-dataset model is not scored through translation
    geo = by_run[("1 dataset (geo)", 0)]
    assert sorted(geo["translated"]) == ["thermal", "things"]
    assert by_run[("4 datasets, hard + soft", 0)]["translated"] == {}
    check(report["translation"]["1 dataset (geo)"]["things"],
          [by_run[("1 dataset (geo)", s)]["translated"]["things"]["AP50"]
           - by_run[("1 dataset (geo)", s)]["scores"]["things"]["AP50"] for s in range(2)])
    table = (tmp_path / "out" / "multidataset.md").read_text()
    assert "| soft loss (hard + soft − hard only) |" in table and "t-interval" in table
    assert "Scoring across taxonomies" in table and "| 1 dataset (geo) | — |" in table
    assert (tmp_path / "out" / "multidataset.png").stat().st_size > 10_000


def test_pseudo_label_benchmark_runs_teacher_pseudo_labels_and_student(tmp_path):
    """At toy scale: per seed a federated run, its checkpoint as teacher over the unified training images,
    a student on the pseudo-labelled file; paired differences and both precisions are reported."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pseudo_labels.py"), "--seeds", "2",
                           "--iterations", "1", "--batch", "2", "--train-images", "2", "--test-images", "1",
                           "--val-images", "2", "--size", "64", "--precision", "0.5", "--work", str(tmp_path / "work"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "pseudo_labels.json").read_text())
    assert [r["run"] for r in report["results"]] == ["federated", "student"] * 2
    assert [p["seed"] for p in report["pseudo_boxes"]] == [0, 1]
    scores = {(r["run"], r["seed"]): r["scores"]["geo"]["AP50"] for r in report["results"]}
    assert report["paired"]["geo"]["differences"] == pytest.approx(
        [scores[("student", s)] - scores[("federated", s)] for s in range(2)])
    assert (tmp_path / "work" / "pseudo-0" / "pseudo_labels.csv").is_file()
    assert (tmp_path / "work" / "pseudo-0" / "teacher-calibration" / "progress.json").is_file()
    assert "| pseudo labels (student − federated) |" in (tmp_path / "out" / "pseudo_labels.md").read_text()


def test_similarity_benchmark_prints_its_table():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "similarity.py"), "--sizes", "300", "600",
                           "--top-k", "8", "--dense-up-to", "300"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    step, command = done.stdout.split("\n\n")[:2]
    lines = step.splitlines()
    assert lines[1].split()[:2] == ["labels", "kind"] and "faiss IndexFlatIP" in lines[1]
    rows = [line.split() for line in lines[3:]]
    assert [(r[0], r[1]) for r in rows] == [("300", "dense"), ("300", "topk"), ("600", "topk")]
    assert rows[1][4].replace(",", "") == str(300 * 8)
    assert rows[1][-1].endswith("×") and float(rows[1][-1][:-1]) > 0  # beside faiss (a dev dependency)
    # the whole command, as a process: the largest size cold and every size warm, with where the peak rose
    rows = [line.split() for line in command.splitlines()[3:] if line and not line.startswith("growth")]
    assert [(r[0], r[1]) for r in rows] == [("300", "warm"), ("600", "cold"), ("600", "warm")]
    assert all(r[7] in ("union", "embed", "write", "similarity") for r in rows)
    assert "MiB per 10k labels" in command


def test_evaluation_benchmark_agrees_with_the_official_evaluator():
    """benchmarks/evaluation.py at toy scale: the three evaluators, each a process, print the same AP."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "evaluation.py"), "--scale", "0.002",
                           "--detections-per-image", "20"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("  ") for line in done.stdout.splitlines() if line.startswith(("scaledet", "pycocotools", "faster"))]
    values = [[cell.strip() for cell in row if cell.strip()][-2:] for row in rows if not row[0].startswith("  ")]
    assert len(values) == 3 and values[0] == values[1] == values[2], done.stdout


def test_demo_drawings_benchmark_replays_every_object_the_generator_drew(tmp_path, monkeypatch):
    """The held-out world's objects are re-rendered from the generator's seed, not read from annotations
    (which leave stars out of geo and triangles out of things): the replay must give back every annotated
    box of the written files, plus the shapes those datasets do not name."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from demo_drawings import held_out_world

    world = held_out_world(tmp_path, images=6, seed=2, size=112)
    assert set(world) == {"geo", "things"}
    for name, entries in world.items():
        document = json.loads((tmp_path / name / "annotations.json").read_text())
        category = {c["id"]: c["name"] for c in document["categories"]}
        files = {i["id"]: i["file_name"] for i in document["images"]}
        annotated = sorted((files[a["image_id"]], category[a["category_id"]], tuple(a["bbox"]))
                           for a in document["annotations"])
        names = {"geo": {"circle": "circle", "square": "square", "triangle": "triangle"},
                 "things": {"circle": "round disk", "square": "box", "star": "star"}}[name]
        replayed = sorted((path.name, names[o.shape], tuple(round(v, 2) for v in o.box))
                          for path, objects in entries for o in objects if o.shape in names)
        assert annotated == replayed and all(path.is_file() for path, _ in entries)
        unnamed = [o for _, objects in entries for o in objects if o.shape not in names]
        assert all(o.shape == ("star" if name == "geo" else "triangle") for o in unnamed)
