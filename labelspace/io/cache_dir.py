"""Where scaledet keeps its caches: ``$SCALEDET_CACHE``, else ``$XDG_CACHE_HOME/scaledet``, else
``~/.cache/scaledet``."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("SCALEDET_CACHE"):
        return Path(os.environ["SCALEDET_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "scaledet"
    return Path.home() / ".cache" / "scaledet"
