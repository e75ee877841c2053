"""Finding labels by name and their nearest labels in the other datasets (``scaledet-labels inspect``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .outputs import LabelSpaceOutput
from .prompts import normalize_name


@dataclass
class Neighbour:
    global_id: str
    dataset: str
    similarity: float


@dataclass
class LabelReport:
    index: int
    global_id: str
    dataset: str
    local_id: str
    name: str
    synonyms: list[str]
    parent: list[str]
    definition: str | None
    neighbours: list[Neighbour]

    def to_dict(self) -> dict:
        return asdict(self)


def match_labels(output: LabelSpaceOutput, query: str) -> list[int]:
    """Indices of labels whose name or a synonym equals the query, case- and punctuation-insensitively
    (``sneakers`` finds ``o365/Sneakers``; ``bow (weapon)`` finds ``lvis/bow_(weapon)``)."""
    wanted = normalize_name(query)
    names = output.labels.column("name").to_pylist()
    synonyms = output.labels.column("synonyms").to_pylist()
    hits = []
    for index, (name, syns) in enumerate(zip(names, synonyms)):
        candidates = [name, *(syns or [])]
        if any(normalize_name(c) == wanted for c in candidates):
            hits.append(index)
    return hits


def nearest_in_other_datasets(output: LabelSpaceOutput, index: int, top: int) -> list[Neighbour]:
    """Top labels by cosine similarity of their prompt embeddings, excluding the label's own dataset."""
    datasets = np.asarray(output.labels.column("dataset").to_pylist())
    ids = output.labels.column("global_id").to_pylist()
    scores = output.embeddings @ output.embeddings[index]
    scores[datasets == datasets[index]] = -np.inf
    order = np.argsort(-scores, kind="stable")[:top]
    return [Neighbour(ids[j], str(datasets[j]), round(float(scores[j]), 4)) for j in order if np.isfinite(scores[j])]


def inspect_query(output: LabelSpaceOutput, query: str, top: int = 10) -> list[LabelReport]:
    rows = output.labels.to_pylist()
    reports = []
    for index in match_labels(output, query):
        row = rows[index]
        reports.append(LabelReport(
            index=index, global_id=row["global_id"], dataset=row["dataset"], local_id=row["local_id"],
            name=row["name"], synonyms=row["synonyms"] or [], parent=row["parent"] or [],
            definition=row["definition"], neighbours=nearest_in_other_datasets(output, index, top),
        ))
    return reports
