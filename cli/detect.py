"""``scaledet``: train, evaluate and run the detector on a labelspace build."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import run_app, user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ScaleDet detector: train / eval / predict on a labelspace build.")
# Label names come from users' files ("Mouse [/m/020lf]" in oid500): never read them as rich markup.
console = Console(markup=False, highlight=False)


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
    from scaledet.detector.engine import Trainer

    cfg = load_config(config, overrides)
    trainer = Trainer(cfg, resume=resume, show_progress=not quiet, force=force)
    final = trainer.train()
    if trainer.context.is_main:
        console.print(f"trained {cfg.schedule.iterations} iterations → {final} (metrics: {Path(cfg.output_dir) / 'metrics.csv'})")
        if cfg.eval_datasets:
            _evaluate(cfg, final, trainer.device, quiet)


def _evaluate(cfg, checkpoint: Path, device, quiet: bool) -> dict:
    from scaledet.detector.checkpoint import check_compatible
    from scaledet.detector.data import CocoDetectionDataset
    from scaledet.detector.evaluation import evaluate_dataset, METRIC_NAMES, write_results
    from scaledet.detector.predict import load_model_from_checkpoint
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    labelspace = UnifiedLabelSpace(cfg.labelspace)
    model, state = load_model_from_checkpoint(checkpoint, device)
    check_compatible(state, labelspace, checkpoint)
    table = {}
    for spec in cfg.eval_datasets:
        dataset = CocoDetectionDataset(spec, labelspace, train=False)
        table[spec.name] = evaluate_dataset(model, dataset, labelspace.embeddings, device, progress=not quiet)
    view = Table(title=f"COCO mAP (pycocotools) of {checkpoint}")
    view.add_column("dataset")
    for name in METRIC_NAMES:
        view.add_column(name, justify="right")
    for name, metrics in table.items():
        view.add_row(name, *(f"{metrics[m]:.1f}" for m in METRIC_NAMES))
    console.print(view)
    out = Path(cfg.output_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, table)
    console.print(f"results → {out}")
    return table


@app.command("eval")
@user_errors
def evaluate(
    config: Path = typer.Option(..., "--config", help="The training config; its eval_datasets are evaluated."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE config overrides."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Default: OUTPUT_DIR/model_final.pth."),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Per-dataset COCO mAP, each dataset in its own label space; a table and OUTPUT_DIR/eval.json."""
    from scaledet.detector.config import load_config
    from scaledet.detector.engine import DistributedContext, resolve_device
    from scaledet.labelspace.errors import ScaledetError

    cfg = load_config(config, overrides)
    if not cfg.eval_datasets:
        raise ScaledetError(f"{config}: no eval_datasets to evaluate")
    _evaluate(cfg, checkpoint or Path(cfg.output_dir) / "model_final.pth",
              resolve_device(device, DistributedContext()), quiet)


@app.command()
@user_errors
def predict(
    images: List[Path] = typer.Argument(..., help="Image files."),
    checkpoint: Path = typer.Option(..., "--checkpoint"),
    vocab: Optional[str] = typer.Option(None, "--vocab", help="Comma-separated class names, e.g. 'fish,jellyfish,penguin'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A built-in dataset's vocabulary, e.g. odinw/Aquarium."),
    labelspace: Optional[Path] = typer.Option(None, "--labelspace", help="Use this build's union as the vocabulary."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="For checkpoints trained on CLIP embeddings."),
    score_threshold: float = typer.Option(0.3, "--score-threshold", min=0.0, max=1.0),
    out: Path = typer.Option(Path("runs/predict"), "--out", help="Missing, empty, or an earlier predict output."),
    force: bool = typer.Option(False, "--force", help="Write into --out even if it holds other files."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Detect any vocabulary: writes OUT/detections.json and one PNG per image with boxes drawn."""
    from scaledet.detector.checkpoint import check_compatible
    from scaledet.detector.engine import DistributedContext, resolve_device
    from scaledet.detector.predict import (PREDICT_KIND, load_model_from_checkpoint, predict_images,
                                           vocabulary_from_dataset, vocabulary_from_text, write_predictions)
    from scaledet.labelspace.output_dirs import check_output_dir
    from scaledet.detector.vocabulary import UnifiedLabelSpace
    from scaledet.labelspace.errors import ScaledetError

    if sum(x is not None for x in (vocab, dataset, labelspace)) != 1:
        raise ScaledetError("give exactly one of --vocab, --dataset, --labelspace")
    out = check_output_dir(out, PREDICT_KIND, "--out", force)
    for image in images:
        if not image.is_file():
            raise ScaledetError(f"{image}: image not found")
    torch_device = resolve_device(device, DistributedContext())
    model, state = load_model_from_checkpoint(checkpoint, torch_device)
    if vocab is not None:
        vocabulary = vocabulary_from_text(vocab, state, clip_weights)
    elif dataset is not None:
        vocabulary = vocabulary_from_dataset(dataset, state, clip_weights)
    else:
        space = UnifiedLabelSpace(labelspace)
        check_compatible(state, space, checkpoint)
        vocabulary = space.vocabulary()
    predictions = predict_images(model, images, vocabulary, torch_device, score_threshold)
    written = write_predictions(predictions, out)
    for prediction in predictions:
        found = ", ".join(f"{d['label']} {d['score']:.2f}" for d in prediction["detections"][:8]) or "nothing"
        console.print(f"{prediction['image']}: {len(prediction['detections'])} detections ({found})")
    console.print(f"wrote {written[0]} and {len(written) - 1} image(s) in {out}")


@app.command("convert-oid")
@user_errors
def convert_oid(
    boxes: Path = typer.Option(..., "--boxes", help="OpenImages *-annotations-bbox.csv."),
    classes: Path = typer.Option(..., "--classes", help="class-descriptions-boxable.csv."),
    images: Path = typer.Option(..., "--images", help="Folder of <ImageID>.jpg files."),
    out: Path = typer.Option(..., "--out", help="COCO-format JSON to write (an earlier convert-oid output is replaced)."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if convert-oid did not write it."),
) -> None:
    """Convert OpenImages box annotations to COCO-format JSON (categories keep their MIDs)."""
    from scaledet.detector.convert_oid import check_convert_out, convert_openimages

    check_convert_out(out, force)
    counts = convert_openimages(boxes, classes, images, out)
    console.print(f"{out}: {counts['images']} images, {counts['annotations']} boxes, {counts['categories']} categories")


def main() -> None:
    run_app(app, "scaledet")


if __name__ == "__main__":
    main()
