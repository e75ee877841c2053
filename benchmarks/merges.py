"""Concept merges against hand-made references: pairwise precision and recall, one table.

    python benchmarks/merges.py [--references ../shared/references] [--build DIR]

Runs the two commands a user would, ``scaledet-labels build --datasets coco o365 oid500 lvis`` and
``scaledet-labels merge``, then scores ``merge/merged.parquet`` pair by pair against

* UniDet's hand-made COCO + Objects365 + OpenImages label space (``unidet_manual_dev.csv``, half of its rows):
  two labels are a reference pair when one row lists both. Objects365 names there are UniDet's (v1
  spellings); they are matched to the build's v2 names by case, ``/`` alternatives, the build's prompt
  names and singulars, and a row with a name that matches nothing is left out (listed).
* the LVIS API's COCO → WordNet synset map (``coco_to_synset.json``): ``coco/X`` and ``lvis/Y`` are a
  reference pair when Y's synset is X's.

A merged pair counts when at least one of its labels is in the reference (a row holds all partners of a
label, so any other partner is a false positive). Goal: precision and recall ≥ 0.98 on each. Every miss
and false pair is printed with the merge's own reason.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import pyarrow.parquet as pq

from scaledet.labelspace.export import embedded_name
from tables import table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCES = REPO.parent / "shared" / "references"
DATASETS = ["coco", "o365", "oid500", "lvis"]
UNIDET_COLUMNS = {"coco_boxable_name": "coco", "obj365_boxable_name": "o365", "OID_id": "oid500"}


def run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr or done.stdout}")


def build_and_merge(work: Path) -> Path:
    bin_dir = Path(sys.executable).parent
    build = work / "build"
    run([str(bin_dir / "scaledet-labels"), "build", *[a for d in DATASETS for a in ("--datasets", d)],
         "--out", str(build), "--quiet"])
    run([str(bin_dir / "scaledet-labels"), "merge", "--labelspace", str(build)])
    return build


def _keys(text: str) -> set[str]:
    """Case, spaces and slashes aside, and the singular: ``trash bin/can`` ~ ``Trash bin Can``."""
    from scaledet.labelspace.senses import singular

    lower = " ".join(text.lower().replace("/", " ").split())
    return {lower, singular(lower), lower.replace(" ", ""), singular(lower).replace(" ", "")}


def o365_lookup(labels: list[dict], template: str) -> dict[str, set[str]]:
    """Matching key → o365 global ids, from the v2 name, the build's prompt name and, for a v2 name with
    ``/``, each alternative (UniDet's ``bowl`` is v2's ``Bowl/Basin``). A UniDet name with a ``/`` that v2
    lacks (``bread/bun``) matches nothing rather than a guess."""
    lookup: dict[str, set[str]] = defaultdict(set)
    for row in labels:
        if row["dataset"] == "o365":
            prompt = embedded_name(row["prompt"], template)
            texts = [row["name"], prompt, *row["name"].split("/"), *prompt.split(" or ")]
            for text in texts:
                for key in _keys(text):
                    lookup[key].add(row["global_id"])
    return lookup


def unidet_pairs(path: Path, labels: list[dict], template: str) -> tuple[set[frozenset], set[str], list[str]]:
    by_local = {(row["dataset"], row["local_id"]): row["global_id"] for row in labels}
    by_name = {(row["dataset"], row["name"]): row["global_id"] for row in labels}
    o365 = o365_lookup(labels, template)
    pairs, universe, unmatched = set(), set(), []
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    claims = defaultdict(list)  # an o365 label two UniDet rows both match (``orange``, ``tangerine``)
    for row in rows:
        name = row["obj365_boxable_name"].strip()
        hits = set().union(*(o365.get(k, set()) for k in _keys(name))) if name else set()
        if len(hits) == 1:
            claims[next(iter(hits))].append(row["key"])
    for row in rows:
        members, missing = [], []
        for column, dataset in UNIDET_COLUMNS.items():
            value = row[column].strip()
            if not value:
                continue
            if dataset == "o365":
                hits = set().union(*(o365.get(k, set()) for k in _keys(value)))
                found = next(iter(hits)) if len(hits) == 1 and len(claims[next(iter(hits))]) == 1 else None
            elif dataset == "oid500":
                found = by_local.get((dataset, value))
            else:
                found = by_name.get((dataset, value))
            (members if found else missing).append(found or f"{dataset}:{value}")
        if missing:
            unmatched.append(f"{row['key']} ({', '.join(missing)})")
            continue
        universe.update(members)
        pairs.update(frozenset(p) for p in combinations(members, 2))
    return pairs, universe, unmatched


def synset_pairs(path: Path, labels: list[dict]) -> tuple[set[frozenset], set[str]]:
    coco_synset = {name: entry["synset"] for name, entry in json.loads(path.read_text()).items()}
    lvis_by_synset = defaultdict(list)
    for row in labels:
        if row["dataset"] == "lvis" and row["synset"]:
            lvis_by_synset[row["synset"]].append(row["global_id"])
    pairs, universe = set(), set()
    for row in labels:
        if row["dataset"] == "coco" and row["name"] in coco_synset:
            universe.add(row["global_id"])
            for partner in lvis_by_synset.get(coco_synset[row["name"]], []):
                universe.add(partner)
                pairs.add(frozenset((row["global_id"], partner)))
    return pairs, universe


def merged_pairs(merged: list[dict], datasets: set[str], universe: set[str]) -> set[frozenset]:
    by_concept = defaultdict(list)
    for row in merged:
        if row["dataset"] in datasets:
            by_concept[row["concept"]].append(row["global_id"])
    return {frozenset(p) for members in by_concept.values() for p in combinations(members, 2)
            if p[0] in universe or p[1] in universe}


def score(name: str, reference: set[frozenset], predicted: set[frozenset], why: dict[str, str]) -> tuple:
    hits = reference & predicted
    precision = len(hits) / len(predicted) if predicted else 1.0
    recall = len(hits) / len(reference) if reference else 1.0
    print(f"\n{name}: missed pairs ({len(reference - predicted)})")
    for pair in sorted(reference - predicted, key=sorted):
        a, b = sorted(pair)
        print(f"  {a} — {b}")
    print(f"{name}: merged pairs the reference does not have ({len(predicted - reference)})")
    for pair in sorted(predicted - reference, key=sorted):
        a, b = sorted(pair)
        print(f"  {a} — {b}   ({why.get(b) or why.get(a)})")
    return (name, str(len(reference)), str(len(predicted)), str(len(hits)), f"{precision:.3f}", f"{recall:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=Path, default=DEFAULT_REFERENCES)
    parser.add_argument("--build", type=Path, help="score this build's merge/ instead of building one")
    args = parser.parse_args()
    unidet, synsets = args.references / "unidet_manual_dev.csv", args.references / "coco_to_synset.json"
    if not (unidet.is_file() and synsets.is_file()):
        raise SystemExit(f"{args.references}: the reference files are not there (unidet_manual_dev.csv, coco_to_synset.json)")
    if args.build:
        report(args.build, unidet, synsets)
    else:
        with tempfile.TemporaryDirectory(prefix="scaledet-merges-") as work:
            report(build_and_merge(Path(work)), unidet, synsets)


def report(build: Path, unidet: Path, synsets: Path) -> None:
    """Scores ``build``'s merge against both references and prints the misses, the extras and the table."""
    labels = pq.read_table(build / "labels.parquet").to_pylist()
    merged = pq.read_table(build / "merge" / "merged.parquet").to_pylist()
    why = {row["global_id"]: row["why"] for row in merged}

    rows = []
    template = json.loads((build / "manifest.json").read_text())["templates"][0]
    reference, universe, unmatched = unidet_pairs(unidet, labels, template)
    predicted = merged_pairs(merged, {"coco", "o365", "oid500"}, universe)
    rows.append(score("UniDet manual (COCO + O365 + OID)", reference, predicted, why))
    reference, universe = synset_pairs(synsets, labels)
    predicted = {p for p in merged_pairs(merged, {"coco", "lvis"}, universe)
                 if {gid.split("/")[0] for gid in p} == {"coco", "lvis"}}
    rows.append(score("LVIS API COCO → synset (COCO ↔ LVIS)", reference, predicted, why))

    print(f"\nUniDet rows left out because a name matches no label of the build ({len(unmatched)}):")
    for entry in unmatched:
        print(f"  {entry}")
    print(f"\nconcept merges of {build} (goal: precision and recall ≥ 0.98)")
    print(table(rows, ("reference", "pairs", "merged", "agree", "precision", "recall")))


if __name__ == "__main__":
    main()
