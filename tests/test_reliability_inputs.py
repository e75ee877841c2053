"""No input gets a traceback: damaged caches and builds, wrong config types, bad records and images,
foreign checkpoints. Bad inputs are generated (hypothesis), not written out one by one."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import typing
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import run_cli, write_train_config
from scaledet.labelspace import build_labelspace, load_taxonomies
from scaledet.labelspace.io.errors import ConfigError, OutputError, ScaledetError

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def _flip(data: bytes, position: int, mask: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


# --------------------------------------------------------------------------- caches
@pytest.fixture()
def small_build(minilm, tmp_path, monkeypatch):
    """A 20-label build with its own cache, so the cache files can be damaged freely."""
    monkeypatch.setenv("SCALEDET_CACHE", str(tmp_path / "cache"))
    taxonomies = load_taxonomies(["odinw/PascalVOC"], [])
    build_labelspace(taxonomies, minilm, tmp_path / "first")
    return taxonomies, tmp_path


@SLOW
@given(which=st.sampled_from(["shard", "parquet", "sha256", "rows"]), position=st.integers(0, 10**6),
       mask=st.integers(1, 255), truncate=st.booleans())
def test_any_damaged_cache_file_never_fails_a_build(small_build, minilm, which, position, mask, truncate):
    taxonomies, root = small_build
    reference = np.load(root / "first" / "embeddings.npy")
    cache = root / "cache"
    pattern = {"shard": "embeddings/*/shard-*.npz", "parquet": "similarity/*.parquet",
               "sha256": "similarity/*.sha256", "rows": "similarity/*.rows"}[which]
    target = sorted(cache.glob(pattern))[0]
    data = target.read_bytes()
    target.write_bytes(data[: position % len(data)] if truncate else _flip(data, position, mask))
    out = root / "again"
    build_labelspace(taxonomies, minilm, out)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), reference, atol=1e-6)
    from scaledet.labelspace.outputs import LabelSpaceOutput

    LabelSpaceOutput.load(out).similarity()  # the (re)written similarity file is whole
    # the next build sees a healthy cache again
    build_labelspace(taxonomies, minilm, root / "third")


def test_read_only_cache_does_not_fail_the_build(minilm, tmp_path, monkeypatch, capfd):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings").write_text("a file where a folder should be: nothing can be written below it")
    (cache / "similarity").write_text("likewise")
    monkeypatch.setenv("SCALEDET_CACHE", str(cache))
    result = build_labelspace(load_taxonomies(["odinw/Aquarium"], []), minilm, tmp_path / "out")
    assert result.embed_stats.encoded == 7
    assert "cannot be written" in capfd.readouterr().err


# --------------------------------------------------------------------------- damaged builds
@pytest.fixture(scope="module")
def pristine_build(tmp_path_factory, minilm):
    out = tmp_path_factory.mktemp("pristine") / "labelspace"
    build_labelspace(load_taxonomies(["odinw/PascalVOC", "odinw/Aquarium"], []), minilm, out)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["labels.parquet", "embeddings.npy", "similarity.parquet", "manifest.json"]),
       position=st.integers(0, 10**6), mask=st.integers(1, 255), truncate=st.booleans())
def test_a_damaged_build_file_is_an_output_error_or_harmless(pristine_build, tmp_path_factory, name, position,
                                                             mask, truncate):
    from scaledet.labelspace.outputs import LabelSpaceOutput

    copy = tmp_path_factory.mktemp("damaged") / "labelspace"
    shutil.copytree(pristine_build, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: position % len(data)] if truncate else _flip(data, position, mask))
    try:
        output = LabelSpaceOutput.load(copy)
        output.similarity()
    except OutputError as err:
        assert "\n" not in str(err) and str(copy) in str(err)


def test_a_column_name_damaged_in_the_similarity_footer_is_an_output_error(pristine_build, tmp_path):
    """pyarrow decodes the footer's column names as UTF-8 while reading the schema: a flipped high bit there is a
    UnicodeDecodeError (a ValueError), not an Arrow error, and must still be the one-line output error."""
    from scaledet.labelspace.outputs import LabelSpaceOutput

    copy = tmp_path / "labelspace"
    shutil.copytree(pristine_build, copy)
    path = copy / "similarity.parquet"
    data = path.read_bytes()
    for match in re.finditer(b"sim", data):  # the column's name in the footer's schema: "sim" → b"\xf3im"
        path.write_bytes(_flip(data, match.start(), 0x80))
        try:
            pq.read_schema(path)
        except UnicodeDecodeError:
            break
    else:
        pytest.fail("no flipped 'sim' makes pyarrow's schema reader raise UnicodeDecodeError")
    with pytest.raises(OutputError, match="similarity.parquet") as raised:
        LabelSpaceOutput.load(copy).similarity()
    assert "\n" not in str(raised.value) and str(copy) in str(raised.value)


@pytest.mark.parametrize("manifest", [[], {"format": "scaledet.labelspace/1"}, "text"])
def test_manifest_of_the_wrong_shape(pristine_build, tmp_path, manifest):
    copy = tmp_path / "labelspace"
    shutil.copytree(pristine_build, copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for command in (["list"], ["inspect", "fish"], ["graph"], ["export", "--format", "csv"], ["report"]):
        done = run_cli("scaledet-labels", *command, "--labelspace", str(copy))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "manifest.json" in done.stderr, done.stderr


def test_similarity_file_of_another_build_is_refused(pristine_build, minilm, tmp_path):
    from scaledet.labelspace.outputs import LabelSpaceOutput

    from scaledet.labelspace import DatasetFile

    seven = tmp_path / "seven.txt"  # as many labels as Aquarium, so only the embeddings tell them apart
    seven.write_text("anvil\nkettle\nbanjo\nsled\nlantern\ncompass\nquill\n")
    other = tmp_path / "other"
    build_labelspace(load_taxonomies(["odinw/PascalVOC"], [DatasetFile("mine", seven)]), minilm, other)
    copy = tmp_path / "copy"
    shutil.copytree(pristine_build, copy)
    shutil.copyfile(other / "similarity.parquet", copy / "similarity.parquet")
    with pytest.raises(OutputError, match="another build"):
        LabelSpaceOutput.load(copy)


# --------------------------------------------------------------------------- readers
CONTROL = st.sampled_from(["\n", "\x00", "\r", "\t", "\x1b", "\u2028", "\x7f"])


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(char=CONTROL, fmt=st.sampled_from(["json", "csv", "yaml", "txt"]))
def test_control_characters_in_a_class_name_are_refused(tmp_path_factory, char, fmt):
    from scaledet.labelspace.readers import read_taxonomy_file

    assume(not (fmt == "txt" and char in "\n\r"))  # in a names .txt these end a line (universal newlines)
    name = f"ca{char}t"
    path = tmp_path_factory.mktemp("ctl") / f"classes.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": name}]}))
    elif fmt == "csv":
        path.write_text(f'/m/01,dog\n/m/02,"{name}"\n')
    elif fmt == "yaml":
        path.write_text(yaml.safe_dump({"names": ["dog", name]}))
    else:
        path.write_text(f"dog\n{name}\n")
    with pytest.raises(ScaledetError, match="control character") as info:
        read_taxonomy_file("x", path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["json", "csv", "yaml", "txt"])
def test_a_byte_order_mark_is_not_part_of_the_first_class(tmp_path, fmt):
    from scaledet.labelspace.readers import read_taxonomy_file

    text = {"json": '{"categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}',
            "csv": "/m/01yrx,cat\n/m/0bt9lr,dog\n", "yaml": "names: [cat, dog]\n", "txt": "cat\ndog\n"}[fmt]
    path = tmp_path / f"classes.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    taxonomy = read_taxonomy_file("x", path)
    assert [c.name for c in taxonomy.categories] == ["cat", "dog"]


def test_duplicate_keys_in_a_yolo_names_mapping(tmp_path):
    from scaledet.labelspace.readers import read_taxonomy_file

    path = tmp_path / "data.yaml"
    path.write_text("names:\n  0: cat\n  1: dog\n  1: bird\n")
    with pytest.raises(ScaledetError, match="duplicate key 1"):
        read_taxonomy_file("x", path)


# --------------------------------------------------------------------------- configs
def _config_fields() -> list[tuple[str, type]]:
    from scaledet.detector.config import TrainConfig

    found = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
            elif f.name not in ("datasets", "eval_datasets"):
                found.append((f"{prefix}{f.name}", hint))

    walk(TrainConfig, "")
    return found


FIELDS = _config_fields()
WRONG = {
    int: st.one_of(st.text(min_size=1), st.booleans(), st.floats(allow_nan=False).filter(lambda v: v != int(v) if abs(v) < 1e15 else True), st.lists(st.integers(), max_size=2)),
    float: st.one_of(st.text(min_size=1), st.booleans(), st.lists(st.floats(), max_size=2), st.just(float("nan"))),
    bool: st.one_of(st.sampled_from(["no", "yes", "true", "false"]), st.integers(), st.floats()),
    str: st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(), max_size=2)),
}


def _wrong_value(hint):
    args = typing.get_args(hint)
    if args and type(None) in args:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        return st.one_of(st.text(min_size=1), st.integers(), st.lists(st.text(min_size=1), min_size=1, max_size=2))
    return WRONG[hint]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_config_value_of_the_wrong_type_names_its_key(tmp_path_factory, data):
    from scaledet.detector.config import load_config

    key, hint = data.draw(st.sampled_from(FIELDS))
    value = data.draw(_wrong_value(hint))
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    config = {"labelspace": "ls", "datasets": [{"name": "a", "annotations": "a.json", "images": "img"}]}
    node = config
    *sections, last = key.split(".")
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override,expected", [
    ("schedule.iterations=ten", "schedule.iterations = 'ten': must be a whole number"),
    ("schedule.lr=-1", "schedule.lr = -1: must be > 0"),
    ("schedule.checkpoint_every=0", "schedule.checkpoint_every = 0"),
    ("device=tpu", "device = 'tpu'"),
    ("seed=1180591620717411303424", "seed = 1180591620717411303424: must be from 0 to 2**63 - 1"),
    pytest.param("device=cuda:5", "device: cuda:5 requested but this machine has",
                 marks=pytest.mark.skipif(torch.cuda.device_count() > 5, reason="this machine has a cuda:5")),
    pytest.param("device=mps", "device: mps requested but this machine has no Apple GPU",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    ("amp=maybe", "amp = 'maybe': must be true or false"),
    ("num_workers=x", "num_workers = 'x'"),
    ("model.soft_wieght=0", "unknown key 'soft_wieght' in model"),
    ("nonsense", "expected KEY=VALUE"),
])
def test_bad_overrides_and_values(shapes_world, tmp_path, override, expected):
    config = write_train_config(shapes_world, tmp_path / "run")
    done = run_cli("scaledet", "train", "--config", str(config), override)
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "run").exists(), "nothing may be written before the config has passed"


def test_overrides_are_typed_and_applied(shapes_world, tmp_path):
    from scaledet.detector.config import load_config

    config = load_config(write_train_config(shapes_world, tmp_path / "run"),
                         ["model.soft_weight=0", "schedule.iterations=7", "datasets.1.ratio=2.5", "amp=false"])
    assert config.model.soft_weight == 0.0 and config.schedule.iterations == 7
    assert config.datasets[1].ratio == 2.5 and config.amp is False


def test_config_that_is_not_utf8(tmp_path):
    from scaledet.detector.config import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes(b"labelspace: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


# --------------------------------------------------------------------------- annotations and images
MALFORMED = [
    ("annotations", 0, "bbox", None, "bbox None"),
    ("annotations", 0, "bbox", [1, 2, 3], "bbox [1, 2, 3]"),
    ("annotations", 0, "bbox", ["1", 2, 3, 4], "expected [x, y, width, height]"),
    ("annotations", 0, "category_id", None, "no integer 'category_id'"),
    ("images", 0, "width", None, "no positive integer 'width'"),
    ("images", 0, "height", "128", "no positive integer 'height'"),
    ("images", 0, "id", None, "no integer 'id'"),
    ("images", 0, "file_name", "a\u0000.png", "has a file_name with a control character"),
    ("categories", 0, "name", None, "text 'name'"),
]


@pytest.mark.parametrize("section,index,key,value,expected", MALFORMED)
def test_malformed_annotation_records(shapes_world, tmp_path, section, index, key, value, expected):
    copy = tmp_path / "shapesa"
    shutil.copytree(shapes_world / "shapesa" / "train", copy)
    coco = json.loads((copy / "annotations.json").read_text())
    if value is None:
        coco[section][index].pop(key)
    else:
        coco[section][index][key] = value
    (copy / "annotations.json").write_text(json.dumps(coco))
    datasets = [{"name": "shapesa", "annotations": str(copy / "annotations.json"), "images": str(copy / "images")}]
    config = write_train_config(shapes_world, tmp_path / "run", datasets=datasets)
    done = run_cli("scaledet", "train", "--config", str(config), "-q")
    assert done.returncode == 2 and expected in done.stderr and "annotations.json" in done.stderr, done.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.floats(0.0, 0.95), flip=st.booleans(), position=st.integers(0, 10**5))
def test_corrupt_or_truncated_images_name_the_file(shapes_world, tmp_path_factory, cut, flip, position):
    from scaledet.detector.data import read_image

    source = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    data = source.read_bytes()
    broken = _flip(data, position, 0xFF) if flip else data[: int(len(data) * cut)]
    path = tmp_path_factory.mktemp("img") / "broken.png"
    path.write_bytes(broken)
    try:
        image = read_image(path)
    except ScaledetError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    else:
        assert image.shape[0] == 3  # a flip in pixel data can leave a decodable image


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture
def trained(trained_checkpoint):
    """The session's shared checkpoint (conftest); the tests here copy it before changing anything."""
    return trained_checkpoint


def test_checkpoints_load_with_weights_only(trained):
    from scaledet.detector.checkpoint import load_checkpoint

    state = load_checkpoint(trained)
    assert state["iteration"] == 1 and "optimizer" in state and "scheduler" in state


def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    state = torch.load(trained, weights_only=True)
    state["payload"] = shutil.rmtree  # a pickled callable: loading it unrestricted could run code
    evil = tmp_path / "evil.pth"
    torch.save(state, evil)
    image = tmp_path / "x.png"
    shutil.copyfile(next(trained.parents[2].glob("shapes*/shapesa/val/images/*.png")), image)
    done = run_cli("scaledet", "predict", str(image), "--checkpoint", str(evil), "--vocab", "cat",
                   "--out", str(tmp_path / "p"))
    assert done.returncode == 2 and "not a readable checkpoint" in done.stderr, done.stderr


def test_weights_that_do_not_fit_their_config(trained, tmp_path):
    from scaledet.detector.checkpoint import DIGEST_KEY, content_digest

    state = torch.load(trained, weights_only=True)
    state["config"]["model"]["backbone"] = "mobilenet_v3"
    state[DIGEST_KEY] = content_digest(state)  # a whole file, whose config does not describe its weights
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    image = next(trained.parents[2].glob("shapes*/shapesa/val/images/*.png"))
    done = run_cli("scaledet", "predict", str(image), "--checkpoint", str(bad), "--vocab", "cat",
                   "--out", str(tmp_path / "p"))
    assert done.returncode == 2 and "do not fit" in done.stderr and done.stderr.count("\n") == 1, done.stderr


def _predict_with(checkpoint: Path, trained: Path, tmp_path: Path, *flags: str):
    image = next(trained.parents[2].glob("shapes*/shapesa/val/images/*.png"))
    return run_cli("scaledet", "predict", str(image), "--checkpoint", str(checkpoint), "--vocab", "circle",
                   "--out", str(tmp_path / "p"), "--score-threshold", "0", *flags)


def test_a_copied_checkpoint_is_checked_against_the_digest_it_carries(trained, tmp_path):
    """Out of its run folder no marker lists a checkpoint; the digest it carries still finds a flipped
    exponent bit in one weight (which turns detections into none, silently)."""
    copied = tmp_path / "copied.pth"
    shutil.copyfile(trained, copied)
    assert _predict_with(copied, trained, tmp_path).returncode == 0
    state = torch.load(copied, weights_only=True)
    weight = next(t for t in state["model"].values() if t.dtype == torch.float32 and t.numel() > 100)
    weight.view(torch.int32)[7] ^= 1 << 30  # the top exponent bit of one float
    damaged = tmp_path / "damaged.pth"
    torch.save(state, damaged)
    done = _predict_with(damaged, trained, tmp_path)
    assert done.returncode == 2 and "does not match the sha256 it carries" in done.stderr, done.stderr
    assert _predict_with(damaged, trained, tmp_path, "--trust-checkpoint").returncode == 2  # damage is never trusted


def test_a_checkpoint_without_a_digest_loads_only_when_trusted(trained, tmp_path):
    from scaledet.detector.checkpoint import DIGEST_KEY

    state = torch.load(trained, weights_only=True)
    del state[DIGEST_KEY]  # as a checkpoint from before digests, or another tool's
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)
    done = _predict_with(bare, trained, tmp_path)
    assert done.returncode == 2 and "--trust-checkpoint" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert _predict_with(bare, trained, tmp_path, "--trust-checkpoint").returncode == 0


def test_resume_over_a_binary_pointer_or_garbled_metrics(shapes_world, trained, tmp_path):
    """A ``last_checkpoint`` that is not text is one line; a ``metrics.json`` that is not UTF-8 (a disk
    error, an editor) loses only its unreadable lines, and the run resumes."""
    run = tmp_path / "run"
    shutil.copytree(trained.parent, run)
    config = write_train_config(shapes_world, run, schedule={"iterations": 2}, eval_datasets=[])
    pointer = (run / "last_checkpoint").read_bytes()
    (run / "last_checkpoint").write_bytes(b"\x80\xff\x00model")
    done = run_cli("scaledet", "train", "--config", str(config), "--resume", "-q")
    assert done.returncode == 2 and "last_checkpoint: not text" in done.stderr and done.stderr.count("\n") == 1, \
        done.stderr
    (run / "last_checkpoint").write_bytes(pointer)
    (run / "metrics.json").write_bytes((run / "metrics.json").read_bytes() + b'{"iteration": 9, "x": "\xff"}\n')
    done = run_cli("scaledet", "train", "--config", str(config), "--resume", "-q")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["iteration"] for line in (run / "metrics.json").read_text().splitlines()] == [0, 1]


def test_an_image_too_thin_for_the_model_is_one_line(trained, tmp_path):
    """A 1 × 5000 image would shrink to no pixels at all (torchvision fails inside ``interpolate``)."""
    from PIL import Image

    Image.new("RGB", (1, 5000), "white").save(tmp_path / "sliver.png")
    done = run_cli("scaledet", "predict", str(tmp_path / "sliver.png"), "--checkpoint", str(trained), "--vocab",
                   "circle", "--out", str(tmp_path / "p"))
    assert done.returncode == 2 and "sliver.png: an image of 1 × 5000 pixels is too thin" in done.stderr, done.stderr


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(trained, tmp_path):
    import subprocess

    from scaledet.detector.checkpoint import save_checkpoint

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root in a container that allows mounts)")
    try:
        save_checkpoint({"model": {"w": torch.ones(4)}}, disk / "checkpoint.pth")
        with pytest.raises(ScaledetError) as info:
            save_checkpoint({"model": {"w": torch.ones(1_000_000)}}, disk / "checkpoint.pth")
        assert "checkpoint.pth" in str(info.value) and "\n" not in str(info.value)
        assert torch.load(disk / "checkpoint.pth", weights_only=True)["model"]["w"].numel() == 4
        assert [p.name for p in disk.iterdir()] == ["checkpoint.pth"]
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)  # lazy: a failed torch.save may hold a handle


# --------------------------------------------------------------------------- convert-oid
@pytest.mark.parametrize("problem", ["corrupt image", "short row", "latin-1", "zero width", "path id",
                                     "group True", "group maybe"])
def test_convert_oid_bad_inputs(tmp_path, problem):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48)).save(images / "img1.jpg")
    classes = tmp_path / "classes.csv"
    classes.write_text("/m/01yrx,Cat\n/m/0bt9lr,Dog\n")
    boxes = tmp_path / "boxes.csv"
    rows = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf\n"
    rows += "img1,xclick,/m/01yrx,1,0.1,0.5,0.1,0.5,0,0,0\n"
    if problem == "corrupt image":
        (images / "img1.jpg").write_bytes(b"\xff\xd8garbage")
    elif problem == "short row":
        rows += "img1,xclick,/m/01yrx,1,0.1\n"
    elif problem == "zero width":
        rows += "img1,xclick,/m/01yrx,1,0.3,0.3,0.1,0.5,0,0,0\n"
    elif problem == "path id":
        (tmp_path / "x.jpg").write_bytes((images / "img1.jpg").read_bytes())
        rows += "../x,xclick,/m/01yrx,1,0.1,0.5,0.1,0.5,0,0,0\n"
    elif problem.startswith("group"):
        rows += f"img1,xclick,/m/0bt9lr,1,0.1,0.5,0.1,0.5,0,0,{problem.split()[1]}\n"
    boxes.write_bytes(rows.encode("latin-1") + ("Caf\xe9\n".encode("latin-1") if problem == "latin-1" else b""))
    done = run_cli("scaledet", "convert-oid", "--boxes", str(boxes), "--classes", str(classes),
                   "--images", str(images), "--out", str(tmp_path / "out.json"))
    if problem == "group True":  # how some exports spell it: read as group-of, not as 0
        assert done.returncode == 0, done.stderr
        assert [a["isgroupof"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"]] == [0, 1]
        return
    expected = {"corrupt image": "not a readable image", "short row": "short row", "latin-1": "not UTF-8",
                "zero width": "of zero or negative size", "path id": "is not a plain name",
                "group maybe": "IsGroupOf 'maybe'"}[problem]
    assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "out.json").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- the final guard
def test_an_unforeseen_error_is_one_line_and_exit_1(monkeypatch, capsys):
    import typer

    from scaledet.cli.common import user_errors

    @user_errors
    def command():
        return {}["missing"]

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error (KeyError") and "SCALEDET_DEBUG=1" in err and err.count("\n") == 1
    monkeypatch.setenv("SCALEDET_DEBUG", "1")
    with pytest.raises(KeyError):
        command()


def test_file_system_errors_are_user_errors(tmp_path):
    done = run_cli("scaledet-labels", "list", "--labelspace", str(tmp_path / "nope"))
    assert done.returncode == 2 and "not a labelspace build" in done.stderr
