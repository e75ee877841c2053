"""Detector data at real scale: the annotation index against json.load, memory under torchrun, loader speed.

    python benchmarks/data.py [--fraction 1.0] [--json-fraction 0.05] [--work DIR]

1. Generates an annotation file shaped like Objects365 v2 train (365 categories, 14.6 boxes per image;
   ``--fraction 1`` = 1.74M images / 25.4M boxes) with the built-in ``o365`` label space.
2. Measures, each as a separate process (wall time, peak RSS): today's ``json.load`` path at
   ``--json-fraction`` of the size, which must fit in this machine's memory (extrapolated linearly to full
   size); the cold index build (streamed); the warm open (memory-mapped).
3. Runs ``torchrun --nproc_per_node 2`` (gloo), each rank with 2 DataLoader workers holding the dataset, and
   sums the proportional set size (PSS: shared pages counted once) and the RSS of all six processes.
4. Times ``os.path.isfile`` per image file on this disk, the check the index build makes once.
5. On generated 800 px JPEGs: PIL against torchvision's ``decode_jpeg``. Then a training run with 0, 1 and 2
   workers (MobileNetV3-FPN, 800 px, batch 2), reporting the share of each step spent waiting for data.
Prints a table (docs/data.md holds a measured one).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import table

REPO = Path(__file__).resolve().parents[1]
FULL_IMAGES = 1_742_292
BOXES_PER_IMAGE = 25_423_713 / FULL_IMAGES


def write_o365_like(path: Path, images: int, seed: int = 0) -> int:
    """Stream a COCO-format file of ``images`` images with ~14.6 boxes each over the 365 o365 ids."""
    rng = random.Random(seed)
    boxes = 0
    with open(path, "w") as out:
        out.write('{"categories": ')
        from scaledet.labelspace.builtin import load_builtin

        (taxonomy,) = load_builtin("o365")
        out.write(json.dumps([{"id": int(c.local_id), "name": c.name} for c in taxonomy.categories]))
        out.write(', "images": [')
        for i in range(1, images + 1):
            out.write(("," if i > 1 else "") + f'{{"id": {i}, "file_name": "images/v2/patch{i % 51}/objects365_v2_{i:08d}.jpg", '
                      f'"width": 1024, "height": 768}}')
        out.write('], "annotations": [')
        ids = [int(c.local_id) for c in taxonomy.categories]
        for i in range(1, images + 1):
            for _ in range(int(BOXES_PER_IMAGE) + (rng.random() < BOXES_PER_IMAGE % 1)):
                boxes += 1
                x, y = rng.uniform(0, 900), rng.uniform(0, 650)
                w, h = rng.uniform(4, 1024 - x), rng.uniform(4, 768 - y)
                out.write(("," if boxes > 1 else "") + f'{{"id": {boxes}, "image_id": {i}, "category_id": '
                          f'{rng.choice(ids)}, "bbox": [{x:.2f}, {y:.2f}, {w:.2f}, {h:.2f}], "area": {w * h:.1f}, '
                          '"iscrowd": 0}')
        out.write("]}")
    return boxes


def measured(code: str, env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of ``python -c code`` as its own process."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) / 1024, done.stdout


JSON_PATH = """
import json, numpy as np, sys
coco = json.load(open(sys.argv[1] if len(sys.argv) > 1 else {path!r}))
per_image = {{}}
for a in coco["annotations"]:
    per_image.setdefault(a["image_id"], []).append(a)
records = []
for image in coco["images"]:
    anns = per_image.get(image["id"], [])
    boxes = np.asarray([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                        for a in anns], np.float32).reshape(-1, 4)
    records.append((image["id"], image["file_name"], boxes, np.asarray([a["category_id"] for a in anns])))
print(len(records))
"""

OPEN_INDEX = """
from scaledet.detector.data import CocoDetectionDataset, DatasetSpec
from scaledet.detector.vocabulary import UnifiedLabelSpace
space = UnifiedLabelSpace({labelspace!r})
dataset = CocoDetectionDataset(DatasetSpec("o365", {annotations!r}, "/nonexistent", check_images=False), space)
print(len(dataset), dataset.index.meta["boxes"])
"""

RANK_PROBE = """
import os, sys, time, torch, numpy as np, torch.distributed as dist
from scaledet.detector.data import CocoDetectionDataset, DatasetSpec
from scaledet.detector.vocabulary import UnifiedLabelSpace
dist.init_process_group("gloo")
space = UnifiedLabelSpace(sys.argv[1])
dataset = CocoDetectionDataset(DatasetSpec("o365", sys.argv[2], "/nonexistent", check_images=False), space)

class Boxes(torch.utils.data.Dataset):  # what a worker touches of the index (images do not exist here)
    def __len__(self): return len(dataset)
    def __getitem__(self, i):
        s = dataset._box_slice(int(dataset.images[i]))
        return torch.from_numpy(np.array(dataset.index.boxes[s])), torch.from_numpy(np.array(dataset.index.labels[s]))

sampler = torch.utils.data.RandomSampler(Boxes(), replacement=True, num_samples=200 * 64)
loader = torch.utils.data.DataLoader(Boxes(), batch_size=64, sampler=sampler, num_workers=2, persistent_workers=True,
                                     collate_fn=lambda b: b)
it = iter(loader)
for _ in range(200):
    next(it)
pids = [os.getpid()] + [w.pid for w in it._workers]
gathered = [None] * dist.get_world_size()
dist.all_gather_object(gathered, pids)
if dist.get_rank() == 0:
    pss = rss = 0
    for pid in sum(gathered, []):
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"): pss += int(line.split()[1])
            if line.startswith("Rss:"): rss += int(line.split()[1])
    print(f"{len(sum(gathered, []))} {pss / 1024:.0f} {rss / 1024:.0f}")
dist.barrier()
"""


def file_check_seconds(work: Path, count: int = 20000) -> float:
    folder = work / "files"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        (folder / f"{i:08d}.jpg").touch()
    start = time.perf_counter()
    assert all(os.path.isfile(folder / f"{i:08d}.jpg") for i in range(count))
    return (time.perf_counter() - start) / count


def decode_speed(images: list[Path]) -> tuple[float, float]:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    start = time.perf_counter()
    for path in images:
        with Image.open(path) as image:
            np.array(image.convert("RGB"))
    pil = len(images) / (time.perf_counter() - start)
    start = time.perf_counter()
    for path in images:
        decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)
    return pil, len(images) / (time.perf_counter() - start)


def loader_throughput(work: Path, batches: int = 24) -> list[tuple[int, float]]:
    """(workers, images/s) of the training DataLoader alone (decode, flip, collate) on the 800 px JPEGs."""
    from scaledet.detector.config import load_config
    from scaledet.detector.data.loader import build_train_loader
    from scaledet.detector.engine import Trainer

    rows = []
    for workers in (0, 1, 2):
        config = load_config(work / "loader-0.yaml", [f"output_dir={work / 'loader-throughput'}"])
        trainer = Trainer(config, show_progress=False, force=True)
        loader = build_train_loader(trainer.datasets, trainer.sampler, 0, batches + 2, workers, pin_memory=False)
        iterator = iter(loader)
        next(iterator), next(iterator)  # workers started and warm
        start = time.perf_counter()
        images = sum(len(next(iterator)) for _ in range(batches))
        rows.append((workers, images / (time.perf_counter() - start)))
    return rows


def loader_runs(work: Path, iterations: int) -> list[tuple[int, float, float]]:
    """(workers, median step seconds, share of the step waiting for data) of short training runs."""
    import statistics

    import yaml

    from scaledet.detector.synthetic import upstream_datasets, write_coco_dataset
    from scaledet.labelspace import DatasetFile, build_labelspace, load_taxonomies
    from scaledet.labelspace.encoders import build_encoder

    (spec,) = [s for s in upstream_datasets() if s.name == "geo"]
    root = work / "jpeg800"
    if not (root / "annotations.json").is_file():
        write_coco_dataset(spec, root, 48, 800, seed=0, image_format="jpg")
        build_labelspace(load_taxonomies([], [DatasetFile("geo", root / "annotations.json")]), build_encoder("minilm"),
                         work / "jpeg800-labelspace")
    rows = []
    for workers in (0, 1, 2):
        out = work / f"loader-{workers}"
        config = {"labelspace": str(work / "jpeg800-labelspace"), "output_dir": str(out), "num_workers": workers,
                  "datasets": [{"name": "geo", "annotations": str(root / "annotations.json"), "images": str(root / "images")}],
                  "model": {"backbone": "mobilenet_v3"},
                  "input": {"min_size_train": [800], "max_size_train": 1333},
                  "schedule": {"iterations": iterations, "batch_size": 2, "lr": 0.005, "warmup_iterations": 1,
                               "checkpoint_every": 10**6, "log_every": 1}}
        path = work / f"loader-{workers}.yaml"
        path.write_text(yaml.safe_dump(config))
        subprocess.run([str(Path(sys.executable).with_name("scaledet")), "train", "--config", str(path), "-q",
                        "--force"], check=True, capture_output=True)
        lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()][1:]  # skip warm-up
        step = statistics.median(line["time"] for line in lines if "time" in line)
        wait = statistics.median(line["data_time"] for line in lines if "data_time" in line)
        rows.append((workers, step, wait / step))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="of Objects365 v2 train's 1.74M images")
    parser.add_argument("--json-fraction", type=float, default=0.05, help="size for the json.load path (memory)")
    parser.add_argument("--iterations", type=int, default=8, help="training iterations per loader run")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-data-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"SCALEDET_CACHE": str(work / "cache")}
    images = round(FULL_IMAGES * args.fraction)
    small = round(FULL_IMAGES * min(args.json_fraction, args.fraction))
    annotations, json_file = work / "o365_like.json", work / "o365_like_small.json"
    start = time.perf_counter()
    boxes = write_o365_like(annotations, images)
    generated = time.perf_counter() - start
    if small != images:
        write_o365_like(json_file, small)
    else:
        json_file = annotations
    print(f"generated {images:,} images / {boxes:,} boxes ({annotations.stat().st_size / 2**20:,.0f} MiB) in "
          f"{generated:.0f} s", file=sys.stderr)
    subprocess.run([str(Path(sys.executable).with_name("scaledet-labels")), "build", "--datasets", "o365", "-q",
                    "--out", str(work / "labelspace"), "--force"], check=True, env={**os.environ, **env},
                   capture_output=True)
    json_wall, json_rss, _ = measured(JSON_PATH.format(path=str(json_file)))
    cold_wall, cold_rss, _ = measured(OPEN_INDEX.format(labelspace=str(work / "labelspace"), annotations=str(annotations)), env)
    warm_wall, warm_rss, _ = measured(OPEN_INDEX.format(labelspace=str(work / "labelspace"), annotations=str(annotations)), env)
    base_code = OPEN_INDEX.split("dataset = ")[0].format(labelspace=str(work / "labelspace"))
    base_wall, base_rss, _ = measured(base_code, env)
    probe = work / "rank_probe.py"
    probe.write_text(RANK_PROBE)
    done = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", str(probe),
                           str(work / "labelspace"), str(annotations)], capture_output=True, text=True,
                          env={**os.environ, **env, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    processes, pss, rss = done.stdout.split()
    per_file = file_check_seconds(work)
    loader = loader_runs(work, args.iterations)
    throughput = loader_throughput(work)
    jpegs = sorted((work / "jpeg800" / "images").glob("*.jpg"))
    pil, turbo = decode_speed(jpegs)

    full = FULL_IMAGES / images
    rows = [
        ("json.load path (today)", f"{small:,} img", f"{json_wall:.1f} s", f"{json_rss:,.0f} MiB",
         f"full size ≈ {json_wall * FULL_IMAGES / small / 60:.0f} min, {json_rss * FULL_IMAGES / small / 1024:.0f} GiB per process"),
        ("index build, cold (streamed)", f"{images:,} img", f"{cold_wall:.1f} s", f"{cold_rss:,.0f} MiB",
         f"full size ≈ {cold_wall * full / 60:.1f} min (goal: peak ≤ 2 GiB)"),
        ("baseline: import torch, load labelspace", "", f"{base_wall:.2f} s", f"{base_rss:,.0f} MiB",
         "what any rank costs before it opens a dataset"),
        ("index open, warm (mmap)", f"{images:,} img", f"{warm_wall:.2f} s", f"{warm_rss:,.0f} MiB",
         f"+{warm_wall - base_wall:.2f} s, +{warm_rss - base_rss:,.0f} MiB over the baseline "
         "(goal ≤ 5 s, ≤ 500 MiB per rank at full size)"),
        ("torchrun 2 ranks × 2 workers", f"{processes} processes", "", f"PSS {int(pss):,} MiB",
         f"RSS summed {int(rss):,} MiB (shared pages counted in each)"),
        ("image existence check", "per file", f"{per_file * 1e6:.1f} µs", "",
         f"≈ {per_file * FULL_IMAGES:.0f} s for 1.74M files on this disk, once per index build"),
        ("decode 800 px JPEG, PIL", f"{len(jpegs)} img", f"{pil:.0f} img/s", "", ""),
        ("decode 800 px JPEG, decode_jpeg", f"{len(jpegs)} img", f"{turbo:.0f} img/s", "", f"{turbo / pil:.2f}× PIL"),
        *((f"loader alone, {w} worker(s)", "800 px JPEG", f"{rate:.1f} img/s", "", "decode + flip + collate")
          for w, rate in throughput),
        *((f"train step, {w} worker(s)", "batch 2, 800 px", f"{step:.2f} s", "",
           f"waiting for data {share * 100:.1f} % of a step (goal ≤ 5 % with workers)") for w, step, share in loader),
    ]
    print(f"data benchmark: Objects365-shaped annotations at {args.fraction:g} of full size "
          f"({images:,} images, {boxes:,} boxes), {os.cpu_count()} CPUs")
    print(table(rows, ("what", "size", "time / rate", "memory", "note")))


if __name__ == "__main__":
    main()
