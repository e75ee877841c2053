"""Category names that read as text, for files other tools read (``unify``'s ``name``, YOLO's ``names``).

Other tools use a category's name as words: Detic's ``dump_clip_features`` prompts "a {name}", YOLO-World
and Ultralytics encode YOLO ``names`` as the class texts, and Ultralytics reads ``/`` as a separator between
alternative names. A global id (``lvis/airplane``) is therefore never a name: it stays in the category's
``labels``. A name is the source's class name in plain words (``aerosol_can`` → ``aerosol can``,
``Moniter/TV`` → ``Moniter or TV``).

Names must also tell categories apart, and a union keeps one category per dataset's label, so the same
words often name several categories (``mouse``: COCO's and Objects365's computer mouse, OpenImages' animal).
Such names get a qualifier in parentheses, chosen from what each label's own taxonomy says of it, so that
it holds for names nobody has looked at:

1. its parent in its taxonomy (OpenImages' hierarchy): ``mouse (mammal)``;
2. else its supercategory (COCO's): ``mouse (electronic)``;
3. else, or when that qualifier would not tell it from another label of the group, the dataset that
   annotates it, in words (``Objects365``, ``Open Images``): labels with the same meaning in two datasets
   differ only in who annotates them, and their texts stay alike, as ScaleDet wants of near-synonyms.

A qualified name that meets another label's own name (COCO's ``bus (vehicle)`` and LVIS's ``bus_(vehicle)``)
adds the dataset's title, and two that still coincide (one dataset naming two classes alike) add their local
id, so names are always unique.
"""
from __future__ import annotations

import re
from collections import defaultdict

_SPACES = re.compile(r"\s+")
_SLASH = re.compile(r"\s*/\s*")

#: How the built-in datasets are called in words; other datasets by their key's last part
#: (``odinw/Aquarium`` → ``Aquarium``)
DATASET_TITLES = {"lvis": "LVIS", "coco": "COCO", "o365": "Objects365", "oid": "Open Images",
                  "oid500": "Open Images challenge"}


def plain_name(name: str) -> str:
    """A class name as words: underscores as spaces, ``/`` as ``or``, one space between words."""
    text = _SLASH.sub(" or ", name.replace("_", " "))
    return _SPACES.sub(" ", text).strip()


def dataset_title(key: str) -> str:
    return DATASET_TITLES.get(key, key.split("/")[-1])


def _fold(text: str) -> str:
    return plain_name(text).casefold()


def unique_names(bases: list[str], qualifiers: list[list[str]], datasets: list[str],
                 local_ids: list[str]) -> list[str]:
    """One name per category: ``bases[i]`` in plain words, qualified as the module says where it would
    coincide with another's. ``qualifiers[i]``: the category's parent / supercategory names, best first."""
    names = [plain_name(b) for b in bases]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name.casefold()].append(i)
    for base, members in groups.items():
        if len(members) < 2:
            continue
        chosen = {}
        for i in members:
            candidates = [plain_name(q) for q in qualifiers[i] if q and _fold(q) != base]
            chosen[i] = candidates[0] if candidates else None
        counts = defaultdict(int)
        for q in chosen.values():
            if q is not None:
                counts[q.casefold()] += 1
        for i in members:
            q = chosen[i]
            if q is None or counts[q.casefold()] > 1:
                q = dataset_title(datasets[i])
            names[i] = f"{names[i]} ({q})"
    # a qualified name can meet another label's own name (``bus (vehicle)``): the datasets tell them apart,
    # and where one dataset names two classes alike, its ids do
    for extra in (lambda i: dataset_title(datasets[i]), lambda i: local_ids[i]):
        seen: dict[str, int] = defaultdict(int)
        for name in names:
            seen[name.casefold()] += 1
        for i, name in enumerate(names):
            if seen[name.casefold()] > 1:
                names[i] = f"{name[:-1]}, {extra(i)})" if name.endswith(")") else f"{name} ({extra(i)})"
    return names


def label_qualifiers(output) -> list[list[str]]:
    """Per label of a build: the plain names of its parents, then its supercategory."""
    table = output.labels
    columns = set(table.column_names)
    names = table.column("name").to_pylist()
    global_ids = table.column("global_id").to_pylist()
    name_of = dict(zip(global_ids, names))
    parents = table.column("parent").to_pylist() if "parent" in columns else [None] * len(names)
    supers = table.column("supercategory").to_pylist() if "supercategory" in columns else [None] * len(names)
    result = []
    for parent_ids, supercategory in zip(parents, supers):
        found = [name_of[p] for p in (parent_ids or ()) if p in name_of]
        if isinstance(supercategory, str) and supercategory:
            found.append(supercategory)
        result.append(found)
    return result
