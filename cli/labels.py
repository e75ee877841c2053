"""``scaledet-labels``: build and query the unified label space."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import (DEFAULT_LABELSPACE, add_version_option, build_and_destination, build_to_read, progress_factory,
                     run_app, user_errors)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Unify detection label spaces: taxonomies → disjoint union → prompt embeddings → similarity.")
# Label names come from users' files ("Mouse [/m/020lf]" in oid500): never read them as rich markup.
console = Console(markup=False, highlight=False)
add_version_option(app, "scaledet-labels")

DEFAULT_OUT = DEFAULT_LABELSPACE  # where build writes is where every other command reads
MULTI_VALUE_OPTIONS = ("--datasets", "--dataset-file", "--hierarchy", "--template", "--annotations", "--images")


@app.command()
@user_errors
def build(
    datasets: List[str] = typer.Option([], "--datasets", help="Built-in keys: lvis coco o365 oid oid500 odinw odinw35 odinw/<name>."),
    dataset_file: List[str] = typer.Option([], "--dataset-file", help="Your own dataset as NAME=PATH (COCO JSON, OpenImages CSV, YOLO data.yaml, names .txt)."),
    hierarchy: List[str] = typer.Option([], "--hierarchy", help="NAME=PATH of an OpenImages hierarchy JSON for a --dataset-file CSV."),
    slash: str = typer.Option("alternatives", "--slash", help="How '/' in your files' class names reads: alternatives (Objects365's 'Cabinet/shelf': one prompt 'cabinet or shelf') or synonyms (Ultralytics' lvis.yaml 'aerosol can/spray can': the first a prompt, the rest synonyms)."),
    encoder: str = typer.Option("minilm", "--encoder", help="Text encoder: minilm (offline, default), clip (an open_clip model: --clip-weights or --clip-pretrained), or sentence-transformers:NAME_OR_FOLDER (a sentence-transformers model from a folder or the Hugging Face cache, offline)."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="Local open_clip checkpoint for --encoder clip."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="Instead of --clip-weights: an open_clip pretrained tag of --clip-arch (openai, laion2b_s34b_b79k, …), read from open_clip's cache; nothing is downloaded."),
    clip_arch: str = typer.Option("ViT-B-32-quickgelu", "--clip-arch", help="open_clip architecture of --clip-weights: ViT-B-32-quickgelu for OpenAI's and Detic's weights (also OpenAI's TorchScript .pt), ViT-B-32 for LAION / open_clip-trained ones."),
    template: List[str] = typer.Option([], "--template", help="Prompt template(s) with one {} (default 'a photo of a {}.'); 'ensemble' for the built-in ensemble."),
    similarity: str = typer.Option("auto", "--similarity", help="dense, topk, or auto (dense up to 20k labels)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Neighbours per label for --similarity topk (default 64)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Output directory: missing, empty or an earlier build (replaced atomically)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if it holds files the build did not write."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything, ignoring and not filling the cache."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts encoded per batch (default 128 on a CPU, 1024 on a GPU)."),
    device: str = typer.Option("auto", "--device", help="Where the text encoder runs: auto (a GPU when there is one), cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Build the union and write labels.parquet, embeddings.npy, similarity.parquet and manifest.json."""
    from scaledet.labelspace.build import DatasetFile, build_labelspace, load_taxonomies, parse_assignment
    from scaledet.labelspace.encoders import build_encoder
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.outputs import check_build_out

    started = time.perf_counter()
    hierarchies = dict(parse_assignment(h, "--hierarchy") for h in hierarchy)
    inputs = [Path(path) for _, path in hierarchies.items()]
    files = []
    for spec in dataset_file:
        key, path = parse_assignment(spec, "--dataset-file")
        files.append(DatasetFile(key, path, hierarchies.pop(key, None)))
        inputs.append(Path(path))
    if hierarchies:
        raise ScaledetError(f"--hierarchy {next(iter(hierarchies))}=...: no --dataset-file with that name")
    target = check_build_out(out, force, inputs=tuple(inputs))
    from scaledet.labelspace.taxonomy import SLASH_MODES, slash_as_synonyms

    if slash not in SLASH_MODES:
        raise ScaledetError(f"--slash {slash!r}: choose alternatives or synonyms")
    taxonomies = load_taxonomies(datasets, files)
    if slash == "synonyms":  # your files only: the built-in ones are read by their own rules
        taxonomies = taxonomies[:-len(files)] + [slash_as_synonyms(t) for t in taxonomies[-len(files):]] if files else taxonomies
    from scaledet.labelspace.encoders import check_device

    device = check_device(device)
    text_encoder = build_encoder(encoder, clip_weights=clip_weights, clip_arch=clip_arch, device=device,
                                 clip_pretrained=clip_pretrained)
    result = build_labelspace(
        taxonomies, text_encoder, target, templates=template or None, use_cache=not no_cache,
        similarity=similarity, top_k=top_k, batch_size=batch_size,
        progress=progress_factory("encoding prompts", "text", quiet),
        similarity_progress=lambda total: progress_factory("similarity", "label", quiet)(total).update,
    )
    table = Table(title=f"label space → {out}")
    table.add_column("dataset")
    table.add_column("labels", justify="right")
    table.add_column("source", overflow="fold")
    for taxonomy in result.taxonomies:
        table.add_row(taxonomy.key, str(len(taxonomy)), taxonomy.source)
    table.add_row(Text("union", style="bold"), Text(str(len(result.labels)), style="bold"), "")
    console.print(table)
    for taxonomy in result.taxonomies:
        for dropped in taxonomy.extra.get("dropped_categories", []):
            console.print(f"note: {taxonomy.key}: dropped category {dropped['id']} {dropped['name']!r}: {dropped['why']}")
    stats = result.embed_stats
    console.print(
        f"encoder {text_encoder.identity[:40]}…  texts {stats.texts}  cache hits {stats.cache_hits}  "
        f"encoded {stats.encoded}  similarity {result.similarity_kind} ({result.similarity_rows:,} pairs)  "
        f"{time.perf_counter() - started:.1f}s"
    )
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.seconds.items())
    console.print(f"time: {phases}; peak memory {max(result.peak_mib.values()):,.0f} MiB, "
                  f"raised most in phase: {result.peak_phase()}")


@app.command()
@user_errors
def inspect(
    query: str = typer.Argument(..., help="A label name or synonym (case-insensitive), e.g. sneakers."),
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    old_out: Optional[Path] = typer.Option(None, "--out", hidden=True, help="Old spelling of --labelspace."),
    top: int = typer.Option(10, "--top", min=1, help="Neighbours to show per match."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    expand: bool = typer.Option(False, "--expand", help="Treat QUERY as a hypernym ('fruit') and list every label below it."),
    graph: bool = typer.Option(False, "--graph", help="Also show each match's edges in the label graph."),
) -> None:
    """Show every label matching QUERY with its nearest labels in the other datasets."""
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.query import inspect_query

    out = build_to_read(labelspace, old_out)
    output = LabelSpaceOutput.load(out)
    if expand:
        from scaledet.labelspace.graph import LabelGraph

        expanded = LabelGraph(output).expand(query)
        if not expanded:
            raise ScaledetError(f"no label named {query!r} in {out} to expand")
        if as_json:
            typer.echo(json.dumps({"query": query, "labels": expanded}, indent=2, ensure_ascii=False))
        else:
            console.print(f"{query} expands to {len(expanded)} labels: {', '.join(expanded)}")
        return
    reports = inspect_query(output, query, top)
    label_graph = None
    if graph and reports:
        from scaledet.labelspace.graph import LabelGraph

        label_graph = LabelGraph(output)
    if as_json:
        payload = [r.to_dict() for r in reports]
        if label_graph is not None:
            for item in payload:
                item["graph"] = [{"direction": d, "kind": k, "label": g, "weight": round(w, 4)}
                                 for d, k, g, w in label_graph.neighbourhood(item["global_id"])]
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    if not reports:
        raise ScaledetError(f"no label named {query!r} in {out} (try 'scaledet-labels list --labelspace {out}')")
    for report in reports:
        console.print(f"{report.global_id}  (index {report.index}, dataset {report.dataset}, "
                      f"local id {report.local_id})")
        if report.synonyms:
            console.print(f"  synonyms: {', '.join(report.synonyms)}")
        if report.parent:
            console.print(f"  parent:   {', '.join(report.parent)}")
        if report.definition:
            console.print(f"  definition: {report.definition}")
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("nearest in other datasets")
        table.add_column("dataset")
        table.add_column("cosine", justify="right")
        for neighbour in report.neighbours:
            table.add_row(neighbour.global_id, neighbour.dataset, f"{neighbour.similarity:.3f}")
        console.print(table)
        if label_graph is not None:
            edges = Table(show_edge=False, pad_edge=False)
            for column in ("graph edge", "kind", "label", "weight"):
                edges.add_column(column)
            for direction, kind, other, weight in label_graph.neighbourhood(report.global_id):
                edges.add_row(direction, kind, other, f"{weight:.3f}")
            console.print(edges)
        console.print()


@app.command("list")
@user_errors
def list_datasets(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    old_out: Optional[Path] = typer.Option(None, "--out", hidden=True, help="Old spelling of --labelspace."),
) -> None:
    """Datasets of a build and their label counts."""
    from scaledet.labelspace.outputs import LabelSpaceOutput

    out = build_to_read(labelspace, old_out)
    output = LabelSpaceOutput.load(out, with_embeddings=False)
    manifest = output.manifest
    table = Table(title=f"{out}: {manifest['n_labels']} labels, encoder {manifest['encoder']['name']}, "
                        f"similarity {manifest['similarity']['kind']}")
    table.add_column("dataset")
    table.add_column("labels", justify="right")
    table.add_column("format")
    table.add_column("source", overflow="fold")
    for dataset in manifest["datasets"]:
        table.add_row(dataset["key"], str(dataset["count"]), dataset["format"], dataset["source"])
    console.print(table)


@app.command()
@user_errors
def graph(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default LABELSPACE/graph)."),
    old_to: Optional[Path] = typer.Option(None, "--to", hidden=True, help="Old spelling of --out."),
    similar_threshold: float = typer.Option(0.75, "--similar-threshold", min=-1.0, max=1.0, help="Cosine at or above which labels of different datasets get a 'similar' edge."),
    similar_top_k: int = typer.Option(5, "--similar-top-k", min=1, help="Nearest labels of other datasets looked at per label."),
    top: int = typer.Option(10, "--top", min=1, help="Rows per table in the summary."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
) -> None:
    """Build the label graph: GraphML, a Parquet edge list, clusters, merge candidates and findings."""
    from scaledet.labelspace.graph import GraphSettings, LabelGraph
    from scaledet.labelspace.graph_io import GRAPH_KIND, write_graph_outputs
    from scaledet.labelspace.io.output_dirs import check_output_dir
    from scaledet.labelspace.outputs import LabelSpaceOutput

    build, destination = build_and_destination(labelspace, out, old_to, "graph")
    output = LabelSpaceOutput.load(build)
    label_graph = LabelGraph(output, GraphSettings(similar_threshold, similar_top_k))
    destination = check_output_dir(destination, GRAPH_KIND, "--out", force, inputs=(build,))
    written = write_graph_outputs(label_graph, destination)
    counts = {}
    for _, _, data in label_graph.graph.edges(data=True):
        counts[data["kind"]] = counts.get(data["kind"], 0) + 1
    console.print(f"{label_graph.graph.number_of_nodes()} labels, edges: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    clusters = label_graph.clusters()
    table = Table(title=f"top cross-dataset clusters ({len(clusters)} in all)")
    table.add_column("datasets", justify="right")
    table.add_column("cohesion", justify="right")
    table.add_column("members", overflow="fold")
    for cluster in clusters[:top]:
        table.add_row(str(len(cluster["datasets"])), f"{cluster['cohesion']:.2f}", ", ".join(cluster["members"]))
    console.print(table)
    findings = Table(title="ambiguity and granularity (first rows)")
    for column in ("finding", "labels", "cosine"):
        findings.add_column(column, overflow="fold")
    for item in label_graph.ambiguities()[:top // 2]:
        findings.add_row(f"{item['kind']}: {item['name']}", ", ".join(item["labels"]), f"{item['min_cosine']:.2f}")
    for item in label_graph.granularity()[:top // 2]:
        findings.add_row(f"granularity ({item['reason']})", f"{item['label']} ⊂ {item['coarser']}", f"{item['cosine']:.2f}")
    console.print(findings)
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command()
@user_errors
def merge(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default LABELSPACE/merge)."),
    old_to: Optional[Path] = typer.Option(None, "--to", hidden=True, help="Old spelling of --out."),
    decisions: Optional[Path] = typer.Option(None, "--decisions", help="A CSV with columns a, b, decision (accept or reject), e.g. an edited review.csv."),
    embedding_threshold: float = typer.Option(0.9, "--embedding-threshold", min=-1.0, max=1.0, help="Prompt cosine at which differently named labels may merge."),
    no_wordnet: bool = typer.Option(False, "--no-wordnet", help="Ignore WordNet's facts (senses then come from names alone)."),
    top: int = typer.Option(10, "--top", min=1, help="Rows per table in the summary."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
) -> None:
    """Merge labels of different datasets into concepts: merged.parquet, a UniDet-style unified.csv, review.csv."""
    from scaledet.labelspace.merge import MergeSettings, merge_labels, read_decisions
    from scaledet.labelspace.merge_io import MERGE_KIND, write_merge_outputs
    from scaledet.labelspace.io.output_dirs import check_output_dir
    from scaledet.labelspace.outputs import LabelSpaceOutput

    build, destination = build_and_destination(labelspace, out, old_to, "merge")
    output = LabelSpaceOutput.load(build)
    destination = check_output_dir(destination, MERGE_KIND, "--out", force, inputs=(build,))
    chosen = read_decisions(decisions, output.global_ids) if decisions else []
    settings = MergeSettings(embedding_threshold=embedding_threshold, use_wordnet=not no_wordnet)
    result = merge_labels(output, settings, chosen)
    written = write_merge_outputs(result, output, destination,
                                  {"embedding_threshold": embedding_threshold})
    concepts = result.concepts()
    shared = sorted(((a, m) for a, m in concepts.items() if len(m) > 1), key=lambda item: (-len(item[1]), item[0]))
    outcomes: dict[str, int] = {}
    for candidate in result.candidates:
        outcomes[candidate.outcome] = outcomes.get(candidate.outcome, 0) + 1
    console.print(f"{len(result.global_ids)} labels → {len(concepts)} concepts ({len(shared)} span several datasets); "
                  f"WordNet {'used' if result.wordnet else 'not found'}; decisions applied {len(chosen)}")
    console.print("candidate pairs: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])))
    for candidate in result.candidates:
        if candidate.decision == "accept" and candidate.outcome not in ("merged", "already one concept"):
            console.print(f"note: accepted {result.global_ids[candidate.a]} / {result.global_ids[candidate.b]} "
                          f"cannot merge: {candidate.outcome}")
    table = Table(title=f"largest concepts ({len(shared)} in all)")
    table.add_column("concept")
    table.add_column("labels", overflow="fold")
    for anchor, members in shared[:top]:
        table.add_row(result.concept_name(anchor), ", ".join(result.global_ids[m] for m in members))
    console.print(table)
    refused = [c for c in result.candidates if c.outcome in ("different senses", "coarser (a parent, not a merge)")]
    if refused:
        kept_apart = Table(title="kept apart (first rows; all in review.csv)")
        for column in ("labels", "evidence", "why not"):
            kept_apart.add_column(column, overflow="fold")
        for candidate in refused[:top]:
            kept_apart.add_row(f"{result.global_ids[candidate.a]} / {result.global_ids[candidate.b]}", candidate.detail,
                               candidate.outcome)
        console.print(kept_apart)
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command()
@user_errors
def export(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    fmt: str = typer.Option(..., "--format", help="detic | torch | csv | parquet | yolo-world | ultralytics"),
    datasets: List[str] = typer.Option([], "--datasets", help="Export only these datasets of the build."),
    vocab_file: Optional[Path] = typer.Option(None, "--vocab-file", help="A custom vocabulary: one name per line, or YOLO-World JSON."),
    expand: Optional[str] = typer.Option(None, "--expand", help="Export the labels a hypernym expands to, e.g. fruit."),
    name: Optional[str] = typer.Option(None, "--name", help="Base name of the written files."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default LABELSPACE/exports)."),
    old_to: Optional[Path] = typer.Option(None, "--to", hidden=True, help="Old spelling of --out."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="For a build made with --encoder clip."),
    any_template: bool = typer.Option(False, "--any-template", help="--format ultralytics from a build whose template is not '{}' (YOLOWorld encodes bare names): export anyway."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
) -> None:
    """Export label embeddings (with their order and a metadata file) for other detectors: detic, torch,
    csv, parquet, yolo-world or ultralytics."""
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.export import EXPORT_FORMATS, EXPORT_KIND, check_export_name, export as run_export
    from scaledet.labelspace.export import read_vocabulary_file, select_from_build, select_vocabulary
    from scaledet.labelspace.io.output_dirs import check_output_dir
    from scaledet.labelspace.outputs import LabelSpaceOutput

    build, destination = build_and_destination(labelspace, out, old_to, "exports")
    if name is not None:
        check_export_name(name)
    destination = check_output_dir(destination, EXPORT_KIND, "--out", force, inputs=(build,))
    if fmt not in EXPORT_FORMATS:
        raise ScaledetError(f"--format {fmt!r}: unknown export format (choose from {', '.join(EXPORT_FORMATS)})")
    if sum(bool(x) for x in (datasets, vocab_file, expand)) > 1:
        raise ScaledetError("give at most one of --datasets, --vocab-file, --expand")
    output = LabelSpaceOutput.load(build)
    if vocab_file is not None:
        selection = select_vocabulary(output, read_vocabulary_file(vocab_file), name or vocab_file.stem, clip_weights)
    elif expand:
        from scaledet.labelspace.graph import LabelGraph

        expanded = LabelGraph(output).expand(expand)
        if not expanded:
            raise ScaledetError(f"--expand {expand!r}: no label of that name in {build}")
        index = {g: i for i, g in enumerate(output.global_ids)}
        selection = select_from_build(output, indices=[index[g] for g in expanded], name=name or re.sub(r"[^A-Za-z0-9_.-]+", "_", expand).strip("._") or "expand")
        selection.description = {"expand": expand}
    else:
        selection = select_from_build(output, datasets or None, name=name)
    written = run_export(selection, output, fmt, destination, any_template)
    console.print(f"exported {len(selection.names)} labels × {selection.embeddings.shape[1]} dims as {fmt}: "
                  + ", ".join(str(p) for p in written))


@app.command()
@user_errors
def report(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build to read (default runs/labelspace)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default LABELSPACE/report)."),
    old_to: Optional[Path] = typer.Option(None, "--to", hidden=True, help="Old spelling of --out."),
    threshold: float = typer.Option(0.8, "--threshold", min=-1.0, max=1.0, help="Cosine for the overlap heat map."),
    coverage: Optional[Path] = typer.Option(None, "--coverage", help="A unify output's coverage.csv: adds which dataset annotates which concept where (heat map, sortable table)."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
) -> None:
    """Write a self-contained HTML report (with PNG figures) of the build."""
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.io.output_dirs import check_output_dir
    from scaledet.labelspace.report import REPORT_KIND, write_report

    build, destination = build_and_destination(labelspace, out, old_to, "report")
    rows = None
    if coverage is not None:
        from scaledet.labelspace.coverage import read_coverage

        rows = read_coverage(coverage)
    destination = check_output_dir(destination, REPORT_KIND, "--out", force,
                                   inputs=(build, *((coverage,) if coverage else ())))
    path = write_report(LabelSpaceOutput.load(build), destination, threshold, coverage=rows)
    console.print(f"wrote {path} (figures overlap.png, map.svg{', coverage.png' if rows else ''} beside it)")


@app.command()
@user_errors
def unify(
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build whose labels and merge the training set uses (default runs/labelspace)."),
    annotations: List[str] = typer.Option(..., "--annotations", help="KEY=PATH, KEY a dataset of the build: a COCO/LVIS JSON, a convert-oid JSON, or a YOLO dataset folder (data.yaml + labels/)."),
    images: List[str] = typer.Option([], "--images", help="KEY=DIR: the source's image folder; images are linked under OUT/images/KEY/ (not copied)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: unified.json (--format coco) or data.yaml + labels/ (--format yolo)."),
    old_to: Optional[Path] = typer.Option(None, "--to", hidden=True, help="Old spelling of --out."),
    space: str = typer.Option("union", "--space", help="union (one category per label) or concepts (one per concept of the build's merge)."),
    fmt: str = typer.Option("coco", "--format", help="coco (COCO/LVIS JSON) or yolo (an Ultralytics dataset)."),
    compact: bool = typer.Option(False, "--compact", help="Write only the lists the sources gave (scaledet recomputes the rest from scaledet.sources; the LVIS API, faster-coco-eval, detectron2, mmdetection and Detic read such a file without an exhaustive source's negatives). Default: every image's full negative and not-exhaustive lists."),
    explicit_negatives: bool = typer.Option(False, "--explicit-negatives", hidden=True, help="The default since 0.2 (full lists); kept so older command lines run."),
    merge: Optional[str] = typer.Option("auto", "--merge", help="The merged.parquet whose concepts the states use: auto (LABELSPACE/merge/ when present), a path, or none."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No notes on stderr."),
) -> None:
    """One training set from several annotation files, in one label space, with per-image label states in
    LVIS's fields (neg_category_ids, not_exhaustive_category_ids): for any detector."""
    import sys

    from scaledet.labelspace.build import parse_assignment
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.io.output_dirs import (UNIFY_KIND, check_output_dir, mark_output_dir, record_output_files,
                                                 undone_on_failure)
    from scaledet.labelspace.unify import FORMATS, SPACES, unify as run_unify

    if space not in SPACES:
        raise ScaledetError(f"--space {space!r}: choose union or concepts")
    if fmt not in FORMATS:
        raise ScaledetError(f"--format {fmt!r}: choose coco or yolo")
    build, destination = build_and_destination(labelspace, out, old_to, None)
    if destination is None:
        raise ScaledetError("name the output folder with --out")
    sources = [(key, Path(path)) for key, path in (parse_assignment(a, "--annotations") for a in annotations)]
    image_dirs = {key: Path(path) for key, path in (parse_assignment(i, "--images") for i in images)}
    if compact and explicit_negatives:
        raise ScaledetError("--compact and --explicit-negatives: choose one (full lists are the default)")
    if compact and fmt == "yolo":
        raise ScaledetError("--compact: YOLO labels have no per-image lists; it applies to --format coco")
    destination = check_output_dir(destination, UNIFY_KIND, "--out", force, inputs=(build, *(p for _, p in sources)))
    with undone_on_failure(destination):
        destination.mkdir(parents=True, exist_ok=True)
        mark_output_dir(destination, UNIFY_KIND, build=str(build))
        report = run_unify(build, sources, image_dirs, destination, space, fmt, compact,
                           None if merge == "none" else merge,
                           say=(lambda text: None) if quiet or not sys.stderr.isatty() else (lambda text: print(text, file=sys.stderr)))
        record_output_files(destination, report.written)
    if compact:
        from scaledet.labelspace.unify import COMPACT_MISREADERS

        print(f"note: --compact: {COMPACT_MISREADERS} read only the lists written and will score or train an "
              "exhaustive source's images without their negatives; scaledet reads scaledet.sources", file=sys.stderr)
    console.print(f"{report.images} images ({report.shared_images} annotated by two sources, combined), "
                  f"{report.boxes} boxes ({report.duplicates} duplicates kept once); "
                  f"state conflicts: {report.conflicts} → {', '.join(str(p) for p in report.written)}", soft_wrap=True)
    if fmt == "yolo" and report.partial_classes:
        console.print(f"{len(report.partial_classes)} classes are only partly annotated (YOLO's loss will treat "
                      f"their missing boxes as background): {', '.join(report.partial_classes[:10])}"
                      f"{', …' if len(report.partial_classes) > 10 else ''} (all in partial_classes.txt)", soft_wrap=True)



@app.command()
@user_errors
def translate(
    input_file: Path = typer.Argument(..., metavar="INPUT", help="A COCO results file (a JSON list) or annotation file (images, annotations, categories) in --from's categories."),
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="The build (with its merge) whose concepts and hierarchy translate (default runs/labelspace)."),
    source: str = typer.Option(..., "--from", help="The dataset of the build whose categories INPUT uses."),
    target: str = typer.Option(..., "--to", help="The dataset of the build whose categories the output uses."),
    out: Path = typer.Option(..., "--out", help="The translated file to write; translation.csv is written beside it."),
    merge: Optional[str] = typer.Option("auto", "--merge", help="The merged.parquet whose concepts translate: auto (LABELSPACE/merge/), or a path."),
    force: bool = typer.Option(False, "--force", help="Replace --out and translation.csv even if translate did not write them."),
) -> None:
    """One dataset's results or annotations in another dataset's categories, through the build's concepts
    (same concept) and hierarchy (the nearest coarser label); what neither reaches is dropped and counted."""
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.translate import COARSER, SAME, UNMAPPED, check_translate_out, translate_file

    build = labelspace or DEFAULT_OUT
    if merge == "none":
        raise ScaledetError("--merge none: translate needs the build's concepts; give auto or a merged.parquet")
    check_translate_out(out, input_file, force)
    report = translate_file(build, source, target, input_file, out, merge)
    counts = report.counts
    what = "detections" if report.kind == "results" else "boxes"
    console.print(f"{report.kind} {source} → {target}: {report.items} {what}: {counts[SAME]} same concept, "
                  f"{counts[COARSER]} to a coarser label, {counts[UNMAPPED]} unmapped (dropped)"
                  + (f", {report.duplicates} duplicates of another label's detection merged" if report.kind == "results" else "")
                  + f" → {', '.join(str(p) for p in report.paths)}", soft_wrap=True)
    if report.unmapped_labels:
        console.print(f"unmapped: {', '.join(report.unmapped_labels[:10])}{', …' if len(report.unmapped_labels) > 10 else ''} "
                      "(every label's row in translation.csv)", soft_wrap=True)

def main() -> None:
    run_app(app, "scaledet-labels", MULTI_VALUE_OPTIONS)


if __name__ == "__main__":
    main()
