"""The first run for a newcomer with no dataset on disk: ``scaledet demo``.

It does on a generated world what a real run does on COCO and LVIS. Two datasets annotate the same
coloured shapes with different vocabularies: ``geo`` says circle / square / triangle, ``things`` says
round disk / box / star. The demo builds their label space, trains the detector with the hard + soft losses
for a few minutes on CPU, evaluates each test set in its own vocabulary, and draws predictions for a
vocabulary given as text. Every step uses the same code as the real commands, and the config it writes can
be rerun with ``scaledet train``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from scaledet.labelspace.io.output_dirs import check_output_dir, mark_output_dir

DEMO_KIND = "demo"
DATASETS = ("geo", "things")
PICTURES = 4  # test images drawn with their predictions
DRAWING_VOCABULARY = "circle, square, triangle, star"  # given as text; geo never names stars, things triangles


@dataclass
class DemoSettings:
    """Sized for about 3 minutes on 2 idle CPU cores (measured, with the searches that chose it, in
    docs/detector.md). The objects are 18–47 px in 112 px images: a 64-channel pyramid and a 256-d box head
    (a quarter of torchvision's widths; RoIAlign one sample per bin) see them as well as the full widths did
    at less than half the step time, which buys more iterations. Batches of 8 cost less per image than
    batches of 4, and learn more in the same time: 500 batches of 8 reached geo AP50 69 in less time than
    900 batches of 4 took to reach 58. A softer temperature than real runs' 0.02 (logits ``cos / T``)
    trains faster from scratch. The box head learns from proposals overlapping a shape by IoU 0.6 or more
    (torchvision's 0.5 lets a square's loose proposal, its corners cut off, teach "square" on what looks
    like a circle: the drawings labelled nearly every circle "square"), and the learning rate stays high
    for 80 % of the schedule instead of 67 %: together geo AP50 70 → 92, and 86 % of the shapes in held-out
    images named right first as drawn (57 % before; benchmarks/demo_drawings.py). 96 training images per
    dataset: the README's tour runs its teacher over every training image. 50 test images per dataset: with
    20, one run's AP50 moved by several points with the seed."""

    train_images: int = 96
    test_images: int = 50
    image_size: int = 112
    iterations: int = 500
    batch_size: int = 8
    backbone: str = "resnet18"
    fpn_channels: int = 64
    box_head_dim: int = 256
    pooler_sampling_ratio: int = 1
    roi_fg_iou_thresh: float = 0.6
    lr_steps: tuple[float, ...] = (0.8, 0.95)
    temperature: float = 0.1
    seed: int = 0
    score_threshold: float = 0.25


def demo_config(root: Path, settings: DemoSettings) -> dict:
    def entry(name: str, split: str) -> dict:
        return {"name": name, "annotations": str(root / "world" / name / split / "annotations.json"),
                "images": str(root / "world" / name / split / "images")}

    return {
        "labelspace": str(root / "labelspace"),
        "output_dir": str(root / "train"),
        "seed": settings.seed,
        "device": "auto",
        "datasets": [entry(name, "train") for name in DATASETS],
        "eval_datasets": [entry(name, "test") for name in DATASETS],
        "input": {"min_size_train": [settings.image_size], "max_size_train": settings.image_size,
                  "min_size_test": settings.image_size, "max_size_test": settings.image_size, "random_flip": True},
        "model": {"backbone": settings.backbone, "temperature": settings.temperature,
                  "fpn_channels": settings.fpn_channels, "box_head_dim": settings.box_head_dim,
                  "pooler_sampling_ratio": settings.pooler_sampling_ratio, "roi_batch_size_per_image": 32,
                  "roi_fg_iou_thresh": settings.roi_fg_iou_thresh, "rpn_pre_nms_top_n_train": 600,
                  "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150},
        # images of 112 px decode in microseconds: no DataLoader workers, whose processes would compete with
        # the training threads on a small machine
        "num_workers": 0,
        # one checkpoint: model_final.pth (a numbered one at the last iteration would be its 99 MB twin)
        "schedule": {"iterations": settings.iterations, "batch_size": settings.batch_size, "lr": 0.02,
                     "lr_steps": list(settings.lr_steps),
                     "warmup_iterations": min(50, settings.iterations // 5), "checkpoint_every": settings.iterations + 1,
                     "log_every": 10},
    }


def make_world(root: Path, settings: DemoSettings) -> None:
    from .synthetic import upstream_datasets, write_coco_dataset

    for spec in upstream_datasets():
        if spec.name in DATASETS:
            write_coco_dataset(spec, root / "world" / spec.name / "train", settings.train_images, settings.image_size, seed=0)
            write_coco_dataset(spec, root / "world" / spec.name / "test", settings.test_images, settings.image_size, seed=1)


def run_demo(root: Path, settings: DemoSettings, force: bool = False, progress: bool = True,
             say=print) -> dict:
    """Every step of the demo; returns the evaluation table and where the outputs are."""
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies
    from scaledet.labelspace.encoders import build_encoder
    from scaledet.labelspace.outputs import check_build_out

    from .config import load_config
    from .engine import Trainer
    from .evaluation.checkpoint_eval import evaluate_checkpoint
    from .predict import annotated_images, predict_images, vocabulary_from_text, write_predictions

    import torch

    from .data.loader import free_cores

    # threads for the cores that are free now, not all of them, and never more than torch would take on its
    # own (OMP_NUM_THREADS, when a caller running processes side by side has set it)
    torch.set_num_threads(min(free_cores(), torch.get_num_threads()))
    root = check_output_dir(root, DEMO_KIND, "--out", force)
    check_build_out(root / "labelspace", force)  # an earlier demo's build is replaced only if nothing of yours is in it
    root.mkdir(parents=True, exist_ok=True)
    mark_output_dir(root, DEMO_KIND)
    say(f"1/5 generating the shapes world ({', '.join(DATASETS)}) in {root / 'world'}")
    make_world(root, settings)
    say("2/5 building their label space (disjoint union, MiniLM prompt embeddings)")
    files = [DatasetFile(name, root / "world" / name / "train" / "annotations.json") for name in DATASETS]
    build_labelspace(load_taxonomies([], files), build_encoder("minilm"), root / "labelspace")
    config_path = root / "demo.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(root, settings), sort_keys=False))
    say(f"3/5 training {settings.iterations} iterations (config: {config_path})")
    config = load_config(config_path)
    trainer = Trainer(config, show_progress=progress, force=True)
    final = trainer.train()
    say("4/5 evaluating each test set in its own vocabulary")
    table, folder = evaluate_checkpoint(config, final, trainer.device, progress=progress, force=True)
    say("5/5 predicting with a vocabulary given as text")
    state = {"labelspace": trainer.labelspace_info()}
    vocabulary = vocabulary_from_text(DRAWING_VOCABULARY, state)
    test_set = root / "world" / "geo" / "test"
    images = sorted((test_set / "images").iterdir())[:PICTURES]
    # one label per box, as Detic's demo draws: a union-trained model scores synonyms alike, and every label
    # above the threshold would caption most boxes two or three times (benchmarks/demo_drawings.py measures both)
    predictions = predict_images(trainer.model.eval(), images, vocabulary, trainer.device,
                                 score_threshold=settings.score_threshold, one_label_per_box=True)
    # geo's ground truth beside: geo never labels stars, which the detector learnt from things
    written = write_predictions(predictions, root / "predictions", vocabulary=vocabulary.names,
                                ground_truth=[i.boxes for i in annotated_images(images, test_set / "annotations.json")])
    return {"metrics": table, "evaluation": folder, "checkpoint": final, "predictions": written[1:],
            "config": config_path}
