"""Generate ``data/taxonomies/*.json`` (the built-in datasets) from official-format category files.

    python data/make_builtin_taxonomies.py [--source ../shared/taxonomies]

It reads the files with scaledet's own readers, so a built-in key gives exactly the labels the user would
get from the official file, and writes only facts in the compact schema ``scaledet.taxonomy/1``: ids,
names, synonyms, WordNet synsets, LVIS frequency, COCO supercategories, OpenImages parents / part-of MIDs,
Objects365 prompt-name fixes. Definition sentences and image counts are left out (give your own LVIS file to get definitions).
See docs/provenance.md for where the source files come from.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from scaledet.labelspace.builtin import SCHEMA, taxonomy_to_block
from scaledet.labelspace.readers import read_coco_json, read_openimages_csv
from scaledet.labelspace.taxonomy import Taxonomy

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "taxonomies"


def without_definitions(taxonomy: Taxonomy) -> Taxonomy:
    categories = tuple(replace(c, definition=None) for c in taxonomy.categories)
    return replace(taxonomy, categories=categories)


def with_o365_prompt_fixes(taxonomy: Taxonomy, fixes_path: Path) -> Taxonomy:
    """Known Objects365 typos (``Moniter/TV``) become prompt names; global ids keep the official names."""
    fixes = json.loads(fixes_path.read_text())
    categories = tuple(
        replace(c, prompt_name=fixes[c.local_id]) if c.local_id in fixes and fixes[c.local_id].strip() != c.name else c
        for c in taxonomy.categories
    )
    return replace(taxonomy, categories=categories)


def odinw_short_names(config_names: list[str]) -> dict[str, str]:
    """GLIP config name → short dataset name: the part before the first ``_`` (``Aquarium``), or the whole
    config name where that part is shared within the suite (``EgoHands_generic``, ``EgoHands_specific``)."""
    heads = [name.split("_")[0] for name in config_names]
    return {name: (head if heads.count(head) == 1 else name) for name, head in zip(config_names, heads)}


def odinw_suite(source: Path, folder: str, suite: str) -> dict:
    files = sorted((source / folder).glob("*.json"), key=lambda p: p.stem.lower())
    short = odinw_short_names([f.stem for f in files])
    datasets = {}
    for file in files:
        name = short[file.stem]
        taxonomy = read_coco_json(f"{suite}/{name}", file, lenient=True)
        datasets[name] = {"config": file.stem, **taxonomy.extra, **taxonomy_to_block(taxonomy, f"{folder}/{file.name}")}
    return {"schema": SCHEMA, "key": suite, "datasets": datasets}


def single(key: str, taxonomy: Taxonomy, file_name: str, extra: dict | None = None) -> dict:
    return {"schema": SCHEMA, "key": key, **(extra or {}), **taxonomy_to_block(taxonomy, file_name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the official files")
    parser.add_argument("--out", type=Path, default=HERE / "taxonomies")
    args = parser.parse_args()
    src = args.source
    hierarchy = src / "bbox_labels_600_hierarchy.json"
    documents = {
        "lvis": single("lvis", without_definitions(read_coco_json("lvis", src / "lvis_v1_categories.json")),
                       "lvis_v1_categories.json"),
        "coco": single("coco", read_coco_json("coco", src / "coco_2017_categories.json"), "coco_2017_categories.json"),
        "o365": single("o365", with_o365_prompt_fixes(read_coco_json("o365", src / "objects365_v2_categories.json"),
                                                      src / "objects365_v2_name_fixes.json"),
                       "objects365_v2_categories.json"),
        "oid": single("oid", read_openimages_csv("oid", src / "oidv6_class_descriptions_boxable.csv", hierarchy),
                      "oidv6_class_descriptions_boxable.csv", {"hierarchy": "bbox_labels_600_hierarchy.json"}),
        "oid500": single("oid500", read_openimages_csv("oid500", src / "oid_challenge_2019_classes_500.csv",
                                                       hierarchy, lenient=True),
                         "oid_challenge_2019_classes_500.csv", {"hierarchy": "bbox_labels_600_hierarchy.json"}),
        "odinw": odinw_suite(src, "odinw_13", "odinw"),
        "odinw35": odinw_suite(src, "odinw_35", "odinw35"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        path = args.out / f"{name}.json"
        # One category per line: compact, and diffs of a regenerated file stay readable.
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        text = text.replace("],[", "],\n[")
        path.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
