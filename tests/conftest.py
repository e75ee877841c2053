"""Shared fixtures: a private embedding cache, the shared taxonomy files, one real built union."""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from forked_commands import CommandServer

REPO = Path(__file__).resolve().parents[1]
SHARED_TAXONOMIES = REPO.parent / "shared" / "taxonomies"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one process per core (pytest -n): one compute thread each, inherited by the commands tests run, so
    # that the workers' torch and BLAS threads do not spin against each other on the same cores
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
#: This session's environment as it started (see ``command_environment``).
SESSION_ENVIRONMENT = dict(os.environ)


#: The files whose end-to-end tests take tens of seconds each (the README tour alone about 100 s) run
#: first: with ``pytest -n 2`` the processes take tests as they finish, and one of these started last would
#: leave the other process idle for its whole length at the end of the session
LONG_FILES_FIRST = ("test_readme_tour.py", "test_reliability_outputs.py", "test_benchmarks.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Run ``LONG_FILES_FIRST`` first; each file's tests keep their order (stable sort by file)."""
    rank = {name: position for position, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never read or fill the user's cache: every session gets an empty one of its own."""
    cache = tmp_path_factory.mktemp("scaledet-cache")
    previous = os.environ.get("SCALEDET_CACHE")
    os.environ["SCALEDET_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("SCALEDET_CACHE", None)
    else:
        os.environ["SCALEDET_CACHE"] = previous


@pytest.fixture(scope="session")
def shared_taxonomies() -> Path:
    if not SHARED_TAXONOMIES.is_dir():
        pytest.skip(f"official taxonomy files not present at {SHARED_TAXONOMIES} (a checkout without ../shared)")
    return SHARED_TAXONOMIES


@pytest.fixture(scope="session")
def minilm():
    from scaledet.labelspace.encoders import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture(scope="session")
def builtin_union(tmp_path_factory, minilm):
    """The README's main job, built once with the real MiniLM encoder: lvis coco o365 oid."""
    from scaledet.labelspace import build_labelspace, load_taxonomies

    out = tmp_path_factory.mktemp("union") / "labelspace"
    result = build_labelspace(load_taxonomies(["lvis", "coco", "o365", "oid"], []), minilm, out)
    return result


LVIS_FIXTURE = REPO.parent / "shared" / "fixtures" / "lvis_v0.5_val_100.json"


@pytest.fixture(scope="session")
def lvis_coco_oid_build(tmp_path_factory) -> Path:
    """A build of the LVIS API's own 100-image file (key ``lvis``, its v0.5 categories), the bundled COCO and
    OpenImages taxonomies, and its ``merge`` (no WordNet, for the same concepts on every machine)."""
    if not LVIS_FIXTURE.is_file():
        pytest.skip(f"the LVIS fixture is not present at {LVIS_FIXTURE} (a checkout without ../shared)")
    out = tmp_path_factory.mktemp("lvis-coco-oid") / "labelspace"
    done = run_cli("scaledet-labels", "build", "--datasets", "coco", "oid", "--dataset-file", f"lvis={LVIS_FIXTURE}",
                   "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(out), "--no-wordnet")
    assert done.returncode == 0, done.stderr
    return out


_command_server: CommandServer | None = None
_command_server_failed = False


def command_environment(env: dict | None = None) -> dict:
    """The environment a command runs in: the session's as it started, its ``SCALEDET_*`` variables as they
    are now (a private cache), and ``env``. Libraries that tests import in this process (Ultralytics, OpenCV,
    torch's compiler) add variables to ``os.environ`` (``LD_LIBRARY_PATH``, ``KMP_DUPLICATE_LIB_OK``, …)
    that a user's shell does not hold, so commands do not inherit them."""
    scaledet = {k: v for k, v in os.environ.items() if k.startswith("SCALEDET_")}
    base = {k: v for k, v in SESSION_ENVIRONMENT.items() if not k.startswith("SCALEDET_")}
    return {**base, **scaledet, **(env or {})}


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, fresh: bool = False
            ) -> subprocess.CompletedProcess:
    """Run a console script as a user would: a process of its own, with its own arguments, environment,
    folder, output and exit status. It is forked from a server that has imported the libraries once
    (tests/forked_commands.py says when that cannot change what the command does); ``fresh=True``, or an
    environment the server cannot give, starts a new interpreter instead."""
    command, *rest = args
    environment = command_environment(env)
    server = None if fresh else command_server()
    if server is not None and server.can_run(command, environment):
        return server.run(command, rest, environment, cwd, timeout=900)
    script = Path(sys.executable).with_name(command)
    return subprocess.run([str(script), *rest], capture_output=True, text=True, env=environment, cwd=cwd,
                          timeout=900)


def command_server() -> CommandServer | None:
    """This pytest process's command server, started on first use; None (with a warning, every command then
    starting a fresh interpreter) if it cannot start cleanly."""
    global _command_server, _command_server_failed
    if _command_server is None and not _command_server_failed:
        try:
            _command_server = CommandServer(command_environment())
        except (RuntimeError, OSError, EOFError, TimeoutError) as err:
            warnings.warn(f"commands start fresh interpreters: {err}", stacklevel=2)
            _command_server_failed = True
        else:
            atexit.register(_command_server.close)
    return _command_server


# --------------------------------------------------------------------------- detector fixtures
TINY_INPUT = {"min_size_train": [128], "max_size_train": 128, "min_size_test": 128, "max_size_test": 128}
# the demo's narrow widths (64-channel pyramid, 256-d box head): a third of the 256 / 1024 model's step time and
# under half its checkpoint bytes (docs/detector.md, the demo)
TINY_MODEL = {"backbone": "resnet18", "fpn_channels": 64, "box_head_dim": 256, "pooler_sampling_ratio": 1,
              "roi_batch_size_per_image": 64,
              "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 150,
              "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 100}


@pytest.fixture(scope="session")
def shapes_world(tmp_path_factory, minilm):
    """Two small generated COCO datasets naming the same shapes differently, and their labelspace build.

    ``shapesa`` says circle / square / triangle; ``shapesb`` says round disk / box and ignores triangles.
    """
    from scaledet.detector.synthetic import SyntheticDatasetSpec, write_coco_dataset
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies

    root = tmp_path_factory.mktemp("shapes")
    specs = [
        SyntheticDatasetSpec("shapesa", lambda shape, colour: shape, ["circle", "square", "triangle"]),
        SyntheticDatasetSpec("shapesb", lambda shape, colour: {"circle": "round disk", "square": "box"}.get(shape),
                             ["round disk", "box"]),
    ]
    for spec in specs:
        write_coco_dataset(spec, root / spec.name / "train", 12, 128, seed=0)
        write_coco_dataset(spec, root / spec.name / "val", 6, 128, seed=1)
    files = [DatasetFile(s.name, root / s.name / "train" / "annotations.json") for s in specs]
    build_labelspace(load_taxonomies([], files), minilm, root / "labelspace")
    return root


def write_train_config(world: Path, out: Path, **overrides) -> Path:
    """A tiny CPU config over ``shapes_world``; keyword overrides replace top-level sections."""
    import yaml

    config = {
        "labelspace": str(world / "labelspace"),
        "output_dir": str(out),
        "seed": 0,
        "datasets": [{"name": n, "annotations": str(world / n / "train" / "annotations.json"),
                      "images": str(world / n / "train" / "images")} for n in ("shapesa", "shapesb")],
        "eval_datasets": [{"name": "shapesa", "annotations": str(world / "shapesa" / "val" / "annotations.json"),
                           "images": str(world / "shapesa" / "val" / "images")}],
        "model": dict(TINY_MODEL),
        "input": dict(TINY_INPUT),
        "num_workers": 0,
        "schedule": {"iterations": 4, "batch_size": 2, "lr": 0.01, "warmup_iterations": 2,
                     "checkpoint_every": 2, "log_every": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def trained_checkpoint(shapes_world, tmp_path_factory) -> Path:
    """One short training run over ``shapes_world`` through the CLI (1 iteration, no evaluation), trained once
    per session for the tests that only need *a* checkpoint to predict with, load or refuse. Read-only by
    convention: a test that damages or edits the file works on a copy."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    config = write_train_config(shapes_world, run, schedule={"iterations": 1}, eval_datasets=[])
    done = run_cli("scaledet", "train", "--config", str(config), "-q")
    assert done.returncode == 0, done.stderr
    return run / "model_final.pth"
