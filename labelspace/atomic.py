"""Writing files so that readers only ever see the old version or the complete new one.

Every output of scaledet (builds, exports, graphs, reports, checkpoints, predictions) goes through here:
the content is written to a temporary name in the same directory and renamed over the target, and a
failed write removes its temporary file and leaves the previous target untouched.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``; the suffix is kept for writers that look at it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, document) -> Path:
    return atomic_write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
