"""Training, resume, evaluation and prediction of the detector on small generated data, on CPU."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from conftest import REPO, run_cli, write_train_config
from scaledet.detector.config import load_config
from scaledet.detector.data import CocoDetectionDataset, InputConfig
from scaledet.detector.engine import Trainer
from scaledet.detector.evaluation.inference import coco_map
from scaledet.detector.model import ModelConfig, build_detector
from scaledet.detector.sampling import MultiDatasetBatchSampler, repeat_factors
from scaledet.detector.vocabulary import UnifiedLabelSpace


def test_ground_truth_maps_to_union_indices(shapes_world):
    space = UnifiedLabelSpace(shapes_world / "labelspace")
    assert space.global_ids == ["shapesa/circle", "shapesa/square", "shapesa/triangle", "shapesb/round disk", "shapesb/box"]
    config = load_config(write_train_config(shapes_world, shapes_world / "runs" / "map"))
    dataset = CocoDetectionDataset(config.datasets[1], space)
    assert set(dataset.category_union_indices()) == {3, 4}
    image, target = dataset[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.uint8 and set(target["labels"].tolist()) <= {4, 5}  # union index + 1
    assert target["label_mask"].tolist() == [False, False, False, True, True]


def test_training_decreases_the_loss(shapes_world, tmp_path):
    """Twelve steps on one fixed batch (per_dataset sampling of a one-image dataset) must fit it."""
    config = load_config(write_train_config(shapes_world, tmp_path / "fit", schedule={
        "iterations": 12, "lr": 0.01, "warmup_iterations": 1, "checkpoint_every": 100, "log_every": 1}))
    config.datasets = config.datasets[:1]
    trainer = Trainer(config, show_progress=False)
    trainer.datasets[0].images = trainer.datasets[0].images[:1]
    trainer.sampler.sizes = [1]
    losses = [trainer.step(i)["total_loss"] for i in range(12)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_resume_continues_identically(shapes_world, tmp_path):
    straight = Trainer(load_config(write_train_config(shapes_world, tmp_path / "straight")), show_progress=False)
    straight.train()
    interrupted = Trainer(load_config(write_train_config(shapes_world, tmp_path / "resumed")), show_progress=False)
    interrupted.train(stop_after=2)
    resumed = Trainer(load_config(write_train_config(shapes_world, tmp_path / "resumed")), resume=True,
                      show_progress=False)
    assert resumed.start_iteration == 2
    resumed.train()
    a = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert (tmp_path / "resumed" / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_pycocotools_scores_ground_truth_as_perfect(shapes_world):
    annotation_file = shapes_world / "shapesa" / "val" / "annotations.json"
    coco = json.loads(annotation_file.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in coco["annotations"]]
    assert coco_map(annotation_file, perfect)["AP"] == pytest.approx(100.0)
    shifted = [{**r, "bbox": [r["bbox"][0] + r["bbox"][2] * 0.6, *r["bbox"][1:]]} for r in perfect]
    assert coco_map(annotation_file, shifted)["AP"] < 50


def test_train_then_eval_and_predict_from_the_command_line(shapes_world, tmp_path):
    config = write_train_config(shapes_world, tmp_path / "cli", schedule={"iterations": 3})
    trained = run_cli("scaledet", "train", "--config", str(config), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "evaluation of" in trained.stdout and "shapesa" in trained.stdout
    folder = tmp_path / "cli" / "eval" / "model_final"
    record = json.loads((folder / "metrics.json").read_text())
    assert record["iteration"] == 2 and record["checkpoint"].endswith("model_final.pth")
    assert record["labelspace"]["global_ids_sha256"] and record["evaluators"] == {"shapesa": "coco"}
    assert record["protocols"] == {"shapesa": "coco"}
    table = record["metrics"]
    assert set(table["shapesa"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert all(v is None or 0.0 <= v <= 100.0 for v in table["shapesa"].values())
    # the raw detections re-score to the same numbers with the model-free command
    rescored = run_cli("scaledet", "eval", "--results", str(folder / "shapesa.results.json"), "--annotations",
                       str(shapes_world / "shapesa" / "val" / "annotations.json"), "--json")
    assert rescored.returncode == 0, rescored.stderr
    printed = json.loads(rescored.stdout)
    assert printed.pop("protocol") == "coco" and printed == pytest.approx(table["shapesa"])
    again = run_cli("scaledet", "eval", "--config", str(config), "--quiet")
    assert again.returncode == 2 and "evaluated already" in again.stderr
    evaluated = run_cli("scaledet", "eval", "--config", str(config), "--quiet", "--force")
    assert evaluated.returncode == 0 and "AP50" in evaluated.stdout

    image = shapes_world / "shapesa" / "val" / "images" / "shapesa_00001.png"
    out = tmp_path / "pred"
    predicted = run_cli("scaledet", "predict", str(image), "--checkpoint", str(tmp_path / "cli" / "model_final.pth"),
                        "--vocab", "circle, star ,jellyfish", "--score-threshold", "0", "--one-label-per-box",
                        "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr
    (result,) = json.loads((out / "detections.json").read_text())
    assert result["detections"] and {d["label"] for d in result["detections"]} <= {"circle", "star", "jellyfish"}
    # one label per box: at threshold 0 every proposal scores every label, and NMS across labels leaves no
    # two boxes overlapping by more than its IoU (what it keeps: test_one_label_per_box_keeps_each_proposals_best)
    boxes = torch.tensor([d["box"] for d in result["detections"]])
    overlaps = box_iou(boxes, boxes) - torch.eye(len(boxes))
    assert float(overlaps.max()) <= 0.51  # boxes are written rounded to 0.1 px
    # --format coco: results an official tool can score, with the annotation file's image ids
    val = shapes_world / "shapesa" / "val"
    coco_out = tmp_path / "pred-coco"
    predicted = run_cli("scaledet", "predict", *map(str, sorted((val / "images").iterdir())), "--checkpoint",
                        str(tmp_path / "cli" / "model_final.pth"), "--vocab", "circle,square,triangle",
                        "--score-threshold", "0", "--format", "coco", "--annotations", str(val / "annotations.json"),
                        "--out", str(coco_out))
    assert predicted.returncode == 0, predicted.stderr
    results = json.loads((coco_out / "results.json").read_text())
    ids = {i["file_name"].split("/")[-1]: i["id"] for i in json.loads((val / "annotations.json").read_text())["images"]}
    assert results and {r["image_id"] for r in results} <= set(ids.values())
    assert {r["category_id"] for r in results} <= {1, 2, 3} and all(len(r["bbox"]) == 4 for r in results)
    rescored = run_cli("scaledet", "eval", "--results", str(coco_out / "results.json"), "--annotations",
                       str(val / "annotations.json"), "--json")
    assert rescored.returncode == 0, rescored.stderr
    drawn = Image.open(out / "shapesa_00001.detections.png")
    original = Image.open(image)
    scale = -(-480 // max(original.size))  # drawn at screen size, not the image's 128 px
    assert drawn.width == original.width * scale and drawn.height > original.height * scale
    # with --annotations, the ground truth is drawn beside the predictions
    assert Image.open(coco_out / "shapesa_00001.detections.png").width > 2 * original.width * scale


def test_one_label_per_box_keeps_each_proposals_best():
    """Four proposals scored on three labels: by default every label above the threshold is a detection
    (class-agnostic boxes, so a proposal's detections share its box) and NMS runs per label; with one label
    per proposal only each proposal's best label is, at its own score, and NMS runs across labels, so the
    proposal overlapping a better one is gone although its best label differs."""
    torch.manual_seed(0)
    model = build_detector(ModelConfig(backbone="resnet18", fpn_channels=64, box_head_dim=64),
                           torch.nn.functional.normalize(torch.randn(3, 8), dim=1),
                           InputConfig(min_size_test=64, max_size_test=64)).eval()
    heads = model.roi_heads
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0], [5.0, 35.0, 25.0, 60.0],
                               [1.0, 1.0, 21.0, 21.0]])]
    probabilities = torch.tensor([[0.9, 0.6, 0.4], [0.3, 0.35, 0.8], [0.2, 0.1, 0.05], [0.5, 0.3, 0.7]])
    logits = torch.cat([torch.full((4, 1), -5.0), torch.logit(probabilities)], dim=1)
    heads.score_thresh = 0.1

    def detections() -> set[tuple[int, int, float]]:
        (result,) = heads.postprocess(logits, torch.zeros(4, 4), proposals, [(64, 64)])
        return {(int(box[0]), int(label), round(float(score), 2))
                for box, label, score in zip(result["boxes"], result["labels"], result["scores"])}

    assert detections() == {(0, 0, 0.9), (0, 1, 0.6), (1, 2, 0.7), (30, 0, 0.3), (30, 1, 0.35), (30, 2, 0.8),
                            (5, 0, 0.2)}
    heads.one_label_per_proposal = True
    assert detections() == {(0, 0, 0.9), (30, 2, 0.8), (5, 0, 0.2)}


def test_masked_hard_loss_and_mixed_sampling_train(shapes_world, tmp_path):
    config = load_config(write_train_config(shapes_world, tmp_path / "masked",
                                            model={"hard_loss_scope": "dataset", "soft_weight": 0.0},
                                            sampling={"mode": "mixed", "repeat_factor_threshold": 0.5}))
    trainer = Trainer(config, show_progress=False)
    values = trainer.step(0)
    assert "loss_soft" not in values and np.isfinite(values["total_loss"])


def test_sampler_is_a_function_of_the_iteration_and_respects_ratios():
    sampler = MultiDatasetBatchSampler([10, 10], [3.0, 1.0], batch_size=4, mode="per_dataset", seed=3)
    assert sampler.batch(17) == sampler.batch(17)
    batches = [sampler.batch(i) for i in range(400)]
    assert all(len({d for d, _ in b}) == 1 for b in batches)
    share = np.mean([b[0][0] == 0 for b in batches])
    assert 0.68 < share < 0.82
    other_rank = MultiDatasetBatchSampler([10, 10], [3.0, 1.0], batch_size=4, seed=3, rank=1)
    assert any(other_rank.batch(i) != sampler.batch(i) for i in range(5))


def test_repeat_factors_favour_images_with_rare_labels():
    image_labels = [np.array([0])] * 9 + [np.array([0, 1])]
    factors = repeat_factors(image_labels, threshold=0.5)
    # label 1 is in 1 of 10 images: r = sqrt(0.5 / 0.1) = √5; label 0 is everywhere: r = 1
    assert factors[-1] == pytest.approx(5 ** 0.5) and factors[0] == pytest.approx(1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_run_one_step(shapes_world, tmp_path):
    config = write_train_config(shapes_world, tmp_path / "ddp", schedule={"iterations": 1, "checkpoint_every": 1})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "scaledet.cli.detect", "train", "--config", str(config), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(tmp_path / "ddp" / "model_final.pth", weights_only=False)
    assert state["iteration"] == 1


def test_a_run_is_laid_out_like_detectron2s(shapes_world, tmp_path):
    """config.yaml, JSON-lines metrics with evaluation during training, numbered checkpoints, keep_last."""
    from scaledet.detector.config import load_config

    config = write_train_config(shapes_world, tmp_path / "run",
                                schedule={"iterations": 4, "checkpoint_every": 1, "eval_period": 2, "keep_last": 2})
    trainer = Trainer(load_config(config, ["model.soft_weight=0.5"]), show_progress=False)
    trainer.train()
    run = tmp_path / "run"
    assert load_config(run / "config.yaml").model.soft_weight == 0.5  # the resolved config, overrides applied
    assert sorted(p.name for p in run.glob("model_*.pth")) == ["model_0000002.pth", "model_0000003.pth",
                                                                "model_final.pth"]
    assert (run / "last_checkpoint").read_text().strip() == "model_final.pth"
    lines = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines()]
    evaluation = [line for line in lines if "bbox/AP50" in line]
    assert [line["iteration"] for line in evaluation] == [1]  # the step after which model_0000001.pth was saved
    record = json.loads((run / "eval" / "model_0000001" / "metrics.json").read_text())
    assert record["iteration"] == 1 and record["metrics"]["shapesa"]["AP50"] == evaluation[0]["bbox/AP50"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("total_loss")] == [0, 1, 2, 3]
    assert [e.step for e in events.Scalars("bbox/AP50")] == [1]
    assert torch.equal(trainer.model.roi_heads.vocabulary, trainer.labelspace.embeddings), \
        "training must go on with the union vocabulary after an evaluation"


def test_keep_last_prunes_only_this_runs_checkpoints(shapes_world, tmp_path):
    """``train --force`` (start over) with ``keep_last`` over an earlier, longer run: the earlier run's
    higher-numbered checkpoints and a ``model_*.pth`` someone put there are not this run's to delete, and
    the new run's own checkpoints are the ones kept, so ``last_checkpoint`` names a file that exists."""
    from scaledet.detector.config import load_config

    schedule = {"iterations": 3, "checkpoint_every": 1, "keep_last": 1, "batch_size": 2, "lr": 0.01,
                "warmup_iterations": 1, "log_every": 1}
    run = tmp_path / "run"
    Trainer(load_config(write_train_config(shapes_world, run, schedule=schedule)), show_progress=False).train()
    assert sorted(p.name for p in run.glob("model_*.pth")) == ["model_0000002.pth", "model_final.pth"]
    (run / "model_0000099.pth").write_bytes(b"someone else's checkpoint")
    shorter = {**schedule, "iterations": 2, "checkpoint_every": 1}
    trainer = Trainer(load_config(write_train_config(shapes_world, run, schedule=shorter)), show_progress=False,
                      force=True)
    trainer.train(stop_after=1)  # killed after its first checkpoint: last_checkpoint must name it
    last = (run / (run / "last_checkpoint").read_text().strip())
    assert last.name == "model_0000000.pth" and last.is_file()
    assert (run / "model_0000099.pth").read_bytes() == b"someone else's checkpoint"
    assert (run / "model_0000002.pth").is_file()  # the earlier run's: not pruned by this one


def test_demo_runs_every_step_at_toy_size(tmp_path, monkeypatch):
    """The newcomer's first run, shrunk: its AP50 at full size is measured in docs/detector.md, not here."""
    from scaledet.detector.demo import DemoSettings, run_demo

    result = run_demo(tmp_path / "demo", DemoSettings(train_images=4, test_images=2, iterations=2, image_size=64),
                      progress=False, say=lambda text: None)
    assert set(result["metrics"]) == {"geo", "things"}
    assert len(result["predictions"]) == 2 and all(p.is_file() for p in result["predictions"])  # up to 4 test images
    assert (tmp_path / "demo" / "train" / "model_final.pth").is_file()
    assert [p.name for p in (tmp_path / "demo" / "train").glob("*.pth")] == ["model_final.pth"]  # one checkpoint
    # the benchmark that measures what the drawings show reads the demo's output (its real run: docs/detector.md)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from demo_drawings import drawing_quality, quality_table

    printed = quality_table(drawing_quality(tmp_path / "demo", images=2)).splitlines()
    rows = {line.split()[0]: line.split() for line in printed[2:]}
    assert list(rows) == ["circle", "square", "triangle", "star", "all"]
    assert int(rows["all"][1]) == sum(int(rows[shape][1]) for shape in ("circle", "square", "triangle", "star")) > 0
    done = run_cli("scaledet", "demo", "--out", str(tmp_path), "--iterations", "1")
    assert done.returncode == 2 and "--force" in done.stderr, "a folder with other files is refused"
    (tmp_path / "demo" / "labelspace" / "notes.txt").write_text("mine")  # a file of yours in the demo's build
    done = run_cli("scaledet", "demo", "--out", str(tmp_path / "demo"), "--iterations", "1")
    assert done.returncode == 2 and "notes.txt" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "demo" / "labelspace" / "notes.txt").read_text() == "mine"


def test_run_files_read_as_detectron2_tools_read_them(shapes_world, tmp_path):
    """metrics.json line by line, as detectron2's JSONWriter writes it and the usual plotting scripts read
    it (``[json.loads(line) for line in f]``, then ``x["total_loss"]`` / ``x["bbox/AP"]`` by ``x["iteration"]``);
    numbered checkpoints named after the iteration of the step before them; results files in the COCO
    results format's four fields."""
    config = write_train_config(shapes_world, tmp_path / "run", schedule={
        "iterations": 4, "batch_size": 2, "lr": 0.01, "warmup_iterations": 4, "checkpoint_every": 2, "log_every": 1})
    done = run_cli("scaledet", "train", "--config", str(config), "--quiet", "model.score_thresh=0")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    with open(run / "metrics.json") as f:
        experiment_metrics = [json.loads(line) for line in f]
    training = [x for x in experiment_metrics if "total_loss" in x]
    assert [x["iteration"] for x in training] == [0, 1, 2, 3]
    assert all({"total_loss", "loss_hard", "loss_box_reg", "lr", "time", "data_time"} <= set(x) for x in training)
    # each row's lr is the rate its own step used (not the next step's, as the scheduler has stepped by then)
    from scaledet.detector.config import load_config
    from scaledet.detector.builders import lr_factor

    cfg = load_config(config)
    assert [x["lr"] for x in training] == pytest.approx([0.01 * lr_factor(i, cfg) for i in range(4)], rel=1e-5)
    final = [x for x in experiment_metrics if "bbox/AP" in x]
    assert [x["iteration"] for x in final] == [3] and {"bbox/AP50", "bbox/APs"} <= set(final[0])
    assert (run / "model_0000001.pth").is_file()  # saved after the step logged as iteration 1
    results = json.loads((run / "eval" / "model_final" / "shapesa.results.json").read_text())
    assert results and all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    record_lines = (run / "eval" / "model_final" / "metrics.json").read_text().splitlines()
    assert len(record_lines) == 1 and json.loads(record_lines[0])["iteration"] == 3
