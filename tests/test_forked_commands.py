"""The suite's commands are forked from a server that has imported the libraries (tests/forked_commands.py):
a forked command must answer exactly as a fresh interpreter does, or the rest of the suite tests something
no user runs."""
from __future__ import annotations

import numpy as np

from conftest import command_environment, command_server, run_cli


def _both(*args: str, **kwargs):
    forked = run_cli(*args, **kwargs)
    fresh = run_cli(*args, fresh=True, **kwargs)
    return forked, fresh


def test_a_forked_command_answers_as_a_fresh_interpreter(tmp_path):
    """Output, one-line errors, exit status and working directory: the same, byte for byte."""
    server = command_server()
    assert server is not None and server.can_run("scaledet", command_environment()), "commands are not forked"
    (tmp_path / "bad.yaml").write_text("datasets: []\n")
    commands = [("scaledet-labels", "--version"),
                ("scaledet", "predict", "missing.png", "--checkpoint", "missing.pth", "--vocab", "a"),
                ("scaledet", "train", "--config", "bad.yaml"),
                ("scaledet-labels", "list"),  # the default build, runs/labelspace, relative to the working folder
                ("scaledet-labels", "build", "--dataset-file", "mine=missing.json", "--out", "out"),
                ("scaledet", "no-such-command")]
    for command in commands:
        forked, fresh = _both(*command, cwd=tmp_path)
        assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
        assert forked.returncode == (0 if command[1] == "--version" else 2), (command, forked.stderr)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_an_uncaught_exception_ends_a_forked_command_as_it_ends_an_interpreter(tmp_path):
    """``SCALEDET_DEBUG=1`` re-raises a user's error: a traceback and status 1 in both (the frames above the
    command's ``main`` differ: the console script's in one, the server's in the other)."""
    forked, fresh = _both("scaledet", "predict", "missing.png", "--checkpoint", "m.pth", "--vocab", "a",
                          env={"SCALEDET_DEBUG": "1"}, cwd=tmp_path)
    assert forked.returncode == fresh.returncode == 1
    assert forked.stderr.startswith("Traceback (most recent call last):")
    assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1]
    assert "image not found" in forked.stderr.splitlines()[-1]


def test_a_forked_build_loads_the_encoder_and_writes_what_a_fresh_one_writes(tmp_path):
    """A cold build in a cache named per command (``SCALEDET_CACHE``): the forked child reads its own
    variable, loads MiniLM through the server's already-imported sentence-transformers, and writes the same
    vectors, labels and messages as a fresh interpreter."""
    outputs = {}
    for mode in ("forked", "fresh"):
        done = run_cli("scaledet-labels", "build", "--datasets", "odinw/pothole", "-q", "--out",
                       str(tmp_path / mode), env={"SCALEDET_CACHE": str(tmp_path / f"cache-{mode}")},
                       fresh=mode == "fresh")
        assert done.returncode == 0, done.stderr
        assert list((tmp_path / f"cache-{mode}").rglob("*.npz")), "the command did not use the cache it was given"
        outputs[mode] = done
    assert outputs["forked"].stderr == outputs["fresh"].stderr
    vectors = [np.load(tmp_path / mode / "embeddings.npy") for mode in ("forked", "fresh")]
    assert np.array_equal(*vectors)
    assert (tmp_path / "forked" / "labels.parquet").read_bytes() == (tmp_path / "fresh" / "labels.parquet").read_bytes()
