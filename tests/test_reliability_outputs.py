"""Nothing a user owns is lost: output directories, symlinks, names, killed runs (docs/reliability.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli, write_train_config


def _one_line_error(done, expected: str, code: int = 2) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and expected in done.stderr, done.stderr


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _stale(directory: Path, role: str, name: str, suffix: str = "") -> Path:
    """The temporary a killed scaledet process leaves: its (dead) pid and a token that verifies."""
    from scaledet.labelspace.io.temporaries import temporary_token

    dead, nonce = _dead_pid(), "0123abcd"
    token = temporary_token(role, dead, nonce, name + suffix)
    if role == "tmp":
        return directory / f".{name}.tmp{dead}-{nonce}-{token}{suffix}"
    return directory / f".{name}.{role}-{dead}-{nonce}-{token}"


BUILD = ("scaledet-labels", "build", "--datasets", "odinw/PascalVOC", "-q")


def test_build_refuses_a_directory_it_did_not_write(tmp_path):
    runs = tmp_path / "runs"
    (runs / "train").mkdir(parents=True)
    (runs / "train" / "model_final.pth").write_bytes(b"weeks of training")
    before = _tree(runs)
    _one_line_error(run_cli(*BUILD, "--out", str(runs)), "--force")
    assert _tree(runs) == before
    done = run_cli(*BUILD, "--out", str(runs), "--force")
    assert done.returncode == 0, done.stderr
    assert (runs / "manifest.json").is_file() and not (runs / "train").exists()


def test_rebuild_keeps_refusing_user_files_inside_a_build(tmp_path):
    out = tmp_path / "labelspace"
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0
    assert run_cli("scaledet-labels", "graph", "--labelspace", str(out)).returncode == 0
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0, "a build with its own graph/ is replaced"
    (out / "notes.txt").write_text("mine")
    _one_line_error(run_cli(*BUILD, "--out", str(out)), "'notes.txt'")
    assert (out / "notes.txt").read_text() == "mine"


def test_build_through_a_symlink_keeps_the_link(tmp_path):
    target = tmp_path / "real"
    assert run_cli(*BUILD, "--out", str(target)).returncode == 0
    link = tmp_path / "link"
    link.symlink_to(target)
    done = run_cli("scaledet-labels", "build", "--datasets", "odinw/Aquarium", "-q", "--out", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert "odinw/Aquarium" in (target / "manifest.json").read_text()


@pytest.mark.parametrize("where", [".", "/", "file/below"])
def test_build_out_that_cannot_be_replaced(tmp_path, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty-cwd").mkdir()
    out = where if where in (".", "/") else str(tmp_path / where)
    before = sorted(os.listdir("/"))
    done = run_cli(*BUILD, "--out", out, "--force", cwd=tmp_path / "empty-cwd")
    _one_line_error(done, "--out" if where != "file/below" else "file")
    assert sorted(os.listdir("/")) == before and not list((tmp_path / "empty-cwd").iterdir())


def test_a_killed_build_leaves_nothing_the_next_build_keeps(tmp_path):
    out = tmp_path / "labelspace"
    leftover = _stale(tmp_path, "building", "labelspace")
    leftover.mkdir()
    (leftover / "labels.parquet").write_bytes(b"half")
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelspace"]


def test_files_named_like_temporaries_are_never_swept(tmp_path):
    """Only names with a token scaledet made are temporaries: a user's look-alikes stay, files and folders."""
    out = tmp_path / "labelspace"
    dead = _dead_pid()
    lookalikes = [tmp_path / f".labelspace.building-{dead}-abc", tmp_path / f".labelspace.old-{dead}-0123abcd-{'0' * 20}",
                  tmp_path / f".labelspace.tmp{dead}.json"]
    lookalikes[0].mkdir()
    (lookalikes[0] / "thesis.tex").write_text("mine")
    for path in lookalikes[1:]:
        path.write_text("mine")
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0
    assert all(p.exists() for p in lookalikes)


def test_train_never_touches_an_earlier_run_without_resume(shapes_world, tmp_path):
    config = write_train_config(shapes_world, tmp_path / "run", schedule={"iterations": 2, "checkpoint_every": 1})
    assert run_cli("scaledet", "train", "--config", str(config), "-q").returncode == 0
    run = tmp_path / "run"
    before = _tree(run)
    assert (run / "metrics.json").stat().st_size > 0
    _one_line_error(run_cli("scaledet", "train", "--config", str(config), "-q"), "--resume")
    broken = write_train_config(shapes_world, tmp_path / "run", schedule={"iterations": 2}, labelspace="/nonexistent")
    assert run_cli("scaledet", "train", "--config", str(broken), "-q", "--force").returncode == 2
    assert _tree(run) == before, "a failed start must not truncate metrics or overwrite checkpoints"


def test_train_refuses_foreign_output_dir_and_cleans_its_own_leftovers(shapes_world, tmp_path):
    foreign = tmp_path / "run"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    config = write_train_config(shapes_world, foreign, schedule={"iterations": 1})
    _one_line_error(run_cli("scaledet", "train", "--config", str(config), "-q"), "files scaledet did not write")
    fresh = tmp_path / "fresh"
    config = write_train_config(shapes_world, fresh, schedule={"iterations": 1})
    assert run_cli("scaledet", "train", "--config", str(config), "-q").returncode == 0
    stale = _stale(fresh, "tmp", "checkpoint", ".pth")  # what a kill -9 during a checkpoint save leaves
    stale.write_bytes(b"half a checkpoint")
    mine = fresh / f".checkpoint.tmp{_dead_pid()}.pth"  # a user's file of the old, guessable shape
    mine.write_bytes(b"mine")
    done = run_cli("scaledet", "train", "--config", str(config), "-q", "--resume", "schedule.iterations=2")
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and mine.read_bytes() == b"mine"


def test_a_command_sweeps_the_temporaries_its_killed_runs_left(builtin_union, tmp_path):
    """graph, report, predict, unify and every other folder output sweep through the one --out check;
    convert-oid, which writes a file, sweeps beside it. A user's file of a temporary's shape stays."""
    from PIL import Image

    graph = tmp_path / "graph"
    command = ("scaledet-labels", "graph", "--labelspace", str(builtin_union.out_dir), "--out", str(graph))
    assert run_cli(*command).returncode == 0
    stale = [_stale(graph, "tmp", "label_graph", ".graphml"), _stale(graph, "building", "neighbours")]
    stale[0].write_text("half a graph")
    stale[1].mkdir()
    assert run_cli(*command).returncode == 0
    assert not any(p.exists() for p in stale)

    images = tmp_path / "oid" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(images / "img1.jpg")
    (tmp_path / "oid" / "classes.csv").write_text("/m/01yrx,Cat\n")
    (tmp_path / "oid" / "boxes.csv").write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
                                                "img1,/m/01yrx,0.1,0.5,0.1,0.5,0\n")
    out = tmp_path / "oid" / "converted.json"
    stale = [_stale(out.parent, "tmp", "converted", ".json"), _stale(out.parent, "tmp", "converted.json", ".annotations")]
    for path in stale:
        path.write_text("half")
    mine = out.parent / ".converted.json.notes"
    mine.write_text("mine")
    done = run_cli("scaledet", "convert-oid", "--boxes", str(out.parent / "boxes.csv"), "--classes",
                   str(out.parent / "classes.csv"), "--images", str(images), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in stale) and mine.read_text() == "mine"


def test_export_name_cannot_escape_or_overwrite(builtin_union, tmp_path):
    out = builtin_union.out_dir
    before = _tree(out)
    for name in ("../../x", "../labels", ".hidden", "a/b"):
        _one_line_error(run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "parquet",
                                "--datasets", "coco", "--name", name), "--name")
    _one_line_error(run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "parquet",
                            "--datasets", "coco", "--name", "labels", "--out", str(out)), "--out")
    assert _tree(out) == before and not (out.parent.parent / "x.parquet").exists()


def test_graph_of_a_build_with_bracketed_global_ids(minilm, tmp_path):
    from scaledet.labelspace import build_labelspace, load_taxonomies

    out = tmp_path / "oid500"
    build_labelspace(load_taxonomies(["oid500"], []), minilm, out)
    done = run_cli("scaledet-labels", "graph", "--labelspace", str(out), "--top", "400")
    assert done.returncode == 0, done.stderr
    done = run_cli("scaledet-labels", "inspect", "mouse", "--labelspace", str(out))
    assert done.returncode == 0 and "Mouse [/m/" in done.stdout, done.stdout + done.stderr


def test_predict_same_file_names_in_two_folders(shapes_world, trained_checkpoint, tmp_path):
    from scaledet.detector.predict import drawing_names

    assert drawing_names(["a/img.png", "b/img.png", "img.jpg"]) == [
        "img.detections.png", "img-2.detections.png", "img-3.detections.png"]
    source = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "img.png").write_bytes(source.read_bytes())
    out = tmp_path / "pred"
    done = run_cli("scaledet", "predict", str(tmp_path / "a" / "img.png"), str(tmp_path / "b" / "img.png"),
                   "--checkpoint", str(trained_checkpoint), "--vocab", "circle", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["img-2.detections.png", "img.detections.png"]
    _one_line_error(run_cli("scaledet", "predict", str(source), "--checkpoint", str(trained_checkpoint),
                            "--vocab", "circle", "--out", str(tmp_path / "a")), "--force")


def test_killed_cold_build_resumes_from_the_cache(tmp_path):
    """kill -9 in the middle of encoding: the next build finds the chunks already encoded."""
    cache = tmp_path / "cache"
    env = {"SCALEDET_CACHE": str(cache)}
    command = [str(Path(sys.executable).with_name("scaledet-labels")), "build", "--datasets", "lvis", "o365", "oid",
               "-q", "--out", str(tmp_path / "ls")]
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(cache.glob("embeddings/*/shard-*.npz")):
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert list(cache.glob("embeddings/*/shard-*.npz")), "no shard was written before the kill"
    assert not (tmp_path / "ls").exists()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    hits = int(done.stdout.split("cache hits")[1].split()[0])
    assert hits >= 512, done.stdout  # at least the first chunk came from the cache


def test_a_rebuild_removes_only_what_scaledet_listed_as_its_own(shapes_world, tmp_path):
    """A marker is not ownership: a user file inside graph/, or a prediction folder placed inside the build,
    stops the rebuild; graph/ holding only the files its marker lists is replaced with the build."""
    out = tmp_path / "labelspace"
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0
    assert run_cli("scaledet-labels", "graph", "--labelspace", str(out)).returncode == 0
    assert run_cli(*BUILD, "--out", str(out)).returncode == 0, "graph/ holds only its own files"
    assert run_cli("scaledet-labels", "graph", "--labelspace", str(out)).returncode == 0
    (out / "graph" / "my-notes.md").write_text("mine")
    before = _tree(out)
    _one_line_error(run_cli(*BUILD, "--out", str(out)), "'graph'")
    assert _tree(out) == before
    (out / "graph" / "my-notes.md").unlink()
    predictions = out / "predictions"
    predictions.mkdir()
    (predictions / ".scaledet-output.json").write_text('{"kind": "predictions", "files": {}}')
    (predictions / "detections.json").write_text("[]")
    _one_line_error(run_cli(*BUILD, "--out", str(out)), "'predictions'")
    assert (predictions / "detections.json").read_text() == "[]"


def test_an_output_never_replaces_its_input(builtin_union, tmp_path):
    out = builtin_union.out_dir
    before = _tree(out)
    for command in (["export", "--format", "yolo-world", "--datasets", "coco", "--name", "manifest"],
                    ["graph"], ["merge"], ["report"]):
        _one_line_error(run_cli("scaledet-labels", *command, "--labelspace", str(out), "--out", str(out), "--force"),
                        "is the input")
    assert _tree(out) == before


def test_force_never_replaces_the_home_directory(tmp_path):
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / "thesis.tex").write_text("mine")
    for target in (home, tmp_path):
        done = run_cli(*BUILD, "--out", str(target), "--force", env={"HOME": str(home)}, cwd=Path("/"))
        _one_line_error(done, "home directory")
    assert (home / "thesis.tex").read_text() == "mine"


def test_predict_never_replaces_an_input_image(shapes_world, tmp_path):
    import shutil

    from scaledet.detector.predict import write_predictions
    from scaledet.labelspace.io.errors import OutputError

    folder = tmp_path / "images"
    folder.mkdir()
    source = next((shapes_world / "shapesa" / "val" / "images").iterdir())
    first, second = folder / "x.png", folder / "x.detections.png"  # x.png's drawing would be x.detections.png
    shutil.copy(source, first)
    shutil.copy(source, second)
    before = second.read_bytes()
    with pytest.raises(OutputError, match="would replace the input file"):
        write_predictions([{"image": str(first), "detections": []}, {"image": str(second), "detections": []}], folder)
    assert second.read_bytes() == before


def test_a_killed_similarity_cache_copy_is_swept_by_the_next_build(tmp_path, minilm, private_cache):
    """A kill while the similarity file is copied into the cache leaves a temporary as large as the file;
    the next build that writes the cache removes it (and never a look-alike of the user's)."""
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies

    directory = private_cache / "similarity"
    directory.mkdir(parents=True, exist_ok=True)
    stale = _stale(directory, "tmp", "0" * 64, ".parquet")
    stale.write_bytes(b"\0" * 4096)
    lookalike = directory / f".{'0' * 64}.tmp{_dead_pid()}-0123abcd-{'f' * 20}.parquet"
    lookalike.write_bytes(b"mine")
    (tmp_path / "names.txt").write_text("fresh label one\nfresh label two\n")
    build_labelspace(load_taxonomies([], [DatasetFile("mine", tmp_path / "names.txt")]), minilm, tmp_path / "out")
    assert not stale.exists() and lookalike.read_bytes() == b"mine"


def test_a_full_disk_during_a_library_write_names_the_file(tmp_path):
    """torch and pyarrow report a failed write as a RuntimeError of their own: one line naming the file."""
    from scaledet.labelspace.io.atomic import atomic_write
    from scaledet.labelspace.io.errors import OutputError

    def torch_like_failure(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(OutputError, match=r"x\.pt: cannot be written \(.*PytorchStreamWriter failed writing"):
        atomic_write(tmp_path / "x.pt", torch_like_failure)
    assert list(tmp_path.iterdir()) == []


def _whole_or_previous(folder: Path) -> dict[str, str]:
    """The files of an output folder after a kill: every file its marker lists is there with the recorded
    sha256, and nothing else is there but the marker and scaledet's own signed temporaries."""
    from scaledet.labelspace.io.digests import sha256_of_file
    from scaledet.labelspace.io.output_dirs import _read_marker, _temporary_owner

    recorded = _read_marker(folder).get("files") or {}
    for name, digest in recorded.items():
        assert (folder / name).is_file() and sha256_of_file(folder / name) == digest, f"{folder / name} is not whole"
    for entry in folder.iterdir():
        assert entry.name in recorded or entry.name == ".scaledet-output.json" or _temporary_owner(entry.name), entry
    return recorded


def _kill_after(command: list[str], seconds: float) -> int:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


@pytest.mark.parametrize("command", ["build", "merge", "export", "train"])
def test_kills_at_several_points_leave_whole_outputs(command, shapes_world, tmp_path):
    """kill -9 at seeded points of a command's run over an earlier output: each output folder then holds the
    earlier output whole or the new one whole, never files of two runs; the next run completes."""
    import random

    bin_dir = Path(sys.executable).parent
    build = tmp_path / "labelspace"
    names = tmp_path / "names.txt"
    names.write_text("forklift\npallet\nhand truck\n")
    assert run_cli(*BUILD, "--out", str(build)).returncode == 0
    if command == "build":
        argv, folder = [str(bin_dir / "scaledet-labels"), *BUILD[1:], "--dataset-file", f"mine={names}", "--out",
                        str(build)], build
    elif command == "merge":
        argv, folder = [str(bin_dir / "scaledet-labels"), "merge", "--labelspace", str(build), "--no-wordnet"], build / "merge"
    elif command == "export":
        argv, folder = [str(bin_dir / "scaledet-labels"), "export", "--labelspace", str(build), "--format", "torch",
                        "--name", "vocab"], build / "exports"
    else:
        config = write_train_config(shapes_world, tmp_path / "run",
                                    schedule={"iterations": 2, "batch_size": 2, "lr": 0.01, "checkpoint_every": 1})
        argv, folder = [str(bin_dir / "scaledet"), "train", "--config", str(config), "-q"], tmp_path / "run"
    started = time.time()
    assert subprocess.run(argv, capture_output=True).returncode == 0
    duration = time.time() - started
    if command == "train":
        argv += ["--resume", "schedule.iterations=4"]
    rng = random.Random(f"kill-{command}")
    for fraction in sorted(rng.uniform(0.3, 1.0) for _ in range(3)):
        _kill_after(argv, duration * fraction)
        if command == "build":
            from scaledet.labelspace.outputs import LabelSpaceOutput

            LabelSpaceOutput.load(folder)  # the earlier build or the new one, whole
        elif command == "train":
            from scaledet.detector.checkpoint import load_checkpoint

            load_checkpoint(folder / (folder / "last_checkpoint").read_text().strip())  # whole, as recorded
        else:
            _whole_or_previous(folder)
    if command == "train":
        argv[-1] = "schedule.iterations=6"
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if command in ("merge", "export"):
        assert {n.split(".")[0] for n in _whole_or_previous(folder)} >= {"merged" if command == "merge" else "vocab"}


def test_resume_after_a_kill_during_the_first_checkpoint_starts_over(shapes_world, tmp_path):
    """A run killed while writing its first checkpoint has a run folder but no complete checkpoint: --resume
    starts the schedule from its beginning (detectron2's resume_or_load does the same), with a note."""
    config = write_train_config(shapes_world, tmp_path / "run", schedule={"iterations": 2, "checkpoint_every": 1})
    assert run_cli("scaledet", "train", "--config", str(config), "-q").returncode == 0
    run = tmp_path / "run"
    for checkpoint in run.glob("model_*.pth"):
        checkpoint.unlink()
    (run / "last_checkpoint").unlink()
    _stale(run, "tmp", "model_0000000", ".pth").write_bytes(b"half a checkpoint")
    done = run_cli("scaledet", "train", "--config", str(config), "-q", "--resume")
    assert done.returncode == 0, done.stderr
    assert "has no complete checkpoint yet" in done.stderr and "starting from iteration 0" in done.stderr
    rows = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "total_loss" in r][0] == 0 and (run / "model_final.pth").is_file()


def test_an_export_forced_into_a_folder_of_yours_moves_none_of_your_files(builtin_union, tmp_path):
    """Whole-or-nothing exports swap a folder of their own; a folder that also holds your files (--force) is
    written into file by file, and your files stay where they are."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(b"\x00mine")
    done = run_cli("scaledet-labels", "export", "--labelspace", str(builtin_union.out_dir), "--format", "parquet",
                   "--datasets", "coco", "--out", str(folder), "--force")
    assert done.returncode == 0, done.stderr
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "sub" / "data.bin").read_bytes() == b"\x00mine"
    assert (folder / "coco.parquet").is_file()


def test_one_writer_per_output_folder_and_out_rules_for_every_command(lvis_coco_oid_build, tmp_path):
    """A folder that one command is writing is refused to a second, in one line naming the holder; the
    lock goes with its process. Every command refuses the home folder and folders above the current one,
    --force or not; ``--out .`` works for export and merge, written in place; an output never holds its own
    inputs (a build over its --dataset-file, convert-oid over its --classes)."""
    out = tmp_path / "exports"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from scaledet.labelspace.io import output_dirs; "
        "output_dirs.HOLD_LOCKS = True; output_dirs.check_output_dir(Path(sys.argv[1]), 'labelspace export', '--out'); "
        "print('held', flush=True); time.sleep(60)"), str(out)], stdout=subprocess.PIPE, text=True,
        env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_cli("scaledet-labels", "export", "--labelspace", str(lvis_coco_oid_build), "--format", "csv",
                       "--datasets", "coco", "--out", str(out))
        _one_line_error(done, f"is being written by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    done = run_cli("scaledet-labels", "export", "--labelspace", str(lvis_coco_oid_build), "--format", "csv",
                   "--datasets", "coco", "--out", str(out))
    assert done.returncode == 0, done.stderr
    home, work = tmp_path / "home", tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (home / "thesis.tex").write_text("mine")
    for command in (("graph",), ("report",), ("merge", "--no-wordnet"), ("export", "--format", "csv")):
        for target in (home, tmp_path, Path("/")):
            done = run_cli("scaledet-labels", *command, "--labelspace", str(lvis_coco_oid_build), "--out",
                           str(target), "--force", env={**os.environ, "HOME": str(home)}, cwd=work)
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (command, target, done.stderr)
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex", "work"]
    for command in (("merge", "--no-wordnet"), ("export", "--format", "csv", "--datasets", "coco")):
        here = tmp_path / f"here-{command[0]}"
        here.mkdir()
        done = run_cli("scaledet-labels", *command, "--labelspace", str(lvis_coco_oid_build), "--out", ".", cwd=here)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert (here / ".scaledet-output.json").is_file()
    data = tmp_path / "data"
    data.mkdir()
    (data / "ann.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"g={data / 'ann.json'}", "--out", str(data), "--force", "-q")
    _one_line_error(done, "holds the input")
    assert (data / "ann.json").is_file()
    (tmp_path / "c.csv").write_text("/m/01g317,Person\n")
    done = run_cli("scaledet", "convert-oid", "--boxes", str(tmp_path / "c.csv"), "--classes", str(tmp_path / "c.csv"),
                   "--images", str(tmp_path), "--out", str(tmp_path / "c.csv"), "--force")
    _one_line_error(done, "is the input")
    assert (tmp_path / "c.csv").read_text() == "/m/01g317,Person\n"
