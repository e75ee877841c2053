"""The in-memory form of one dataset's label vocabulary.

Readers (``readers.py``, ``builtin.py``) turn files into :class:`Taxonomy` objects; everything downstream
(union, prompts, outputs) only sees this form, so adding a file format never touches the union logic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .io.errors import TaxonomyError
from .io.text_files import check_name_text

#: Dataset keys become the first part of every global id (``<dataset>/<local name>``), so they are kept to
#: characters that read well in paths, Parquet and shell arguments. ODinW suites add one level
#: (``odinw/Aquarium``).
DATASET_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


@dataclass(frozen=True)
class Category:
    """One class of one dataset, as its source describes it.

    ``local_id`` is a string so that COCO-style integer ids and OpenImages MIDs share one type.
    ``parents`` and ``part_of`` hold local ids of the same dataset (the OpenImages hierarchy).
    ``prompt_name`` overrides ``name`` for prompt text only (used for known typos such as Objects365
    ``Moniter/TV``), so the global id keeps matching the official annotation files.
    ``key`` overrides ``name`` in the global id only where a source repeats a display name under two ids.
    ``supercategory`` is the group a COCO-style file puts the class in (COCO's ``vehicle``, ``animal``): a
    parent that is a name, not a class of the dataset, so it is kept as text rather than as a ``parents`` id.
    """

    local_id: str
    name: str
    synonyms: tuple[str, ...] = ()
    synset: str | None = None
    frequency: str | None = None
    definition: str | None = None
    parents: tuple[str, ...] = ()
    part_of: tuple[str, ...] = ()
    prompt_name: str | None = None
    key: str | None = None
    supercategory: str | None = None

    @property
    def id_name(self) -> str:
        """The part of the global id after ``<dataset>/``."""
        return self.key or self.name


@dataclass(frozen=True)
class Taxonomy:
    """A dataset key, its categories in source order, and where they came from."""

    key: str
    categories: tuple[Category, ...]
    source: str
    sha256: str
    format: str
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate_dataset_key(self.key, self.source)
        validate_categories(self.categories, self.source)

    def __len__(self) -> int:
        return len(self.categories)


def validate_dataset_key(key: str, source: str = "") -> None:
    """Reject keys that would make ambiguous or unreadable global ids."""
    if not DATASET_KEY_PATTERN.match(key):
        where = f"{source}: " if source else ""
        raise TaxonomyError(
            f"{where}invalid dataset key {key!r}: use letters, digits, '_', '.', '-' "
            "(one optional '/' for a suite member, e.g. odinw/Aquarium)"
        )


def validate_categories(categories: tuple[Category, ...], source: str) -> None:
    """Empty names, duplicate ids and duplicate names are errors: each would make global ids ambiguous."""
    if not categories:
        raise TaxonomyError(f"{source}: no categories found")
    seen_ids: dict[str, Category] = {}
    seen_names: dict[str, Category] = {}
    for category in categories:
        if not category.name.strip():
            raise TaxonomyError(f"{source}: category id {category.local_id} has an empty name")
        for text in (category.local_id, category.name, *category.synonyms, *filter(None, [category.supercategory])):
            check_name_text(text, f"{source}: category id {category.local_id!r}", TaxonomyError)
        if category.local_id in seen_ids:
            raise TaxonomyError(
                f"{source}: duplicate category id {category.local_id} "
                f"({seen_ids[category.local_id].name!r} and {category.name!r})"
            )
        seen_ids[category.local_id] = category
        name_key = category.id_name.strip()
        if name_key in seen_names:
            raise TaxonomyError(
                f"{source}: duplicate category name {name_key!r} "
                f"(ids {seen_names[name_key].local_id} and {category.local_id})"
            )
        seen_names[name_key] = category



def apply_lenient_fixes(categories: list[Category]) -> tuple[list[Category], dict]:
    """Repairs for official lists that break the strict rules, recorded rather than silent.

    * Blank-named categories are dropped (ODinW-35 ChessPieces has a class named two spaces, a
      placeholder of the export tool); their ids are returned under ``"dropped_blank_ids"``.
    * Every member of a group of same-named categories gets the global-id key ``name [local_id]`` (the
      OpenImages 2019 challenge list has two ``Bench`` and two ``Mouse`` MIDs; an ODinW-35 suite has ``o``
      and ``o ``). Display names and prompts stay as they are.
    """
    from collections import Counter
    from dataclasses import replace

    dropped = [c.local_id for c in categories if not c.name.strip()]
    kept = [c for c in categories if c.name.strip()]
    counts = Counter(c.name for c in kept)
    fixed = [replace(c, key=f"{c.name} [{c.local_id}]") if counts[c.name] > 1 else c for c in kept]
    return fixed, ({"dropped_blank_ids": dropped} if dropped else {})


SLASH_MODES = ("alternatives", "synonyms")


def slash_as_synonyms(taxonomy: "Taxonomy") -> "Taxonomy":
    """Read ``/`` in class names as a list of synonyms (Ultralytics' ``lvis.yaml`` writes LVIS's synonyms as
    ``arctic/arctic type of shoe/galosh/…``), not as one class of alternatives (Objects365's
    ``Cabinet/shelf``). Names and global ids stay as the file has them, so annotation files still match;
    the prompt is the first alternative that no other class of the file uses (``bow/bow weapon`` and
    ``bow/bow decorative ribbons`` become ``bow weapon`` and ``bow decorative ribbons``), and the other
    alternatives become synonyms, which ``inspect`` and ``merge`` read."""
    from dataclasses import replace

    parts = {c.local_id: [p.strip() for p in c.name.split("/") if p.strip()] for c in taxonomy.categories}
    first_uses: dict[str, int] = {}
    for alternatives in parts.values():
        if alternatives:
            first_uses[alternatives[0].lower()] = first_uses.get(alternatives[0].lower(), 0) + 1
    categories = []
    for category in taxonomy.categories:
        alternatives = parts[category.local_id]
        if len(alternatives) < 2:
            categories.append(category)
            continue
        prompt = next((a for a in alternatives if first_uses.get(a.lower(), 0) <= (a == alternatives[0])),
                      " ".join(alternatives))
        synonyms = tuple(dict.fromkeys([*(a for a in alternatives if a != prompt), *category.synonyms]))
        categories.append(replace(category, prompt_name=prompt, synonyms=synonyms))
    return replace(taxonomy, categories=tuple(categories), extra={**taxonomy.extra, "slash": "synonyms"})
