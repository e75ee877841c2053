"""No code runs from a data file: weights files are read with ``weights_only=True`` (a planted pickle is
refused in one line and its code never runs), torchvision's cached files are checked against the sha256
their names promise, and a checkpoint that holds every weight never asks for the backbone's file."""
from __future__ import annotations

import hashlib
import pathlib
import shutil

import pytest
import torch

from conftest import TINY_MODEL, run_cli, write_train_config
from scaledet.labelspace.io.errors import ScaledetError


class _Planted:
    """Unpickling this runs ``Path.touch(marker)``: the stand-in for an attacker's code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _plant(path: pathlib.Path, marker: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Planted(marker)}, path)


def test_a_pickle_planted_in_torchs_cache_is_refused_and_never_run(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    from scaledet.detector.model import ModelConfig, build_backbone, cached_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "code-ran"
    staging = tmp_path / "planted.pth"
    _plant(staging, marker)
    # under the real file name: refused by the sha256 its name promises, before anything is read
    real_name = cached_weights_file(ResNet18_Weights.IMAGENET1K_V1)
    real_name.parent.mkdir(parents=True)
    shutil.copy(staging, real_name)
    with pytest.raises(ScaledetError, match="does not match the sha256 its name promises") as info:
        build_backbone(ModelConfig(backbone="resnet18", backbone_weights="imagenet"))
    assert "\n" not in str(info.value) and not marker.exists()
    # named after its own digest, so the hash check passes: weights_only refuses the code
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url",
                        f"https://download.pytorch.org/models/resnet18-{digest[:8]}.pth")
    shutil.copy(staging, cached_weights_file(ResNet18_Weights.IMAGENET1K_V1))
    with pytest.raises(ScaledetError, match="not a plain weights file, refused") as info:
        build_backbone(ModelConfig(backbone="resnet18", backbone_weights="imagenet"))
    assert "\n" not in str(info.value) and not marker.exists()
    # and given as a file path
    with pytest.raises(ScaledetError, match="not a plain weights file, refused"):
        build_backbone(ModelConfig(backbone="resnet18", backbone_weights=str(staging)))
    assert not marker.exists()


def test_a_planted_checkpoint_is_refused_by_predict(tmp_path):
    marker = tmp_path / "code-ran"
    _plant(tmp_path / "model_final.pth", marker)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    done = run_cli("scaledet", "predict", str(image), "--checkpoint", str(tmp_path / "model_final.pth"),
                   "--vocab", "cat", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists()


def test_a_checkpoint_holding_its_weights_never_needs_the_backbone_file(shapes_world, tmp_path):
    """Trained from a pretrained-backbone file, which is then gone: predict and --resume still work, as
    they would offline with ``backbone_weights: imagenet`` and no file in torch's cache."""
    import torchvision

    weights = tmp_path / "resnet18-backbone.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # random stand-in for ImageNet's file
    out = tmp_path / "run"
    config = write_train_config(shapes_world, out, model={**TINY_MODEL, "backbone_weights": str(weights)},
                                eval_datasets=[], schedule={"iterations": 2, "batch_size": 2, "lr": 0.01,
                                                            "warmup_iterations": 1, "checkpoint_every": 1,
                                                            "log_every": 1})
    done = run_cli("scaledet", "train", "--config", str(config), "-q")
    assert done.returncode == 0, done.stderr
    weights.unlink()
    image = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    done = run_cli("scaledet", "predict", str(image), "--checkpoint", str(out / "model_final.pth"),
                   "--vocab", "circle,square", "--out", str(tmp_path / "pred"))
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet", "train", "--config", str(config), "--resume", "-q", "schedule.iterations=3")
    assert done.returncode == 0, done.stderr


def test_torchscript_weights_are_read_without_running_the_archive(tmp_path):
    """OpenAI's CLIP files are TorchScript. Their tensors are read by a restricted unpickler: equal to what
    torch.jit.load gives, and a crafted archive whose pickle names other code is refused, its code not run."""
    import zipfile

    from scaledet.labelspace.io.torchscript_weights import UnsafeArchive, read_torchscript_tensors

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2).half())
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    expected = torch.jit.load(str(path)).state_dict()
    tensors = read_torchscript_tensors(path)
    assert set(expected) <= set(tensors)
    assert all(torch.equal(tensors[k], v) and tensors[k].dtype == v.dtype for k, v in expected.items())

    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                import pickle

                data = pickle.dumps(_Planted(marker), protocol=2)
            target.writestr(item, data)
    with pytest.raises(UnsafeArchive, match="which a weights file has no need of"):
        read_torchscript_tensors(crafted)
    assert not marker.exists()
