"""Evidence: what multi-dataset training and the soft-label loss do, on a procedural world, on CPU.

    python benchmarks/multidataset.py [--seeds 3] [--iterations 120] [--out docs/results]

Four upstream datasets annotate the same world of coloured shapes with different vocabularies (synonyms,
finer and coarser labels, partial annotation; ``detector/synthetic.py``); three downstream datasets use
names or a look no upstream dataset has. Every run trains the same detector for the same number of
iterations and is evaluated with pycocotools on every test split, each in its own vocabulary given as text.

Experiments (rows of the results table):
1. upstream datasets 1, 2, 3, 4 (geo, +things, +paint, +blobs), hard + soft;
2. hard only (λ = 0) vs hard + soft (λ = 1), all four datasets;
3. zero-shot downstream: the columns thermal / toys / negative of every run;
4. hard loss over the union vs masked to the image's dataset, each with and without the soft loss.
Writes ``OUT/multidataset.md`` (table, mean ± std over seeds, wall time), ``OUT/multidataset.json`` and
``OUT/multidataset.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

UPSTREAM = ["geo", "things", "paint", "blobs"]
DOWNSTREAM = ["thermal", "toys", "negative"]


@dataclass(frozen=True)
class Run:
    name: str
    datasets: tuple[str, ...]
    soft_weight: float
    scope: str = "union"


RUNS = [
    Run("1 dataset (geo)", ("geo",), 1.0),
    Run("2 datasets (+things)", ("geo", "things"), 1.0),
    Run("3 datasets (+paint)", ("geo", "things", "paint"), 1.0),
    Run("4 datasets, hard + soft", tuple(UPSTREAM), 1.0),
    Run("4 datasets, hard only", tuple(UPSTREAM), 0.0),
    Run("4 datasets, masked hard + soft", tuple(UPSTREAM), 1.0, "dataset"),
    Run("4 datasets, masked hard only", tuple(UPSTREAM), 0.0, "dataset"),
]


def make_world(work: Path, train_images: int, test_images: int, size: int) -> None:
    from scaledet.detector.synthetic import downstream_datasets, upstream_datasets, write_coco_dataset

    for spec in upstream_datasets():
        write_coco_dataset(spec, work / spec.name / "train", train_images, size, seed=0)
        write_coco_dataset(spec, work / spec.name / "test", test_images, size, seed=1)
    for spec in downstream_datasets():
        write_coco_dataset(spec, work / spec.name / "test", test_images, size, seed=2)


def build_spaces(work: Path, encoder) -> None:
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies

    def files(names, split):
        return [DatasetFile(n, work / n / split / "annotations.json") for n in names]

    for run in RUNS:
        target = work / "spaces" / "+".join(run.datasets)
        if not target.exists():
            build_labelspace(load_taxonomies([], files(run.datasets, "train")), encoder, target)
    build_labelspace(load_taxonomies([], files(UPSTREAM + DOWNSTREAM, "test")), encoder, work / "spaces" / "eval")


def train_and_evaluate(run: Run, seed: int, work: Path, args) -> dict:
    from scaledet.detector.config import SamplingConfig, ScheduleConfig, TrainConfig
    from scaledet.detector.data import CocoDetectionDataset, DatasetSpec, InputConfig
    from scaledet.detector.engine import Trainer
    from scaledet.detector.evaluation.inference import evaluate_dataset
    from scaledet.detector.model import ModelConfig
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    start = time.perf_counter()
    config = TrainConfig(
        labelspace=str(work / "spaces" / "+".join(run.datasets)),
        datasets=[DatasetSpec(n, str(work / n / "train" / "annotations.json"), str(work / n / "train" / "images"))
                  for n in run.datasets],
        output_dir=str(work / "runs" / f"{run.name}-{seed}".replace(" ", "_").replace(",", "")),
        seed=seed, device="cpu" if args.device == "cpu" else "auto",
        input=InputConfig(min_size_train=[args.size], max_size_train=args.size, min_size_test=args.size,
                          max_size_test=args.size, random_flip=False),
        num_workers=0,
        model=ModelConfig(backbone=args.backbone, soft_weight=run.soft_weight,
                          hard_loss_scope=run.scope, roi_batch_size_per_image=64, rpn_pre_nms_top_n_train=600,
                          rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150),
        schedule=ScheduleConfig(iterations=args.iterations, batch_size=args.batch, lr=args.lr,
                                warmup_iterations=min(50, args.iterations // 5), checkpoint_every=10**9, log_every=50),
        sampling=SamplingConfig(mode="per_dataset"),
    )
    torch.manual_seed(seed)
    trainer = Trainer(config, show_progress=False, force=True)  # the benchmark owns its work folder
    trainer.train()
    train_seconds = time.perf_counter() - start
    model = trainer.model.eval()
    space = UnifiedLabelSpace(work / "spaces" / "eval")
    scores = {}
    for name in UPSTREAM + DOWNSTREAM:
        spec = DatasetSpec(name, str(work / name / "test" / "annotations.json"), str(work / name / "test" / "images"))
        dataset = CocoDetectionDataset(spec, space, train=False)
        metrics, _ = evaluate_dataset(model, dataset, space.embeddings, trainer.device)
        # a set with no boxes (the negative control) has undefined AP; this benchmark has always counted it as 0
        scores[name] = {k: (0.0 if v is None else v) for k, v in metrics.items()}
    return {"run": run.name, "seed": seed, "train_seconds": train_seconds,
            "total_seconds": time.perf_counter() - start, "scores": scores}


def summarise(results: list[dict], metric: str) -> dict[str, dict[str, tuple[float, float]]]:
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for run in RUNS:
        mine = [r for r in results if r["run"] == run.name]
        if not mine:
            continue
        row = {}
        for name in UPSTREAM + DOWNSTREAM:
            values = [r["scores"][name][metric] for r in mine]
            row[name] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        row["seconds"] = (statistics.mean(r["total_seconds"] for r in mine), 0.0)
        table[run.name] = row
    return table


def markdown_table(table: dict, metric: str, trained: dict[str, tuple[str, ...]]) -> str:
    header = ["run"] + UPSTREAM + DOWNSTREAM + ["s / run"]
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for name, row in table.items():
        cells = [name]
        for dataset in UPSTREAM + DOWNSTREAM:
            mean, std = row[dataset]
            mark = "" if dataset in trained[name] else "*"
            cells.append(f"{mean:.1f} ± {std:.1f}{mark}")
        cells.append(f"{row['seconds'][0]:.0f}")
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    growth = [r.name for r in RUNS[:4] if r.name in table]
    for dataset in UPSTREAM + DOWNSTREAM:
        means = [table[name][dataset][0] for name in growth]
        stds = [table[name][dataset][1] for name in growth]
        left.errorbar(range(1, len(growth) + 1), means, yerr=stds, marker="o", capsize=3, label=dataset,
                      linestyle="-" if dataset in UPSTREAM else "--")
    left.set_xticks(range(1, len(growth) + 1))
    left.set_xlabel("upstream datasets in training (geo, +things, +paint, +blobs)")
    left.set_ylabel("AP50 (pycocotools), mean ± std over seeds")
    left.set_title("1. more upstream datasets")
    left.legend(fontsize=8, ncol=2)
    variants = [r.name for r in RUNS[3:] if r.name in table]
    width = 0.8 / max(1, len(variants))
    datasets = UPSTREAM + DOWNSTREAM
    for k, name in enumerate(variants):
        right.bar([i + k * width for i in range(len(datasets))], [table[name][d][0] for d in datasets], width,
                  yerr=[table[name][d][1] for d in datasets], capsize=2, label=name.replace("4 datasets, ", ""))
    right.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(datasets))], datasets)
    right.set_title("2./4. soft loss and label masks (4 datasets)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--test-images", type=int, default=20)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=int, nargs="*", help="indices of RUNS to do (default: all)")
    parser.add_argument("--work", type=Path, default=None, help="where the world and runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-multidataset-"))
    started = time.perf_counter()
    from scaledet.labelspace.encoders import MiniLMEncoder

    make_world(work, args.train_images, args.test_images, args.size)
    build_spaces(work, MiniLMEncoder())
    selected = [RUNS[i] for i in args.runs] if args.runs else RUNS
    results = []
    total = len(selected) * args.seeds
    for run in selected:
        for seed in range(args.seeds):
            result = train_and_evaluate(run, seed, work, args)
            results.append(result)
            ap50 = {k: round(v["AP50"], 1) for k, v in result["scores"].items()}
            print(f"[{len(results)}/{total}] {run.name} seed {seed}: {result['total_seconds']:.0f}s AP50 {ap50}",
                  file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    trained = {r.name: r.datasets for r in RUNS}
    tables = {metric: summarise(results, metric) for metric in ("AP50", "AP")}
    settings = (f"{args.backbone} FPN from scratch, {args.size}px, {args.iterations} iterations × {args.batch} images, "
                f"{args.train_images} train / {args.test_images} test images per dataset, {args.seeds} seeds, "
                f"device {'cuda' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'}, wall time {wall / 60:.1f} min")
    (args.out / "multidataset.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    plot(tables["AP50"], args.out / "multidataset.png")
    body = [f"Settings: {settings}.", "", "AP50 (pycocotools, %), mean ± std over seeds; * = not trained on that "
            "dataset (zero-shot, its vocabulary given only as text):", "", markdown_table(tables["AP50"], "AP50", trained),
            "", "AP@[.5:.95]:", "", markdown_table(tables["AP"], "AP", trained)]
    (args.out / "multidataset.md").write_text("\n".join(body) + "\n")
    print("\n".join(body))


if __name__ == "__main__":
    main()
