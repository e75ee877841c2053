"""A label graph over the union (networkx) and what it finds: clusters, ambiguities, granularity, hypernyms.

Nodes are labels (with their ``labels.parquet`` attributes). Edges, each with a ``kind``:

* ``parent``: child → parent from the OpenImages hierarchy, and from LVIS WordNet synsets (the bundled
  WordNet facts, ``wordnet.py``; directed, ``reason`` says which);
* ``synonym``: two labels of different datasets that share a name or synonym after prompt normalisation
  (``coco/person`` ↔ ``o365/Person``);
* ``similar``: two labels whose prompt embeddings have cosine ≥ ``similar_threshold``, among each label's
  ``similar_top_k`` nearest labels of other datasets (``o365/Sneakers`` ↔ ``oid/Footwear``);
* ``granularity``: a label and a coarser label of another dataset that has children (an OpenImages group
  node such as ``oid/Footwear``), when the label's nearest labels in that dataset are the group or its
  children, or the label is a catch-all (``o365/Other Shoes``).

Hypernym queries (``expand``) follow the parent edges down, reach the labels whose COCO ``supercategory``
is the term, and, with WordNet, every LVIS label whose synset lies below any noun sense of the term.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx
import numpy as np

from .outputs import LabelSpaceOutput
from .prompts import normalize_name
from .senses import split_qualifier
from .wordnet import load_wordnet

EDGE_KINDS = ("parent", "synonym", "similar", "granularity")
CATCH_ALL = re.compile(r"^(other|others|misc|miscellaneous)\b", re.IGNORECASE)


def base_name(name: str) -> str:
    """The name without a parenthesised sense: ``bow (weapon)`` → ``bow``."""
    return split_qualifier(normalize_name(name))[0]


@dataclass
class GraphSettings:
    similar_threshold: float = 0.75
    similar_top_k: int = 5
    cluster_threshold: float = 0.9  # similar edges at least this strong join concept clusters
    use_wordnet: bool = True  # hypernym edges from the bundled WordNet facts


#: Score-matrix entries one block of ``cross_dataset_neighbours`` may hold (64 MB of float32; the partition
#: indices take twice that): 2048 rows up to 8k labels, 160 rows at 100k.
NEIGHBOUR_BLOCK_ENTRIES = 16_000_000


def cross_dataset_neighbours(embeddings: np.ndarray, datasets: np.ndarray, k: int, block: int = 2048):
    """For each label, its k most similar labels of *other* datasets: (indices N × k, scores N × k).

    Blocks of rows shrink as N grows, so memory stays bounded by ``NEIGHBOUR_BLOCK_ENTRIES`` whatever N."""
    n = embeddings.shape[0]
    k = min(k, n)
    block = max(1, min(block, NEIGHBOUR_BLOCK_ENTRIES // max(n, 1)))
    all_idx = np.zeros((n, k), dtype=np.int64)
    all_sim = np.full((n, k), -np.inf, dtype=np.float32)
    codes = np.unique(datasets, return_inverse=True)[1]
    for start in range(0, n, block):
        scores = embeddings[start:start + block] @ embeddings.T
        scores[codes[start:start + block, None] == codes[None, :]] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        all_idx[start:start + block] = np.take_along_axis(top, order, axis=1)
        all_sim[start:start + block] = np.take_along_axis(top_scores, order, axis=1)
    return all_idx, all_sim


class LabelGraph:
    """The graph plus the indexes its queries need."""

    def __init__(self, output: LabelSpaceOutput, settings: GraphSettings | None = None) -> None:
        self.output = output
        self.settings = settings or GraphSettings()
        rows = output.labels.to_pylist()
        self.rows = rows
        self.ids = [r["global_id"] for r in rows]
        self.datasets = np.asarray([r["dataset"] for r in rows])
        self.embeddings = output.embeddings
        self.graph = nx.MultiDiGraph()
        for row in rows:
            self.graph.add_node(row["global_id"], index=row["index"], dataset=row["dataset"], name=row["name"],
                                local_id=row["local_id"], synset=row["synset"] or "",
                                synonyms="|".join(row["synonyms"] or []),
                                supercategory=row.get("supercategory") or "")
        self.neighbour_idx, self.neighbour_sim = cross_dataset_neighbours(
            self.embeddings, self.datasets, max(self.settings.similar_top_k, 5))
        self.wordnet = load_wordnet() if self.settings.use_wordnet else None
        self._add_parent_edges()
        self._add_synonym_edges()
        self._add_similar_edges()
        self._add_granularity_edges()

    # ------------------------------------------------------------------ edges
    def _add_parent_edges(self) -> None:
        self.children: dict[str, list[str]] = defaultdict(list)
        for row in self.rows:
            for parent in row["parent"] or []:
                self.graph.add_edge(row["global_id"], parent, kind="parent", weight=1.0, reason="openimages")
                self.children[parent].append(row["global_id"])
        if self.wordnet is not None:
            self._add_wordnet_parent_edges()

    def _add_wordnet_parent_edges(self) -> None:
        """Each LVIS label → its nearest LVIS labels among its synset's hypernyms (no transitive shortcuts)."""
        self.synset_offset = {}
        for row in self.rows:
            if row["synset"] and (offset := self.wordnet.offset(row["synset"])) is not None:
                self.synset_offset[row["global_id"]] = offset
        by_offset: dict[int, list[str]] = defaultdict(list)
        for gid, offset in self.synset_offset.items():
            by_offset[offset].append(gid)
        self.synset_ancestors = {gid: self.wordnet.ancestors(o) for gid, o in self.synset_offset.items()}
        for gid, ancestors in self.synset_ancestors.items():
            candidates = [c for o in ancestors for c in by_offset.get(o, []) if c != gid]
            nearest = [c for c in candidates
                       if not any(self.synset_offset[c] in self.synset_ancestors[other] for other in candidates)]
            for parent in nearest:
                self.graph.add_edge(gid, parent, kind="parent", weight=1.0, reason="wordnet")
                self.children[parent].append(gid)

    @staticmethod
    def _names_of(row: dict) -> set[str]:
        return {normalize_name(n) for n in [row["name"], *(row["synonyms"] or [])]}

    def _add_synonym_edges(self) -> None:
        by_name: dict[str, list[int]] = defaultdict(list)
        for row in self.rows:
            for name in self._names_of(row):
                by_name[name].append(row["index"])
        seen = set()
        for indices in by_name.values():
            for a in indices:
                for b in indices:
                    if a < b and self.datasets[a] != self.datasets[b] and (a, b) not in seen:
                        seen.add((a, b))
                        sim = float(self.embeddings[a] @ self.embeddings[b])
                        self.graph.add_edge(self.ids[a], self.ids[b], kind="synonym", weight=sim)

    def _add_similar_edges(self) -> None:
        k = self.settings.similar_top_k
        seen: set[tuple[int, int]] = set()
        for a in range(len(self.ids)):
            for b, sim in zip(self.neighbour_idx[a, :k].tolist(), self.neighbour_sim[a, :k].tolist()):
                pair = (min(a, b), max(a, b))
                if sim >= self.settings.similar_threshold and pair not in seen:
                    seen.add(pair)
                    self.graph.add_edge(self.ids[pair[0]], self.ids[pair[1]], kind="similar", weight=float(sim))

    def _add_granularity_edges(self) -> None:
        groups = {gid for gid, kids in self.children.items() if kids}
        for a, row in enumerate(self.rows):
            near = [self.ids[b] for b, s in zip(self.neighbour_idx[a], self.neighbour_sim[a])
                    if s >= self.settings.similar_threshold - 0.1]
            # both conditions below need the group among the label's near neighbours (all of other datasets)
            for group in near:
                if group not in groups:
                    continue
                family = {group, *self.children[group]}
                hits = [n for n in near[:3] if n in family]
                catch_all = CATCH_ALL.match(row["name"]) and group in near[:3]
                if not (hits or catch_all):
                    continue
                other = self.rows[self.graph.nodes[group]["index"]]
                sim = float(self.embeddings[a] @ self.embeddings[other["index"]])
                if sim >= 0.95 or self._names_of(row) & self._names_of(other):
                    continue  # the same concept under another name, not a coarser one
                self.graph.add_edge(row["global_id"], group, kind="granularity", weight=sim,
                                    reason="catch-all" if catch_all else "children of a coarser label")

    # ------------------------------------------------------------------ findings
    def edges(self, kind: str | None = None) -> list[tuple[str, str, dict]]:
        return [(u, v, d) for u, v, d in self.graph.edges(data=True) if kind is None or d["kind"] == kind]

    def clusters(self) -> list[dict]:
        """Concept clusters spanning ≥ 2 datasets: components of synonym edges and strong similar edges."""
        undirected = nx.Graph()
        undirected.add_nodes_from(self.ids)
        for u, v, d in self.graph.edges(data=True):
            if d["kind"] == "synonym" or (d["kind"] == "similar" and d["weight"] >= self.settings.cluster_threshold):
                undirected.add_edge(u, v)
        clusters = []
        for component in nx.connected_components(undirected):
            members = sorted(component, key=lambda g: self.graph.nodes[g]["index"])
            datasets = sorted({self.graph.nodes[g]["dataset"] for g in members})
            if len(datasets) < 2:
                continue
            idx = [self.graph.nodes[g]["index"] for g in members]
            block = self.embeddings[idx] @ self.embeddings[idx].T
            cohesion = float((block.sum() - len(idx)) / max(1, len(idx) * (len(idx) - 1)))
            clusters.append({"members": members, "datasets": datasets, "size": len(members),
                             "cohesion": round(cohesion, 4)})
        clusters.sort(key=lambda c: (-len(c["datasets"]), -c["size"], -c["cohesion"], c["members"][0]))
        return clusters

    def merge_candidates(self, limit: int | None = None) -> list[dict]:
        """Cross-dataset pairs that may name one concept, ranked by confidence (synonyms first)."""
        pairs = {}
        for u, v, d in self.graph.edges(data=True):
            if d["kind"] not in ("synonym", "similar"):
                continue
            key = tuple(sorted((u, v)))
            confidence = 1.0 if d["kind"] == "synonym" else d["weight"]
            if confidence > pairs.get(key, {}).get("confidence", -1):
                pairs[key] = {"a": key[0], "b": key[1], "confidence": round(confidence, 4),
                              "evidence": d["kind"], "cosine": round(d["weight"], 4)}
        ranked = sorted(pairs.values(), key=lambda p: (-p["confidence"], -p["cosine"], p["a"], p["b"]))
        return ranked[:limit] if limit else ranked

    def ambiguities(self) -> list[dict]:
        """Names with several senses in the union (``bow``, ``mouse``, ``glasses``, ``bat``)."""
        senses: dict[str, set[str]] = defaultdict(set)
        members: dict[str, list[str]] = defaultdict(list)
        for row in self.rows:
            base = base_name(row["name"])
            senses[base].add(normalize_name(row["name"]))
            members[base].append(row["global_id"])
        findings = []
        for base, names in senses.items():
            sensed = [n for n in names if n != base]
            if sensed and (len(sensed) > 1 or base in names):
                labels = members[base]
                idx = [self.graph.nodes[g]["index"] for g in labels]
                block = self.embeddings[idx] @ self.embeddings[idx].T
                findings.append({"name": base, "senses": sorted(names), "kind": "several senses", "labels": labels,
                                 "min_cosine": round(float(block.min()), 4)})
        findings.extend(self._disagreeing_neighbours({f["name"] for f in findings}))
        findings.sort(key=lambda f: (f["kind"] != "several senses", f["min_cosine"], f["name"]))
        return findings

    def _disagreeing_neighbours(self, already: set[str], close: float = 0.7, apart: float = 0.5) -> list[dict]:
        """Labels whose close neighbours in other datasets are far from each other: one name, two things."""
        findings = []
        for a, row in enumerate(self.rows):
            near = [b for b, s in zip(self.neighbour_idx[a, :3].tolist(), self.neighbour_sim[a, :3].tolist()) if s >= close]
            if len(near) < 2 or base_name(row["name"]) in already:
                continue
            block = self.embeddings[near] @ self.embeddings[near].T
            if block.min() < apart:
                findings.append({"name": base_name(row["name"]), "senses": [], "kind": "neighbours disagree",
                                 "labels": [row["global_id"], *(self.ids[b] for b in near)],
                                 "min_cosine": round(float(block.min()), 4)})
        return findings

    def granularity(self) -> list[dict]:
        return sorted(({"label": u, "coarser": v, "reason": d.get("reason", ""), "cosine": round(d["weight"], 4)}
                       for u, v, d in self.edges("granularity")), key=lambda f: (-f["cosine"], f["label"]))

    def expand(self, term: str, similar_threshold: float | None = None) -> list[str]:
        """Labels a vocabulary entry stands for: the labels named ``term``, everything below them in the
        hierarchy, and the labels of other datasets linked to those by synonym or strong similar edges."""
        threshold = similar_threshold if similar_threshold is not None else self.settings.cluster_threshold
        wanted = normalize_name(term)
        roots = [row["global_id"] for row in self.rows if wanted in self._names_of(row)]
        # a COCO-style supercategory is a parent that is only a name: ``vehicle`` → coco/car, coco/bus, …
        roots += [row["global_id"] for row in self.rows
                  if row.get("supercategory") and normalize_name(row["supercategory"]) == wanted]
        if self.wordnet is not None:
            senses = set(self.wordnet.noun_senses(term))
            roots += [gid for gid, offset in self.synset_offset.items()
                      if offset in senses or senses & self.synset_ancestors[gid]]
        found: dict[str, None] = {}
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node in found:
                continue
            found[node] = None
            stack.extend(self.children.get(node, []))
        def linked(d: dict) -> bool:
            return d["kind"] == "synonym" or (d["kind"] == "similar" and d["weight"] >= threshold)

        # One hop across datasets, only into labels without a hierarchy of their own (COCO, Objects365):
        # a label that has one answers for itself, and hopping into it by name would let polysemy in
        # ("animal" → oid/Bat → lvis/baseball_bat).
        for node in list(found):
            neighbours = [v for _, v, d in self.graph.out_edges(node, data=True) if linked(d)]
            neighbours += [u for u, _, d in self.graph.in_edges(node, data=True) if linked(d)]
            for other in neighbours:
                if not self._has_hierarchy(other):
                    found.setdefault(other, None)
        return sorted(found, key=lambda g: self.graph.nodes[g]["index"])

    def _has_hierarchy(self, global_id: str) -> bool:
        if self.wordnet is not None and global_id in self.synset_offset:
            return True
        return any(d["kind"] == "parent" for _, _, d in self.graph.out_edges(global_id, data=True)) \
            or bool(self.children.get(global_id))

    def neighbourhood(self, global_id: str) -> list[tuple[str, str, str, float]]:
        """(direction, kind, other label, weight) for every edge touching a label."""
        out = [("→", d["kind"], v, d["weight"]) for _, v, d in self.graph.out_edges(global_id, data=True)]
        inc = [("←", d["kind"], u, d["weight"]) for u, _, d in self.graph.in_edges(global_id, data=True)]
        return sorted(out + inc, key=lambda e: (EDGE_KINDS.index(e[1]), -e[3]))
