"""``scaledet-labels``: build and query the unified label space."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import progress_factory, run_app, user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Unify detection label spaces: taxonomies → disjoint union → prompt embeddings → similarity.")
console = Console()

DEFAULT_OUT = Path("runs/labelspace")
MULTI_VALUE_OPTIONS = ("--datasets", "--dataset-file", "--hierarchy", "--template")


@app.command()
@user_errors
def build(
    datasets: List[str] = typer.Option([], "--datasets", help="Built-in keys: lvis coco o365 oid oid500 odinw odinw35 odinw/<name>."),
    dataset_file: List[str] = typer.Option([], "--dataset-file", help="Your own dataset as NAME=PATH (COCO JSON, OpenImages CSV, YOLO data.yaml, names .txt)."),
    hierarchy: List[str] = typer.Option([], "--hierarchy", help="NAME=PATH of an OpenImages hierarchy JSON for a --dataset-file CSV."),
    encoder: str = typer.Option("minilm", "--encoder", help="Text encoder: minilm (offline, default) or clip."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="Local open_clip checkpoint for --encoder clip."),
    clip_arch: str = typer.Option("ViT-B-32", "--clip-arch", help="open_clip architecture of --clip-weights."),
    template: List[str] = typer.Option([], "--template", help="Prompt template(s) with one {} (default 'a photo of a {}.'); 'ensemble' for the built-in ensemble."),
    similarity: str = typer.Option("auto", "--similarity", help="dense, topk, or auto (dense up to 20k labels)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Neighbours per label for --similarity topk (default 64)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Output directory (replaced atomically)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything, ignoring and not filling the cache."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Build the union and write labels.parquet, embeddings.npy, similarity.parquet and manifest.json."""
    from scaledet.labelspace.build import DatasetFile, build_labelspace, load_taxonomies, parse_assignment
    from scaledet.labelspace.encoders import build_encoder
    from scaledet.labelspace.errors import ScaledetError

    started = time.perf_counter()
    hierarchies = dict(parse_assignment(h, "--hierarchy") for h in hierarchy)
    files = []
    for spec in dataset_file:
        key, path = parse_assignment(spec, "--dataset-file")
        files.append(DatasetFile(key, path, hierarchies.pop(key, None)))
    if hierarchies:
        raise ScaledetError(f"--hierarchy {next(iter(hierarchies))}=...: no --dataset-file with that name")
    taxonomies = load_taxonomies(datasets, files)
    text_encoder = build_encoder(encoder, clip_weights=clip_weights, clip_arch=clip_arch)
    result = build_labelspace(
        taxonomies, text_encoder, out, templates=template or None, use_cache=not no_cache,
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
    table.add_row("[bold]union[/bold]", f"[bold]{len(result.labels)}[/bold]", "")
    console.print(table)
    stats = result.embed_stats
    console.print(
        f"encoder {text_encoder.identity[:40]}…  texts {stats.texts}  cache hits {stats.cache_hits}  "
        f"encoded {stats.encoded}  similarity {result.similarity_kind} ({result.similarity_rows:,} pairs)  "
        f"{time.perf_counter() - started:.1f}s"
    )


@app.command()
@user_errors
def inspect(
    query: str = typer.Argument(..., help="A label name or synonym (case-insensitive), e.g. sneakers."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="A build directory."),
    top: int = typer.Option(10, "--top", min=1, help="Neighbours to show per match."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show every label matching QUERY with its nearest labels in the other datasets."""
    from scaledet.labelspace.errors import ScaledetError
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.query import inspect_query

    output = LabelSpaceOutput.load(out)
    reports = inspect_query(output, query, top)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
        return
    if not reports:
        raise ScaledetError(f"no label named {query!r} in {out} (try 'scaledet-labels list --out {out}')")
    for report in reports:
        console.print(f"[bold]{report.global_id}[/bold]  (index {report.index}, dataset {report.dataset}, "
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
        console.print()


@app.command("list")
@user_errors
def list_datasets(out: Path = typer.Option(DEFAULT_OUT, "--out", help="A build directory.")) -> None:
    """Datasets of a build and their label counts."""
    from scaledet.labelspace.outputs import LabelSpaceOutput

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


def main() -> None:
    run_app(app, "scaledet-labels", MULTI_VALUE_OPTIONS)


if __name__ == "__main__":
    main()
