"""Concept merges over a disjoint union: which labels of different datasets are one concept.

The union keeps every label (``coco/person`` and ``o365/Person`` both stay); a *merge* says, on top of it,
which of them a user may treat as one class: for a unified vocabulary, a UniDet-style label-space file, or
one detection per concept at prediction time. Rules, in order:

1. **Candidates.** Two labels of different datasets are candidates when they share a name (a normalised
   name, synonym, first ``/`` alternative or singular: ``senses.label_terms``), a WordNet synset (``tv``
   and ``Television``), or a prompt-embedding cosine of at least ``MergeSettings.embedding_threshold``.
2. **Senses.** Candidates whose possible kinds of sense do not meet are refused (``senses.py``):
   ``oid/Mouse`` under ``Animal`` against ``coco/mouse`` in ``electronic``.
3. **Coarser is a parent, not a merge.** A ``/`` name is wider than its later alternatives (``Monitor/TV``
   against ``tv``), and a pair with a ``/`` name found by embedding alone is not merged: the prompt of
   several things lies near each of them (``Moniter/TV`` near ``computer monitor``). For a pair found by
   synset or embedding alone: a WordNet hypernym (``Gun`` above
   ``Handgun``), a group of its dataset's hierarchy (has children) or a catch-all (``Other Shoes``), or
   the same name with words added (``Side Table``, ``table tennis racket``) is reported and not merged,
   unless the label with the added words is its dataset's only one of that name (COCO's ``sports ball``
   is COCO's one ball: the pair merges) and neither label is a catch-all.
   Same-named labels still merge (``oid/Person`` with its children, and ``coco/person``).
4. **One label per dataset per concept.** Candidates are taken strongest first: shared name, then shared
   synset, then embedding; among equals the one with fewer possible senses in common, then narrower
   senses (a label its context narrowed), then the higher cosine, then the earlier datasets of the build.
   A candidate that would put two labels of one dataset, or two kinds of sense, into one concept is refused.
5. **The user decides last.** A decisions CSV (``a,b,decision`` with ``accept`` or ``reject``; the review
   file ``merge`` writes has these columns) is applied first: accepted pairs merge before any rule,
   rejected pairs never end up in one concept.

A concept is named by its first label in build order (its global id), so concepts are stable when datasets
are added at the end.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io.errors import ScaledetError
from .export import embedded_name
from .graph import CATCH_ALL, cross_dataset_neighbours
from .outputs import LabelSpaceOutput
from .prompts import normalize_name
from .senses import LabelSense, SenseResolver, context_words, is_modified_form, label_terms, split_qualifier
from .io.text_files import csv_cell_value, read_text
from .wordnet import load_wordnet

EVIDENCE_RANK = {"decision": 4, "name": 3, "synset": 2, "wider name": 1, "embedding": 0}
COARSER = "coarser (a parent, not a merge)"
SEVERAL_THINGS = "a / name is several things; only a shared name or synset says which one the other label is"
DECISIONS = ("accept", "reject")


@dataclass
class MergeSettings:
    #: Cosine of the prompt embeddings above which two differently named labels may be one concept.
    embedding_threshold: float = 0.9
    #: Cross-dataset neighbours looked at per label for embedding candidates.
    neighbours: int = 5
    use_wordnet: bool = True


@dataclass
class Candidate:
    """A pair of labels of different datasets that may name one concept, and what became of it."""

    a: int
    b: int
    evidence: str
    detail: str
    cosine: float
    shared_senses: int = 0  # synsets both labels may mean (50 + kinds when only the kinds meet)
    breadth: int = 0  # synsets either label may mean: a label narrowed by its context is preferred
    outcome: str = ""
    decision: str = ""

    def sort_key(self, dataset_rank: list[int]) -> tuple:
        return (-EVIDENCE_RANK[self.evidence], self.shared_senses or 99, self.breadth, -round(self.cosine, 4),
                sorted((dataset_rank[self.a], dataset_rank[self.b])), self.a, self.b)


@dataclass
class MergeResult:
    global_ids: list[str]
    datasets: list[str]
    local_ids: list[str]
    names: list[str]
    concept_of: list[int]  # label index → index of the concept's first label
    why: list[str]
    candidates: list[Candidate]
    dataset_order: list[str]
    wordnet: bool
    decisions_applied: int = 0
    _names: dict[int, str] = field(default_factory=dict, repr=False)

    def concepts(self) -> dict[int, list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for index, concept in enumerate(self.concept_of):
            members[concept].append(index)
        return dict(members)

    def concept_name(self, anchor: int) -> str:
        """The anchor's name without its sense qualifier (``mouse``); where two concepts would share it, the
        later one (in build order) says whose it is: ``mouse (oid500/Mouse [/m/04rmv])``."""
        if not self._names:
            taken: set[str] = set()
            for first in sorted(set(self.concept_of)):
                plain = normalize_name(self.names[first])
                name = split_qualifier(plain)[0] or plain
                self._names[first] = name if name not in taken else f"{name} ({self.global_ids[first]})"
                taken.add(name)
        return self._names[anchor]


@dataclass
class _Components:
    """Union-find over labels, carrying each concept's datasets and the senses all its labels allow."""

    datasets: list[str]
    senses: list[frozenset[int] | None]  # kinds of sense, per label
    parent: list[int] = field(init=False)
    members: dict[int, list[int]] = field(init=False)
    used: dict[int, set[str]] = field(init=False)
    allowed: dict[int, frozenset[int] | None] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.datasets)
        self.parent = list(range(n))
        self.members = {i: [i] for i in range(n)}
        self.used = {i: {self.datasets[i]} for i in range(n)}
        self.allowed = {i: self.senses[i] for i in range(n)}

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def conflict(self, a: int, b: int, rejected: dict[int, set[int]]) -> str | None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return "already one concept"
        if self.used[ra] & self.used[rb]:
            return "one label per dataset"
        sa, sb = self.allowed[ra], self.allowed[rb]
        if sa is not None and sb is not None and not (sa & sb):
            return "different kinds of sense in the concept"
        small, other = (ra, rb) if len(self.members[ra]) <= len(self.members[rb]) else (rb, ra)
        if any(self.find(y) == other for x in self.members[small] for y in rejected.get(x, ())):
            return "rejected in the decisions file"
        return None

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        keep, gone = (ra, rb) if ra < rb else (rb, ra)
        self.parent[gone] = keep
        self.members[keep] += self.members.pop(gone)
        self.used[keep] |= self.used.pop(gone)
        sa, sb = self.allowed.pop(gone), self.allowed[keep]
        self.allowed[keep] = sb if sa is None else sa if sb is None else sa & sb


class _SoleKinds:
    """Whether a label is the only one of its dataset named ``t`` or ``… t``: then a word it adds to ``t``
    (``sports ball``) says what the dataset means by its one kind of ``t``, not a narrower kind beside others
    (Objects365's ``Side Table`` beside its ``Dining Table`` and ``Coffee Table``)."""

    def __init__(self, terms: list[set[str]], datasets: list[str]) -> None:
        self.datasets = datasets
        #: (dataset, t) → the labels with a term that is ``t`` or ends in `` t``: every term's word suffixes,
        #: indexed once, so a question costs a lookup and not a pass over the dataset's labels
        self.named: dict[tuple[str, str], set[int]] = defaultdict(set)
        for index, (dataset, names) in enumerate(zip(datasets, terms)):
            for term in names:
                words = term.split(" ")
                for start in range(len(words)):
                    self.named[(dataset, " ".join(words[start:]))].add(index)

    def __call__(self, label: int, t: str) -> bool:
        return self.named.get((self.datasets[label], t), set()) <= {label}


def _contexts(rows: list[dict]) -> list[list[str]]:
    """Per label, the texts that say which sense it has: qualifier, supercategory, ancestor names."""
    by_id = {row["global_id"]: row for row in rows}
    contexts = []
    for row in rows:
        texts = []
        _, qualifier = split_qualifier(normalize_name(row["name"]))
        if qualifier:
            texts.append(qualifier)
        if row.get("supercategory"):
            texts.append(row["supercategory"])
        seen, stack = set(), list(row["parent"] or [])
        while stack:
            parent = stack.pop()
            if parent in seen or parent not in by_id:
                continue
            seen.add(parent)
            texts.append(by_id[parent]["name"])
            stack.extend(by_id[parent]["parent"] or [])
        contexts.append(texts)
    return contexts


def _pairs_across(indices: list[int], datasets: list[str]):
    for x, a in enumerate(indices):
        for b in indices[x + 1:]:
            if datasets[a] != datasets[b]:
                yield (a, b) if a < b else (b, a)


def find_candidates(rows: list[dict], embeddings: np.ndarray, senses: list[LabelSense], wider: list[set[str]],
                    settings: MergeSettings) -> dict[tuple[int, int], Candidate]:
    datasets = [row["dataset"] for row in rows]
    candidates: dict[tuple[int, int], Candidate] = {}

    def offer(a: int, b: int, evidence: str, detail: str) -> None:
        pair = (a, b)
        current = candidates.get(pair)
        if current is None or EVIDENCE_RANK[evidence] > EVIDENCE_RANK[current.evidence]:
            candidates[pair] = Candidate(a, b, evidence, detail, float(embeddings[a] @ embeddings[b]))

    by_term: dict[str, list[int]] = defaultdict(list)
    for index, sense in enumerate(senses):
        for term in sense.terms:
            by_term[term].append(index)
    for term, indices in by_term.items():
        for a, b in _pairs_across(indices, datasets):
            offer(a, b, "name", f"same name {term!r}")
    by_sense: dict[int, list[int]] = defaultdict(list)
    for index, sense in enumerate(senses):
        for offset in sense.senses or ():
            by_sense[offset].append(index)
    for offset, indices in by_sense.items():
        if len(indices) <= 16:  # a sense shared by many labels is a vague word, not evidence
            for a, b in _pairs_across(indices, datasets):
                offer(a, b, "synset", "a WordNet synset in common")
    neighbour_index, neighbour_cosine = cross_dataset_neighbours(embeddings, np.asarray(datasets), settings.neighbours)
    for a, (neighbours, cosines) in enumerate(zip(neighbour_index.tolist(), neighbour_cosine.tolist())):
        for b, cosine in zip(neighbours, cosines):
            if cosine >= settings.embedding_threshold:
                offer(min(a, b), max(a, b), "embedding", f"prompt cosine {cosine:.3f}")
    # last, and over any evidence but a shared name: ``Monitor/TV`` is wider than ``tv``, whatever else
    for index, terms in enumerate(wider):
        for term in terms:
            for other in by_term.get(term, []):
                pair = (min(index, other), max(index, other))
                if datasets[other] != datasets[index] and getattr(candidates.get(pair), "evidence", "") != "name":
                    candidates[pair] = Candidate(*pair, "wider name", f"{term!r} is one alternative of "
                                                 f"{rows[index]['name']!r}", float(embeddings[index] @ embeddings[other]))
    return candidates


def read_decisions(path: Path, global_ids: list[str]) -> list[tuple[str, str, str]]:
    """(a, b, accept | reject) rows of a decisions CSV; rows with an empty decision are skipped."""
    known = set(global_ids)
    rows = list(csv.DictReader(read_text(path).splitlines()))
    if rows and not {"a", "b", "decision"} <= set(rows[0]):
        raise ScaledetError(f"{path}: a decisions file needs the columns a, b and decision")
    decisions = []
    for line, row in enumerate(rows, start=2):
        decision = (row.get("decision") or "").strip().lower()
        if not decision:
            continue
        if decision not in DECISIONS:
            raise ScaledetError(f"{path}:{line}: decision {row['decision']!r}: write accept or reject (or leave it empty)")
        a, b = (csv_cell_value((row.get(column) or "").strip()) for column in ("a", "b"))
        for column, value in (("a", a), ("b", b)):
            if value not in known:
                raise ScaledetError(f"{path}:{line}: {column} = {value[:80]!r} is not a label of this build")
        decisions.append((a, b, decision))
    return decisions


def merge_labels(output: LabelSpaceOutput, settings: MergeSettings | None = None,
                 decisions: list[tuple[str, str, str]] = ()) -> MergeResult:
    settings = settings or MergeSettings()
    rows = output.labels.to_pylist()
    ids = [row["global_id"] for row in rows]
    datasets = [row["dataset"] for row in rows]
    position = {gid: i for i, gid in enumerate(ids)}
    wordnet = load_wordnet() if settings.use_wordnet else None
    resolver = SenseResolver(wordnet)
    # the name each label was encoded with, too: Objects365's ``Bakset`` was encoded as ``basket``
    template = output.manifest["templates"][0]
    terms = [label_terms(row["name"], [*(row["synonyms"] or []), embedded_name(row["prompt"], template)])
             for row in rows]
    senses = [resolver.resolve(names, context_words(context), row["synset"])
              for row, (names, _), context in zip(rows, terms, _contexts(rows))]
    groups = {parent for row in rows for parent in (row["parent"] or [])}
    candidates = find_candidates(rows, output.embeddings, senses, [wider for _, wider in terms], settings)

    sole_kind_of = _SoleKinds([sense.terms for sense in senses], datasets)
    rejected: dict[int, set[int]] = defaultdict(set)
    for a, b, decision in decisions:
        i, j = sorted((position[a], position[b]))
        if decision == "reject":
            rejected[i].add(j)
            rejected[j].add(i)
        candidate = candidates.get((i, j)) or Candidate(i, j, "decision", "named in the decisions file",
                                                        float(output.embeddings[i] @ output.embeddings[j]))
        candidate.decision = decision
        if decision == "accept":
            candidate.evidence, candidate.detail = "decision", "accepted in the decisions file"
        else:
            candidate.outcome = "rejected in the decisions file"
        candidates[(i, j)] = candidate

    for candidate in candidates.values():
        if candidate.evidence != "decision" and not candidate.outcome:
            candidate.outcome = _refusal(candidate, senses, resolver, groups, ids, rows, sole_kind_of)

    dataset_rank_of = {key: rank for rank, key in enumerate(output.datasets)}
    dataset_rank = [dataset_rank_of.get(d, len(dataset_rank_of)) for d in datasets]
    components = _Components(datasets, [s.kinds for s in senses])
    joined_by: dict[int, Candidate] = {}
    ordered = sorted(candidates.values(), key=lambda c: c.sort_key(dataset_rank))
    for candidate in ordered:
        if candidate.outcome:
            continue
        conflict = components.conflict(candidate.a, candidate.b, rejected)
        if conflict:
            candidate.outcome = conflict
            continue
        components.union(candidate.a, candidate.b)
        candidate.outcome = "merged"
        for index in (candidate.a, candidate.b):
            joined_by.setdefault(index, candidate)

    concept_of = [components.find(i) for i in range(len(rows))]
    why = []
    for index in range(len(rows)):
        if concept_of[index] == index:
            why.append("first label of its concept in build order" if index in joined_by
                       else "no label of another dataset names this concept")
        else:
            edge = joined_by[index]
            other = edge.b if edge.a == index else edge.a
            why.append(f"{edge.detail} with {ids[other]}")
    return MergeResult(ids, datasets, [row["local_id"] for row in rows], [row["name"] for row in rows], concept_of, why,
                       ordered,
                       list(output.datasets), wordnet is not None,
                       decisions_applied=len(decisions))


def _refusal(candidate: Candidate, senses: list[LabelSense], resolver: SenseResolver, groups: set[str],
             ids: list[str], rows: list[dict], sole_kind_of: "_SoleKinds") -> str:
    """Why a candidate may not merge (rules 2 and 3 of the module docstring), or "" when it may."""
    first, second = senses[candidate.a], senses[candidate.b]
    if first.kinds is not None and second.kinds is not None:
        candidate.shared_senses = len(first.senses & second.senses) or 50 + len(first.kinds & second.kinds)
        candidate.breadth = len(first.senses) + len(second.senses)
        if not first.kinds & second.kinds:
            return "different senses"
    if candidate.evidence == "name":
        return ""
    if candidate.evidence == "wider name":
        return COARSER
    if candidate.evidence == "embedding":  # (a shared synset says the two names are synonyms)
        if any("/" in rows[i]["name"] for i in (candidate.a, candidate.b)):
            # ``Moniter/TV`` close to ``computer monitor``: the prompt of several things is near each of them
            return SEVERAL_THINGS
        pairs = [(t, u, candidate.b) for t in first.terms for u in second.terms] + \
                [(u, t, candidate.a) for t in first.terms for u in second.terms]
        kinds = [(t, owner) for t, u, owner in pairs if is_modified_form(t, u) and u.endswith(" " + t)]
        plain = not any(CATCH_ALL.match(rows[i]["name"]) for i in (candidate.a, candidate.b))
        if kinds and plain and all(sole_kind_of(owner, t) for t, owner in kinds):
            return ""  # COCO's ``sports ball`` is its only ball: the word added narrows nothing there
        if kinds:
            return COARSER  # ``side table`` is a kind of ``table`` (Objects365 has other tables)
        if any(is_modified_form(t, u) for t, u, _ in pairs):
            return "a different thing (one name is the other with words added)"
    if first.senses is not None and second.senses is not None and (
            resolver.is_below(first.senses, second.senses) or resolver.is_below(second.senses, first.senses)):
        return COARSER  # ``handgun`` is a kind of ``gun``
    if any(ids[i] in groups or CATCH_ALL.match(rows[i]["name"]) for i in (candidate.a, candidate.b)):
        return COARSER  # a group of its own hierarchy or a catch-all
    return ""
