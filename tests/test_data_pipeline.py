"""The detector's data at scale: the memory-mapped annotation index, DataLoader workers that keep resume
exact, augmentation checked against hand-computed boxes, pretrained backbones by name, JPEG decoding."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, write_train_config
from scaledet.detector.config import load_config
from scaledet.labelspace.io.errors import ScaledetError


def _spec(world: Path, tmp_path: Path, name: str = "shapesa"):
    """A private copy of one shapes dataset (so its index and file can be changed freely)."""
    from scaledet.detector.data import DatasetSpec

    copy = tmp_path / name
    shutil.copytree(world / name / "train", copy)
    return DatasetSpec(name, str(copy / "annotations.json"), str(copy / "images"))


@pytest.fixture()
def space(shapes_world):
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    return UnifiedLabelSpace(shapes_world / "labelspace")


# --------------------------------------------------------------------------- the index
def test_index_is_built_once_and_mapped_after(shapes_world, space, tmp_path):
    from scaledet.detector.data import CocoDetectionDataset

    spec = _spec(shapes_world, tmp_path)
    first = CocoDetectionDataset(spec, space)
    built = (first.index.directory / "boxes.npy").stat()
    second = CocoDetectionDataset(spec, space)
    again = (second.index.directory / "boxes.npy").stat()
    assert first.index.directory == second.index.directory
    assert (built.st_ino, built.st_mtime_ns) == (again.st_ino, again.st_mtime_ns), "opened, not rebuilt"
    assert isinstance(second.index.boxes, np.memmap) and isinstance(second.index.labels, np.memmap)
    coco = json.loads(Path(spec.annotations).read_text())
    assert second.index.meta["boxes"] == len(coco["annotations"]) and second.index.num_images == len(coco["images"])
    # boxes of the first image, xyxy, against the JSON
    image = coco["images"][0]
    expected = sorted([a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in coco["annotations"] if a["image_id"] == image["id"])
    row = int(np.flatnonzero(np.asarray(second.index.image_ids) == image["id"])[0])
    first_box, count = int(second.index.first_box[row]), int(second.index.box_count[row])
    got = sorted(np.asarray(second.index.boxes[first_box:first_box + count]).tolist())
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert second.index.file_name(row) == image["file_name"]


def test_a_changed_file_gets_a_new_index(shapes_world, space, tmp_path):
    from scaledet.detector.data import CocoDetectionDataset

    spec = _spec(shapes_world, tmp_path)
    before = CocoDetectionDataset(spec, space).index
    coco = json.loads(Path(spec.annotations).read_text())
    coco["annotations"] = coco["annotations"][:-1]
    Path(spec.annotations).write_text(json.dumps(coco))
    after = CocoDetectionDataset(spec, space).index
    assert after.directory != before.directory and after.meta["boxes"] == before.meta["boxes"] - 1


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta", "flip"])
def test_a_damaged_index_is_reported_and_rebuilt(shapes_world, space, tmp_path, capfd, damage):
    from scaledet.detector.data import CocoDetectionDataset

    spec = _spec(shapes_world, tmp_path)
    index = CocoDetectionDataset(spec, space).index
    target = index.directory / ("meta.json" if damage == "meta" else "boxes.npy")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-40])
    elif damage == "delete":
        target.unlink()
    elif damage == "flip":  # one bit of one box: the shape is right, the column checksum is not
        data = bytearray(target.read_bytes())
        data[-3] ^= 0x40
        target.write_bytes(bytes(data))
    else:
        target.write_text("{not json")
    capfd.readouterr()
    rebuilt = CocoDetectionDataset(spec, space).index
    err = capfd.readouterr().err
    assert "is damaged" in err and "rebuilding" in err
    np.testing.assert_array_equal(np.asarray(rebuilt.boxes), np.asarray(CocoDetectionDataset(spec, space).index.boxes))


def test_a_damaged_box_the_sampled_check_misses_is_one_line_when_read(shapes_world, space, tmp_path):
    """Large indexes are checked by sampled windows at open; a box damaged elsewhere is caught when its
    image is read, in one line naming the index, not an AssertionError deep in torchvision."""
    from scaledet.detector.data import CocoDetectionDataset
    from scaledet.detector.data.index import META_DIGEST_KEY, _column_digest
    from scaledet.labelspace.io.sealed_json import seal

    spec = _spec(shapes_world, tmp_path)
    index = CocoDetectionDataset(spec, space).index
    row = int(np.flatnonzero(np.asarray(index.box_count) > 0)[0])
    boxes = np.load(index.directory / "boxes.npy")
    boxes[int(index.first_box[row])] = [50, 50, 10, 10]  # x2 < x1
    np.save(index.directory / "boxes.npy", boxes)
    meta = json.loads((index.directory / "meta.json").read_text())
    meta["column_sha256"]["boxes"] = _column_digest(index.directory / "boxes.npy", meta)  # as if unsampled
    (index.directory / "meta.json").write_text(json.dumps(seal(meta, META_DIGEST_KEY)))
    dataset = CocoDetectionDataset(spec, space)
    position = int(np.flatnonzero(np.asarray(dataset.images) == row)[0])
    with pytest.raises(ScaledetError, match=r"annotation index .* is damaged \(image \d+ has a box that is not"):
        dataset.item(position)


@pytest.mark.parametrize("problem,expected", [
    ("truncated", "malformed or truncated JSON"),
    ("not coco", "no 'categories'"),
    ("unknown image", "refers to image id 999999"),
    ("duplicate image", "appears twice"),
])
def test_bad_annotation_files_leave_no_index(shapes_world, space, tmp_path, problem, expected):
    from scaledet.detector.data import CocoDetectionDataset
    from scaledet.labelspace.io.cache_dir import cache_root

    spec = _spec(shapes_world, tmp_path)
    path = Path(spec.annotations)
    text = path.read_text()
    coco = json.loads(text)
    if problem == "truncated":
        path.write_text(text[: len(text) // 2])
    elif problem == "not coco":
        path.write_text(json.dumps({"images": []}))
    elif problem == "unknown image":
        coco["annotations"][0]["image_id"] = 999999
        path.write_text(json.dumps(coco))
    else:
        coco["images"].append(dict(coco["images"][0]))
        path.write_text(json.dumps(coco))
    before = set((cache_root() / "index").glob("*")) if (cache_root() / "index").is_dir() else set()
    with pytest.raises(ScaledetError, match=expected.replace("(", r"\(")):
        CocoDetectionDataset(spec, space)
    after = {p for p in (cache_root() / "index").glob("*") if not p.name.startswith(".")}
    assert after <= before, "no index may be left that a later run would trust"


# --------------------------------------------------------------------------- loading with workers
def test_workers_and_resume_see_the_same_batches(shapes_world, tmp_path):
    """The batches of iterations 2 and 3 are the same from 2 worker processes starting at 0, from 2 workers
    starting at 2 (a resumed run), and read in the main process, augmentation included."""
    from scaledet.detector.data.loader import build_train_loader
    from scaledet.detector.engine import Trainer

    config = load_config(write_train_config(shapes_world, tmp_path / "run", schedule={"iterations": 4}),
                         ["input.random_flip=true", "input.augmentation=large_scale_jitter", "input.lsj_size=96"])
    trainer = Trainer(config, show_progress=False)

    def batches(start: int, workers: int) -> list:
        loader = build_train_loader(trainer.datasets, trainer.sampler, start, 4, workers, pin_memory=False)
        return list(loader)[2 - start:]

    straight, resumed = batches(0, 2), batches(2, 2)
    in_process = [trainer.load_batch(i) for i in (2, 3)]
    for a_batch, b_batch, c_batch in zip(straight, resumed, in_process):
        for (a, ta), (b, tb), (c, tc) in zip(a_batch, b_batch, c_batch):
            assert torch.equal(a, b) and torch.equal(a, c) and a.shape == (3, 96, 96)
            assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["boxes"], tc["boxes"])
            assert torch.equal(ta["labels"], tc["labels"])


def test_training_with_workers_resumes_exactly(shapes_world, tmp_path):
    from scaledet.detector.engine import Trainer

    overrides = ["num_workers=2", "input.random_flip=true"]
    straight = Trainer(load_config(write_train_config(shapes_world, tmp_path / "straight"), overrides), show_progress=False)
    straight.train()
    first = Trainer(load_config(write_train_config(shapes_world, tmp_path / "resumed"), overrides), show_progress=False)
    first.train(stop_after=2)
    resumed = Trainer(load_config(write_train_config(shapes_world, tmp_path / "resumed"), overrides), resume=True,
                      show_progress=False)
    resumed.train()
    a = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_a_bad_image_in_a_worker_is_one_line(shapes_world, tmp_path):
    copy = _spec(shapes_world, tmp_path)
    for image in Path(copy.images).iterdir():
        image.write_bytes(b"\x89PNG not really")
    datasets = [{"name": "shapesa", "annotations": copy.annotations, "images": copy.images}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets, num_workers=1)
    done = run_cli("scaledet", "train", "--config", str(config), "-q")
    last = done.stderr.strip().splitlines()[-1]  # after the one-time "indexing …" note
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("error: ") and last.endswith("not a readable image (cannot identify image file)"), last


# --------------------------------------------------------------------------- augmentation
def test_flip_by_hand():
    from scaledet.detector.data.transforms import hflip

    image = torch.arange(2 * 3 * 10, dtype=torch.uint8).reshape(2, 3, 10)[:1].expand(3, 3, 10)
    flipped, boxes = hflip(image, torch.tensor([[1.0, 0.0, 4.0, 2.0]]))
    assert boxes.tolist() == [[6.0, 0.0, 9.0, 2.0]]  # x1' = 10 − 4, x2' = 10 − 1
    assert torch.equal(flipped[:, :, 0], image[:, :, 9])


def test_large_scale_jitter_by_hand():
    from scaledet.detector.data.transforms import large_scale_jitter

    image = torch.full((3, 50, 100), 200, dtype=torch.uint8)  # H 50, W 100
    boxes, labels = torch.tensor([[10.0, 10.0, 30.0, 20.0]]), torch.tensor([7])
    # scale fixed at 1: the longer side becomes 200 (×2), nothing to crop, padded below to 200 × 200
    out, new_boxes, new_labels = large_scale_jitter(image, boxes, labels, 200, (1.0, 1.0), torch.Generator().manual_seed(0))
    assert out.shape == (3, 200, 200) and new_boxes.tolist() == [[20.0, 20.0, 60.0, 40.0]] and new_labels.tolist() == [7]
    assert int(out[0, 150, 50]) == 0 and int(out[0, 50, 50]) == 200  # padding below the image
    # scale 0.25 of 200: the longer side becomes 50 (×0.5)
    _, small, _ = large_scale_jitter(image, boxes, labels, 200, (0.25, 0.25), torch.Generator().manual_seed(0))
    assert small.tolist() == [[5.0, 5.0, 15.0, 10.0]]


def test_model_resizes_with_train_choices_and_one_test_size():
    from scaledet.detector.data import InputConfig
    from scaledet.detector.model import ResizingTransform

    transform = ResizingTransform(*__import__("scaledet.detector.data.transforms", fromlist=["model_sizes"]).model_sizes(
        InputConfig(min_size_train=[32], max_size_train=1000, min_size_test=128, max_size_test=1000)))
    image = torch.rand(3, 64, 128)  # shortest edge 64
    transform.train()
    batch, targets = transform([image], [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 20.0]]), "labels": torch.tensor([1])}])
    assert batch.image_sizes == [(32, 64)] and targets[0]["boxes"].tolist() == [[5.0, 5.0, 15.0, 10.0]]
    transform.eval()
    batch, _ = transform([image])
    assert batch.image_sizes == [(128, 256)], "evaluation uses the one test size, never a training choice"


def test_evaluation_reads_images_as_they_are(shapes_world, space, tmp_path):
    from scaledet.detector.data import CocoDetectionDataset, InputConfig, read_image_uint8

    spec = _spec(shapes_world, tmp_path)
    dataset = CocoDetectionDataset(spec, space, train=False,
                                   input_config=InputConfig(augmentation="large_scale_jitter", lsj_size=64))
    image, target = dataset[0]
    assert torch.equal(image, read_image_uint8(Path(spec.images) / dataset.index.file_name(int(dataset.images[0]))))


# --------------------------------------------------------------------------- pretrained backbones by name
def test_backbone_weights_by_name_from_torchs_cache(tmp_path, monkeypatch):
    """A state dict saved where torchvision's weights API looks. Random weights stand in for ImageNet's
    file (the loading path is real, the numbers are not ImageNet's); since torchvision's file names carry
    the first digits of their sha256, the stand-in's URL is renamed after its own digest."""
    import hashlib

    import torchvision
    from torchvision.models import ResNet18_Weights

    from scaledet.detector.model import ModelConfig, build_backbone, cached_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = ModelConfig(backbone="resnet18", backbone_weights="imagenet")
    with pytest.raises(ScaledetError) as info:
        build_backbone(config)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "nothing is downloaded" in message and "\n" not in message
    assert not (tmp_path / "torch" / "hub" / "checkpoints").exists()  # no download was attempted
    reference = torchvision.models.resnet18()
    staging = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url",
                        f"https://download.pytorch.org/models/resnet18-{digest[:8]}.pth")
    path = cached_weights_file(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(path)
    for name in ("imagenet", "ResNet18_Weights.IMAGENET1K_V1"):
        backbone = build_backbone(ModelConfig(backbone="resnet18", backbone_weights=name))
        assert torch.equal(backbone.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
        assert type(backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    with pytest.raises(ScaledetError, match="not a torchvision weights name"):
        build_backbone(ModelConfig(backbone="resnet18", backbone_weights="ResNet18_Weights.NOPE"))


# --------------------------------------------------------------------------- decoding
def test_jpeg_fast_path_and_truncated_jpeg(tmp_path):
    from PIL import Image

    from scaledet.detector.data import read_image_uint8

    array = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    path = tmp_path / "x.jpg"
    Image.fromarray(array).save(path, quality=95)
    decoded = read_image_uint8(path)
    with Image.open(path) as reference:
        expected = torch.from_numpy(np.array(reference.convert("RGB"))).permute(2, 0, 1)
    assert decoded.shape == (3, 48, 64) and (decoded.int() - expected.int()).abs().max() <= 2
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScaledetError, match="x.jpg: not a readable image"):
        read_image_uint8(path)


def test_free_cores_counts_the_idle_time_of_the_allowed_cores(monkeypatch, tmp_path):
    """Idle (and iowait) ticks of the allowed CPUs over the sample decide; the load average does not."""
    from scaledet.detector.data import loader

    stat = tmp_path / "stat"
    samples = iter([
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n",
        # cpu0 idle for the whole sample, cpu1 busy 3/4 of it; cpu2 is not ours
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 196 4 0 0 0\ncpu1 175 0 0 125 0 0 0 0\ncpu2 0 0 0 900 0 0 0 0\n",
    ])
    monkeypatch.setattr(loader.time, "sleep", lambda seconds: stat.write_text(next(samples)))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr("os.getloadavg", lambda: (1.0, 1.0, 1.0))  # an idle container's housekeeping
    stat.write_text(next(samples))
    assert loader.free_cores(stat=stat) == 1  # 1 + 0.25, rounded
    samples = iter(["cpu0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0\n", "cpu0 0 0 0 50 0 0 0 0\ncpu1 5 0 0 45 0 0 0 0\n"])
    stat.write_text(next(samples))
    assert loader.free_cores(stat=stat) == 2  # both nearly idle although the load average says 1
    samples = iter(["cpu0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0\n", "cpu0 50 0 0 0 0 0 0 0\ncpu1 50 0 0 0 0 0 0 0\n"])
    stat.write_text(next(samples))
    assert loader.free_cores(stat=stat) == 1  # never fewer than one
    monkeypatch.setattr("os.getloadavg", lambda: (2.6, 0.0, 0.0))
    assert loader.free_cores(stat=tmp_path / "absent") == 1  # no /proc/stat: the load average, round(2 - 2.6) → 1
