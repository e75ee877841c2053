"""Writing the label graph and its findings: GraphML, Parquet edge list, JSON findings."""
from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq

from .io.atomic import atomic_write
from .io.output_dirs import GRAPH_KIND, mark_output_dir, record_output_files
from .graph import LabelGraph

EDGE_SCHEMA = pa.schema([("source", pa.string()), ("target", pa.string()), ("kind", pa.string()),
                         ("weight", pa.float32()), ("reason", pa.string())])



def write_graph_outputs(label_graph: LabelGraph, destination: Path) -> list[Path]:
    destination.mkdir(parents=True, exist_ok=True)
    mark_output_dir(destination, GRAPH_KIND)
    edges = [{"source": u, "target": v, "kind": d["kind"], "weight": float(d["weight"]), "reason": d.get("reason")}
             for u, v, d in label_graph.graph.edges(data=True)]
    findings = {
        "clusters": label_graph.clusters(),
        "merge_candidates": label_graph.merge_candidates(),
        "ambiguities": label_graph.ambiguities(),
        "granularity": label_graph.granularity(),
    }
    written = [
        atomic_write(destination / "label_graph.graphml", lambda p: nx.write_graphml(label_graph.graph, p)),
        atomic_write(destination / "edges.parquet", lambda p: pq.write_table(pa.Table.from_pylist(edges, schema=EDGE_SCHEMA), p)),
        atomic_write(destination / "findings.json", lambda p: p.write_text(json.dumps(findings, indent=1, ensure_ascii=False))),
    ]
    record_output_files(destination, written)
    return written
