"""The README's tour runs top to bottom as written, in a folder holding nothing of the repository.

Each line of the tour's code block runs in a shell, in order, in an empty working directory, with the
installed commands on PATH; a line that fails stops the test with its command and its error. One change
keeps the suite's time bounded: the demo trains 10 iterations instead of its 500 (its full run is timed in
docs/detector.md). The pictures and files a reader is promised are checked after the tour.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

DEMO_ITERATIONS_IN_TEST = "10"


def tour_commands(readme: str) -> list[str]:
    """The tour's commands: the first ```bash block after "## A short tour", continuation lines joined and
    comments removed."""
    section = readme[readme.index("## A short tour"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        code = re.sub(r"\s+#.*$", "", line).rstrip() if not line.lstrip().startswith("#") else ""
        if not code.strip():
            continue
        if code.endswith("\\"):
            current += code[:-1] + " "
            continue
        commands.append(" ".join((current + code).split()))
        current = ""
    return commands


def test_the_tour_parses_into_the_commands_a_reader_sees():
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands[0] == "scaledet demo"
    assert all(c.split()[0] in ("scaledet", "scaledet-labels") for c in commands)
    joined = [c for c in commands if c.startswith("scaledet-labels unify")]
    assert joined and "things=runs/demo/world/things/train/annotations.json --images geo=" in joined[0]
    assert "things=runs/demo/world/things/train/images --out runs/unified" in joined[0]


def test_readme_tour_runs_top_to_bottom(tmp_path):
    commands = tour_commands((REPO / "README.md").read_text(encoding="utf-8"))
    work = tmp_path / "fresh"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        if command == "scaledet demo":
            command += f" --iterations {DEMO_ITERATIONS_IN_TEST} --quiet"
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, command
    runs = work / "runs"
    for expected in ("demo/predictions/geo_00001.detections.png", "labelspace/manifest.json", "mine/manifest.json",
                     "labelspace/graph", "labelspace/merge/merged.parquet", "labelspace/report/report.html",
                     "demo/labelspace/merge/merged.parquet", "unified/unified.json", "tour/model_final.pth",
                     "predict/detections.json", "predict-odinw/detections.json", "predict-concepts/detections.json",
                     "pseudo/unified.json", "pseudo/pseudo_labels.csv"):
        assert (runs / expected).exists(), expected
    unified = json.loads((runs / "unified" / "unified.json").read_text())
    assert {Path(image["file_name"]).name.split("_")[0] for image in unified["images"]} == {"geo", "things"}
    for image in unified["images"]:  # detectron2's rule (image root + coco_url's folder) and the file_name
        folder, name = image["coco_url"].split("/")[-2:]
        assert (runs / "unified" / "images" / folder / name).is_file() and (runs / "unified" / image["file_name"]).is_file()
    metrics = [json.loads(line) for line in (runs / "tour" / "metrics.json").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 19
