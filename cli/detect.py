"""``scaledet``: train, evaluate and run the detector on a labelspace build."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import DEFAULT_LABELSPACE, add_version_option, run_app, user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="ScaleDet detector: train / eval / predict on a labelspace build.")
# Label names come from users' files ("Mouse [/m/020lf]" in oid500): never read them as rich markup.
console = Console(markup=False, highlight=False)
add_version_option(app, "scaledet")


@app.command()
@user_errors
def train(
    config: Path = typer.Option(..., "--config", help="Training config (YAML); see docs/detector.md."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE config overrides, e.g. model.soft_weight=0 schedule.iterations=2000."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in OUTPUT_DIR from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Start over in an OUTPUT_DIR that holds an earlier run or other files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train with hard + soft label assignment. Multi-GPU / multi-node: run it under torchrun."""
    from scaledet.detector.config import load_config

    cfg = load_config(config, overrides)  # before torch is imported: a typo in the config fails at once
    from scaledet.detector.engine import Trainer

    trainer = Trainer(cfg, resume=resume, show_progress=not quiet, force=force)
    final = trainer.train()
    if trainer.context.is_main:
        console.print(f"trained {cfg.schedule.iterations} iterations → {final} (metrics: {Path(cfg.output_dir) / 'metrics.json'})")
        if cfg.eval_datasets:
            from scaledet.detector.engine import log_final_evaluation

            table = _evaluate(cfg, final, trainer.device, quiet, force=force or resume)
            log_final_evaluation(cfg.output_dir, cfg.schedule.iterations, table)


def _print_metrics(title: str, table: dict[str, dict]) -> None:
    names: list[str] = []
    for metrics in table.values():
        names += [n for n in metrics if n not in names]
    view = Table(title=title)
    view.add_column("dataset")
    for name in names:
        view.add_column(name, justify="right")
    for dataset, metrics in table.items():
        view.add_row(dataset, *("—" if metrics.get(n) is None else f"{metrics[n]:.1f}" for n in names))
    console.print(view)


TRUST_HELP = ("Load a checkpoint that carries no digest and whose run folder does not list it (one written "
              "before digests, or not by scaledet): damage in it cannot be detected.")


def _evaluate(cfg, checkpoint: Path, device, quiet: bool, force: bool = False, trust: bool = False) -> dict:
    from scaledet.detector.evaluation.checkpoint_eval import evaluate_checkpoint

    table, folder = evaluate_checkpoint(cfg, checkpoint, device, progress=not quiet, force=force,
                                        trust_unverified=trust)
    _print_metrics(f"evaluation of {checkpoint}", table)
    console.print(f"metrics and raw detections (COCO results format) → {folder}")
    return table


@app.command("eval")
@user_errors
def evaluate(
    config: Optional[Path] = typer.Option(None, "--config", help="The training config; its eval_datasets are evaluated."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE config overrides."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Default: OUTPUT_DIR/model_final.pth."),
    results: Optional[Path] = typer.Option(None, "--results", help="Detections of any detector (COCO results format); needs --annotations."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="Ground truth for --results (COCO-format JSON)."),
    evaluator: str = typer.Option("coco", "--evaluator", help="For --results: coco, lvis (federated), oid (the OpenImages challenge metric), or oid-expanded (detections also copied to parent classes; not the challenge's protocol)."),
    protocol: str = typer.Option("standard", "--protocol", help="For --results with --evaluator lvis: standard (300 detections per image) or fixed (Fixed AP: 10,000 per category, no per-image cap)."),
    as_json: bool = typer.Option(False, "--json", help="For --results: print one JSON object of the metrics."),
    source: Optional[str] = typer.Option(None, "--from", help="For --results: the dataset of --labelspace whose categories the results use; they are translated into --annotations' categories (same concept, else the nearest coarser label) and scored there."),
    target: Optional[str] = typer.Option(None, "--to", help="With --from: the dataset of --annotations' categories (default: the one dataset of the build that names them all)."),
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="With --from: the build (with its merge) that translates (default runs/labelspace)."),
    force: bool = typer.Option(False, "--force", help="Evaluate a checkpoint again, replacing its evaluation folder."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Evaluate a checkpoint on the config's eval_datasets (each with its dataset's evaluator), or score a
    results file of any detector with --results / --annotations / --evaluator."""
    import json

    from scaledet.labelspace.io.errors import ScaledetError

    if results is not None or annotations is not None:  # scoring files needs no torch: not imported
        if results is None or annotations is None or config is not None:
            raise ScaledetError("--results and --annotations go together, without --config")
        from scaledet.detector.evaluation import evaluate_files, evaluate_translated, evaluator_for_protocol

        evaluator = evaluator_for_protocol(evaluator, protocol)
        translation = None
        if source is not None:
            metrics, protocol, translation = evaluate_translated(results, annotations, evaluator,
                                                                 labelspace or DEFAULT_LABELSPACE, source, target)
        elif target is not None or labelspace is not None:
            raise ScaledetError("--to and --labelspace translate results: give --from KEY too")
        else:
            metrics, protocol = evaluate_files(results, annotations, evaluator)
        if as_json:
            typer.echo(json.dumps({"protocol": protocol, **metrics, **({"translation": translation} if translation else {})}))
            return
        if translation:
            console.print(f"translated {translation['from']} → {translation['to']} through {translation['merge_file']}: "
                          f"{translation['detections']} detections, {translation['same_concept']} same concept, "
                          f"{translation['coarser']} to a coarser label, {translation['unmapped']} unmapped (not "
                          f"scored), {translation['duplicates_merged']} duplicates of another label's detection "
                          "merged", soft_wrap=True)
        _print_metrics(f"{evaluator} evaluation of {results} (protocol: {protocol})", {annotations.stem: metrics})
        return
    if source is not None or target is not None:
        raise ScaledetError("--from / --to translate a --results file: give --results and --annotations")
    if config is None:
        raise ScaledetError("give --config (evaluate a checkpoint) or --results with --annotations")
    from scaledet.detector.config import load_config

    cfg = load_config(config, overrides)  # before torch is imported: a typo in the config fails at once
    if not cfg.eval_datasets:
        raise ScaledetError(f"{config}: no eval_datasets to evaluate")
    from scaledet.detector.checkpoint import final_checkpoint
    from scaledet.detector.engine import DistributedContext, resolve_device

    _evaluate(cfg, checkpoint or final_checkpoint(Path(cfg.output_dir)),
              resolve_device(device, DistributedContext()), quiet, force, trust_checkpoint)


@app.command()
@user_errors
def predict(
    images: List[Path] = typer.Argument(..., help="Image files."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A scaledet checkpoint (model_final.pth of a run)."),
    vocab: Optional[str] = typer.Option(None, "--vocab", help="Comma-separated class names, e.g. 'fish,jellyfish,penguin'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A built-in dataset's vocabulary, e.g. odinw/Aquarium."),
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="Use this build's union as the vocabulary."),
    per_concept: bool = typer.Option(False, "--per-concept", help="With --labelspace: one detection per concept of the build's 'scaledet-labels merge', not one per dataset."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="For checkpoints trained on CLIP embeddings."),
    score_threshold: float = typer.Option(0.3, "--score-threshold", min=0.0, max=1.0, help="Keep detections scoring at least this."),
    one_label_per_box: bool = typer.Option(False, "--one-label-per-box", help="One label per object: each box's best label (as Detic's demo draws) and no overlapping boxes of other labels, not every label above the threshold; not for --format coco results you will score."),
    fmt: str = typer.Option("json", "--format", help="json (detections.json), or coco: also results.json in the COCO results format."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="Ground truth (COCO-format JSON, images matched by file name): drawn beside the predictions, and with --format coco the source of the image ids."),
    out: Path = typer.Option(Path("runs/predict"), "--out", help="Missing, empty, or an earlier predict output."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
) -> None:
    """Detect any vocabulary: writes OUT/detections.json and one PNG per image with boxes drawn."""
    from scaledet.detector.checkpoint import check_compatible, load_model_from_checkpoint
    from scaledet.detector.engine import DistributedContext, resolve_device
    from scaledet.detector.predict import (PREDICT_KIND, annotated_images, predict_images, vocabulary_from_dataset, vocabulary_from_text,
                                           write_predictions)
    from scaledet.labelspace.io.output_dirs import check_output_dir
    from scaledet.detector.vocabulary import UnifiedLabelSpace
    from scaledet.labelspace.io.errors import ScaledetError

    if sum(x is not None for x in (vocab, dataset, labelspace)) != 1:
        raise ScaledetError("give exactly one of --vocab, --dataset, --labelspace")
    if fmt not in ("json", "coco"):
        raise ScaledetError(f"--format {fmt!r}: choose json or coco")
    if per_concept and labelspace is None:
        raise ScaledetError("--per-concept goes with --labelspace (a build with 'scaledet-labels merge' done)")
    out = check_output_dir(out, PREDICT_KIND, "--out", force)
    concepts = None
    if per_concept:
        from scaledet.detector.concepts import concepts_of_build

        concepts = concepts_of_build(labelspace)
    for image in images:
        if not image.is_file():
            raise ScaledetError(f"{image}: image not found")
    listed = annotated_images(images, annotations) if annotations is not None else None
    ground_truth = [image.boxes for image in listed] if listed is not None else None
    image_ids = None
    if fmt == "coco":  # the file's ids, so the results can be scored against it; else 1 … N in the order given
        image_ids = [image.image_id for image in listed] if listed is not None else list(range(1, len(images) + 1))
    torch_device = resolve_device(device, DistributedContext())
    model, state = load_model_from_checkpoint(checkpoint, torch_device, trust_checkpoint)
    if vocab is not None:
        vocabulary = vocabulary_from_text(vocab, state, clip_weights)
    elif dataset is not None:
        vocabulary = vocabulary_from_dataset(dataset, state, clip_weights)
    else:
        space = UnifiedLabelSpace(labelspace)
        check_compatible(state, space, checkpoint)
        vocabulary = space.vocabulary()
    predictions = predict_images(model, images, vocabulary, torch_device, score_threshold, one_label_per_box)
    if concepts is not None:
        from scaledet.detector.concepts import fold_detections

        for prediction in predictions:
            prediction["detections"] = fold_detections(prediction["detections"], concepts)
    written = write_predictions(predictions, out, image_ids, vocabulary.names, ground_truth)
    for prediction in predictions:
        found = ", ".join(f"{d['label']} {d['score']:.2f}" for d in prediction["detections"][:8]) or "nothing"
        console.print(f"{prediction['image']}: {len(prediction['detections'])} detections ({found})")
    results = " and results.json (COCO results format)" if image_ids is not None else ""
    console.print(f"wrote {written[0].name}{results} and {len(predictions)} drawing(s) in {out}", soft_wrap=True)


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the world, label space, run and drawings go."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="Training iterations (default: the demo's own, with its measured time, in docs/detector.md)."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """A first run with no dataset on disk: generate a shapes world of two datasets with different
    vocabularies, build their label space, train, evaluate and draw predictions (a few minutes on CPU)."""
    import time

    from scaledet.detector.demo import DemoSettings, run_demo

    started = time.perf_counter()
    settings = DemoSettings() if iterations is None else DemoSettings(iterations=iterations)
    result = run_demo(out, settings, force=force, progress=not quiet,
                      say=lambda text: console.print(text))
    _print_metrics(f"demo: {result['checkpoint']}", result["metrics"])
    console.print(f"drawings: {', '.join(str(p) for p in result['predictions'])}")
    console.print(f"config to rerun or change: {result['config']}  ({time.perf_counter() - started:.0f} s in all)")


@app.command("pseudo-label")
@user_errors
def pseudo_label(
    unified: Path = typer.Option(..., "--unified", help="A 'scaledet-labels unify' file (DIR/unified.json, made without --compact)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Teacher: a scaledet checkpoint, run over the file's images in its categories (resumable)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Teacher: any detector's COCO results file (a JSON list) in the unified file's categories and image ids."),
    out: Path = typer.Option(..., "--out", help="Output folder: unified.json (or a YOLO dataset) and pseudo_labels.csv."),
    precision: Optional[float] = typer.Option(None, "--precision", min=0.0, max=1.0, help="Per-category thresholds reaching this precision on the category's exhaustive images (default 0.9)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One score threshold for every category instead (also for categories without exhaustive images)."),
    fmt: str = typer.Option("coco", "--format", help="coco (a unified file with pseudo boxes marked) or yolo (pseudo boxes as ordinary boxes)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="A held-out unified file (the sources' validation splits, unified the same way) whose exhaustive cells set the thresholds; default the file itself, where a teacher trained on it reads high."),
    calibration_results: Optional[Path] = typer.Option(None, "--calibration-results", help="With --results and --calibration: the teacher's results on the calibration file."),
    images: Optional[Path] = typer.Option(None, "--images", help="With --checkpoint: the folder the file's image names are under (default the unified file's folder; a --calibration file's images are under its own folder)."),
    batch_size: int = typer.Option(2, "--batch-size", min=1, help="With --checkpoint: images per forward pass."),
    device: str = typer.Option("auto", "--device", help="With --checkpoint: auto, cpu, cuda or cuda:N."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Add a teacher's detections to a unified training set only in cells whose label state is unknown or
    partial, with per-category thresholds measured on exhaustively annotated images."""
    import contextlib
    import math
    import sys

    from scaledet.detector.pseudo_labels import pseudo_label as run_pseudo_label
    from scaledet.detector.pseudo_labels.run import FORMATS, PSEUDO_KIND, YOLO_NOTE, UnifiedFile
    from scaledet.detector.pseudo_labels.tables import read_detections
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.io.output_dirs import (check_output_dir, mark_output_dir, record_output_files,
                                                    undone_on_failure)

    if (checkpoint is None) == (results is None):
        raise ScaledetError("give the teacher as exactly one of --checkpoint and --results")
    if precision is not None and threshold is not None:
        raise ScaledetError("--precision and --threshold: choose one")
    if threshold is not None and not math.isfinite(threshold):
        raise ScaledetError(f"--threshold {threshold}: a finite score")
    if fmt not in FORMATS:
        raise ScaledetError(f"--format {fmt!r}: choose coco or yolo")
    if results is not None and (images is not None or checkpoint is not None):
        raise ScaledetError("--images goes with --checkpoint (a results file is already detected)")
    if (calibration_results is not None) != (calibration is not None and results is not None):
        raise ScaledetError("--calibration-results goes with --results and --calibration: the teacher's results "
                            "on the calibration file (with --checkpoint the teacher runs on it here)")
    unified = unified.expanduser()
    unified_file = UnifiedFile.read(unified)  # checked before anything is made
    held_out = UnifiedFile.read(calibration) if calibration is not None else None
    inputs = tuple(p for p in (unified, results, checkpoint, calibration, calibration_results) if p is not None)
    out = check_output_dir(out, PSEUDO_KIND, "--out", force, inputs=inputs)
    interactive = not quiet and sys.stderr.isatty()
    say = (lambda text: print(text, file=sys.stderr)) if interactive else (lambda text: None)
    # a failed run leaves no folder it made, except the checkpoint teacher's finished chunks: a rerun resumes them
    with undone_on_failure(out) if checkpoint is None else contextlib.nullcontext():
        out.mkdir(parents=True, exist_ok=True)
        mark_output_dir(out, PSEUDO_KIND, unified=str(unified.resolve()))
        calibration_parts = [calibration_results] if calibration_results is not None else None
        if checkpoint is not None:
            from scaledet.detector.engine import DistributedContext, resolve_device
            from scaledet.detector.pseudo_labels.teacher import CALIBRATION_TEACHER_DIR, TEACHER_DIR, teacher_results

            torch_device = resolve_device(device, DistributedContext())
            runs = [(unified_file, images or unified.parent, TEACHER_DIR)]
            if held_out is not None:
                runs.append((held_out, calibration.parent, CALIBRATION_TEACHER_DIR))
            found = []
            for read, image_root, folder in runs:
                parts, detected = teacher_results(read, checkpoint, image_root, out, torch_device, trust_checkpoint,
                                                  batch_size, show_progress=interactive, say=say, folder_name=folder)
                console.print(f"teacher: detected {detected} images of {read.path.name} ({len(parts)} chunks in "
                              f"{out / folder})", soft_wrap=True)
                found.append(parts)
            parts, calibration_parts = found[0], (found[1] if calibration is not None else None)
            teacher = f"checkpoint {checkpoint.resolve()}"
        else:
            parts, teacher = [results], f"results {results.resolve()}"
        categories = {c["id"] for c in unified_file.categories}
        flag = "--results" if results is not None else "teacher"
        detections = read_detections(parts, categories, flag)
        held_out_detections = (read_detections(calibration_parts, categories, "--calibration-results" if results
                                               is not None else "teacher") if calibration_parts else None)
        report = run_pseudo_label(unified_file, detections, out, teacher,
                                  precision if precision is not None else (None if threshold is not None else 0.9),
                                  threshold, fmt, show_progress=interactive, say=say, calibration_file=held_out,
                                  calibration_detections=held_out_detections)
        record_output_files(out, report.written)
    calibrated = sum(1 for t in report.thresholds.values() if t.threshold != float("inf"))
    console.print(f"{report.boxes_added} pseudo boxes in {report.cells_filled} cells of {report.images} images; "
                  f"{calibrated} of {len(report.thresholds)} categories have a threshold → "
                  f"{', '.join(str(p) for p in report.written)}", soft_wrap=True)
    if report.skipped:
        console.print(f"{len(report.skipped)} categories get no pseudo boxes (no exhaustive images, no teacher "
                      f"detections there, or the precision not reached; see pseudo_labels.csv): "
                      f"{', '.join(report.skipped[:8])}{', …' if len(report.skipped) > 8 else ''}", soft_wrap=True)
    if calibration is None and threshold is None:
        console.print("note: thresholds were measured on this file's own exhaustive cells; a teacher trained on "
                      "these images reads high there: give --calibration (a held-out split) to measure them fairly",
                      soft_wrap=True)
    if fmt == "yolo":
        console.print(f"note: {YOLO_NOTE}", soft_wrap=True)


@app.command("convert-oid")
@user_errors
def convert_oid(
    boxes: Path = typer.Option(..., "--boxes", help="OpenImages *-annotations-bbox.csv."),
    classes: Path = typer.Option(..., "--classes", help="class-descriptions-boxable.csv."),
    images: Path = typer.Option(..., "--images", help="Folder of <ImageID>.jpg files."),
    image_labels: Optional[Path] = typer.Option(None, "--image-labels", help="*-human-imagelabels-boxable.csv: verified labels for the oid evaluator."),
    out: Path = typer.Option(..., "--out", help="COCO-format JSON to write (an earlier convert-oid output is replaced)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if convert-oid did not write it."),
) -> None:
    """Convert OpenImages box annotations to COCO-format JSON (categories keep their MIDs)."""
    from scaledet.detector.convert_oid import check_convert_out, convert_openimages

    check_convert_out(out, force, inputs=(boxes, classes, image_labels))
    counts = convert_openimages(boxes, classes, images, out, image_labels_csv=image_labels)
    console.print(f"{out}: {counts['images']} images, {counts['annotations']} boxes, {counts['categories']} categories")


def main() -> None:
    run_app(app, "scaledet")


if __name__ == "__main__":
    main()
