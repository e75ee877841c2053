"""Writing and reading concept merges (docs/outputs.md, "merge/").

``merged.parquet``  one row per label of the build, in label order: ``global_id``, ``dataset``, ``name``,
                    ``concept`` (the global id of the concept's first label), ``concept_name`` and ``why``
                    (the evidence the label joined by). Key-value metadata ``scaledet`` ties it to the
                    build's embeddings, so a merge of another build is refused.
``unified.csv``     the unified vocabulary in the shape of UniDet's label-space files: ``key``, then per
                    dataset ``<dataset>_id`` and ``<dataset>_name`` (empty where a dataset has no label).
``review.csv``      every candidate pair and its outcome, with an empty ``decision`` column: write
                    ``accept`` or ``reject`` there and pass the file to the next ``merge --decisions``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .io.atomic import atomic_write, atomic_write_text
from .io.errors import OutputError, one_line
from .io.parquet_files import read_parquet
from .merge import MergeResult
from .io.output_dirs import MERGE_KIND, record_output_files, verify_recorded_file
from .io.text_files import csv_cell
from .outputs import LabelSpaceOutput, whole_output

MERGED_FILE = "merged.parquet"
UNIFIED_FILE = "unified.csv"
REVIEW_FILE = "review.csv"
MERGED_SCHEMA = pa.schema([("global_id", pa.string()), ("dataset", pa.string()), ("name", pa.string()),
                           ("concept", pa.string()), ("concept_name", pa.string()), ("why", pa.string())])
REVIEW_COLUMNS = ("a", "b", "evidence", "detail", "cosine", "outcome", "decision")


def _csv_text(header: tuple[str, ...] | list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)  # label names may start with "="
    return buffer.getvalue()


def unified_rows(result: MergeResult) -> tuple[list[str], list[list[str]]]:
    """One row per concept, UniDet's shape: key, then id and name per dataset in build order."""
    header = ["key"] + [f"{d}_{field}" for d in result.dataset_order for field in ("id", "name")]
    rows = []
    for anchor, members in sorted(result.concepts().items()):
        cells = {result.datasets[m]: m for m in members}
        row = [result.concept_name(anchor)]
        for dataset in result.dataset_order:
            member = cells.get(dataset)
            row += ["", ""] if member is None else [result.local_ids[member], result.names[member]]
        rows.append(row)
    return header, rows


def write_merge_outputs(result: MergeResult, output: LabelSpaceOutput, destination: Path,
                        settings: dict) -> list[Path]:
    table = pa.Table.from_pylist([
        {"global_id": gid, "dataset": result.datasets[i], "name": result.names[i],
         "concept": result.global_ids[result.concept_of[i]], "concept_name": result.concept_name(result.concept_of[i]),
         "why": result.why[i]}
        for i, gid in enumerate(result.global_ids)
    ], schema=MERGED_SCHEMA.with_metadata({b"scaledet": json.dumps({
        "n_labels": len(result.global_ids), "embeddings_sha256": output.embeddings_sha256,
        "wordnet": result.wordnet, "decisions_applied": result.decisions_applied, "settings": settings}).encode()}))
    header, rows = unified_rows(result)
    review = [[result.global_ids[c.a], result.global_ids[c.b], c.evidence, c.detail, f"{c.cosine:.4f}", c.outcome,
               c.decision] for c in result.candidates]
    # the three files appear together or not at all: a new merged.parquet never sits beside an old unified.csv
    with whole_output(destination, MERGE_KIND, build=str(output.directory)) as staging:
        written = [
            atomic_write(staging / MERGED_FILE, lambda p: pq.write_table(table, p)),
            atomic_write_text(staging / UNIFIED_FILE, _csv_text(header, rows)),
            atomic_write_text(staging / REVIEW_FILE, _csv_text(REVIEW_COLUMNS, review)),
        ]
        record_output_files(staging, written)
    return [destination / path.name for path in written]


def load_concepts(path: Path, output: LabelSpaceOutput) -> list[tuple[str, str]]:
    """(concept, concept name) of every label of ``output``, in label order, from a ``merged.parquet``."""
    verify_recorded_file(path, required=True)  # nothing else in the file would show a flipped byte
    try:
        table = read_parquet(path)
        meta = json.loads((table.schema.metadata or {}).get(b"scaledet", b"null"))
    except (OSError, ValueError, pa.ArrowException) as err:
        raise OutputError(f"{path}: not a readable merge file ({one_line(err)})") from None
    if not isinstance(meta, dict) or not {"global_id", "concept", "concept_name"} <= set(table.column_names):
        raise OutputError(f"{path}: not a scaledet merge file (run 'scaledet-labels merge')")
    expected = output.embeddings_sha256
    if table.num_rows != len(output.global_ids) or (expected and meta.get("embeddings_sha256") not in (None, expected)):
        raise OutputError(f"{path}: made from another build than {output.directory}; run 'scaledet-labels merge --labelspace {output.directory}'")
    if table.column("global_id").to_pylist() != output.global_ids:
        raise OutputError(f"{path}: its labels are not those of {output.directory}")
    return list(zip(table.column("concept").to_pylist(), table.column("concept_name").to_pylist()))
