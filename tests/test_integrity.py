"""Integrity end to end: every file a build, merge or training run writes has its sha256 recorded (the
build's manifest, an output's marker), and readers refuse a damaged one in one line instead of giving wrong
answers (a flipped byte in labels.parquet used to load as ``coco/sasep``). Byte flips at seeded positions."""
from __future__ import annotations

import random
import shutil

import pytest

from conftest import run_cli

SEED = 20261201


def _flip(path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    position = rng.randrange(len(data))
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["labels.parquet", "similarity.parquet", "manifest.json"])
def test_a_flipped_byte_in_a_build_file_is_refused(tmp_path, name):
    out = tmp_path / "labelspace"
    assert run_cli("scaledet-labels", "build", "--datasets", "coco", "--out", str(out), "-q").returncode == 0
    rng = random.Random(SEED)
    for trial in range(3):
        copy = tmp_path / f"copy{trial}"
        shutil.copytree(out, copy)
        _flip(copy / name, rng)
        done = run_cli("scaledet-labels", "list", "--labelspace", str(copy))
        assert done.returncode == 2 and name in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_flipped_byte_in_merged_parquet_or_a_checkpoint_is_refused(shapes_world, tmp_path):
    from conftest import write_train_config
    from scaledet.labelspace.io.errors import OutputError
    from scaledet.labelspace.merge_io import load_concepts
    from scaledet.labelspace.outputs import LabelSpaceOutput

    rng = random.Random(SEED)
    merge = tmp_path / "merge"
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(shapes_world / "labelspace"), "--out", str(merge))
    assert done.returncode == 0, done.stderr
    output = LabelSpaceOutput.load(shapes_world / "labelspace")
    assert len(load_concepts(merge / "merged.parquet", output)) == len(output.global_ids)
    _flip(merge / "merged.parquet", rng)
    with pytest.raises(OutputError, match="does not match the sha256 recorded"):
        load_concepts(merge / "merged.parquet", output)
    config = write_train_config(shapes_world, tmp_path / "run", eval_datasets=[], schedule={"iterations": 1})
    assert run_cli("scaledet", "train", "--config", str(config), "-q").returncode == 0
    _flip(tmp_path / "run" / "model_final.pth", rng)
    image = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    done = run_cli("scaledet", "predict", str(image), "--checkpoint", str(tmp_path / "run" / "model_final.pth"),
                   "--vocab", "circle", "--out", str(tmp_path / "pred"))
    assert done.returncode == 2 and "model_final.pth: does not match the sha256" in done.stderr


def test_an_annotation_file_rewritten_in_place_is_indexed_again(shapes_world, tmp_path):
    """Same path, same size, same modification time, other content: the sampled sha256 checked at every open
    notices, and the index is rebuilt instead of serving the old boxes."""
    import json
    import os

    from scaledet.detector.data import CocoDetectionDataset, DatasetSpec
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    source = shapes_world / "shapesa" / "train" / "annotations.json"
    annotations = tmp_path / "annotations.json"
    shutil.copy2(source, annotations)
    space = UnifiedLabelSpace(shapes_world / "labelspace")
    spec = DatasetSpec("shapesa", str(annotations), str(source.parent / "images"))
    before = CocoDetectionDataset(spec, space)
    first_box = before.index.boxes[0].tolist()
    document = json.loads(annotations.read_text())
    x, y, w, h = document["annotations"][0]["bbox"]
    document["annotations"][0]["bbox"] = [x + 1, y, w - 1, h]  # same length of text, other content
    text = json.dumps(document)
    text = text + " " * (annotations.stat().st_size - len(text))
    stat = annotations.stat()
    annotations.write_text(text)
    os.utime(annotations, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert annotations.stat().st_size == stat.st_size and annotations.stat().st_mtime_ns == stat.st_mtime_ns
    after = CocoDetectionDataset(spec, space)
    assert after.index.boxes[0].tolist() != first_box
