"""Hostile inputs: bombs, look-alike names, spreadsheet formulas. Each is one short line naming the file and
the limit, in bounded time and memory, or is written so that it cannot act (docs/reliability.md)."""
from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)) + "names: *u\n"


def _one_line(done, expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr and len(done.stderr) < 400, done.stderr


#: Nine aliases of nine, nine levels deep: 81 aliases (under the alias limit), 387 million values expanded.
NINE_BY_NINE = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)) + "names: *a8\n"


@pytest.mark.parametrize("document, expected", [
    (BILLION_LAUGHS, "more than 100 aliases"),
    (NINE_BY_NINE, "expand to more than 1,000,000 values"),
    ("names: " + "[" * 60 + "x" + "]" * 60 + "\n", "nested deeper than 50 levels"),
    ("nc: 100000000\n", "more than the limit of 100,000 classes"),
])
def test_yaml_bombs_and_declared_counts(tmp_path, document, expected):
    (tmp_path / "data.yaml").write_text(document)
    _one_line(run_cli("scaledet-labels", "build", "--dataset-file", f"mine={tmp_path / 'data.yaml'}", "--out",
                      str(tmp_path / "out"), "-q"), expected)


def test_json_nesting_bombs_are_one_line(tmp_path):
    bomb = tmp_path / "bomb.json"
    bomb.write_text("[" * 100_000 + "]" * 100_000)
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    _one_line(run_cli("scaledet", "eval", "--results", str(bomb), "--annotations", str(fine)), "nested deeper")
    _one_line(run_cli("scaledet", "eval", "--results", str(fine), "--annotations", str(bomb)), "nested deeper")
    (tmp_path / "classes.csv").write_text("/m/01g317,Person\n")
    _one_line(run_cli("scaledet-labels", "build", "--dataset-file", f"oidmine={tmp_path / 'classes.csv'}",
                      "--hierarchy", f"oidmine={bomb}", "--out", str(tmp_path / "out"), "-q"), "nested deeper")


def test_deep_json_inside_a_streamed_record_is_refused_before_parsing(tmp_path):
    """ijson keeps one prefix string per open level: O(N²) memory, about 19 GB for these 200 KB. The file is
    refused from a byte count first; brackets inside names nest nothing and are not held against a file."""
    deep = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    text = json.dumps(deep).replace('"width": 8', '"width": 8, "x": ' + "[" * 100_000 + "]" * 100_000)
    (tmp_path / "deep.json").write_text(text)
    _one_line(run_cli("scaledet-labels", "build", "--dataset-file", f"g={tmp_path / 'deep.json'}", "--out",
                      str(tmp_path / "out"), "-q"), "nested deeper than 1000 levels")
    bracketed = {"categories": [{"id": i, "name": f"part [{'[' * 50} {i}"} for i in range(1, 200)]}
    (tmp_path / "bracketed.json").write_text(json.dumps(bracketed))
    from pathlib import Path

    from scaledet.labelspace.io.text_files import stream_json_items

    assert len(list(stream_json_items(Path(tmp_path / "bracketed.json"), "categories.item"))) == 199


def test_an_image_that_claims_too_many_pixels_is_not_decoded(tmp_path):
    """libjpeg-turbo has no bomb limit of its own: a 631-byte JPEG claiming 50000 × 50000 would allocate
    7.5 GB before failing. Its header is read first and refused."""
    import struct

    from PIL import Image

    from scaledet.detector.data import read_image_uint8
    from scaledet.labelspace.io.errors import ScaledetError

    Image.new("RGB", (16, 16), "red").save(tmp_path / "small.jpg")
    data = bytearray((tmp_path / "small.jpg").read_bytes())
    frame = data.find(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[frame + 5:frame + 9] = struct.pack(">HH", 50000, 50000)
    (tmp_path / "claims.jpg").write_bytes(bytes(data))
    with pytest.raises(ScaledetError, match="more than 89,478,485"):
        read_image_uint8(tmp_path / "claims.jpg")
    assert read_image_uint8(tmp_path / "small.jpg").shape == (3, 16, 16)


def test_a_zip_bomb_weights_archive_is_refused_before_it_expands(tmp_path):
    """A TorchScript archive whose tensor entry is deflated zeros: 1 MB on disk claiming 1 GB. The entry's
    header is checked before it is read."""
    import zipfile

    from scaledet.labelspace.io.torchscript_weights import UnsafeArchive, read_torchscript_tensors

    archive = tmp_path / "bomb.pt"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("bomb/data.pkl", b"\x80\x02}q\x00.")  # an empty dict
        with bundle.open("bomb/data/0", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(1024):
                entry.write(block)
    assert archive.stat().st_size < 4 << 20
    with zipfile.ZipFile(archive) as bundle:
        from scaledet.labelspace.io.torchscript_weights import read_entry

        with pytest.raises(UnsafeArchive, match="zip bomb"):
            read_entry(bundle, "bomb/data/0")
    assert read_torchscript_tensors(archive) == {}  # the pickle itself is small and names no storage


def test_an_error_that_echoes_a_huge_value_is_cut(tmp_path):
    names = {"categories": [{"id": 1, "name": ["x" * 100] * 100_000}]}
    (tmp_path / "huge.json").write_text(json.dumps(names))
    _one_line(run_cli("scaledet-labels", "build", "--dataset-file", f"g={tmp_path / 'huge.json'}", "--out",
                      str(tmp_path / "out"), "-q"), "non-text name")


@pytest.mark.parametrize("name, expected", [
    ("cat\u202egod", "bidirectional control U+202E"),
    ("\u200b\u200d", "shows nothing"),
    ("\U000e0063\U000e0061\U000e0074", "shows nothing"),   # tag characters alone
    ("\u0301\u0308", "shows nothing"),                      # combining marks alone
    ("\u3164\u3164", "shows nothing"),                      # Hangul filler
    ("cafe\u0301", None),                                   # a combining mark on a letter is a name
    ("dog\u2066", "bidirectional control U+2066"),
])
def test_look_alike_names_are_refused(tmp_path, name, expected):
    (tmp_path / "names.txt").write_text(f"person\n{name}\n", encoding="utf-8")
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"mine={tmp_path / 'names.txt'}", "--out",
                   str(tmp_path / "out"), "-q")
    if expected is None:
        assert done.returncode == 0, done.stderr
    else:
        _one_line(done, expected)


def test_formulas_in_label_names_are_neutralised_in_every_csv(tmp_path):
    """OWASP's rule: a cell starting with = + - @ gets a leading quote; numbers stay numbers; a decision
    written against the neutralised cell still names the label."""
    formula = "=HYPERLINK(\"http://x\",\"cat\")"
    (tmp_path / "a.txt").write_text(f"{formula}\n@SUM(1)\nperson\n")
    (tmp_path / "b.txt").write_text(f"{formula}\nperson\n")
    out = tmp_path / "labelspace"
    done = run_cli("scaledet-labels", "build", "--dataset-file", f"a={tmp_path / 'a.txt'}", f"b={tmp_path / 'b.txt'}",
                   "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert run_cli("scaledet-labels", "merge", "--labelspace", str(out), "--no-wordnet").returncode == 0
    done = run_cli("scaledet-labels", "export", "--labelspace", str(out), "--format", "csv", "--name", "all")
    assert done.returncode == 0, done.stderr
    cells = [cell for path in (out / "merge" / "unified.csv", out / "merge" / "review.csv", out / "exports" / "all.csv")
             for row in csv.reader(path.read_text().splitlines()) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "@")) or (c.startswith("-") and not _number(c))]
    assert "'" + formula in cells and "'a/" + formula not in cells and "a/" + formula in cells
    review = list(csv.DictReader((out / "merge" / "review.csv").read_text().splitlines()))
    assert review, "the two formula labels share a name: a candidate pair"
    decisions = tmp_path / "decisions.csv"
    with open(decisions, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(review[0]))
        writer.writeheader()
        writer.writerows({**row, "decision": "reject"} for row in review)
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(out), "--decisions", str(decisions), "--no-wordnet")
    assert done.returncode == 0, done.stderr


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_a_damaged_or_lying_weights_memo_is_never_believed(tmp_path, monkeypatch):
    """weights-sha256.json is a shortcut only: ``[]`` or a wrong digest under the right key gives the true
    sha256 (its sampled hash must match the file now), so no encoder identity is poisoned."""
    from scaledet.labelspace.io.digests import sha256_of_file
    from scaledet.labelspace.io.weights_hash import sha256_cached

    monkeypatch.setenv("SCALEDET_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights" * 1000)
    truth = sha256_of_file(weights)
    (tmp_path / "cache").mkdir()
    memo = tmp_path / "cache" / "weights-sha256.json"
    memo.write_text("[]")
    assert sha256_cached(weights) == truth
    document = json.loads(memo.read_text())
    (key,) = document
    assert sha256_cached(weights) == truth  # the entry scaledet wrote is used
    document[key]["sha256"] = "f" * 64  # a wrong digest under the right key, sample left as written
    memo.write_text(json.dumps(document))
    assert sha256_cached(weights) == truth  # its signature does not match: not believed
    document = json.loads(memo.read_text())
    document[key] = "f" * 64  # an old-format or hand-written entry
    memo.write_text(json.dumps(document))
    assert sha256_cached(weights) == truth


@pytest.mark.parametrize("field, value", [("def", 5), ("frequency", ["r"]), ("synset", {"x": 1})])
def test_category_fields_of_the_wrong_type_are_one_line(tmp_path, field, value):
    path = tmp_path / "cats.json"
    path.write_text(json.dumps({"categories": [{"id": 1, "name": "cat", field: value}, {"id": 2, "name": "dog"}]}))
    _one_line(run_cli("scaledet-labels", "build", "--dataset-file", f"mine={path}", "--out", str(tmp_path / "out"),
                      "-q"), f"category id 1 has a non-text '{field}'")


def test_an_overlong_export_name_is_one_line(builtin_union, tmp_path):
    _one_line(run_cli("scaledet-labels", "export", "--labelspace", str(builtin_union.out_dir), "--format", "torch",
                      "--datasets", "coco", "--name", "n" * 300, "--out", str(tmp_path / "x")), "300 bytes; at most 150")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_error_lines_never_carry_raw_controls_or_empty_parentheses():
    from scaledet.cli.common import printable_message

    assert printable_message("x.json: bad\x00name ()") == "x.json: bad\\x00name"
    assert printable_message("a\x1b[31mred") == "a\\x1b[31mred"  # no terminal escape sequence gets through
    assert printable_message("box (x1 < x2)") == "box (x1 < x2)"


_HOSTILE_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\[]{}:, \n') + ["é", "\u2028"]), max_size=12)
_HOSTILE_VALUE = st.recursive(st.none() | st.integers() | _HOSTILE_TEXT,
                              lambda inner: (st.lists(inner, max_size=4)
                                             | st.dictionaries(_HOSTILE_TEXT, inner, max_size=3)),
                              max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(document=st.dictionaries(_HOSTILE_TEXT, _HOSTILE_VALUE, min_size=1, max_size=5), ascii_only=st.booleans(),
       block=st.integers(1, 80))
def test_top_level_spans_are_found_or_the_file_is_read_whole(tmp_path_factory, document, ascii_only, block):
    """json_sections on objects whose keys and strings hold quotes, backslashes, brackets and non-ASCII text:
    every span it gives holds exactly its key's value; read in blocks it may give up (a key across a block
    edge), never a wrong span; read in one block it always finds them."""
    from scaledet.labelspace.io.json_sections import json_sections

    text = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")
    path = tmp_path_factory.mktemp("spans") / "doc.json"
    path.write_bytes(b"\xef\xbb\xbf" + text)
    containers = {k for k, v in document.items() if isinstance(v, (list, dict))}
    for found in (json_sections(path, block=block), json_sections(path, block=len(text) + 3)):
        if found is None:
            continue
        assert set(found.spans) == containers and found.scalar_keys == set(document) - containers
        for key, (start, end) in found.spans.items():
            assert json.loads(path.read_bytes()[start:end]) == document[key]
    assert json_sections(path, block=len(text) + 3) is not None
