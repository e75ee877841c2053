"""Evaluators behind one interface, chosen per dataset, as detectron2's ``evaluation/`` package.

An evaluator has a ``name``, the ``metric_names`` it reports (in percent, keyed as the official tools
name them) and ``evaluate(ground_truth, results)``. Which one a dataset gets: the ``evaluator:`` of its
config entry, else its labelspace key (``lvis`` → federated LVIS, ``oid`` / ``oid500`` → the OpenImages
challenge metric, anything else → COCO). ODinW suite members are also summarised as one row, the mean
of their COCO AP (GLIP's protocol).
"""
from __future__ import annotations

from typing import Protocol

from scaledet.labelspace.io.errors import ScaledetError

from .coco import CocoEvaluator
from .ground_truth import GroundTruth, check_result_objects, check_results, read_ground_truth, read_json
from .lvis import LvisEvaluator, LvisFixedEvaluator
from .oid import OpenImagesEvaluator, OpenImagesExpandedEvaluator

EVALUATORS = {"coco": CocoEvaluator, "lvis": LvisEvaluator, "lvis-fixed": LvisFixedEvaluator,
              "oid": OpenImagesEvaluator, "oid-expanded": OpenImagesExpandedEvaluator}
#: ``--protocol``: the evaluator a protocol other than the standard one selects, per evaluator.
PROTOCOL_VARIANTS = {("lvis", "fixed"): "lvis-fixed"}
#: Suites whose members are reported together (key prefix → row name).
SUITES = ("odinw", "odinw35")


class Evaluator(Protocol):
    name: str
    metric_names: tuple[str, ...]
    #: What the numbers mean, named in every output, since users compare numbers across protocols.
    protocol: str

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]: ...


def evaluator_for_protocol(name: str, protocol: str) -> str:
    """``--evaluator lvis --protocol fixed`` → ``lvis-fixed``; ``standard`` keeps the evaluator."""
    if protocol == "standard":
        return name
    if (name, protocol) not in PROTOCOL_VARIANTS:
        raise ScaledetError(f"--protocol {protocol!r} with --evaluator {name}: only 'standard' (and 'fixed' for "
                            "lvis: Fixed AP)")
    return PROTOCOL_VARIANTS[(name, protocol)]


def build_evaluator(name: str, where: str = "--evaluator") -> Evaluator:
    if name not in EVALUATORS:
        raise ScaledetError(f"{where} {name!r}: choose from {', '.join(EVALUATORS)}")
    return EVALUATORS[name]()


def default_evaluator_name(dataset_key: str) -> str:
    head = dataset_key.split("/")[0]
    if head == "lvis":
        return "lvis"
    if head in ("oid", "oid500"):
        return "oid"
    return "coco"


def suite_summaries(table: dict[str, dict]) -> dict[str, dict]:
    """``{"odinw (mean of 13)": {"AP": …}}`` for each suite with members in ``table`` (keyed by the
    datasets' labelspace keys)."""
    rows = {}
    for suite in SUITES:
        members = [metrics for key, metrics in table.items()
                   if key.startswith(f"{suite}/") and metrics.get("AP") is not None]
        if members:
            rows[f"{suite} (mean of {len(members)})"] = {
                "AP": round(sum(m["AP"] for m in members) / len(members), 3),
                "AP50": round(sum(m.get("AP50") or 0.0 for m in members) / len(members), 3)}
    return rows


def evaluate_files(results_path, annotations_path, evaluator_name: str) -> tuple[dict[str, float], str]:
    """``scaledet eval --results R.json --annotations A.json``: any detector's results, no model.
    Returns the metrics and the evaluator's protocol."""
    from pathlib import Path

    evaluator = build_evaluator(evaluator_name)
    ground_truth = read_ground_truth(Path(annotations_path))
    results = check_results(read_json(Path(results_path), "results file"), ground_truth, str(results_path))
    return evaluator.evaluate(ground_truth, results), evaluator.protocol


def evaluate_translated(results_path, annotations_path, evaluator_name: str, build, source: str,
                        target: str | None = None) -> tuple[dict[str, float], str, dict]:
    """``scaledet eval --results R --annotations A --labelspace BUILD --from KEY``: a detector's results in
    dataset KEY's categories, translated through the build (:mod:`scaledet.labelspace.translate`) into A's
    and scored with the target's protocol. Returns the metrics, the protocol and the translation's counts."""
    from pathlib import Path

    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.translate import dataset_of_categories, describe, make_translator, retarget, translated_detections

    evaluator = build_evaluator(evaluator_name)
    ground_truth = read_ground_truth(Path(annotations_path))
    output = LabelSpaceOutput.load(build, with_embeddings=False)
    categories = ground_truth.document["categories"]
    target = target or dataset_of_categories(output, categories, f"--annotations {annotations_path}")
    translator = make_translator(output, source, target)
    retarget(translator, output, categories, f"--annotations {annotations_path}")
    raw = check_result_objects(read_json(Path(results_path), "results file"), str(results_path))
    translated = list(translated_detections(translator, output, raw, str(results_path)))
    results = check_results(translated, ground_truth, str(results_path))
    return evaluator.evaluate(ground_truth, results), evaluator.protocol, describe(translator)


__all__ = ["EVALUATORS", "Evaluator", "GroundTruth", "build_evaluator", "default_evaluator_name", "evaluate_files", "evaluate_translated",
           "read_ground_truth", "suite_summaries", "CocoEvaluator", "LvisEvaluator", "LvisFixedEvaluator", "OpenImagesEvaluator",
           "OpenImagesExpandedEvaluator"]
