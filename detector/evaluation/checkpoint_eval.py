"""Evaluating one checkpoint on a config's ``eval_datasets`` and keeping what can be re-checked.

Each evaluated checkpoint gets its own folder, ``OUTPUT_DIR/eval/<checkpoint name>/``, holding per dataset
the raw detections in the COCO results format (``<dataset>.results.json``: ``image_id``, ``category_id``
in the dataset's own ids, ``bbox`` as xywh, ``score``), which any official tool can score again, and one
``metrics.json`` that records the checkpoint, its iteration, the labelspace fingerprint and the evaluator
of each dataset. An existing folder is never overwritten silently.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from scaledet.labelspace.io.atomic import atomic_write_json, atomic_write_text
from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.io.output_dirs import check_output_dir, mark_output_dir

from . import suite_summaries
from .inference import evaluate_dataset, evaluator_of

EVAL_KIND = "evaluation"


def evaluation_dir(output_dir: str | Path, checkpoint: Path) -> Path:
    return Path(output_dir) / "eval" / checkpoint.stem


def evaluate_checkpoint(config, checkpoint: Path, device, progress: bool = False, force: bool = False,
                        model=None, state: dict | None = None, labelspace=None,
                        trust_unverified: bool = False) -> tuple[dict[str, dict], Path]:
    """(metrics per dataset plus suite rows, the folder written). ``model``/``state``/``labelspace`` skip
    reloading when the caller (training's ``eval_period``) already holds them."""
    from ..checkpoint import check_compatible, load_model_from_checkpoint
    from ..data import CocoDetectionDataset
    from ..vocabulary import UnifiedLabelSpace

    labelspace = labelspace or UnifiedLabelSpace(config.labelspace)
    if model is None:
        model, state = load_model_from_checkpoint(checkpoint, device, trust_unverified)
    check_compatible(state, labelspace, checkpoint)
    folder = evaluation_dir(config.output_dir, checkpoint)
    if folder.exists() and not force:
        raise ScaledetError(f"{folder}: {checkpoint.name} was evaluated already; add --force to evaluate it again "
                            "and replace that folder")
    check_output_dir(folder, EVAL_KIND, "evaluation folder", force)
    datasets = [CocoDetectionDataset(spec, labelspace, train=False) for spec in config.eval_datasets]
    table: dict[str, dict] = {}
    by_key: dict[str, dict] = {}
    evaluators: dict[str, str] = {}
    protocols: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    mark_output_dir(folder, EVAL_KIND, checkpoint=str(checkpoint))
    translations: dict[str, dict] = {}
    for dataset in datasets:
        metrics, results = evaluate_dataset(model, dataset, labelspace.embeddings, device, progress=progress,
                                            build=config.labelspace, translations=translations,
                                            merge=config.merge)
        atomic_write_json(folder / f"{dataset.spec.name}.results.json", results)
        table[dataset.spec.name] = metrics
        by_key[dataset.spec.key] = metrics
        evaluator = evaluator_of(dataset)
        evaluators[dataset.spec.name] = evaluator.name
        protocols[dataset.spec.name] = evaluator.protocol
    table.update(suite_summaries(by_key))
    iterations_done = state.get("iteration")
    record = {  # one JSON line, as every metrics.json this project writes
        "checkpoint": str(checkpoint),
        "iteration": iterations_done - 1 if isinstance(iterations_done, int) else None,  # 0-based, as its name
        "labelspace": {k: state["labelspace"].get(k) for k in ("directory", "encoder_identity", "dim",
                                                              "global_ids_sha256")},
        "evaluators": evaluators,
        "protocols": protocols,
        **({"translations": translations} if translations else {}),
        "metrics": table,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(folder / "metrics.json", json.dumps(record) + "\n")
    return table, folder
