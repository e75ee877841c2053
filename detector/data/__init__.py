"""Detection data, as detectron2's ``data/`` package: dataset specs and record checks (``records``), the
memory-mapped annotation index (``index``), image decoding (``images``), augmentation (``transforms``),
datasets (``dataset``) and the multi-worker loader driven by the deterministic batch sampler (``loader``).

The names below load on first use (PEP 562): the record checks and ``DatasetSpec`` need no torch, and reading
a config or scoring a results file (``scaledet eval --results``) should not import it.
"""
from __future__ import annotations

import importlib

_WHERE = {"CocoDetectionDataset": "dataset", "read_image": "images", "read_image_array": "images",
          "read_image_uint8": "images", "to_float": "images", "BOX_TOLERANCE_PX": "records",
          "DatasetSpec": "records", "check_annotation": "records", "check_category": "records",
          "check_image": "records", "image_file_name": "records", "InputConfig": "transforms"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
