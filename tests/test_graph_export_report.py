"""Label graph, top-k similarity, exports and report on the real built-in union."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import run_cli
from scaledet.labelspace import LabelSpaceOutput
from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.export import (export, read_vocabulary_file, select_from_build, select_vocabulary)
from scaledet.labelspace.graph import LabelGraph
from scaledet.labelspace.similarity import SimilarityMatrix, write_similarity


@pytest.fixture(scope="module")
def output(builtin_union):
    return LabelSpaceOutput.load(builtin_union.out_dir)


@pytest.fixture(scope="module")
def graph(output):
    return LabelGraph(output)


def test_person_cluster_spans_all_four_datasets(graph):
    clusters = [set(c["members"]) for c in graph.clusters()]
    assert any({"coco/person", "o365/Person", "oid/Person", "lvis/person"} <= c for c in clusters)
    assert not any({"coco/person", "coco/car"} <= c for c in clusters)


def test_footwear_and_sneakers_are_linked(graph):
    kinds = {d["kind"] for d in graph.graph.get_edge_data("o365/Sneakers", "oid/Footwear", default={}).values()}
    assert kinds & {"granularity", "similar"}
    granular = {(g["label"], g["coarser"]) for g in graph.granularity()}
    assert ("o365/Other Shoes", "oid/Footwear") in granular


def test_parent_and_synonym_edges(graph):
    parents = {v for _, v, d in graph.graph.out_edges("oid/High heels", data=True) if d["kind"] == "parent"}
    assert parents == {"oid/Footwear"}
    assert any(d["kind"] == "synonym" for d in graph.graph.get_edge_data("coco/person", "o365/Person", default={}).values()) \
        or any(d["kind"] == "synonym" for d in graph.graph.get_edge_data("o365/Person", "coco/person", default={}).values())


def test_ambiguous_names_are_flagged(graph):
    flagged = {f["name"]: f for f in graph.ambiguities()}
    assert "mouse" in flagged and "lvis/mouse_(computer_equipment)" in flagged["mouse"]["labels"]
    assert "bow" in flagged and flagged["bow"]["kind"] == "several senses"


def test_hypernym_expansion_finds_apples_for_fruit(graph):
    fruit = set(graph.expand("fruit"))
    assert {"oid/Fruit", "oid/Apple", "coco/apple", "lvis/apple", "o365/Apple"} <= fruit
    assert "coco/car" not in fruit and "oid/Footwear" not in fruit
    assert graph.expand("no such thing") == []


def test_graph_command_writes_graphml_and_parquet(output, tmp_path):
    done = run_cli("scaledet-labels", "graph", "--labelspace", str(output.directory), "--out", str(tmp_path / "g"))
    assert done.returncode == 0, done.stderr
    loaded = nx.read_graphml(tmp_path / "g" / "label_graph.graphml")
    assert loaded.number_of_nodes() == 2249
    edges = pq.read_table(tmp_path / "g" / "edges.parquet").to_pandas()
    assert set(edges["kind"]) == {"parent", "synonym", "similar", "granularity"}
    findings = json.loads((tmp_path / "g" / "findings.json").read_text())
    assert findings["clusters"] and findings["merge_candidates"][0]["confidence"] == 1.0


@pytest.mark.parametrize("tile", [None, 97])
def test_topk_similarity_equals_dense_on_its_entries(output, tmp_path, tile):
    """The top-k pass computes only the upper triangle of tiles; rows must still be exact and sorted."""
    k = 16
    write_similarity(tmp_path / "topk.parquet", output.embeddings, "topk", k, block_rows=tile)
    topk = SimilarityMatrix.load(tmp_path / "topk.parquet")
    dense = output.similarity().dense().numpy()
    table = pq.read_table(tmp_path / "topk.parquet").to_pandas()
    assert len(table) == 2249 * k
    np.testing.assert_allclose(table["sim"].to_numpy(), dense[table["i"], table["j"]], atol=1e-5)
    expected = -np.sort(-dense, axis=1)[:, :k]
    got = table["sim"].to_numpy().reshape(2249, k)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # the k largest of every row, in order
    rows = topk.rows(torch.tensor([1284])).numpy()[0]
    stored = table[table["i"] == 1284]
    np.testing.assert_allclose(rows[stored["j"]], stored["sim"], atol=1e-6)
    assert np.count_nonzero(rows) == k


def test_torch_export_round_trips(output, tmp_path):
    import torch

    selection = select_from_build(output, ["coco"])
    written = export(selection, output, "torch", tmp_path)
    saved = torch.load(tmp_path / "coco.pt", weights_only=True)
    weights = saved["embeddings"].numpy()
    order = (tmp_path / "coco.labels.txt").read_text().split("\n")[:-1]
    assert weights.shape == (80, 384) and weights.dtype == np.float32 and saved["global_ids"] == order
    index = {g: i for i, g in enumerate(output.global_ids)}
    np.testing.assert_array_equal(weights, output.embeddings[[index[g] for g in order]])
    assert order[0] == "coco/person" and order[-1] == "coco/toothbrush"
    meta = json.loads((tmp_path / "coco.torch.meta.json").read_text())
    assert meta["l2_normalized"] and meta["dtype"] == "float32" and meta["templates"] == ["a photo of a {}."]
    assert meta["encoder"]["name"] == "minilm" and meta["files"] == {"data": "coco.pt"} and len(written) == 3
    # a second export in another format has its own meta; the torch one still describes coco.pt
    export(selection, output, "yolo-world", tmp_path)
    assert json.loads((tmp_path / "coco.torch.meta.json").read_text())["format"] == "torch"
    names_only = json.loads((tmp_path / "coco.yolo-world.meta.json").read_text())
    assert names_only["format"] == "yolo-world" and "dim" not in names_only and "dtype" not in names_only


@pytest.mark.parametrize("fmt,suffix", [("torch", ".pt"), ("csv", ".csv"), ("parquet", ".parquet")])
def test_other_exports_load_back(output, tmp_path, fmt, suffix):
    selection = select_from_build(output, ["odinw/Aquarium"] if "odinw/Aquarium" in output.datasets else ["coco"])
    export(selection, output, fmt, tmp_path)
    path = tmp_path / f"{selection.name}{suffix}"
    if fmt == "torch":
        loaded = torch.load(path, weights_only=False)
        np.testing.assert_array_equal(loaded["embeddings"].numpy(), selection.embeddings)
        assert loaded["global_ids"] == selection.global_ids
    elif fmt == "csv":
        import pandas as pd

        frame = pd.read_csv(path)
        vectors = frame[[f"e{i}" for i in range(selection.embeddings.shape[1])]].to_numpy()
        np.testing.assert_allclose(vectors, selection.embeddings, atol=1e-6)
        assert frame["global_id"].tolist() == selection.global_ids
    else:
        table = pq.read_table(path)
        np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)),
                                      selection.embeddings)
        assert json.loads(table.schema.metadata[b"scaledet"])["l2_normalized"]


def test_yolo_world_exports_the_names_that_were_embedded(output, tmp_path):
    """Objects365's official list has typos (``moniter/tv``); the build embeds corrected names, and the
    YOLO-World class texts must be those."""
    if "o365" not in output.datasets:
        pytest.skip("the build has no o365")
    selection = select_from_build(output, ["o365"])
    export(selection, output, "yolo-world", tmp_path)
    classes = read_vocabulary_file(tmp_path / "o365.json")
    texts = {synonyms[0] for synonyms in classes}
    assert "moniter/tv" not in texts and not any(" or " in t for t in texts)
    # one text per alternative, the first first (YOLO-World encodes the first entry, as in its own file)
    assert ["cabinet", "shelf"] in [c[:2] for c in classes] and ["monitor", "tv"] in [c[:2] for c in classes]
    # the alternatives joined are the name that was embedded
    prompts = set(output.labels.column("prompt").to_pylist())
    names = output.labels.column("name").to_pylist()
    index = {g: i for i, g in enumerate(output.global_ids)}
    for global_id, synonyms in zip(selection.global_ids, classes):
        alternatives = synonyms[:names[index[global_id]].count("/") + 1]
        assert f"a photo of a {' or '.join(alternatives)}." in prompts, global_id


def test_yolo_world_json_and_custom_vocabulary(output, tmp_path):
    selection = select_from_build(output, ["coco"])
    export(selection, output, "yolo-world", tmp_path)
    classes = read_vocabulary_file(tmp_path / "coco.json")
    assert classes[0] == ["person"] and len(classes) == 80
    vocab = select_vocabulary(output, [["person"], ["sneakers", "trainers"]], "mine")
    np.testing.assert_allclose(vocab.embeddings[0], output.embeddings[output.global_ids.index("coco/person")], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vocab.embeddings, axis=1), 1.0, atol=1e-5)


def test_export_bad_inputs(output, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(ScaledetError, match="empty vocabulary"):
        read_vocabulary_file(empty)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    with pytest.raises(ScaledetError, match="list of non-empty lists"):
        read_vocabulary_file(bad)
    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "onnx")
    assert done.returncode == 2 and "--format 'onnx': unknown export format" in done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "detic",
                   "--vocab-file", str(empty), "--out", str(tmp_path / "exports"))
    assert done.returncode == 2 and "empty vocabulary" in done.stderr
    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "detic",
                   "--datasets", "coco9", "--out", str(tmp_path / "exports"))
    assert done.returncode == 2 and "--datasets 'coco9'" in done.stderr


def test_export_and_inspect_expand_from_the_command_line(output, tmp_path):
    import pyarrow.parquet as pq

    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "parquet",
                   "--expand", "fruit", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    order = (tmp_path / "fruit.labels.txt").read_text().splitlines()
    assert "oid/Apple" in order and pq.read_table(tmp_path / "fruit.parquet").num_rows == len(order)
    shown = run_cli("scaledet-labels", "inspect", "fruit", "--expand", "--json", "--labelspace", str(output.directory))
    assert "coco/apple" in json.loads(shown.stdout)["labels"]


def test_report_is_written_with_its_figures(output, tmp_path):
    done = run_cli("scaledet-labels", "report", "--labelspace", str(output.directory), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r" / "report.html").read_text()
    for section in ("Datasets", "Overlap between datasets", "Concepts shared by several datasets",
                    "Same name, different senses", "Granularity", "Map of"):
        assert section in page
    assert page.count("data:image/png;base64,") == 1 and page.count("<svg") == 1
    # concepts come from the merge rules: one concept per sense, never bat the animal with baseball bat
    concepts = page[page.index("Concepts shared"):page.index("Same name, different senses")]
    assert "<td>airplane</td><td>4</td><td>lvis/airplane, coco/airplane, o365/Airplane, oid/Airplane" in concepts
    rows = concepts.split("<tr>")
    assert not any("lvis/bat_(animal)" in row and "baseball_bat" in row for row in rows)
    assert not any("lvis/toaster" in row and "Toast" in row for row in rows)
    kept_apart = page[page.index("Same name, different senses"):page.index("Granularity mismatches")]
    assert "oid/Mouse" in kept_apart and "coco/mouse" in kept_apart  # the animal and the computer mouse
    coarser = page[page.index("Granularity mismatches"):page.index("Map of")].split("<tr>")
    assert not any("coco/sports ball" in row and "oid/Ball" in row for row in coarser)  # one concept: not coarser
    assert not any("oid/Vehicle" in row and "lvis/motor_vehicle" in row for row in coarser)  # found both ways
    # every label is on the map, named on hover; few are written on it
    svg = (tmp_path / "r" / "map.svg").read_text()
    assert svg.count("<circle") >= len(output.global_ids) and svg.count("<title>") == len(output.global_ids)
    assert 5 <= svg.count("<text") - len(output.datasets) <= 40
    from PIL import Image

    with Image.open(tmp_path / "r" / "overlap.png") as image:
        assert image.size[0] > 300


def test_coco_supercategory_expands_and_old_builds_still_load(output, graph, tmp_path):
    assert "coco/car" in graph.expand("vehicle") and "coco/bus" in graph.expand("vehicle")
    labels = output.labels.to_pylist()
    assert next(r for r in labels if r["global_id"] == "coco/car")["supercategory"] == "vehicle"
    # a build made before the column existed loads, with the column empty
    import shutil

    old = tmp_path / "old"
    shutil.copytree(output.directory, old)
    pq.write_table(pq.read_table(old / "labels.parquet").drop(["supercategory"]), old / "labels.parquet")
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]  # builds of that time recorded no file digests either
    from scaledet.labelspace.outputs import with_manifest_digest

    (old / "manifest.json").write_text(json.dumps(with_manifest_digest(manifest)))
    loaded = LabelSpaceOutput.load(old)
    assert loaded.labels.column("supercategory").null_count == loaded.labels.num_rows


def test_wordnet_hypernyms_of_lvis_synsets(output):
    graph = LabelGraph(output)
    parents = {(v, d.get("reason")) for _, v, d in graph.graph.out_edges("lvis/armchair", data=True) if d["kind"] == "parent"}
    assert ("lvis/chair", "wordnet") in parents
    animals = set(graph.expand("animal"))
    assert {"lvis/dog", "lvis/bear", "lvis/bat_(animal)", "coco/dog"} <= animals
    assert "lvis/baseball_bat" not in animals and "lvis/chair" not in animals
    assert "lvis/shoe" in graph.expand("footwear")


def test_a_minilm_build_asked_for_a_detic_export_is_refused(output, tmp_path):
    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "detic", "--datasets",
                   "coco", "--out", str(tmp_path / "exports"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "built with minilm (384-d)" in done.stderr and "--encoder clip" in done.stderr
    assert not (tmp_path / "exports").exists()
    done = run_cli("scaledet-labels", "export", "--labelspace", str(output.directory), "--format", "ultralytics",
                   "--datasets", "coco", "--out", str(tmp_path / "exports"))
    assert done.returncode == 2 and "txt_feats are CLIP" in done.stderr and not (tmp_path / "exports").exists()
