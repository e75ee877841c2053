"""Writing the label graph and its findings: GraphML, Parquet edge list, JSON findings."""
from __future__ import annotations

import json
import os
from pathlib import Path

import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq

from .graph import LabelGraph

EDGE_SCHEMA = pa.schema([("source", pa.string()), ("target", pa.string()), ("kind", pa.string()),
                         ("weight", pa.float32()), ("reason", pa.string())])


def _replace(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_graph_outputs(label_graph: LabelGraph, destination: Path) -> list[Path]:
    destination.mkdir(parents=True, exist_ok=True)
    edges = [{"source": u, "target": v, "kind": d["kind"], "weight": float(d["weight"]), "reason": d.get("reason")}
             for u, v, d in label_graph.graph.edges(data=True)]
    findings = {
        "clusters": label_graph.clusters(),
        "merge_candidates": label_graph.merge_candidates(),
        "ambiguities": label_graph.ambiguities(),
        "granularity": label_graph.granularity(),
    }
    return [
        _replace(destination / "label_graph.graphml", lambda p: nx.write_graphml(label_graph.graph, p)),
        _replace(destination / "edges.parquet", lambda p: pq.write_table(pa.Table.from_pylist(edges, schema=EDGE_SCHEMA), p)),
        _replace(destination / "findings.json", lambda p: p.write_text(json.dumps(findings, indent=1, ensure_ascii=False))),
    ]
