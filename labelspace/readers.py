"""Readers for the taxonomy formats people actually have on disk.

Each reader returns a :class:`~.taxonomy.Taxonomy`. Supported:

* COCO-style JSON ``categories`` (COCO, LVIS with synonyms / synset / frequency / def, Objects365,
  ODinW / Roboflow exports). The file is *streamed* with ijson, so the categories of a 1 GB LVIS
  annotation file are read without loading its annotations.
* OpenImages ``class-descriptions*.csv`` (``MID,DisplayName``, no header) with an optional
  ``bbox_labels_600_hierarchy.json`` giving parents.
* YOLO ``data.yaml`` with a ``names`` list or ``{index: name}`` mapping.
* Plain text, one class name per line (blank lines and ``#`` comments ignored).
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from .io.digests import sha256_of_file
from .io.errors import TaxonomyError, excerpt, one_line
from .io.text_files import NestingGuard, load_yaml, read_text, skip_bom, stream_json_items
from .taxonomy import Category, Taxonomy, apply_lenient_fixes

#: File suffix → format name; ``read_taxonomy_file`` dispatches on it.
FORMAT_BY_SUFFIX = {
    ".json": "coco-json",
    ".csv": "openimages-csv",
    ".yaml": "yolo-yaml",
    ".yml": "yolo-yaml",
    ".txt": "names-txt",
    ".names": "names-txt",  # Darknet: one class name per line
}



def _require_file(path: Path) -> None:
    if not path.is_file():
        raise TaxonomyError(f"{path}: file not found")


def read_taxonomy_file(key: str, path: str | Path, hierarchy: str | Path | None = None) -> Taxonomy:
    """Read any supported format, chosen by the file's suffix."""
    path = Path(path)
    _require_file(path)
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMAT_BY_SUFFIX))
        raise TaxonomyError(f"{path}: unsupported taxonomy format {path.suffix!r} (known: {known})")
    if hierarchy is not None and fmt != "openimages-csv":
        raise TaxonomyError(f"{hierarchy}: a hierarchy file only goes with an OpenImages CSV, not {path.name}")
    if fmt == "coco-json":
        return read_coco_json(key, path)
    if fmt == "openimages-csv":
        return read_openimages_csv(key, path, hierarchy)
    if fmt == "yolo-yaml":
        return read_yolo_yaml(key, path)
    return read_names_txt(key, path)


# --------------------------------------------------------------------------- COCO-style JSON
def _iter_json_categories(path: Path) -> Iterable[dict[str, Any]]:
    """Stream ``categories`` items from a JSON object without materialising the rest of the file."""
    found_any = False
    for item in stream_json_items(path, "categories.item", TaxonomyError):
        found_any = True
        yield item
    if not found_any:
        _explain_missing_categories(path)


def _explain_missing_categories(path: Path) -> None:
    """Second pass, only on the error path: say whether the key is absent, empty or not a list."""
    import ijson

    with open(path, "rb") as handle:
        for prefix, event, value in ijson.parse(NestingGuard(skip_bom(handle), path, TaxonomyError)):
            if prefix == "" and event in ("start_array", "string", "number", "boolean", "null"):
                raise TaxonomyError(f"{path}: expected a JSON object with a 'categories' list")
            if prefix == "categories" and event not in ("start_array", "end_array"):
                raise TaxonomyError(f"{path}: 'categories' is not a list")
            if prefix == "categories" and event == "end_array":
                raise TaxonomyError(f"{path}: 'categories' is empty")
    raise TaxonomyError(f"{path}: no 'categories' key in the JSON object")


#: Category fields that LVIS and the label space hold as text; anything else is refused in one line, before it
#: can reach the Parquet writer as a column of mixed types.
TEXT_CATEGORY_FIELDS = ("synset", "frequency", "def")


def read_coco_json(key: str, path: str | Path, lenient: bool = False) -> Taxonomy:
    """COCO-style ``{"categories": [{"id", "name", ...}]}``; LVIS fields are kept when present.

    ``lenient=True`` is for official lists with known quirks (see :func:`~.taxonomy.apply_lenient_fixes`):
    repeated names get distinct global ids and blank-named placeholders are dropped, instead of errors."""
    path = Path(path)
    _require_file(path)
    categories = []
    raw_categories = []
    for position, raw in enumerate(_iter_json_categories(path)):
        raw_categories.append(raw)
        if not isinstance(raw, dict) or "id" not in raw or "name" not in raw:
            raise TaxonomyError(f"{path}: category #{position} needs 'id' and 'name' fields")
        raw_id, name = raw["id"], raw["name"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)):
            raise TaxonomyError(f"{path}: category #{position} has a non-integer id {excerpt(raw_id)}")
        if not isinstance(name, str):
            raise TaxonomyError(f"{path}: category id {raw_id} has a non-text name {excerpt(name)}")
        synonyms = raw.get("synonyms") or []
        if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
            raise TaxonomyError(f"{path}: category id {raw_id} has malformed 'synonyms' (want a list of text)")
        for field in TEXT_CATEGORY_FIELDS:
            if raw.get(field) is not None and not isinstance(raw[field], str):
                raise TaxonomyError(f"{path}: category id {raw_id} has a non-text {field!r} "
                                    f"({type(raw[field]).__name__}; want text or nothing)")
        categories.append(
            Category(
                local_id=str(raw_id),
                name=name.strip(),
                synonyms=tuple(s.strip() for s in synonyms),
                synset=raw.get("synset"),
                frequency=raw.get("frequency"),
                definition=raw.get("def"),
                supercategory=_supercategory(raw, name),
            )
        )
    # COCO-style files are not always sorted by id (their order is arbitrary); sorting by id makes the
    # union's order a function of the content, not of how the file was written.
    categories.sort(key=lambda c: _numeric_first(c.local_id))
    extra: dict = {}
    project = _roboflow_project_category(path, raw_categories)
    if project is not None:
        categories = [c for c in categories if c.local_id != str(project["id"])]
        extra["dropped_categories"] = [{"id": project["id"], "name": project["name"],
                                        "why": "Roboflow's project-level category (supercategory 'none', never annotated)"}]
    if len({str(c.get("supercategory")) for c in raw_categories if c is not project}) == 1:
        # one value shared by every class names the project (Roboflow and ODinW files: ``VOC``,
        # ``creatures``), not a group that tells classes apart
        categories = [replace(c, supercategory=None) for c in categories]
    if lenient:
        categories, fixes = apply_lenient_fixes(categories)
        extra.update(fixes)
    return Taxonomy(key, tuple(categories), str(path), sha256_of_file(path), "coco-json", extra)


def _supercategory(raw: dict, name: str) -> str | None:
    """COCO's ``supercategory`` as a parent name: kept when it is text naming a group, not Roboflow's
    ``"none"`` placeholder and not the class itself (``Cottontail-Rabbit`` ⊂ ``Cottontail-Rabbit``)."""
    value = raw.get("supercategory")
    if not isinstance(value, str) or not value.strip() or value.strip().lower() in ("none", name.strip().lower()):
        return None
    return value.strip()


def _roboflow_project_category(path: Path, raw: list[dict]) -> dict | None:
    """Roboflow's COCO exports list the project itself as a category (``supercategory: "none"``, usually id 0)
    that is the supercategory of every real class and is never annotated: it is not a class."""
    candidates = [c for c in raw if c.get("supercategory") == "none"]
    if len(candidates) != 1 or len(raw) < 2:
        return None
    project = candidates[0]
    others = [c for c in raw if c is not project]
    if not all(c.get("supercategory") == project["name"] for c in others):
        return None
    # only for files of this shape (small exports): is it ever used?
    for category_id in stream_json_items(path, "annotations.item.category_id", TaxonomyError):
        if category_id == project["id"]:
            return None
    return project


def _numeric_first(local_id: str) -> tuple[int, int | str]:
    return (0, int(local_id)) if local_id.lstrip("-").isdigit() else (1, local_id)


# --------------------------------------------------------------------------- OpenImages
def _openimages_rows(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise TaxonomyError(
                        f"{path}:{line_number}: expected 2 columns MID,DisplayName, found {len(row)}"
                    )
                mid, name = row[0].strip(), row[1].strip()
                if line_number == 1 and not mid.startswith("/m/") and not mid.startswith("/g/"):
                    continue  # a header line such as "LabelName,DisplayName"
                rows.append((mid, name))
        except csv.Error as err:
            raise TaxonomyError(f"{path}: malformed CSV ({one_line(err)})") from None
        except UnicodeDecodeError:
            raise TaxonomyError(f"{path}: not UTF-8 text") from None
    return rows


def read_openimages_hierarchy(path: str | Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Parents (``Subcategory`` links) and wholes (``Part`` links) of every MID in the hierarchy JSON.

    The hierarchy is a graph, not a tree: a MID can appear under several parents, so both maps hold lists.
    The synthetic root ``/m/0bl9f`` ("Entity") is not a class and is not recorded as a parent.
    """
    path = Path(path)
    _require_file(path)
    try:
        root = json.loads(read_text(path, TaxonomyError))
    except json.JSONDecodeError as err:
        raise TaxonomyError(f"{path}: malformed JSON ({one_line(err)})") from None
    except RecursionError:
        raise TaxonomyError(f"{path}: JSON nested deeper than Python's reader allows") from None
    if not isinstance(root, dict) or "LabelName" not in root:
        raise TaxonomyError(f"{path}: not an OpenImages hierarchy (no 'LabelName' at the top)")
    parents: dict[str, list[str]] = {}
    part_of: dict[str, list[str]] = {}

    def add(mapping: dict[str, list[str]], child: str, parent: str) -> None:
        if parent != root["LabelName"] and parent not in mapping.setdefault(child, []):
            mapping[child].append(parent)

    stack = [root]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
            raise TaxonomyError(f"{path}: a hierarchy node without a text 'LabelName' ({str(node)[:60]})")
        name = node["LabelName"]
        for child in node.get("Subcategory", []):
            add(parents, child["LabelName"], name)
            stack.append(child)
        for part in node.get("Part", []):
            add(part_of, part["LabelName"], name)
            stack.append(part)
    return parents, part_of


def read_openimages_csv(key: str, path: str | Path, hierarchy: str | Path | None = None,
                        lenient: bool = False) -> Taxonomy:
    """OpenImages class descriptions (``MID,DisplayName``), in file order, with optional hierarchy."""
    path = Path(path)
    _require_file(path)
    rows = _openimages_rows(path)
    parents: dict[str, list[str]] = {}
    part_of: dict[str, list[str]] = {}
    extra = {}
    if hierarchy is not None:
        parents, part_of = read_openimages_hierarchy(hierarchy)
        extra["hierarchy"] = {"source": str(hierarchy), "sha256": sha256_of_file(Path(hierarchy))}
    present = {mid for mid, _ in rows}
    categories = [
        Category(
            local_id=mid,
            name=name,
            parents=_nearest_present(mid, parents, present),
            part_of=_nearest_present(mid, part_of, present),
        )
        for mid, name in rows
    ]
    if lenient:
        categories, fixes = apply_lenient_fixes(categories)
        extra.update(fixes)
    return Taxonomy(key, tuple(categories), str(path), sha256_of_file(path), "openimages-csv", extra)


def _nearest_present(mid: str, links: dict[str, list[str]], present: set[str]) -> tuple[str, ...]:
    """The closest ancestors of ``mid`` that are classes of the file, skipping the hierarchy's nodes that
    are not: in the 500-class challenge list ``Mouse`` (the animal) sits under ``Animal``, because its
    parent ``Mammal`` is not one of the 500."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(links.get(mid, [])))
    while stack:
        node = stack.pop()
        if node in seen or node == mid:
            continue
        seen.add(node)
        if node in present:
            found.append(node)
        else:
            stack.extend(reversed(links.get(node, [])))
    return tuple(found)


# --------------------------------------------------------------------------- YOLO and plain text
#: The most classes a file may declare without listing them (YOLO's ``nc``): 100k, the largest label
#: spaces this project measures; a declared ``nc: 100000000`` would make 100M placeholder names.
MAX_DECLARED_CLASSES = 100_000


def read_yolo_yaml(key: str, path: str | Path) -> Taxonomy:
    """YOLO ``data.yaml``: ``names`` as a list (index = class id) or an ``{id: name}`` mapping."""
    path = Path(path)
    _require_file(path)
    document = load_yaml(path, TaxonomyError)
    if not isinstance(document, dict) or ("names" not in document and "nc" not in document):
        raise TaxonomyError(f"{path}: no 'names' list (or 'nc') in the YAML file")
    names = document.get("names")
    count = document.get("nc")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count <= 0):
        raise TaxonomyError(f"{path}: 'nc' must be a positive whole number, not {str(count)[:40]!r}")
    if count is not None and count > MAX_DECLARED_CLASSES:
        raise TaxonomyError(f"{path}: 'nc' is {count:,}, more than the limit of {MAX_DECLARED_CLASSES:,} classes")
    if names is None and count is not None:
        names = [f"class_{i}" for i in range(count)]  # Ultralytics' names for a file with only nc
    if isinstance(names, list):
        pairs = list(enumerate(names))
    elif isinstance(names, dict):
        pairs = sorted(names.items(), key=lambda item: _numeric_first(str(item[0])))
    else:
        raise TaxonomyError(f"{path}: 'names' must be a list or a mapping, not {type(names).__name__}")
    if count is not None and count != len(pairs):
        raise TaxonomyError(f"{path}: 'nc' is {count} but 'names' has {len(pairs)} classes")
    categories = []
    for class_id, name in pairs:
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            name = str(name)  # Ultralytics reads a numeric name (e.g. a year or a digit class) as text
        if not isinstance(name, str):
            raise TaxonomyError(f"{path}: class {class_id} has a non-text name {excerpt(name)}")
        categories.append(Category(local_id=str(class_id), name=name.strip()))
    return Taxonomy(key, tuple(categories), str(path), sha256_of_file(path), "yolo-yaml")


def read_names_txt(key: str, path: str | Path) -> Taxonomy:
    """One class name per line; the local id is the 0-based position among the names."""
    path = Path(path)
    _require_file(path)
    lines = read_text(path, TaxonomyError).split("\n")  # only \n ends a line: other control characters are errors
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    categories = tuple(Category(local_id=str(i), name=name) for i, name in enumerate(names))
    return Taxonomy(key, categories, str(path), sha256_of_file(path), "names-txt")
