"""Translation tables against UniDet's hand-made label space: COCO → OpenImages, Objects365 → OpenImages.

    python benchmarks/translate.py [--references ../shared/references] [--build DIR]

Builds and merges as ``benchmarks/merges.py`` does (``scaledet-labels build --datasets coco o365 oid500
lvis``, ``merge``), then runs ``translate``'s table (:func:`scaledet.labelspace.translate.make_translator`)
for each pair. A UniDet row that lists a source label and an OpenImages label says the source label's
translation is that OpenImages label. Per source label of the reference:

* precision: of the labels translated as the same concept, the share translated to the reference's label;
* recall: of the reference's pairs, the share translated as the same concept to that label;
* coarser: labels the reference gives no OpenImages partner that translate to a coarser label (listed: a
  reference of equal concepts cannot say whether these are right).

The rows are split by a hash of their ``key`` into two halves, printed side by side: no rule of the
translation was designed on either (they come from ``merge``), and the two halves show how much the
numbers move between samples of names.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from merges import DEFAULT_REFERENCES, build_and_merge, unidet_pairs
from tables import table

PAIRS = (("coco", "oid500"), ("o365", "oid500"))


def half_of(key: str) -> str:
    return "A" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "B"


def reference_partners(unidet: Path, labels: list[dict], template: str, half: str | None) -> dict[str, set[str]]:
    """Global id → the global ids one UniDet row (of ``half``) lists with it."""
    import csv

    rows = [row for row in csv.DictReader(unidet.open(encoding="utf-8")) if half is None or half_of(row["key"]) == half]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pairs, universe, _ = unidet_pairs(Path(handle.name), labels, template)
    Path(handle.name).unlink()
    partners: dict[str, set[str]] = {label: set() for label in universe}
    for pair in pairs:
        a, b = sorted(pair)
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners


def score(translator, partners: dict[str, set[str]], source: str, target: str) -> tuple[tuple, list[str]]:
    from scaledet.labelspace.translate import COARSER, SAME

    ids = translator.relations.global_ids
    hits = same = expected = coarser = 0
    notes = []
    for j, how in translator.how.items():
        label = ids[j]
        wanted = {p for p in partners.get(label, ()) if p.startswith(f"{target}/")}
        mine = ids[translator.target_of[j]] if translator.target_of[j] >= 0 else None
        in_reference = label in partners
        if not in_reference:
            continue
        expected += len(wanted)
        if how == SAME:
            same += 1
            hits += mine in wanted
            if mine not in wanted:
                notes.append(f"  {label} → {mine} (reference: {', '.join(sorted(wanted)) or 'no partner'})")
        elif wanted:
            notes.append(f"  {label} → {mine or 'unmapped'} ({how}; reference: {', '.join(sorted(wanted))})")
        if how == COARSER and not wanted:
            coarser += 1
            notes.append(f"  {label} → {mine} (coarser; reference has no partner)")
    precision = hits / same if same else 1.0
    recall = hits / expected if expected else 1.0
    return (f"{source} → {target}", str(expected), str(same), str(hits), f"{precision:.3f}", f"{recall:.3f}",
            str(coarser)), notes


def report(build: Path, unidet: Path) -> None:
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.translate import make_translator

    labels = pq.read_table(build / "labels.parquet").to_pylist()
    template = json.loads((build / "manifest.json").read_text())["templates"][0]
    output = LabelSpaceOutput.load(build, with_embeddings=False)
    rows = []
    for half in ("A", "B"):
        partners = reference_partners(unidet, labels, template, half)
        for source, target in PAIRS:
            row, notes = score(make_translator(output, source, target), partners, source, target)
            rows.append((f"half {half}", *row))
            print(f"\nhalf {half}, {source} → {target}: translations that differ from the reference ({len(notes)})")
            print("\n".join(notes))
    print(f"\ntranslation tables of {build} against UniDet's manual label space (two halves of its rows)")
    print(table(rows, ("rows", "translation", "reference pairs", "same concept", "agree", "precision", "recall",
                       "coarser, no partner")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=Path, default=DEFAULT_REFERENCES)
    parser.add_argument("--build", type=Path, help="use this build (with its merge/) instead of building one")
    args = parser.parse_args()
    unidet = args.references / "unidet_manual_dev.csv"
    if not unidet.is_file():
        raise SystemExit(f"{args.references}: unidet_manual_dev.csv is not there")
    if args.build:
        report(args.build, unidet)
    else:
        with tempfile.TemporaryDirectory(prefix="scaledet-translate-") as work:
            report(build_and_merge(Path(work)), unidet)


if __name__ == "__main__":
    main()
