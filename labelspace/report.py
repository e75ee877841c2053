"""A self-contained HTML report of a build: what the union holds and where its datasets meet or clash.

Sections: datasets and counts; a dataset × dataset overlap heat map (the share of A's labels with a
neighbour in B at cosine ≥ t; the diagonal, always full, is left out); the concepts several datasets share,
from the build's ``merge`` (or, when none was run, from the same merge rules); names that mean different
things in different datasets (the pairs ``merge`` kept apart for their senses); granularity findings; and
a 2-D PCA map of the label embeddings. The map is an SVG a browser can explore: every point names its label
on hover, and only the anchors of the largest shared concepts are written on it. The figures are written
beside the HTML and embedded in it, so the one file can be mailed or opened offline.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter
from pathlib import Path

import numpy as np

from .io.atomic import atomic_write, atomic_write_text
from .io.text_files import csv_cell_value, read_text
from .io.output_dirs import REPORT_KIND, mark_output_dir, record_output_files
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
    shown = np.ma.masked_array(matrix, mask=np.eye(len(datasets), dtype=bool))  # A against itself: always 100 %
    colour_map = plt.get_cmap("viridis").copy()
    colour_map.set_bad("#e6e6e6")
    image = ax.imshow(shown, cmap=colour_map, vmin=0, vmax=1)
    ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right")
    ax.set_yticks(range(len(datasets)), datasets)
    ax.set_xlabel("has a neighbour in dataset B")
    ax.set_ylabel("labels of dataset A")
    for a in range(len(datasets)):
        for b in range(len(datasets)):
            ax.text(b, a, "—" if a == b else f"{matrix[a, b]:.0%}", ha="center", va="center", fontsize=8,
                    color="black" if a == b or matrix[a, b] >= 0.6 else "white")
    ax.set_title(f"share of A's labels with a label in B at cosine ≥ {threshold}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    png = _figure_png(fig)
    plt.close(fig)
    return png


MAP_WIDTH, MAP_HEIGHT, MAP_MARGIN = 960, 640, 24
DATASET_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"]


def map_svg(output: LabelSpaceOutput, written_on: list[tuple[str, str]]) -> str:
    """The PCA map as SVG: one point per label, its global id and name on hover (``<title>``), a legend
    per dataset, and the captions of ``written_on`` (global id, caption) written beside their points
    wherever they do not cover one another (a cloud of 2,000 captions is unreadable; the hover text serves the rest)."""
    points = pca_2d(output.embeddings)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    width, height = MAP_WIDTH - 2 * MAP_MARGIN, MAP_HEIGHT - 2 * MAP_MARGIN - 24
    xy = np.column_stack([MAP_MARGIN + (points[:, 0] - low[0]) / span[0] * width,
                          MAP_MARGIN + 24 + (high[1] - points[:, 1]) / span[1] * height])
    datasets = output.labels.column("dataset").to_pylist()
    names = output.labels.column("name").to_pylist()
    colour = {d: DATASET_COLOURS[i % len(DATASET_COLOURS)] for i, d in enumerate(output.datasets)}
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {MAP_WIDTH} {MAP_HEIGHT}' width='{MAP_WIDTH}' "
             f"height='{MAP_HEIGHT}' font-family='system-ui,sans-serif' font-size='12'>",
             f"<rect width='{MAP_WIDTH}' height='{MAP_HEIGHT}' fill='white'/>"]
    counts = Counter(datasets)
    x_legend = MAP_MARGIN
    for dataset in output.datasets:
        text = f"{dataset} ({counts[dataset]})"
        parts.append(f"<circle cx='{x_legend + 5}' cy='14' r='5' fill='{colour[dataset]}'/>"
                     f"<text x='{x_legend + 14}' y='18'>{html.escape(text)}</text>")
        x_legend += 24 + 7 * len(text)
    for (x, y), gid, name, dataset in zip(xy.tolist(), output.global_ids, names, datasets):
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.6' fill='{colour[dataset]}' fill-opacity='0.65'>"
                     f"<title>{html.escape(gid)}: {html.escape(name)}</title></circle>")
    index = {g: i for i, g in enumerate(output.global_ids)}
    placed: list[tuple[float, float, float, float]] = []
    for gid, caption in written_on:
        if gid not in index:
            continue
        x, y = xy[index[gid]]
        box = (x + 4, y - 13, x + 4 + 6.6 * len(caption), y + 3)
        if box[2] > MAP_WIDTH or any(not (box[2] < a or box[0] > c or box[3] < b or box[1] > d) for a, b, c, d in placed):
            continue
        placed.append(box)
        parts.append(f"<text x='{box[0]:.1f}' y='{y:.1f}' stroke='white' stroke-width='3' paint-order='stroke'>"
                     f"{html.escape(caption)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def report_concepts(output: LabelSpaceOutput) -> tuple[list[dict], list[dict], str]:
    """(concepts spanning several datasets, pairs kept apart for their senses, where they come from).

    From the build's ``merge/`` when it was run (its decisions included); else from the merge rules run
    here, so the report shows what ``merge`` would do, never raw embedding clusters (which join bat the
    animal with baseball bat)."""
    from .merge import merge_labels
    from .merge_io import MERGED_FILE, REVIEW_FILE, load_concepts

    merged = output.directory / "merge" / MERGED_FILE
    ids, datasets = output.global_ids, output.labels.column("dataset").to_pylist()
    if merged.is_file():
        loaded = load_concepts(merged, output)
        concept_of, names = [concept for concept, _ in loaded], dict(loaded)

        review = output.directory / "merge" / REVIEW_FILE
        rows = list(csv.DictReader(read_text(review).splitlines())) if review.is_file() else []
        apart = [{"a": csv_cell_value(r["a"]), "b": csv_cell_value(r["b"]), "detail": r["detail"]}
                 for r in rows if r.get("outcome") == "different senses" and r.get("evidence") == "name"]
        source = f"{merged.relative_to(output.directory)} of this build"
    else:
        result = merge_labels(output)
        concept_of = [ids[c] for c in result.concept_of]
        names = {ids[anchor]: result.concept_name(anchor) for anchor in set(result.concept_of)}
        apart = [{"a": ids[c.a], "b": ids[c.b], "detail": c.detail} for c in result.candidates
                 if c.outcome == "different senses" and c.evidence == "name"]
        source = "the merge rules (no merge/ in this build: run 'scaledet-labels merge' to review and keep them)"
    members: dict[str, list[int]] = {}
    for index, concept in enumerate(concept_of):
        members.setdefault(concept, []).append(index)
    concepts = [{"concept": concept, "name": names[concept], "labels": [ids[i] for i in group],
                 "datasets": sorted({datasets[i] for i in group})}
                for concept, group in members.items() if len({datasets[i] for i in group}) > 1]
    concepts.sort(key=lambda c: (-len(c["datasets"]), c["name"]))
    return concepts, apart, source


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}img,.map svg{max-width:100%;height:auto;border:1px solid #ddd}h2{margin-top:1.6em}.note{color:#555;font-size:13px}"""


def _granularity_beside(findings: list[dict], concepts: list[dict]) -> list[dict]:
    """The label graph's coarser-label findings that say something the concepts do not: not a pair that is
    one concept (``coco/sports ball`` and ``oid/Ball`` merged), nor one found both ways (each "coarser" than
    the other says neither is)."""
    concept_of = {label: concept["concept"] for concept in concepts for label in concept["labels"]}
    pairs = {(f["label"], f["coarser"]) for f in findings}
    return [f for f in findings
            if (f["coarser"], f["label"]) not in pairs
            and not (f["label"] in concept_of and concept_of[f["label"]] == concept_of.get(f["coarser"]))]


SORTABLE = """<script>document.querySelectorAll('table.sortable th').forEach((th, column) => th.addEventListener('click', () => {
const body = th.closest('table').tBodies[0], rows = Array.from(body.rows), down = th.dataset.down !== '1';
const value = r => { const t = r.cells[column].textContent, n = parseFloat(t); return isNaN(n) ? t.toLowerCase() : n; };
rows.sort((a, b) => (value(a) > value(b) ? 1 : value(a) < value(b) ? -1 : 0) * (down ? -1 : 1));
th.dataset.down = down ? '1' : '0'; rows.forEach(r => body.appendChild(r));}));</script>"""
#: the widest coverage table the report writes (concepts with the most boxes first)
COVERAGE_ROWS = 3000


def plot_coverage(rows, top: int = 40) -> bytes:
    """Heat map: the share of each dataset's images in which a concept is unknown, for the ``top`` concepts
    with the most boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in rows))
    boxes: Counter = Counter()
    for r in rows:
        boxes[(r.concept, r.name)] += r.boxes
    concepts = [c for c, _ in boxes.most_common(top)]
    share = {(r.concept, r.dataset): r.unknown_share for r in rows}
    matrix = np.array([[share.get((c[0], d), 1.0) for d in datasets] for c in concepts])
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * len(datasets), 1.2 + 0.22 * len(concepts)))
    image = ax.imshow(matrix, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_yticks(range(len(concepts)), [c[1] for c in concepts], fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="share of the dataset's images where the concept is unknown")
    data = _figure_png(fig)
    plt.close(fig)
    return data


def coverage_parts(rows, png: bytes, top: int) -> list[str]:
    """The report's coverage section: the heat map, the concepts some dataset mostly leaves unknown (those
    other datasets box most first: where adding a dataset pays), and one sortable row per concept."""
    from .coverage import mostly_unknown

    datasets = list(dict.fromkeys(r.dataset for r in rows))
    boxes: Counter = Counter()
    for r in rows:
        boxes[r.concept] += r.boxes
    flagged = mostly_unknown(rows)
    flagged.sort(key=lambda r: (-(boxes[r.concept] - r.boxes), r.name, r.dataset))
    by_concept: dict[str, dict] = {}
    for r in rows:
        by_concept.setdefault(r.concept, {"name": r.name})[r.dataset] = r
    order = sorted(by_concept, key=lambda c: -boxes[c])[:COVERAGE_ROWS]
    headers = ["concept"] + [f"{d} {what}" for d in datasets for what in ("positive", "partial", "negative", "unknown", "boxes")]
    table_rows = [[by_concept[c]["name"]] + [getattr(by_concept[c][d], what) if d in by_concept[c] else ""
                                             for d in datasets for what in ("positive", "partial", "negative", "unknown", "boxes")]
                  for c in order]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in table_rows)
    return [
        "<h2>Coverage: which dataset says what, where</h2>",
        f"<p class=note>From coverage.csv ({len(by_concept)} concepts, datasets {html.escape(', '.join(datasets))}): per "
        "concept and dataset, the images in which the concept is positive (every instance boxed), partial, "
        "negative or unknown. Red: the dataset's images say nothing of the concept.</p>",
        f"<img alt='coverage heat map' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        f"<h3>Unknown in most of a dataset's images ({len(flagged)})</h3>",
        "<p class=note>Concepts a dataset leaves unknown in more than half of its images, those that other "
        "datasets box most first: a model trained on that dataset alone learns nothing of them there.</p>",
        _table(["concept", "dataset", "unknown in", "boxes in other datasets"],
               [[r.name, r.dataset, f"{100 * r.unknown_share:.0f} % of {r.images}", boxes[r.concept] - r.boxes]
                for r in flagged[:top]]),
        f"<h3>Every concept (click a column to sort; {len(order)} with the most boxes)</h3>",
        f"<table class=sortable><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
    ]


def write_report(output: LabelSpaceOutput, destination: Path, threshold: float = 0.8, top: int = 25,
                 coverage: list | None = None) -> Path:
    """``coverage``: the rows of a ``unify`` output's coverage.csv (:func:`.coverage.read_coverage`), shown
    as a heat map and a sortable table when given."""
    destination.mkdir(parents=True, exist_ok=True)
    mark_output_dir(destination, REPORT_KIND, build=str(output.directory))
    graph = LabelGraph(output)
    datasets, matrix = overlap_matrix(output, threshold)
    overlap_png = plot_overlap(datasets, matrix, threshold)
    concepts, apart, source = report_concepts(output)
    svg = map_svg(output, [(c["labels"][0], f"{c['name']} ({len(c['datasets'])})") for c in concepts[:40]])
    written = [atomic_write(destination / "overlap.png", lambda tmp: tmp.write_bytes(overlap_png)),
               atomic_write_text(destination / "map.svg", svg)]
    manifest = output.manifest
    overlap = base64.b64encode(overlap_png).decode()
    granularity = _granularity_beside(graph.granularity(), concepts)
    parts = [
        f"<h1>scaledet label space: {manifest['n_labels']} labels</h1>",
        f"<p class=note>build {html.escape(str(output.directory))}, encoder {html.escape(manifest['encoder']['identity'][:60])}…, "
        f"templates {html.escape(', '.join(manifest['templates']))}, created {html.escape(manifest['created'])}</p>",
        "<h2>Datasets</h2>",
        _table(["dataset", "labels", "source", "sha256"],
               [[d["key"], d["count"], d["source"], d["sha256"][:12]] for d in manifest["datasets"]]),
        "<h2>Overlap between datasets</h2>",
        f"<p class=note>Row A, column B: the share of A's labels whose nearest label in B has cosine ≥ {threshold}. "
        "The diagonal (a dataset against itself) is left out.</p>",
        f"<img alt='overlap heat map' src='data:image/png;base64,{overlap}'>",
        f"<h2>Concepts shared by several datasets ({len(concepts)} in all)</h2>",
        f"<p class=note>From {html.escape(source)}. Those of the most datasets first; all in merge/unified.csv once merged.</p>",
        _table(["concept", "datasets", "labels"],
               [[c["name"], len(c["datasets"]), ", ".join(c["labels"])] for c in concepts[:top]]),
        f"<h2>Same name, different senses ({len(apart)} pairs kept apart)</h2>",
        "<p class=note>Labels of different datasets that share a name but whose senses do not meet (their "
        "dataset's hierarchy or supercategory says which one each means): merge keeps them apart.</p>",
        _table(["label", "label", "evidence"], [[a["a"], a["b"], a["detail"]] for a in apart[:top]]),
        f"<h2>Granularity mismatches ({len(granularity)} findings)</h2>",
        "<p class=note>A label and a coarser label of another dataset (an OpenImages group whose children it "
        "resembles, or a catch-all such as 'Other Shoes'), except pairs that are one concept above or are "
        "found both ways.</p>",
        _table(["label", "coarser label", "reason", "cosine"],
               [[g["label"], g["coarser"], g["reason"], f"{g['cosine']:.2f}"] for g in granularity[:top]]),
        "<h2>Map of the label embeddings</h2>",
        "<p class=note>The first two principal components of the prompt embeddings, one point per label. Hover "
        "over a point for its label. The largest shared concepts are written on the map, each at its first label, with the number of datasets that share it.</p>",
        f"<div class=map>{svg}</div>",
    ]
    if coverage:
        coverage_png = plot_coverage(coverage)
        written.append(atomic_write(destination / "coverage.png", lambda tmp: tmp.write_bytes(coverage_png)))
        parts += coverage_parts(coverage, coverage_png, top)
        parts.append(SORTABLE)
    document = f"<!doctype html><html><head><meta charset=utf-8><title>scaledet label space</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    written.append(atomic_write_text(destination / "report.html", document))
    record_output_files(destination, written)
    return written[-1]
