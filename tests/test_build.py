"""The built-in union built with the real MiniLM encoder: order, files, cache, similarity, inspect."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from scaledet.labelspace import LabelSpaceOutput, build_labelspace, load_taxonomies
from scaledet.labelspace.cache import EmbeddingCache
from scaledet.labelspace.outputs import LABELS_SCHEMA, atomic_directory
from scaledet.labelspace.query import inspect_query
from scaledet.labelspace.prompts import normalize_name


def test_union_keeps_every_dataset_and_orders_deterministically(builtin_union):
    output = LabelSpaceOutput.load(builtin_union.out_dir)
    ids = output.global_ids
    assert len(ids) == 1203 + 80 + 365 + 601 == 2249 and len(set(ids)) == len(ids)
    assert ids[0] == "lvis/aerosol_can" and ids[1203] == "coco/person" and ids[1283] == "o365/Person"
    assert ids[1648] == "oid/Tortoise"
    assert {"coco/person", "o365/Person", "oid/Person", "lvis/person"} <= set(ids)
    assert output.labels.column("index").to_pylist() == list(range(2249))
    assert output.datasets == ["lvis", "coco", "o365", "oid"]


def test_labels_parquet_schema_and_readers(builtin_union):
    path = builtin_union.out_dir / "labels.parquet"
    assert pq.read_schema(path).remove_metadata().equals(LABELS_SCHEMA)
    import duckdb
    import pandas as pd

    frame = pd.read_parquet(path)
    row = frame.set_index("global_id").loc["o365/Cabinet/shelf"]
    assert row["prompt"] == "a photo of a cabinet or shelf."
    bow = frame.set_index("global_id").loc["lvis/bow_(weapon)"]
    assert bow["prompt"] == "a photo of a bow (weapon)." and bow["frequency"] in {"r", "c", "f"}
    heels = frame.set_index("global_id").loc["oid/High heels"]
    assert "oid/Footwear" in list(heels["parent"])
    count = duckdb.connect().execute(f"SELECT count(*) FROM '{path}' WHERE dataset = 'coco'").fetchone()[0]
    assert count == 80
    sim_count = duckdb.connect().execute(f"SELECT count(*) FROM '{builtin_union.out_dir / 'similarity.parquet'}'").fetchone()[0]
    assert sim_count == 2249 * 2249


def test_manifest_records_sources_encoder_and_templates(builtin_union):
    manifest = json.loads((builtin_union.out_dir / "manifest.json").read_text())
    assert manifest["n_labels"] == 2249 and manifest["templates"] == ["a photo of a {}."]
    assert [d["count"] for d in manifest["datasets"]] == [1203, 80, 365, 601]
    assert all(len(d["sha256"]) == 64 for d in manifest["datasets"])
    assert manifest["encoder"]["name"] == "minilm" and manifest["encoder"]["dim"] == 384
    assert "sha256=" in manifest["encoder"]["identity"] and manifest["similarity"]["kind"] == "dense"


def test_embeddings_are_normalised_and_similarity_tensor_aligned(builtin_union):
    output = LabelSpaceOutput.load(builtin_union.out_dir)
    emb = output.embeddings
    assert emb.dtype == np.float32 and emb.shape == (2249, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    import torch

    sim = output.similarity()
    dense = sim.dense()
    assert dense.shape == (2249, 2249) and dense.dtype == torch.float32
    np.testing.assert_allclose(dense.numpy(), emb @ emb.T, atol=1e-5)
    rows = sim.rows(torch.tensor([1284, 0]))
    assert torch.equal(rows[0], dense[1284]) and torch.equal(rows[1], dense[0])


def test_seed_example_sneakers_neighbours(builtin_union):
    output = LabelSpaceOutput.load(builtin_union.out_dir)
    (report,) = inspect_query(output, "sneakers", top=10)
    assert report.global_id == "o365/Sneakers"
    neighbours = [n.global_id for n in report.neighbours]
    assert "oid/Footwear" in neighbours and "lvis/shoe" in neighbours
    assert all(not n.startswith("o365/") for n in neighbours)
    person_reports = inspect_query(output, "PERSON", top=3)
    assert {r.global_id for r in person_reports} == {"coco/person", "o365/Person", "oid/Person", "lvis/person"}
    # LVIS synonyms are searchable: "spray can" is a synonym of lvis/aerosol_can
    assert [r.global_id for r in inspect_query(output, "spray can")] == ["lvis/aerosol_can"]


def test_second_build_encodes_nothing_and_a_new_dataset_only_its_new_texts(builtin_union, minilm, tmp_path,
                                                                          monkeypatch):
    # a cache of this test's own, filled by one build: the session's cache holds whatever other tests
    # encoded before this one (ODinW names among them, depending on the order tests run in)
    monkeypatch.setenv("SCALEDET_CACHE", str(tmp_path / "cache"))
    first = build_labelspace(load_taxonomies(["lvis", "coco", "o365", "oid"], []), minilm, tmp_path / "first")
    assert first.embed_stats.encoded == first.embed_stats.texts
    again = build_labelspace(load_taxonomies(["lvis", "coco", "o365", "oid"], []), minilm, tmp_path / "again")
    assert again.embed_stats.encoded == 0 and again.embed_stats.cache_hits == again.embed_stats.texts
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "embeddings.npy"),  # the first build's, from the cache
                                  np.load(tmp_path / "first" / "embeddings.npy"))
    grown = build_labelspace(load_taxonomies(["lvis", "coco", "o365", "oid", "odinw/Aquarium"], []), minilm,
                             tmp_path / "grown")
    known = {label.prompt_name for label in builtin_union.labels}
    new_names = {normalize_name(n) for n in ["fish", "jellyfish", "penguin", "puffin", "shark", "starfish", "stingray"]}
    assert grown.embed_stats.encoded == len(new_names - known) > 0
    # appending a dataset keeps every earlier index
    assert [label.global_id for label in grown.labels[:2249]] == [label.global_id for label in builtin_union.labels]


def test_corrupt_cache_shard_is_detected_and_rebuilt(minilm, tmp_path, capfd):
    taxonomies = load_taxonomies(["coco"], [])
    first = build_labelspace(taxonomies, minilm, tmp_path / "a")
    cache = EmbeddingCache(minilm.identity, minilm.dim)
    shards = sorted(cache.directory.glob("shard-*.npz"))
    assert shards
    for shard in shards:  # flip bytes in the middle of every shard
        data = bytearray(shard.read_bytes())
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
        shard.write_bytes(bytes(data))
    second = build_labelspace(taxonomies, minilm, tmp_path / "b")
    assert "embedding cache shard" in capfd.readouterr().err
    assert second.embed_stats.discarded_shards >= 1 and second.embed_stats.encoded > 0
    np.testing.assert_allclose(np.load(tmp_path / "b" / "embeddings.npy"), np.load(tmp_path / "a" / "embeddings.npy"),
                               atol=1e-5)
    assert first.embed_stats.texts == second.embed_stats.texts


def test_cache_entries_of_another_encoder_are_not_used(minilm, tmp_path):
    cache = EmbeddingCache(minilm.identity, minilm.dim)
    keys = ["k1"]
    cache.add(keys, np.ones((1, minilm.dim), np.float32))
    impostor = EmbeddingCache(minilm.identity, minilm.dim)
    shard = sorted(impostor.directory.glob("shard-*.npz"))[-1]
    # rewrite the shard's meta to claim another identity: it must be discarded, not trusted
    with np.load(shard) as data:
        meta = json.loads(str(data["meta"]))
        meta["identity"] = "clip:other:sha256=0"
        np.savez(shard, keys=data["keys"], vectors=data["vectors"], meta=np.array(json.dumps(meta)))
    assert "k1" not in EmbeddingCache(minilm.identity, minilm.dim).lookup(["k1"])


def test_ensemble_templates_average_prompts(minilm, tmp_path):
    result = build_labelspace(load_taxonomies(["odinw/Aquarium"], []), minilm, tmp_path / "ens", templates="ensemble")
    manifest = json.loads((tmp_path / "ens" / "manifest.json").read_text())
    assert len(manifest["templates"]) == 8 and result.embed_stats.texts == 7 * 8
    single = build_labelspace(load_taxonomies(["odinw/Aquarium"], []), minilm, tmp_path / "one")
    a, b = np.load(tmp_path / "ens" / "embeddings.npy"), np.load(tmp_path / "one" / "embeddings.npy")
    assert not np.allclose(a, b) and np.all(np.sum(a * b, axis=1) > 0.8)
    assert single.embed_stats.texts == 7


def test_atomic_directory_keeps_previous_output_on_failure(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "manifest.json").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as staging:
            (staging / "manifest.json").write_text("half-written")
            raise RuntimeError("interrupted")
    assert (final / "manifest.json").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_similarity_file_is_reused_only_when_its_checksum_holds(minilm, tmp_path, capfd):
    from scaledet.labelspace.io.cache_dir import cache_root

    taxonomies = load_taxonomies(["odinw/PascalVOC"], [])
    build_labelspace(taxonomies, minilm, tmp_path / "a")
    cached = sorted((cache_root() / "similarity").glob("*.parquet"), key=lambda p: p.stat().st_mtime)[-1]
    cached.write_bytes(cached.read_bytes()[:-100] + bytes(100))
    build_labelspace(taxonomies, minilm, tmp_path / "b")
    assert "is damaged (checksum mismatch)" in capfd.readouterr().err
    assert (tmp_path / "b" / "similarity.parquet").read_bytes() == (tmp_path / "a" / "similarity.parquet").read_bytes()
