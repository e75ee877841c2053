"""Per-image label states on real-format files, against values derived by hand from the rules.

The build: LVIS v0.5 categories from the LVIS API's own 100-image validation file (``../shared/fixtures``,
key ``lvis``), the bundled COCO and OpenImages taxonomies; concepts from ``scaledet-labels merge``. The
images: that LVIS file's, and a COCO-format file written here field by field from the COCO format's spec
(real COCO category ids: 1 person, 16 bird, 17 cat, 18 dog, 21 cow).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LVIS_FIXTURE as FIXTURE
from scaledet.labelspace.label_states import NEGATIVE, PARTIAL, POSITIVE, UNKNOWN

COCO_FILE = {
    "info": {"description": "two images written field by field for scaledet's label-state tests"},
    "licenses": [],
    "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 640, "height": 480},
               {"id": 2, "file_name": "000000000002.jpg", "width": 640, "height": 480}],
    "annotations": [{"id": 10, "image_id": 1, "category_id": 17, "bbox": [10.0, 20.0, 200.0, 150.0], "area": 30000.0,
                     "iscrowd": 0, "segmentation": []},
                    {"id": 11, "image_id": 2, "category_id": 1, "bbox": [50.0, 40.0, 100.0, 300.0], "area": 30000.0,
                     "iscrowd": 0, "segmentation": []}],
    "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 16, "name": "bird", "supercategory": "animal"},
                   {"id": 17, "name": "cat", "supercategory": "animal"},
                   {"id": 18, "name": "dog", "supercategory": "animal"},
                   {"id": 21, "name": "cow", "supercategory": "animal"}],
}


@pytest.fixture(scope="module")
def merged_build(lvis_coco_oid_build, tmp_path_factory):
    root = lvis_coco_oid_build.parent
    (root / "coco.json").write_text(json.dumps(COCO_FILE))
    return root


def _spaces(root: Path):
    from scaledet.labelspace.label_states import relations_for_build
    from scaledet.labelspace.outputs import LabelSpaceOutput

    output = LabelSpaceOutput.load(root / "labelspace", with_embeddings=False)
    relations = relations_for_build(output)
    index = {g: i for i, g in enumerate(output.global_ids)}
    return relations, index


def test_the_merge_joins_the_labels_the_examples_use(merged_build):
    relations, index = _spaces(merged_build)
    for group in (["coco/cat", "lvis/cat", "oid/Cat"], ["coco/bird", "lvis/bird", "oid/Bird"],
                  ["coco/dog", "lvis/dog", "oid/Dog"], ["lvis/lizard", "oid/Lizard"], ["coco/cow", "lvis/cow"]):
        assert len({int(relations.concept[index[g]]) for g in group}) == 1, group
    assert relations.merge_sha256 and relations.merge_file.endswith("merged.parquet")


def _dataset_states(root: Path, key: str, annotations: Path, image_id: int):
    from scaledet.detector.data import CocoDetectionDataset, DatasetSpec
    from scaledet.detector.vocabulary import UnifiedLabelSpace

    space = UnifiedLabelSpace(root / "labelspace")
    relations, index = _spaces(root)
    dataset = CocoDetectionDataset(DatasetSpec(key, str(annotations), str(root), check_images=False), space,
                                   train=False)
    dataset.use_label_states(relations)
    position = int(list(dataset.index.image_ids).index(image_id))
    states = dataset.label_states(position)
    return dataset.index.protocol, {g: int(states[i]) for g, i in index.items()}


def test_states_of_a_coco_image_with_a_cat(merged_build):
    protocol, states = _dataset_states(merged_build, "coco", merged_build / "coco.json", 1)
    assert protocol == "exhaustive"
    assert states["coco/cat"] == POSITIVE                 # annotated
    assert states["coco/dog"] == NEGATIVE                 # COCO is exhaustive: absent
    assert states["lvis/cat"] == states["oid/Cat"] == POSITIVE   # same concept as coco/cat
    assert states["lvis/dog"] == states["oid/Dog"] == NEGATIVE   # same concept as the absent coco/dog
    assert states["oid/Animal"] == PARTIAL                # ancestor of oid/Cat: present, never negative
    assert states["oid/Carnivore"] == states["oid/Mammal"] == PARTIAL
    assert states["lvis/acorn"] == UNKNOWN                # a concept COCO does not cover
    assert states["oid/Tortoise"] == UNKNOWN


def test_states_of_a_coco_image_without_a_cat_say_nothing_about_animal(merged_build):
    _, states = _dataset_states(merged_build, "coco", merged_build / "coco.json", 2)
    assert states["coco/person"] == POSITIVE and states["coco/cat"] == NEGATIVE
    assert states["oid/Cat"] == NEGATIVE and states["oid/Bird"] == NEGATIVE
    assert states["oid/Animal"] == UNKNOWN                # no cat says nothing about animals
    assert states["oid/Owl"] == NEGATIVE                  # below the absent Bird, which COCO annotates exhaustively


def test_states_of_lvis_images_follow_the_federated_lists(merged_build):
    # image 87470: annotated cow (not exhaustive), cowboy_hat, pole; verified absent: lizard, desk, microphone, …
    protocol, states = _dataset_states(merged_build, "lvis", FIXTURE, 87470)
    assert protocol == "federated"
    assert states["lvis/cowboy_hat"] == POSITIVE and states["lvis/pole"] == POSITIVE
    assert states["lvis/cow"] == PARTIAL and states["coco/cow"] == PARTIAL  # present, not every cow boxed
    assert states["lvis/lizard"] == NEGATIVE and states["oid/Lizard"] == NEGATIVE
    assert states["lvis/dog"] == UNKNOWN and states["coco/dog"] == UNKNOWN  # LVIS absence says nothing
    assert states["oid/Reptile"] == UNKNOWN               # no lizard says nothing about reptiles
    # image 57672: birds verified absent, so OpenImages' Owl (under Bird) is absent too
    _, states = _dataset_states(merged_build, "lvis", FIXTURE, 57672)
    assert states["lvis/bird"] == states["coco/bird"] == states["oid/Bird"] == NEGATIVE
    assert states["oid/Owl"] == NEGATIVE and states["oid/Animal"] == UNKNOWN
    assert states["lvis/life_jacket"] == POSITIVE and states["lvis/visor"] == PARTIAL


def test_without_a_merge_other_datasets_stay_unknown(merged_build):
    from scaledet.labelspace.label_states import LabelRelations
    from scaledet.labelspace.outputs import LabelSpaceOutput

    output = LabelSpaceOutput.load(merged_build / "labelspace", with_embeddings=False)
    relations = LabelRelations.from_build(output)
    index = {g: i for i, g in enumerate(output.global_ids)}
    states = relations.coverage("coco", "exhaustive").states([index["coco/cat"]])
    assert states[index["coco/dog"]] == NEGATIVE and states[index["lvis/dog"]] == UNKNOWN
    assert states[index["oid/Cat"]] == UNKNOWN and states[index["oid/Animal"]] == UNKNOWN


def test_openimages_verified_labels_expand_through_the_hierarchy(merged_build):
    """The verified protocol: boxes positive, verified present partial, verified absent negative with
    every descendant; a verified-present label's ancestors present."""
    relations, index = _spaces(merged_build)
    coverage = relations.coverage("oid", "verified")
    states = coverage.states([index["oid/Owl"]], negatives=[index["oid/Reptile"]], verified_present=[index["oid/Man"]])
    assert states[index["oid/Owl"]] == POSITIVE and states[index["oid/Bird"]] == PARTIAL
    assert states[index["oid/Animal"]] == PARTIAL and states[index["oid/Person"]] == PARTIAL
    assert states[index["oid/Lizard"]] == NEGATIVE and states[index["lvis/lizard"]] == NEGATIVE
    assert states[index["oid/Cat"]] == UNKNOWN and states[index["coco/cat"]] == UNKNOWN
