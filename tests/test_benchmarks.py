"""The benchmark scripts at toy scale, so that they keep running (their real runs are documented)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_multidataset_benchmark_writes_table_json_and_plot(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "multidataset.py"), "--seeds", "2", "--runs", "0", "4",
                           "--iterations", "2", "--batch", "2", "--train-images", "4", "--test-images", "3",
                           "--size", "64", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "out" / "multidataset.md").read_text()
    assert "| 1 dataset (geo) |" in table and "| 4 datasets, hard only |" in table
    assert "* |" in table  # zero-shot columns are marked
    results = json.loads((tmp_path / "out" / "multidataset.json").read_text())["results"]
    assert len(results) == 4 and all(set(r["scores"]) == {"geo", "things", "paint", "blobs", "thermal", "toys", "negative"}
                                     for r in results)
    assert (tmp_path / "out" / "multidataset.png").stat().st_size > 10_000


def test_similarity_benchmark_prints_its_table():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "similarity.py"), "--sizes", "300", "600",
                           "--top-k", "8", "--dense-up-to", "300"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[1].split()[:2] == ["labels", "kind"]
    rows = [line.split() for line in lines[3:]]
    assert [(r[0], r[1]) for r in rows] == [("300", "dense"), ("300", "topk"), ("600", "topk")]
    assert rows[1][4].replace(",", "") == str(300 * 8)
