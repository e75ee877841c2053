"""The ``build`` pipeline: taxonomies → union → prompt embeddings (cached) → similarity → output dir."""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from . import builtin
from .cache import EmbeddingCache
from .embed import EmbedStats, ProgressFactory, embed_prompt_names
from .encoders import TextEncoder
from .io.errors import ScaledetError, TaxonomyError
from .io.atomic import atomic_write_json
from .outputs import (EMBEDDINGS_FILE, FORMAT, LABELS_FILE, MANIFEST_FILE, SIMILARITY_FILE, with_manifest_digest,
                      atomic_directory, labels_table)
from .prompts import resolve_templates
from .readers import read_taxonomy_file
from .similarity import embeddings_digest, resolve_similarity_kind, write_similarity_cached
from .taxonomy import Taxonomy, validate_dataset_key
from .union import Label, build_union


@dataclass(frozen=True)
class DatasetFile:
    """A user's dataset joined by path: ``NAME=PATH`` (and optionally an OpenImages hierarchy)."""

    key: str
    path: Path
    hierarchy: Path | None = None


def parse_assignment(text: str, flag: str) -> tuple[str, Path]:
    """``NAME=PATH`` → (NAME, PATH), with an error naming the flag otherwise."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ScaledetError(f"{flag} {text!r}: expected NAME=PATH")
    validate_dataset_key(name, flag)
    return name, Path(path)


def load_taxonomies(datasets: list[str], files: list[DatasetFile]) -> list[Taxonomy]:
    """Built-in keys first in the order given, then the user's files in the order given."""
    taxonomies: list[Taxonomy] = []
    for key in datasets:
        taxonomies.extend(builtin.load_builtin(key))
    for spec in files:
        taxonomies.append(read_taxonomy_file(spec.key, spec.path, spec.hierarchy))
    if not taxonomies:
        raise TaxonomyError("no datasets given: name built-in keys with --datasets or files with --dataset-file")
    return taxonomies


@dataclass
class BuildResult:
    out_dir: Path
    labels: list[Label]
    taxonomies: list[Taxonomy]
    embed_stats: EmbedStats
    similarity_kind: str
    similarity_rows: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: The process's peak resident memory (MiB) at the end of each phase, in phase order (``union`` also
    #: holds what came before it: the interpreter, imports, reading the taxonomies).
    peak_mib: dict[str, float] = field(default_factory=dict)

    def peak_phase(self) -> str | None:
        """The phase that raised the peak the most: where the memory goes."""
        if not self.peak_mib:
            return None
        steps, previous = {}, 0.0
        for phase, peak in self.peak_mib.items():
            steps[phase], previous = peak - previous, peak
        return max(steps, key=steps.get)


def peak_rss_mib() -> float:
    """This process's peak resident set so far (Linux ``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("scaledet", "pyarrow", "sentence-transformers", "open_clip_torch", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def build_labelspace(taxonomies: list[Taxonomy], encoder: TextEncoder, out_dir: str | Path,
                     templates: list[str] | str | None = None, use_cache: bool = True,
                     similarity: str = "auto", top_k: int | None = None, batch_size: int | None = None,
                     progress: ProgressFactory | None = None,
                     similarity_progress: Callable[[int], Callable[[int], None]] | None = None) -> BuildResult:
    """Build the union of ``taxonomies`` and write it to ``out_dir`` atomically."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    template_list = resolve_templates(templates)
    labels = build_union(taxonomies)
    kind, k = resolve_similarity_kind(similarity, len(labels), top_k)
    timings["union"] = time.perf_counter() - start
    peaks = {"union": peak_rss_mib()}

    start = time.perf_counter()
    cache = EmbeddingCache(encoder.identity, encoder.dim) if use_cache else None
    embeddings, stats = embed_prompt_names([label.prompt_name for label in labels], template_list, encoder,
                                           cache=cache, batch_size=batch_size, progress=progress)
    del cache  # its index and vectors are the size of the embeddings again: not needed from here on
    timings["embed"] = time.perf_counter() - start
    peaks["embed"] = peak_rss_mib()

    start = time.perf_counter()
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging:
        pq.write_table(labels_table(labels, template_list), staging / LABELS_FILE, compression="zstd")
        np.save(staging / EMBEDDINGS_FILE, embeddings)
        timings["write"] = time.perf_counter() - start
        start = time.perf_counter()
        tick = similarity_progress(len(labels)) if similarity_progress else None
        rows = write_similarity_cached(staging / SIMILARITY_FILE, embeddings, kind, k, progress=tick)
        timings["similarity"] = time.perf_counter() - start
        peaks["similarity"] = peak_rss_mib()
        start = time.perf_counter()
        from .io.digests import sha256_of_file

        files = {name: sha256_of_file(staging / name) for name in (LABELS_FILE, SIMILARITY_FILE)}
        atomic_write_json(staging / MANIFEST_FILE, with_manifest_digest({
            "format": FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n_labels": len(labels),
            "datasets": [
                {"key": t.key, "source": t.source, "sha256": t.sha256, "format": t.format, "count": len(t),
                 **{k: t.extra[k] for k in ("hierarchy", "dropped_categories", "slash") if k in t.extra}}
                for t in taxonomies
            ],
            "encoder": {"name": encoder.name, "identity": encoder.identity, "dim": int(embeddings.shape[1]),
                        **({"arch": encoder.arch} if getattr(encoder, "arch", None) else {})},
            "templates": list(template_list),
            "embeddings": {"file": EMBEDDINGS_FILE, "dtype": "float32", "l2_normalized": True,
                           "shape": list(embeddings.shape), "sha256": embeddings_digest(embeddings)},
            "similarity": {"file": SIMILARITY_FILE, "kind": kind, "k": k, "rows": rows},
            "files": files,  # sha256 of the other files, checked on load (embeddings: "embeddings.sha256")
            "versions": _versions(),
        }))
    timings["write"] += time.perf_counter() - start
    peaks["write"] = peak_rss_mib()
    return BuildResult(out_dir, labels, taxonomies, stats, kind, rows, timings, peaks)
