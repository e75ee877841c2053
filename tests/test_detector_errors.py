"""Bad input to the detector: one-line errors, non-zero exit, training state never corrupted."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import run_cli, write_train_config
from scaledet.detector.checkpoint import save_checkpoint


def _assert_one_line_error(done, expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def _copy_dataset(world, tmp_path, name="shapesa"):
    target = tmp_path / name
    shutil.copytree(world / name / "train", target)
    return target


def test_unknown_dataset_key(shapes_world, tmp_path):
    datasets = [{"name": "coco", "annotations": str(shapes_world / "shapesa" / "train" / "annotations.json"),
                 "images": str(shapes_world / "shapesa" / "train" / "images")}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets)
    _assert_one_line_error(run_cli("scaledet", "train", "--config", str(config)),
                           "dataset key 'coco' is not in the labelspace build")


def test_unknown_config_key(shapes_world, tmp_path):
    config = write_train_config(shapes_world, tmp_path / "run", model={"soft_wieght": 0.5})
    _assert_one_line_error(run_cli("scaledet", "train", "--config", str(config)), "unknown key 'model.soft_wieght'")


def test_missing_images(shapes_world, tmp_path):
    copy = _copy_dataset(shapes_world, tmp_path)
    (copy / "images" / "shapesa_00003.png").unlink()
    datasets = [{"name": "shapesa", "annotations": str(copy / "annotations.json"), "images": str(copy / "images")}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets)
    _assert_one_line_error(run_cli("scaledet", "train", "--config", str(config)), "shapesa_00003.png")


@pytest.mark.parametrize("bbox,problem", [([100.0, 100.0, 60.0, 20.0], "lies outside the 128×128 image"),
                                          ([10.0, 10.0, 0.0, 5.0], "zero or negative area")])
def test_bad_boxes(shapes_world, tmp_path, bbox, problem):
    copy = _copy_dataset(shapes_world, tmp_path)
    coco = json.loads((copy / "annotations.json").read_text())
    coco["annotations"][0]["bbox"] = bbox
    (copy / "annotations.json").write_text(json.dumps(coco))
    datasets = [{"name": "shapesa", "annotations": str(copy / "annotations.json"), "images": str(copy / "images")}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets)
    _assert_one_line_error(run_cli("scaledet", "train", "--config", str(config)),
                           f"annotation {coco['annotations'][0]['id']} ")
    assert problem in run_cli("scaledet", "train", "--config", str(config)).stderr


def test_labelspace_of_another_encoder_is_refused(shapes_world, tmp_path):
    """A checkpoint trained on MiniLM embeddings against a labelspace built with a (random-init) CLIP."""
    open_clip = pytest.importorskip("open_clip")
    from scaledet.labelspace import ClipEncoder, DatasetFile, build_labelspace, load_taxonomies

    config = write_train_config(shapes_world, tmp_path / "minilm", schedule={"iterations": 1})
    assert run_cli("scaledet", "train", "--config", str(config), "--quiet").returncode == 0
    weights = tmp_path / "rn50.pt"
    torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), weights)
    files = [DatasetFile(n, shapes_world / n / "train" / "annotations.json") for n in ("shapesa", "shapesb")]
    build_labelspace(load_taxonomies([], files), ClipEncoder("RN50", weights), tmp_path / "clip_labelspace")
    other = write_train_config(shapes_world, tmp_path / "minilm", labelspace=str(tmp_path / "clip_labelspace"))
    _assert_one_line_error(run_cli("scaledet", "eval", "--config", str(other)), "was trained with minilm")
    _assert_one_line_error(run_cli("scaledet", "train", "--config", str(other), "--resume"), "was trained with minilm")


def test_checkpoint_write_failure_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 1}, path)
    with pytest.raises(Exception):
        save_checkpoint({"model": {"w": torch.ones(2)}, "unpicklable": lambda: None}, path)
    assert torch.load(path, weights_only=False)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


def test_predict_errors(shapes_world, tmp_path):
    _assert_one_line_error(run_cli("scaledet", "predict", str(tmp_path / "x.png"), "--checkpoint",
                                   str(tmp_path / "none.pth"), "--vocab", "cat"), "x.png: image not found")
    image = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    _assert_one_line_error(run_cli("scaledet", "predict", str(image), "--checkpoint", str(tmp_path / "none.pth"),
                                   "--vocab", "cat"), "checkpoint not found")
