"""Shared fixtures: a private embedding cache, the shared taxonomy files, one real built union."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TAXONOMIES = REPO.parent / "shared" / "taxonomies"


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


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console script as a user would, in a subprocess."""
    command, *rest = args
    script = Path(sys.executable).with_name(command)
    return subprocess.run([str(script), *rest], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=900)
