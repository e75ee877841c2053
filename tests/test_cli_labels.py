"""``scaledet-labels`` as a user runs it: the main flows, and one-line errors that keep earlier output."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ls"
    names = out.parent / "warehouse.txt"
    names.write_text("forklift\npallet\nsneakers\n")
    done = run_cli("scaledet-labels", "build", "--datasets", "coco", "odinw/Aquarium", "--dataset-file",
                   f"warehouse={names}", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    return out, done


def test_build_prints_a_summary_table(small_build):
    out, done = small_build
    assert "coco" in done.stdout and "odinw/Aquarium" in done.stdout and "warehouse" in done.stdout
    assert "90" in done.stdout  # 80 + 7 + 3 labels in the union row
    manifest = json.loads((out / "manifest.json").read_text())
    assert [d["key"] for d in manifest["datasets"]] == ["coco", "odinw/Aquarium", "warehouse"]


def test_list_and_inspect(small_build):
    out, _ = small_build
    listed = run_cli("scaledet-labels", "list", "--labelspace", str(out))
    assert listed.returncode == 0 and "odinw/Aquarium" in listed.stdout and "names-txt" in listed.stdout
    shown = run_cli("scaledet-labels", "inspect", "sneakers", "--labelspace", str(out), "--json", "--top", "3")
    assert shown.returncode == 0, shown.stderr
    (report,) = json.loads(shown.stdout)
    assert report["global_id"] == "warehouse/sneakers" and len(report["neighbours"]) == 3
    table = run_cli("scaledet-labels", "inspect", "fish", "--labelspace", str(out))
    assert "odinw/Aquarium/fish" in table.stdout and "cosine" in table.stdout


BAD_INVOCATIONS = {
    "unknown key": (["--datasets", "coco2"], "unknown dataset key 'coco2'"),
    "no equals": (["--dataset-file", "mine"], "--dataset-file 'mine': expected NAME=PATH"),
    "missing file": (["--dataset-file", "mine=/nonexistent/cats.json"], "/nonexistent/cats.json: file not found"),
    "unknown encoder": (["--datasets", "coco", "--encoder", "bert9"], "--encoder 'bert9': unknown encoder"),
    "clip without weights": (["--datasets", "coco", "--encoder", "clip"], "needs --clip-weights"),
    "bad top-k": (["--datasets", "coco", "--similarity", "topk", "--top-k", "0"], "--top-k 0"),
    "bad template": (["--datasets", "coco", "--template", "a photo"], "--template 'a photo'"),
    "twice": (["--datasets", "coco", "coco"], "dataset key 'coco' is given twice"),
    "bad similarity": (["--datasets", "coco", "--similarity", "sparse"], "--similarity 'sparse'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVOCATIONS))
def test_bad_input_is_one_line_and_keeps_the_previous_build(small_build, case):
    out, _ = small_build
    before = (out / "manifest.json").read_bytes()
    args, expected = BAD_INVOCATIONS[case]
    done = run_cli("scaledet-labels", "build", *args, "--out", str(out), "--quiet")
    assert done.returncode == 2
    assert expected in done.stderr and done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert (out / "manifest.json").read_bytes() == before


def test_malformed_user_file_names_the_file(small_build, tmp_path):
    out, _ = small_build
    bad = tmp_path / "broken.json"
    bad.write_text('{"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}')
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"mine={bad}", "--out", str(out))
    assert done.returncode == 2 and f"{bad}: duplicate category id 1" in done.stderr


def test_inspect_errors(small_build, tmp_path):
    out, _ = small_build
    missing = run_cli("scaledet-labels", "inspect", "cat", "--labelspace", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "not a labelspace build" in missing.stderr
    unknown = run_cli("scaledet-labels", "inspect", "zeppelin", "--labelspace", str(out))
    assert unknown.returncode == 2 and "no label named 'zeppelin'" in unknown.stderr


def test_multi_value_options_are_expanded_before_click():
    from scaledet.cli.common import expand_multi_value_options

    argv = ["build", "--datasets", "lvis", "coco", "--out", "x", "--dataset-file", "a=p.json", "--datasets=oid,o365"]
    assert expand_multi_value_options(argv, ["--datasets", "--dataset-file"]) == [
        "build", "--datasets", "lvis", "--datasets", "coco", "--out", "x", "--dataset-file", "a=p.json",
        "--datasets=oid", "--datasets=o365"]


def test_version_and_a_template_with_a_comma(tmp_path):
    from importlib.metadata import version

    for command in ("scaledet", "scaledet-labels"):
        done = run_cli(command, "--version")
        assert done.returncode == 0 and done.stdout.strip() == f"{command} {version('scaledet')}"
    out = tmp_path / "labelspace"
    done = run_cli("scaledet-labels", "build", "--datasets=odinw/pothole,odinw/Raccoon",
                   "--template=a photo of a {}, in the wild.", "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["templates"] == ["a photo of a {}, in the wild."]
    assert [d["key"] for d in manifest["datasets"]] == ["odinw/pothole", "odinw/Raccoon"]
    help_text = run_cli("scaledet", "predict", "--help").stdout
    assert "<bool>" not in help_text and "--force" in help_text and "--checkpoint" in help_text


def test_one_meaning_per_flag_and_the_old_spellings_with_a_notice(small_build, tmp_path):
    """--labelspace names the build read, --out where a command writes; 0.x's --out BUILD and --to DIR still
    work for a release, each with a note saying what to write instead."""
    out, _ = small_build
    new = run_cli("scaledet-labels", "graph", "--labelspace", str(out), "--out", str(tmp_path / "g"))
    assert new.returncode == 0 and "note:" not in new.stderr and (tmp_path / "g" / "label_graph.graphml").is_file()
    old = run_cli("scaledet-labels", "graph", "--out", str(out), "--to", str(tmp_path / "g2"))
    assert old.returncode == 0 and (tmp_path / "g2" / "label_graph.graphml").is_file()
    assert f"write --labelspace {out}" in old.stderr and f"--to {tmp_path / 'g2'} is the 0.x spelling of --out" in old.stderr
    # --out naming a build, without --labelspace: the old meaning (no command writes over a build)
    merged = run_cli("scaledet-labels", "merge", "--out", str(out))
    assert merged.returncode == 0 and (out / "merge" / "merged.parquet").is_file()
    assert f"write --labelspace {out}" in merged.stderr
    listed = run_cli("scaledet-labels", "list", "--out", str(out))
    assert listed.returncode == 0 and "warehouse" in listed.stdout and "--labelspace" in listed.stderr
    both = run_cli("scaledet-labels", "inspect", "pallet", "--labelspace", str(out), "--out", str(out))
    assert both.returncode == 2 and "give the build once" in both.stderr
