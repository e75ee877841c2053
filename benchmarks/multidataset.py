"""Evidence: what multi-dataset training and the soft-label loss do, on a procedural world, on CPU.

    python benchmarks/multidataset.py [--seeds 8] [--iterations 100] [--size 96] [--out docs/results]

Four upstream datasets annotate the same world of coloured shapes with different vocabularies (synonyms,
finer and coarser labels, partial annotation; ``detector/synthetic.py``); three downstream datasets use
names or a look no upstream dataset has. Every run trains the same detector for the same number of
iterations and is evaluated with pycocotools on every test split, each in its own vocabulary given as text.

Five variants, each trained with the same seeds on the same data, answer five paired questions
(``QUESTIONS``), on every test split (the downstream columns are zero-shot):
1. the soft loss: 4 datasets hard + soft − 4 datasets hard only;
2. label masks: the hard loss masked to the image's dataset − over the union (both with the soft loss);
3. more datasets: 4 datasets − geo alone (both hard + soft);
4. label states: the federated hard loss (per-image states from the build's ``merge``) − over the union;
5. label states − the dataset mask (both with the soft loss).
The 4-dataset hard + soft run is shared by all three questions. For each question and test split the
table gives the mean per-seed difference of AP50 with its 95 % t-interval (``benchmarks/paired.py``), and
a difference is called one only where the interval excludes zero.

Scoring across taxonomies (``scaledet eval --from``): a model trained on one dataset (``geo``, and
``things``, the run ``--runs 5`` adds) is also scored on every other test split whose vocabulary the
build's concepts reach, through translation: it detects in its own dataset's words and the detections are
translated into the split's categories (``predicts_in``), against the same model given the split's own
words as text. The eval build's merge holds the world's synonyms (``WORLD_SYNONYMS``); the world has no
hierarchy, so every mapped label is the same concept. The table gives the paired difference
(translated − as text) on each split the translation reaches.
Writes ``OUT/multidataset.md``, ``OUT/multidataset.json`` (every run's scores and the settings: torch
version, threads, CPU) and ``OUT/multidataset.png`` (the differences with their intervals).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/paired.py

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
    Run("4 datasets, hard + soft", tuple(UPSTREAM), 1.0),
    Run("4 datasets, hard only", tuple(UPSTREAM), 0.0),
    Run("4 datasets, masked hard + soft", tuple(UPSTREAM), 1.0, "dataset"),
    Run("4 datasets, federated hard + soft", tuple(UPSTREAM), 1.0, "federated"),
    Run("1 dataset (things)", ("things",), 1.0),
]
#: (question, variant a, variant b): the per-seed difference a − b.
QUESTIONS = [
    ("soft loss (hard + soft − hard only)", "4 datasets, hard + soft", "4 datasets, hard only"),
    ("label masks (masked − union)", "4 datasets, masked hard + soft", "4 datasets, hard + soft"),
    ("more datasets (4 − geo alone)", "4 datasets, hard + soft", "1 dataset (geo)"),
    ("label states (federated − union)", "4 datasets, federated hard + soft", "4 datasets, hard + soft"),
    ("label states (federated − dataset mask)", "4 datasets, federated hard + soft", "4 datasets, masked hard + soft"),
]


def make_world(work: Path, train_images: int, test_images: int, size: int) -> None:
    from scaledet.detector.synthetic import downstream_datasets, upstream_datasets, write_coco_dataset

    for spec in upstream_datasets():
        write_coco_dataset(spec, work / spec.name / "train", train_images, size, seed=0)
        write_coco_dataset(spec, work / spec.name / "test", test_images, size, seed=1)
    for spec in downstream_datasets():
        write_coco_dataset(spec, work / spec.name / "test", test_images, size, seed=2)


#: The world's synonyms across the upstream datasets (``detector/synthetic.py``: things says "round disk" and
#: "box" for geo's circle and square). Neither name nor text embedding links them, so, as a user would after
#: reading ``review.csv``, the federated variant's merge accepts them as decisions.
WORLD_SYNONYMS = [("geo/circle", "things/round disk", "accept"), ("geo/square", "things/box", "accept")]


def merge_world(target: Path) -> None:
    """The concepts of a build (the config's ``merge: auto``, as ``scaledet-labels merge`` makes them), with
    the world's synonyms accepted."""
    from scaledet.labelspace.merge import MergeSettings, merge_labels
    from scaledet.labelspace.merge_io import write_merge_outputs
    from scaledet.labelspace.outputs import LabelSpaceOutput

    if (target / "merge" / "merged.parquet").exists():
        return
    output = LabelSpaceOutput.load(target)
    result = merge_labels(output, MergeSettings(use_wordnet=False), WORLD_SYNONYMS)
    write_merge_outputs(result, output, target / "merge", {"embedding_threshold": MergeSettings().embedding_threshold})


def build_spaces(work: Path, encoder, runs: list[Run] | None = None) -> None:
    """The label space of each of ``runs`` (default all), with the federated runs' merge, and the space of
    every test split, with its merge (the concepts translation goes through)."""
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies

    def files(names, split):
        return [DatasetFile(n, work / n / split / "annotations.json") for n in names]

    for run in runs or RUNS:
        target = work / "spaces" / "+".join(run.datasets)
        if not target.exists():
            build_labelspace(load_taxonomies([], files(run.datasets, "train")), encoder, target)
        if run.scope == "federated":
            merge_world(target)  # the concepts the label states use
    if not (work / "spaces" / "eval" / "manifest.json").exists():
        build_labelspace(load_taxonomies([], files(UPSTREAM + DOWNSTREAM, "test")), encoder, work / "spaces" / "eval")
    merge_world(work / "spaces" / "eval")


def translation_targets(build: Path, source: str) -> list[str]:
    """The test splits other than ``source`` that at least one of ``source``'s labels translates into."""
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.translate import UNMAPPED, make_translator

    output = LabelSpaceOutput.load(build, with_embeddings=False)
    return [name for name in UPSTREAM + DOWNSTREAM if name != source
            and any(how != UNMAPPED for how in make_translator(output, source, name).how.values())]


def train_and_evaluate(run: Run, seed: int, work: Path, args, datasets: list | None = None,
                       pseudo_labels: dict | None = None) -> dict:
    """One run trained with ``seed`` and scored on every test split. ``datasets`` replaces the run's own
    train files (the pseudo-label benchmark trains on unified files); ``pseudo_labels`` is that config
    section. The result names the final checkpoint."""
    from scaledet.detector.config import PseudoLabelConfig, SamplingConfig, ScheduleConfig, TrainConfig
    from scaledet.detector.data import CocoDetectionDataset, DatasetSpec, InputConfig
    from scaledet.detector.engine import Trainer
    from scaledet.detector.evaluation.inference import evaluate_dataset
    from scaledet.detector.model import ModelConfig
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    start = time.perf_counter()
    config = TrainConfig(
        labelspace=str(work / "spaces" / "+".join(run.datasets)),
        datasets=datasets or [DatasetSpec(n, str(work / n / "train" / "annotations.json"),
                                          str(work / n / "train" / "images")) for n in run.datasets],
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
        pseudo_labels=PseudoLabelConfig(**(pseudo_labels or {})),
    )
    torch.manual_seed(seed)
    trainer = Trainer(config, show_progress=False, force=True)  # the benchmark owns its work folder
    trainer.train()
    train_seconds = time.perf_counter() - start
    model = trainer.model.eval()
    space = UnifiedLabelSpace(work / "spaces" / "eval")
    scores, detections = {}, {}
    for name in UPSTREAM + DOWNSTREAM:
        spec = DatasetSpec(name, str(work / name / "test" / "annotations.json"), str(work / name / "test" / "images"))
        dataset = CocoDetectionDataset(spec, space, train=False)
        metrics, detections[name] = evaluate_dataset(model, dataset, space.embeddings, trainer.device)
        # a set with no boxes (the negative control) has undefined AP; this benchmark has always counted it as 0
        scores[name] = {k: (0.0 if v is None else v) for k, v in metrics.items()}
    translated, per_category = {}, {}
    if len(run.datasets) == 1:  # the same model, detecting in its own words, translated into each split's
        (source,) = run.datasets
        for name in translation_targets(work / "spaces" / "eval", source):
            annotations = work / name / "test" / "annotations.json"
            spec = DatasetSpec(name, str(annotations), str(work / name / "test" / "images"), predicts_in=source)
            dataset = CocoDetectionDataset(spec, space, train=False)
            metrics, results = evaluate_dataset(model, dataset, space.embeddings, trainer.device,
                                                build=space.directory)
            translated[name] = {k: (0.0 if v is None else v) for k, v in metrics.items()}
            per_category[name] = {"as text": per_category_ap50(annotations, detections[name]),
                                  "translated": per_category_ap50(annotations, results)}
    return {"run": run.name, "seed": seed, "train_seconds": train_seconds,
            "total_seconds": time.perf_counter() - start, "scores": scores, "translated": translated,
            "per_category_ap50": per_category, "checkpoint": str(Path(config.output_dir) / "model_final.pth")}


def per_category_ap50(annotation_file: Path, results: list[dict]) -> dict[str, float]:
    """Category name → AP50 (pycocotools, %, 100 detections, all areas): where translation gains or loses."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotation_file))
        if not results:
            return {c["name"]: 0.0 for c in truth.cats.values()}
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, :, 0, 2]  # IoU 0.5, recall steps × categories
    scores = {}
    for k, category in enumerate(evaluation.params.catIds):
        column = precision[:, k]
        scores[truth.cats[category]["name"]] = float(column[column > -1].mean() * 100) if (column > -1).any() else 0.0
    return scores


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


def paired_table(results: list[dict], metric: str = "AP50") -> dict[str, dict[str, dict]]:
    """question → test split → paired interval over the seeds both variants ran with."""
    from paired import paired_interval

    by_run: dict[str, dict[int, dict]] = {}
    for result in results:
        by_run.setdefault(result["run"], {})[result["seed"]] = result["scores"]
    table = {}
    for question, a, b in QUESTIONS:
        if a not in by_run or b not in by_run:
            continue
        seeds = sorted(set(by_run[a]) & set(by_run[b]))
        if len(seeds) < 2:
            continue
        table[question] = {name: paired_interval([by_run[a][s][name][metric] for s in seeds],
                                                 [by_run[b][s][name][metric] for s in seeds])
                           for name in UPSTREAM + DOWNSTREAM}
    return table


def translation_table(results: list[dict], metric: str = "AP50") -> dict[str, dict[str, dict]]:
    """model → test split → paired interval of (scored through translation − given the split's words as
    text), over the seeds of that model."""
    from paired import paired_interval

    table: dict[str, dict[str, dict]] = {}
    for run in RUNS:
        mine = sorted((r for r in results if r["run"] == run.name and r.get("translated")), key=lambda r: r["seed"])
        if len(mine) < 2:
            continue
        table[run.name] = {name: paired_interval([r["translated"][name][metric] for r in mine],
                                                 [r["scores"][name][metric] for r in mine])
                           for name in mine[0]["translated"]}
    return table


def translation_markdown(table: dict[str, dict[str, dict]]) -> str:
    from paired import verdict

    header = ["model (detects in its own words)"] + UPSTREAM + [f"{d}*" for d in DOWNSTREAM]
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for model, row in table.items():
        cells = [model] + [verdict(row[name]).replace(": ", "<br>") if name in row else "—"
                           for name in UPSTREAM + DOWNSTREAM]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def paired_markdown(table: dict[str, dict[str, dict]]) -> str:
    from paired import verdict

    header = ["question"] + UPSTREAM + [f"{d}*" for d in DOWNSTREAM]
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for question, row in table.items():
        cells = [question] + [verdict(row[name]).replace(": ", "<br>") for name in UPSTREAM + DOWNSTREAM]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(table: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(table)), figsize=(5 * max(1, len(table)), 4), sharey=True)
    axes = axes if hasattr(axes, "__len__") else [axes]
    datasets = UPSTREAM + DOWNSTREAM
    for axis, (question, row) in zip(axes, table.items()):
        means = [row[d]["mean"] for d in datasets]
        errors = [[row[d]["mean"] - row[d]["low"] for d in datasets], [row[d]["high"] - row[d]["mean"] for d in datasets]]
        colours = ["tab:green" if row[d]["low"] > 0 else "tab:red" if row[d]["high"] < 0 else "tab:grey"
                   for d in datasets]
        axis.bar(range(len(datasets)), means, yerr=errors, capsize=3, color=colours)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(datasets)), [d if d in UPSTREAM else f"{d}*" for d in datasets], rotation=30)
        axis.set_title(question, fontsize=10)
    axes[0].set_ylabel("Δ AP50, mean over seeds, 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_settings(args) -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"backbone": args.backbone, "size": args.size, "iterations": args.iterations, "batch": args.batch,
            "train_images": args.train_images, "test_images": args.test_images, "seeds": args.seeds,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu,
            "device": "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"}


def default_threads() -> int:
    """torch's own count when OMP_NUM_THREADS is set (a caller that runs several processes side by side, as
    the test suite does, sized it to their cores; the demo keeps to the same count), else every core."""
    return torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else max(1, os.cpu_count() or 1)


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The world's size and the training settings every run of this world's benchmarks shares."""
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--test-images", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: OMP_NUM_THREADS when set, else all cores)")
    parser.add_argument("--work", type=Path, default=None, help="where the world and runs go (default: a temp dir)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--runs", type=int, nargs="*", help="indices of RUNS to do (default: all)")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads or default_threads())
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-multidataset-"))
    started = time.perf_counter()
    from scaledet.labelspace.encoders import MiniLMEncoder

    make_world(work, args.train_images, args.test_images, args.size)
    build_spaces(work, MiniLMEncoder())
    selected = [RUNS[i] for i in args.runs] if args.runs else RUNS
    results = []
    total = len(selected) * args.seeds
    for seed in range(args.seeds):  # seed-major: a cut-short run still has complete pairs
        for run in selected:
            result = train_and_evaluate(run, seed, work, args)
            results.append(result)
            ap50 = {k: round(v["AP50"], 1) for k, v in result["scores"].items()}
            print(f"[{len(results)}/{total}] {run.name} seed {seed}: {result['total_seconds']:.0f}s AP50 {ap50}",
                  file=sys.stderr, flush=True)
    settings = {**machine_settings(args), "wall_minutes": round((time.perf_counter() - started) / 60, 1)}
    print(write_report(results, settings, args.out))


def write_report(results: list[dict], settings: dict, out: Path) -> str:
    """``multidataset.json``, ``.md`` and ``.png`` in ``out`` from every run's scores; returns the text."""
    out.mkdir(parents=True, exist_ok=True)
    trained = {r.name: r.datasets for r in RUNS}
    tables = {metric: summarise(results, metric) for metric in ("AP50", "AP")}
    paired = paired_table(results)
    translation = translation_table(results)
    (out / "multidataset.json").write_text(json.dumps(
        {"settings": settings, "results": results, "paired": paired, "translation": translation}, indent=1))
    if paired:
        plot(paired, out / "multidataset.png")
    words = ", ".join(f"{k} {v}" for k, v in settings.items())
    body = [f"Settings: {words}.", ""]
    if paired:
        body += ["Paired differences of AP50 (pycocotools, %): mean over seeds [95 % t-interval]; * = a dataset no "
                 "variant trained on (zero-shot, its vocabulary given only as text):", "", paired_markdown(paired), ""]
    body += ["AP50 of each variant, mean ± std over seeds (* = zero-shot):", "",
             markdown_table(tables["AP50"], "AP50", trained)]
    if translation:
        body += ["", "Scoring across taxonomies: paired differences of AP50, the model scored through translation "
                 "(detecting in its own dataset's words, translated into the split's categories through the eval "
                 "build's concepts) − the same model given the split's own words as text; — = no label of the "
                 "model's dataset translates into that split:", "", translation_markdown(translation)]
    text = "\n".join(body) + "\n"
    (out / "multidataset.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
