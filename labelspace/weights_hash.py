"""sha256 of weights files, remembered by (path, size, mtime).

Encoder identities include the weights hash so that a changed checkpoint never reuses stale cached
embeddings; hashing 90 MB on every command would cost a large part of a warm rebuild, hence the memo.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_text
from .cache_dir import cache_root
from .readers import sha256_of_file


def sha256_cached(path: str | Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    memo_file = cache_root() / "weights-sha256.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = sha256_of_file(path)
    memo[key] = digest
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo_file, json.dumps(memo, indent=0))
    except OSError:
        pass  # a read-only cache only costs the hash again next time
    return digest
