"""sha256 of weights files, remembered by (path, size, mtime).

Encoder identities include the weights hash so that a changed checkpoint never reuses stale cached
embeddings; hashing 90 MB on every command would cost a large part of a warm rebuild, hence the memo. The
memo is only a shortcut: an entry must be well-formed, signed by scaledet (an HMAC under the cache's key,
so a hand-edited or planted digest is not believed), and its sampled hash (the size and three 1 MiB windows)
must match the file now; else the file is hashed again. A damaged memo (``[]``, a wrong type, a digest that
is not hex) never fails a build.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .atomic import atomic_write_text
from .cache_dir import cache_root
from .errors import OutputError
from .digests import sampled_sha256, sha256_of_file

_HEX64 = re.compile(r"^[0-9a-f]{64}$")



def sha256_cached(path: str | Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    memo_file = cache_root() / "weights-sha256.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError, RecursionError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    from .temporaries import signature

    entry = memo.get(key)
    sample = sampled_sha256(path)
    if (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and _HEX64.match(entry["sha256"])
            and entry.get("sample") == sample
            and entry.get("signature") == signature(f"{key}|{entry['sha256']}|{sample}")):
        return entry["sha256"]
    digest = sha256_of_file(path)
    memo[key] = {"sha256": digest, "sample": sample, "signature": signature(f"{key}|{digest}|{sample}")}
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo_file, json.dumps(memo, indent=0))
    except (OSError, OutputError):  # (atomic_write reports a full disk as an OutputError)
        pass  # a read-only or full cache only costs the hash again next time
    return digest
