"""Readers on the official files and on each supported format, including the bad inputs."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from conftest import run_cli
from scaledet.labelspace import builtin
from scaledet.labelspace.io.errors import TaxonomyError
from scaledet.labelspace.readers import (read_coco_json, read_names_txt, read_openimages_csv,
                                         read_taxonomy_file, read_yolo_yaml)

ODINW13_SIZES = {"AerialMaritimeDrone": 5, "Aquarium": 7, "CottontailRabbits": 1, "EgoHands": 1,
                 "NorthAmericaMushrooms": 2, "Packages": 1, "PascalVOC": 20, "pistols": 1, "pothole": 1,
                 "Raccoon": 1, "ShellfishOpenImages": 3, "thermalDogsAndPeople": 2, "VehiclesOpenImages": 5}


def test_official_files_have_the_published_counts(shared_taxonomies):
    t = shared_taxonomies
    assert len(read_coco_json("lvis", t / "lvis_v1_categories.json")) == 1203
    assert len(read_coco_json("coco", t / "coco_2017_categories.json")) == 80
    assert len(read_coco_json("o365", t / "objects365_v2_categories.json")) == 365
    oid = read_openimages_csv("oid", t / "oidv6_class_descriptions_boxable.csv", t / "bbox_labels_600_hierarchy.json")
    assert len(oid) == 601
    assert len(read_openimages_csv("oid500", t / "oid_challenge_2019_classes_500.csv", lenient=True)) == 500


def test_lvis_fields_and_oid_hierarchy(shared_taxonomies):
    lvis = read_coco_json("lvis", shared_taxonomies / "lvis_v1_categories.json")
    first = lvis.categories[0]
    assert (first.local_id, first.name, first.synset, first.frequency) == ("1", "aerosol_can", "aerosol.n.02", "c")
    assert first.synonyms == ("aerosol_can", "spray_can") and first.definition.startswith("a dispenser")
    oid = read_openimages_csv("oid", shared_taxonomies / "oidv6_class_descriptions_boxable.csv",
                              shared_taxonomies / "bbox_labels_600_hierarchy.json")
    by_name = {c.name: c for c in oid.categories}
    footwear_mid = by_name["Footwear"].local_id
    assert footwear_mid in by_name["High heels"].parents
    assert sum(len(c.parents) > 1 for c in oid.categories) > 10  # the hierarchy is a graph


def test_builtin_keys_have_the_published_counts():
    counts = {key: len(builtin.load_builtin(key)[0]) for key in builtin.SINGLE_DATASETS}
    assert counts == {"lvis": 1203, "coco": 80, "o365": 365, "oid": 601, "oid500": 500}
    odinw = {t.key: len(t) for t in builtin.load_builtin("odinw")}
    assert odinw == {f"odinw/{k}": v for k, v in ODINW13_SIZES.items()}
    # GLIP's configs/odinw_35 holds 36 configs: the 35 ODinW datasets, PlantDoc at two resolutions.
    odinw35 = [t.key for t in builtin.load_builtin("odinw35")]
    assert len(odinw35) == 36 and {"odinw35/plantdoc_100x100", "odinw35/plantdoc_416x416"} <= set(odinw35)
    assert [c.id_name for c in builtin.load_builtin("odinw35/ChessPieces")[0].categories][0] == "black bishop"
    assert [c.name for c in builtin.load_builtin("odinw/Aquarium")[0].categories][:3] == ["fish", "jellyfish", "penguin"]


def test_builtin_oid500_keeps_both_benches_apart():
    ids = [c.id_name for c in builtin.load_builtin("oid500")[0].categories]
    assert "Bench [/m/076lb9]" in ids and "Bench [/m/0cvnqh]" in ids and "Bench" not in ids


def test_builtin_data_is_what_the_committed_script_generates(shared_taxonomies, tmp_path):
    """data/taxonomies/ must be reproducible from the official files with the committed script."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(repo / "data" / "make_builtin_taxonomies.py"), "--source",
                    str(shared_taxonomies), "--out", str(tmp_path)], check=True, capture_output=True)
    for bundled in sorted((repo / "data" / "taxonomies").glob("*.json")):
        assert (tmp_path / bundled.name).read_bytes() == bundled.read_bytes(), bundled.name


def test_builtin_data_carries_no_definitions():
    text = (Path(__file__).resolve().parents[1] / "data" / "taxonomies" / "lvis.json").read_text()
    assert "a dispenser that holds" not in text


def test_yolo_and_names_txt(tmp_path):
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  0: hard hat\n  1: vest\n  2: person\n")
    assert [c.name for c in read_yolo_yaml("ppe", tmp_path / "data.yaml").categories] == ["hard hat", "vest", "person"]
    (tmp_path / "list.yaml").write_text("names: [cat, dog]\n")
    assert [c.local_id for c in read_taxonomy_file("pets", tmp_path / "list.yaml").categories] == ["0", "1"]
    (tmp_path / "names.txt").write_text("# my classes\nforklift\n\npallet \n")
    taxonomy = read_names_txt("warehouse", tmp_path / "names.txt")
    assert [(c.local_id, c.name) for c in taxonomy.categories] == [("0", "forklift"), ("1", "pallet")]


def test_openimages_csv_with_header_is_read(tmp_path):
    csv_file = tmp_path / "classes.csv"
    csv_file.write_text("LabelName,DisplayName\n/m/01,Cat\n/m/02,Dog\n")
    assert [c.local_id for c in read_taxonomy_file("mine", csv_file).categories] == ["/m/01", "/m/02"]


def test_categories_of_a_large_annotation_file_are_streamed(tmp_path):
    """Annotations before the categories must not be loaded: peak memory stays far below the file size."""
    path = tmp_path / "instances_big.json"
    annotation = json.dumps({"id": 0, "image_id": 1, "category_id": 1, "bbox": [1.5, 2.5, 30.0, 40.0],
                             "area": 1200.0, "iscrowd": 0, "segmentation": [[1, 2, 3, 4, 5, 6, 7, 8]]})
    with open(path, "w") as handle:
        handle.write('{"info": {}, "annotations": [')
        handle.write(",".join([annotation] * 200_000))
        handle.write('], "categories": [{"id": 1, "name": "widget"}, {"id": 2, "name": "gadget"}]}')
    size = path.stat().st_size
    assert size > 25_000_000
    tracemalloc.start()
    taxonomy = read_coco_json("big", path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [c.name for c in taxonomy.categories] == ["widget", "gadget"]
    assert peak < size / 8, f"peak {peak} bytes for a {size}-byte file"  # json.load would need ~10× the size


BAD_FILES = {
    "malformed.json": ('{"categories": [{"id": 1, "name": "a"},', "malformed JSON"),
    "nocats.json": ('{"images": []}', "no 'categories' key"),
    "emptycats.json": ('{"categories": []}', "'categories' is empty"),
    "dupid.json": ('{"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', "duplicate category id 1"),
    "dupname.json": ('{"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a "}]}', "duplicate category name 'a'"),
    "emptyname.json": ('{"categories": [{"id": 1, "name": "  "}]}', "empty name"),
    "noid.json": ('{"categories": [{"name": "a"}]}', "needs 'id' and 'name'"),
    "list.json": ('[{"id": 1, "name": "a"}]', "expected a JSON object"),
    "bad.csv": ("/m/01,Cat,extra\n", "expected 2 columns"),
    "bad.yaml": ("names: [a, b\n", "malformed YAML"),
    "nonames.yaml": ("train: images/train\n", "no 'names' list (or 'nc')"),
    "empty.txt": ("\n# nothing\n", "no categories found"),
    "classes.xml": ("<x/>", "unsupported taxonomy format"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, name):
    content, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TaxonomyError) as info:
        read_taxonomy_file("mine", path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_unknown_dataset_key():
    with pytest.raises(TaxonomyError, match="unknown dataset key 'coco2'"):
        builtin.load_builtin("coco2")
    with pytest.raises(TaxonomyError, match="unknown dataset key 'odinw/Atlantis'"):
        builtin.load_builtin("odinw/Atlantis")


# --------------------------------------------------------------------------- formats as their tools write them
ROBOFLOW = {  # the shape of Roboflow's `_annotations.coco.json`: the project is category 0, supercategory "none"
    "info": {"description": "Exported from roboflow.com"},
    "categories": [{"id": 0, "name": "pets", "supercategory": "none"},
                   {"id": 1, "name": "cat", "supercategory": "pets"},
                   {"id": 2, "name": "dog", "supercategory": "pets"}],
    "images": [{"id": 0, "file_name": "a.jpg", "width": 10, "height": 10}],
    "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}],
}


def test_roboflow_project_category_is_dropped_and_said(tmp_path):
    path = tmp_path / "_annotations.coco.json"
    path.write_text(json.dumps(ROBOFLOW))
    taxonomy = read_taxonomy_file("pets", path)
    assert [c.name for c in taxonomy.categories] == ["cat", "dog"]
    assert taxonomy.extra["dropped_categories"][0]["id"] == 0
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"pets={path}", "--out", str(tmp_path / "ls"), "-q")
    assert done.returncode == 0 and "dropped category 0 'pets'" in done.stdout, done.stdout + done.stderr
    # … but not when it is annotated: then it is a class
    used = {**ROBOFLOW, "annotations": ROBOFLOW["annotations"] + [
        {"id": 1, "image_id": 0, "category_id": 0, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}]}
    path.write_text(json.dumps(used))
    assert [c.name for c in read_taxonomy_file("pets", path).categories] == ["pets", "cat", "dog"]


@pytest.mark.parametrize("text,expected", [
    ("nc: 3\n", ["class_0", "class_1", "class_2"]),               # Ultralytics names a file with only nc
    ("names: [1998, 2005, car]\n", ["1998", "2005", "car"]),      # numeric names are text
    ("nc: 2\nnames: {0: cat, 1: dog}\n", ["cat", "dog"]),
])
def test_ultralytics_data_files(tmp_path, text, expected):
    path = tmp_path / "data.yaml"
    path.write_text(text)
    assert [c.name for c in read_taxonomy_file("y", path).categories] == expected


def test_ultralytics_nc_that_disagrees_with_names(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("nc: 3\nnames: [cat, dog]\n")
    with pytest.raises(TaxonomyError, match="'nc' is 3 but 'names' has 2 classes"):
        read_taxonomy_file("y", path)


def test_darknet_names_file(tmp_path):
    path = tmp_path / "coco.names"
    path.write_bytes("\ufeffperson\r\nbicycle\r\ncar\r\n".encode())
    assert [c.name for c in read_taxonomy_file("d", path).categories] == ["person", "bicycle", "car"]


def test_coco_supercategory_is_kept_as_a_parent_name(tmp_path):
    coco = {c.name: c for c in builtin.load_builtin("coco")[0].categories}
    assert coco["car"].supercategory == "vehicle" and coco["mouse"].supercategory == "electronic"
    assert coco["person"].supercategory is None  # 'person' ⊂ 'person' says nothing
    path = tmp_path / "animals.json"
    path.write_text(json.dumps({"categories": [{"id": 1, "name": "cat", "supercategory": "pet"},
                                               {"id": 2, "name": "cow", "supercategory": "livestock"}]}))
    assert [c.supercategory for c in read_coco_json("a", path).categories] == ["pet", "livestock"]
    # one value shared by every class names the project (Roboflow, ODinW), not a group
    assert all(c.supercategory is None for c in read_taxonomy_file("pets", _write(tmp_path, ROBOFLOW)).categories)
    aquarium = builtin.load_builtin("odinw/Aquarium")[0]
    assert all(c.supercategory is None for c in aquarium.categories)


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "_annotations.coco.json"
    path.write_text(json.dumps(document))
    return path


def test_openimages_parents_skip_classes_the_list_does_not_have():
    """In the 500-class challenge list the animal Mouse's parent Mammal is absent: its parent is Animal."""
    oid500 = {c.key or c.name: c for c in builtin.load_builtin("oid500")[0].categories}
    names = {c.local_id: c.name for c in oid500.values()}
    assert [names[p] for p in oid500["Mouse [/m/04rmv]"].parents] == ["Animal"]
    assert [names[p] for p in oid500["Boy"].parents] == ["Person"]


def test_slash_joined_synonyms_of_ultralytics_lvis_yaml(tmp_path):
    """Ultralytics' lvis.yaml joins LVIS synonyms with '/'. With --slash synonyms, inspect finds a class by
    any of them; names (and so global ids) stay as the file writes them, and classes whose first alternative
    is another's get a prompt of their own."""
    import json

    from conftest import run_cli

    (tmp_path / "lvis.yaml").write_text(
        "path: ../datasets/lvis\ntrain: train.txt\nval: val.txt\nnames:\n"
        "  0: aerosol can/spray can\n  16: arctic/arctic type of shoe/galosh/golosh/rubber/rubber type of shoe/gumshoe\n"
        "  135: bow/bow weapon\n  136: bow/bow decorative ribbons\n  446: fish\n  447: fish/fish food\n")
    out = tmp_path / "ls"
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"lvis={tmp_path / 'lvis.yaml'}", "--slash", "synonyms",
                   "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    shown = run_cli("scaledet-labels", "inspect", "galosh", "--json", "--labelspace", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "lvis/arctic/arctic type of shoe/galosh/golosh/rubber/rubber type of shoe/gumshoe" in shown.stdout
    import pyarrow.parquet as pq

    prompts = {r["global_id"]: r["prompt"] for r in pq.read_table(out / "labels.parquet").to_pylist()}
    assert prompts["lvis/bow/bow weapon"] == "a photo of a bow weapon."
    assert prompts["lvis/bow/bow decorative ribbons"] == "a photo of a bow decorative ribbons."
    assert prompts["lvis/fish"] == "a photo of a fish." and prompts["lvis/fish/fish food"] == "a photo of a fish food."
    assert json.loads((out / "manifest.json").read_text())["datasets"][0]["slash"] == "synonyms"
    # the default reads '/' as alternatives of one class, Objects365's way
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"lvis={tmp_path / 'lvis.yaml'}", "--out",
                   str(tmp_path / "alt"), "-q")
    assert done.returncode == 0, done.stderr
    prompts = {r["global_id"]: r["prompt"] for r in pq.read_table(tmp_path / "alt" / "labels.parquet").to_pylist()}
    assert prompts["lvis/aerosol can/spray can"] == "a photo of a aerosol can or spray can."


def test_w_slash_is_one_word_not_two_alternatives():
    from scaledet.labelspace.prompts import normalize_name

    assert normalize_name("Truck w/Box") == "truck w/box"            # xView, as Ultralytics ships it
    assert normalize_name("Cargo Truck W/Flatbed") == "cargo truck w/flatbed"
    assert normalize_name("Cabinet/shelf") == "cabinet or shelf"      # Objects365's alternatives, as before
    assert normalize_name("arrow/w") == "arrow or w"
