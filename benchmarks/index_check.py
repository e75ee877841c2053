"""What checking the annotation index costs at every open, at Objects365 scale.

    python benchmarks/index_check.py [--images 1742292] [--boxes 25438024]

Writes index columns of Objects365 v2 train's size (1.74M images, 25.4M boxes; the shapes and dtypes of
``detector/data/index.py``) into a temporary folder, then times, cold from the page cache's point of view
as far as a second read allows, the two checks an open can make: the whole sha256 of every column (what
indexes up to 256 MiB get) and the sampled digest (size + three 1 MiB windows per column, what larger ones
get), plus the sampled sha256 of a 3.5 GB source file's stand-in. One table.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tables import table


def column_files(directory: Path, images: int, boxes: int) -> list[Path]:
    from scaledet.detector.data.index import COLUMNS

    rng = np.random.default_rng(0)
    sizes = {"boxes": (boxes, 4), "labels": (boxes,), "crowd": (boxes,), "names": (images * 24,),
             "list_labels": (0,), "list_kinds": (0,), "name_offsets": (images + 1,), "list_offsets": (images + 1,)}
    paths = []
    for name, (dtype, _) in COLUMNS.items():
        shape = sizes.get(name, (images,))
        values = rng.integers(0, 100, size=shape).astype(dtype) if shape[0] else np.zeros(shape, dtype)
        np.save(directory / f"{name}.npy", values)
        paths.append(directory / f"{name}.npy")
    return paths


def timed(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_742_292)
    parser.add_argument("--boxes", type=int, default=25_438_024)
    args = parser.parse_args()
    from scaledet.labelspace.io.digests import sha256_of_file
    from scaledet.labelspace.io.digests import sampled_sha256

    with tempfile.TemporaryDirectory(prefix="scaledet-index-check-") as folder:
        paths = column_files(Path(folder), args.images, args.boxes)
        total = sum(p.stat().st_size for p in paths)
        whole = timed(lambda: [sha256_of_file(p) for p in paths], repeats=1)
        sampled = timed(lambda: [sampled_sha256(p) for p in paths])
        source = Path(folder) / "source.json"
        with source.open("wb") as handle:  # a sparse 3.5 GB stand-in for the annotation file
            handle.truncate(3_500_000_000)
        source_sampled = timed(lambda: sampled_sha256(source))
        rows = [("every column, whole sha256", f"{total / 2**20:,.0f} MiB", f"{whole * 1000:,.0f} ms"),
                ("every column, sampled (three 1 MiB windows each)", f"{len(paths) * 3} MiB at most",
                 f"{sampled * 1000:,.1f} ms"),
                ("the 3.5 GB source file, sampled", "3 MiB", f"{source_sampled * 1000:,.1f} ms")]
    print(f"annotation index of {args.images:,} images and {args.boxes:,} boxes: {len(paths)} columns, "
          f"{total / 2**20:,.0f} MiB")
    print(table(rows, ("check at open", "read", "time")))


if __name__ == "__main__":
    main()
