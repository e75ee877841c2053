"""A self-contained HTML report of a build: what the union holds and where its datasets meet or clash.

Sections: datasets and counts; a dataset × dataset overlap heat map (the share of A's labels with a
neighbour in B at cosine ≥ t); the top cross-dataset concept clusters; ambiguity and granularity
findings; a 2-D PCA map of the label embeddings coloured by dataset. The figures are PNGs, written beside
the HTML and embedded in it, so the one file can be mailed or opened offline.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .atomic import atomic_write, atomic_write_text
from .output_dirs import REPORT_KIND, mark_output_dir, record_output_files
from .graph import LabelGraph
from .outputs import LabelSpaceOutput


def overlap_matrix(output: LabelSpaceOutput, threshold: float) -> tuple[list[str], np.ndarray]:
    """``M[a, b]`` = share of dataset a's labels whose nearest label in dataset b has cosine ≥ threshold."""
    datasets = output.datasets
    groups = {d: output.dataset_indices(d) for d in datasets}
    matrix = np.zeros((len(datasets), len(datasets)))
    for a, da in enumerate(datasets):
        for b, db in enumerate(datasets):
            best = (output.embeddings[groups[da]] @ output.embeddings[groups[db]].T).max(axis=1)
            matrix[a, b] = float((best >= threshold).mean())
    return datasets, matrix


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    centred = embeddings - embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_overlap(datasets: list[str], matrix: np.ndarray, threshold: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.7 * len(datasets)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right")
    ax.set_yticks(range(len(datasets)), datasets)
    ax.set_xlabel("has a neighbour in dataset B")
    ax.set_ylabel("labels of dataset A")
    for a in range(len(datasets)):
        for b in range(len(datasets)):
            ax.text(b, a, f"{matrix[a, b]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if matrix[a, b] < 0.6 else "black")
    ax.set_title(f"share of A's labels with a label in B at cosine ≥ {threshold}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_map(output: LabelSpaceOutput, annotate: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = pca_2d(output.embeddings)
    datasets = np.asarray(output.labels.column("dataset").to_pylist())
    ids = output.global_ids
    fig, ax = plt.subplots(figsize=(9, 7))
    colours = plt.get_cmap("tab10")
    for i, dataset in enumerate(output.datasets):
        mask = datasets == dataset
        ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.6, color=colours(i % 10), label=f"{dataset} ({mask.sum()})")
    index = {g: i for i, g in enumerate(ids)}
    for gid in annotate:
        if gid in index:
            x, y = points[index[gid]]
            ax.annotate(gid, (x, y), fontsize=7, alpha=0.85)
    ax.set_title("label embeddings, first two principal components")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd}h2{margin-top:1.6em}.note{color:#555;font-size:13px}"""




def write_report(output: LabelSpaceOutput, destination: Path, threshold: float = 0.8, top: int = 25) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    mark_output_dir(destination, REPORT_KIND, build=str(output.directory))
    graph = LabelGraph(output)
    datasets, matrix = overlap_matrix(output, threshold)
    overlap_png = plot_overlap(datasets, matrix, threshold)
    clusters = graph.clusters()
    annotate = [c["members"][0] for c in clusters[:12]]
    map_png = plot_map(output, annotate)
    pngs = {"overlap.png": overlap_png, "map.png": map_png}
    written = [atomic_write(destination / name, lambda tmp, data=data: tmp.write_bytes(data))
               for name, data in pngs.items()]
    manifest = output.manifest
    embed = {name: base64.b64encode(data).decode() for name, data in pngs.items()}
    ambiguities = graph.ambiguities()
    granularity = graph.granularity()
    parts = [
        f"<h1>scaledet label space: {manifest['n_labels']} labels</h1>",
        f"<p class=note>build {html.escape(str(output.directory))}, encoder {html.escape(manifest['encoder']['identity'][:60])}…, "
        f"templates {html.escape(', '.join(manifest['templates']))}, created {html.escape(manifest['created'])}</p>",
        "<h2>Datasets</h2>",
        _table(["dataset", "labels", "source", "sha256"],
               [[d["key"], d["count"], d["source"], d["sha256"][:12]] for d in manifest["datasets"]]),
        "<h2>Overlap between datasets</h2>",
        f"<p class=note>Row A, column B: the share of A's labels whose nearest label in B has cosine ≥ {threshold}.</p>",
        f"<img alt='overlap heat map' src='data:image/png;base64,{embed['overlap.png']}'>",
        f"<h2>Top cross-dataset concept clusters ({len(clusters)} in all)</h2>",
        _table(["datasets", "cohesion", "members"],
               [[len(c["datasets"]), f"{c['cohesion']:.2f}", ", ".join(c["members"])] for c in clusters[:top]]),
        f"<h2>Ambiguity ({len(ambiguities)} findings)</h2>",
        "<p class=note>Names with several senses in the union, and labels whose close neighbours in other datasets "
        "are far apart from each other.</p>",
        _table(["name", "kind", "min cosine", "labels"],
               [[a["name"], a["kind"], f"{a['min_cosine']:.2f}", ", ".join(a["labels"])] for a in ambiguities[:top]]),
        f"<h2>Granularity mismatches ({len(granularity)} findings)</h2>",
        "<p class=note>A label and a coarser label of another dataset (an OpenImages group whose children it "
        "resembles, or a catch-all such as 'Other Shoes').</p>",
        _table(["label", "coarser label", "reason", "cosine"],
               [[g["label"], g["coarser"], g["reason"], f"{g['cosine']:.2f}"] for g in granularity[:top]]),
        "<h2>Map of the label embeddings</h2>",
        f"<img alt='PCA map' src='data:image/png;base64,{embed['map.png']}'>",
    ]
    document = f"<!doctype html><html><head><meta charset=utf-8><title>scaledet label space</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    written.append(atomic_write_text(destination / "report.html", document))
    record_output_files(destination, written)
    return written[-1]
