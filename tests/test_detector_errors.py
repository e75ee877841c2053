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


def test_labelspace_of_another_encoder_is_refused(shapes_world, trained_checkpoint, tmp_path):
    """A checkpoint trained on MiniLM embeddings (the session's run, copied with its folder) against a
    labelspace built with a (random-init) CLIP."""
    import shutil

    open_clip = pytest.importorskip("open_clip")
    from scaledet.labelspace import ClipEncoder, DatasetFile, build_labelspace, load_taxonomies

    shutil.copytree(trained_checkpoint.parent, tmp_path / "minilm")
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


def _train_on_edited_copy(shapes_world, tmp_path, edit, **dataset_options):
    copy = _copy_dataset(shapes_world, tmp_path)
    coco = json.loads((copy / "annotations.json").read_text())
    edit(coco, copy)
    (copy / "annotations.json").write_text(json.dumps(coco))
    datasets = [{"name": "shapesa", "annotations": str(copy / "annotations.json"), "images": str(copy / "images"),
                 **dataset_options}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets,
                                schedule={"iterations": 1, "batch_size": 2, "lr": 0.01, "checkpoint_every": 5})
    return run_cli("scaledet", "train", "--config", str(config), "--quiet")


@pytest.mark.parametrize("edit, expected", [
    (lambda c, _: c.update(annotations=None), "'annotations' is null; expected a list"),
    (lambda c, _: c["annotations"][0].update(iscrowd="yes"), "has iscrowd 'yes'; expected 0 or 1"),
    (lambda c, _: c["images"][0].update(file_name="../../etc/passwd"), "which leaves the images folder"),
    (lambda c, _: c["images"][0].update(file_name="/etc/passwd"), "which leaves the images folder"),
])
def test_silent_acceptances_are_one_line(shapes_world, tmp_path, edit, expected):
    _assert_one_line_error(_train_on_edited_copy(shapes_world, tmp_path, edit), expected)


def test_paths_outside_the_images_folder_only_when_the_config_says_so(shapes_world, tmp_path):
    def outside(coco, copy):
        name = coco["images"][0]["file_name"]
        (copy / "elsewhere").mkdir()
        (copy / "images" / name).rename(copy / "elsewhere" / name)
        coco["images"][0]["file_name"] = f"../elsewhere/{name}"

    _assert_one_line_error(_train_on_edited_copy(shapes_world, tmp_path / "refused", outside),
                           "set allow_paths_outside_images: true on dataset 'shapesa'")
    allowed = _train_on_edited_copy(shapes_world, tmp_path / "allowed", outside, allow_paths_outside_images=True)
    assert allowed.returncode == 0, allowed.stderr


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    import numpy as np
    from PIL import Image

    from scaledet.detector.data import read_image_uint8

    values = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 … 64,491
    Image.fromarray(values).save(tmp_path / "thermal.png")
    decoded = read_image_uint8(tmp_path / "thermal.png")
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert decoded.shape == (3, 48, 64) and (decoded[0].numpy() == expected).all() and decoded.float().mean() < 200
