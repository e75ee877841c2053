"""Labelspace build speed and memory: one command, one table.

    python benchmarks/labelspace.py [--datasets lvis coco o365 oid]

Rows: raw encoder throughput (texts/s, model already loaded), cold build throughput in-process (same
encoder object, empty cache; goal ≥ 90 % of raw), warm rebuild in-process (goal ≥ 50× faster than cold),
and the whole ``scaledet-labels build`` command cold and warm in a fresh process (goal: warm ≤ 2 s; a warm
build loads no model) with its peak resident memory.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import table


def timed_command(args: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(args, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["lvis", "coco", "o365", "oid"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scaledet-bench-"))
    os.environ["SCALEDET_CACHE"] = str(work / "cache-inprocess")

    from scaledet.labelspace import build_labelspace, load_taxonomies
    from scaledet.labelspace.encoders import MiniLMEncoder
    from scaledet.labelspace.prompts import DEFAULT_TEMPLATE, render
    from scaledet.labelspace.union import build_union

    taxonomies = load_taxonomies(args.datasets, [])
    texts = list(dict.fromkeys(render(DEFAULT_TEMPLATE, l.prompt_name) for l in build_union(taxonomies)))
    encoder = MiniLMEncoder()
    encoder.encode(texts[:64])  # load the model and warm up
    _ = encoder.identity  # the weights' sha256 is memoised once per machine, like the model load
    start = time.perf_counter()
    encoder.encode(texts)
    raw = time.perf_counter() - start

    start = time.perf_counter()
    build_labelspace(taxonomies, encoder, work / "cold")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_labelspace(taxonomies, encoder, work / "warm")
    warm = time.perf_counter() - start

    script = str(Path(sys.executable).with_name("scaledet-labels"))
    env = {**os.environ, "SCALEDET_CACHE": str(work / "cache-command")}
    command = [script, "build", "--datasets", *args.datasets, "--out", str(work / "cmd"), "--quiet"]
    cmd_cold, rss_cold = timed_command(command, env)
    cmd_warm, rss_warm = timed_command(command, env)

    n = len(texts)
    rows = [
        ("raw encoder (model loaded)", f"{raw:.2f} s", f"{n / raw:.0f} texts/s", ""),
        ("cold build, in-process", f"{cold:.2f} s", f"{n / cold:.0f} texts/s",
         f"{100 * raw / cold:.0f} % of raw (goal ≥ 90 %)"),
        ("warm rebuild, in-process", f"{warm:.3f} s", f"{cold / warm:.0f}× faster than cold", "goal ≥ 50×"),
        ("scaledet-labels build, cold", f"{cmd_cold:.2f} s", f"peak RSS {rss_cold:.0f} MiB", "incl. model load"),
        ("scaledet-labels build, warm", f"{cmd_warm:.2f} s", f"peak RSS ≤ {rss_warm:.0f} MiB", "goal ≤ 2 s"),
    ]
    print(f"labelspace build benchmark: {' '.join(args.datasets)} → {n} unique prompt texts")
    print(table(rows, ("what", "time", "rate", "note")))


if __name__ == "__main__":
    main()
