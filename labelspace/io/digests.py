"""sha256 of files: whole (read in chunks, so a 1 GB annotation file never fills memory), or sampled (the
size and three 1 MiB windows: milliseconds for any size, to notice a file that changed since it was
recorded)."""
from __future__ import annotations

import hashlib
from pathlib import Path

SAMPLE_BYTES = 1 << 20

def sha256_of_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large annotation files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sampled_sha256(path: Path) -> str:
    """sha256 of the file's size and three 1 MiB windows (start, middle, end): milliseconds for any size."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for start in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
            handle.seek(start)
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()

