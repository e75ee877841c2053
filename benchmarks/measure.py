"""A command measured as a user meets it: its own process under ``/usr/bin/time`` (wall time, peak RSS).

Benchmarks run as scripts, so ``from measure import measured`` finds this file (as ``tables.py``).
"""
from __future__ import annotations

import subprocess


def measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``command``; a failing command ends the benchmark with its stderr."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) / 1024
