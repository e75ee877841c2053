"""The disjoint union of several taxonomies.

No label is merged: ``coco/person`` and ``o365/Person`` both stay, each with its own global id
``<dataset>/<local name>`` and a dense integer index. The order is deterministic: datasets in the order
they were given, then each dataset's categories in source order (COCO-style files sorted by id). Adding a
dataset at the end therefore never changes the indices of the labels already there.
"""
from __future__ import annotations

from dataclasses import dataclass

from .io.errors import TaxonomyError
from .prompts import prompt_name
from .taxonomy import Taxonomy


@dataclass(frozen=True)
class Label:
    index: int
    global_id: str
    dataset: str
    local_id: str
    name: str
    prompt_name: str
    synonyms: tuple[str, ...]
    synset: str | None
    frequency: str | None
    definition: str | None
    parents: tuple[str, ...]  # global ids
    part_of: tuple[str, ...]  # global ids
    supercategory: str | None = None  # the source's group name (COCO), not a label


def build_union(taxonomies: list[Taxonomy]) -> list[Label]:
    seen: set[str] = set()
    for taxonomy in taxonomies:
        if taxonomy.key in seen:
            raise TaxonomyError(f"dataset key {taxonomy.key!r} is given twice ({taxonomy.source})")
        seen.add(taxonomy.key)
    labels: list[Label] = []
    for taxonomy in taxonomies:
        global_by_local = {c.local_id: f"{taxonomy.key}/{c.id_name}" for c in taxonomy.categories}
        for category in taxonomy.categories:
            labels.append(
                Label(
                    index=len(labels),
                    global_id=global_by_local[category.local_id],
                    dataset=taxonomy.key,
                    local_id=category.local_id,
                    name=category.name,
                    prompt_name=prompt_name(category),
                    synonyms=category.synonyms,
                    synset=category.synset,
                    frequency=category.frequency,
                    definition=category.definition,
                    parents=tuple(global_by_local[p] for p in category.parents if p in global_by_local),
                    part_of=tuple(global_by_local[p] for p in category.part_of if p in global_by_local),
                    supercategory=category.supercategory,
                )
            )
    return labels
