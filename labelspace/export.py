"""Exports of label embeddings for other detectors and for analysis.

Formats (each writes the label order beside the vectors and a ``.meta.json`` recording the encoder,
templates, dtype and normalisation, the details an embedding file without them leaves to guesswork):

* ``detic``: ``NAME.npy``, C × D float32, L2-normalised, rows in category order; Detic's
  ``MODEL.ROI_BOX_HEAD.ZEROSHOT_WEIGHT_PATH`` format;
* ``torch``: ``NAME.pt``, a dict of ``embeddings`` (tensor), ``names``, ``global_ids``, ``meta``;
* ``csv`` / ``parquet``: one row per label with the vector (columns ``e0..`` or a list column);
* ``yolo-world``: ``NAME.json``, YOLO-World's class-text file, a list of synonym lists per class.
* ``ultralytics``: ``NAME.txt_feats.pt``, what Ultralytics' ``YOLOWorld.set_classes`` would compute
  (``txt_feats`` 1 × C × D and ``names``), from a CLIP build, installed without a CLIP model or download.

Selections: the whole build, some of its datasets, a hypernym expansion (``--expand fruit``), or a custom
vocabulary file (one name per line, or a YOLO-World JSON), encoded with the build's encoder and templates.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .io.atomic import atomic_write
from .cache import EmbeddingCache
from .embed import embed_prompt_names
from .encoders import build_encoder, clip_arch_of, l2_normalize
from .io.errors import ScaledetError, one_line
from .outputs import LabelSpaceOutput, whole_output
from .io.output_dirs import EXPORT_KIND, record_output_files
from .prompts import normalize_name
from .io.text_files import check_name_text, control_character, csv_cell, read_text

EXPORT_FORMATS = ("detic", "torch", "csv", "parquet", "yolo-world", "ultralytics")


#: A file name is at most 255 bytes; ``NAME.txt_feats.pt`` and its signed temporary add up to ~80.
MAX_EXPORT_NAME_BYTES = 150


def check_export_name(name: str) -> None:
    """``--name`` is a file stem inside the export folder: no path separators, no leading dot, one line."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".")
            or control_character(name) is not None):
        raise ScaledetError(f"--name {name[:80]!r}: give a plain file name (no '/', no leading '.'), e.g. coco_vocab")
    if len(name.encode("utf-8")) > MAX_EXPORT_NAME_BYTES:
        raise ScaledetError(f"--name {name[:40]!r}…: {len(name.encode('utf-8'))} bytes; at most "
                            f"{MAX_EXPORT_NAME_BYTES} (file names, with their suffixes and temporaries, must fit 255)")


@dataclass
class ExportSelection:
    """Rows to export: names (display), global ids (or ``vocab/<name>``), synonym lists and vectors."""

    name: str
    names: list[str]
    global_ids: list[str]
    synonyms: list[list[str]]
    embeddings: np.ndarray
    description: dict = field(default_factory=dict)


def select_from_build(output: LabelSpaceOutput, datasets: list[str] | None = None,
                      indices: list[int] | None = None, name: str | None = None) -> ExportSelection:
    rows = output.labels.to_pylist()
    if indices is None:
        if datasets:
            known = set(output.datasets)
            for key in datasets:
                if key not in known:
                    raise ScaledetError(f"--datasets {key!r}: not in the build {output.directory} "
                                        f"(it has {', '.join(output.datasets)})")
            indices = [r["index"] for key in datasets for r in rows if r["dataset"] == key]
        else:
            indices = list(range(len(rows)))
    chosen = [rows[i] for i in indices]
    template = output.manifest["templates"][0]
    return ExportSelection(
        name=name or ("-".join(k.replace("/", "_") for k in datasets) if datasets else "union"),
        names=[r["name"] for r in chosen], global_ids=[r["global_id"] for r in chosen],
        # the names that were embedded (Objects365's corrected "monitor", "tv", not the official "moniter/tv"),
        # one text per alternative with the first one first: YOLO-World's own Objects365 file lists
        # ["cabinet", "shelf"] and encodes the first entry of each class
        synonyms=[list(dict.fromkeys([*embedded_alternatives(r["name"], embedded_name(r["prompt"], template)),
                                      *(normalize_name(s) for s in r["synonyms"] or [])])) for r in chosen],
        embeddings=np.ascontiguousarray(output.embeddings[indices]),
        description={"datasets": datasets or output.datasets} if indices is not None else {},
    )


def embedded_alternatives(name: str, embedded: str) -> list[str]:
    """``cabinet or shelf`` → ``["cabinet", "shelf"]`` where the class's own name joins alternatives with
    ``/`` (normalisation turned each ``/`` into `` or ``); any other embedded name as it is."""
    count = normalize_name(name).count(" or ") - normalize_name(name.replace("/", " ")).count(" or ")
    parts = embedded.split(" or ")
    return parts if count > 0 and len(parts) == count + 1 else [embedded]


def embedded_name(prompt: str, template: str) -> str:
    """The class text inside a rendered prompt: ``a photo of a monitor/tv.`` → ``monitor/tv``."""
    head, _, tail = template.partition("{}")
    if prompt.startswith(head) and prompt.endswith(tail):
        return prompt[len(head):len(prompt) - len(tail)]
    return normalize_name(prompt)


def read_vocabulary_file(path: Path) -> list[list[str]]:
    """One class per line (``#`` comments ignored), or a YOLO-World JSON list of synonym lists."""
    if not path.is_file():
        raise ScaledetError(f"{path}: vocabulary file not found")
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(read_text(path))
        except ValueError as err:
            raise ScaledetError(f"{path}: malformed JSON ({one_line(err)})") from None
        if not isinstance(document, list) or not all(
                isinstance(item, list) and item and all(isinstance(s, str) and s.strip() for s in item)
                for item in document):
            raise ScaledetError(f"{path}: a YOLO-World class-text file is a list of non-empty lists of names")
        classes = [[s.strip() for s in item] for item in document]
    else:
        classes = [[line.strip()] for line in read_text(path).split("\n")
                   if line.strip() and not line.lstrip().startswith("#")]
    if not classes:
        raise ScaledetError(f"{path}: empty vocabulary")
    for position, synonyms in enumerate(classes):
        for text in synonyms:
            check_name_text(text, f"{path}: class {position}")
    return classes


def select_vocabulary(output: LabelSpaceOutput, classes: list[list[str]], name: str,
                      clip_weights: str | None = None) -> ExportSelection:
    """Encode a custom vocabulary with the build's encoder and templates; a class with several synonyms
    gets the normalised mean of their embeddings."""
    manifest = output.manifest
    encoder = build_encoder(manifest["encoder"]["name"], clip_weights=clip_weights,
                            clip_arch=clip_arch_of(manifest["encoder"]["identity"]))
    if encoder.identity != manifest["encoder"]["identity"]:
        raise ScaledetError(f"{output.directory} was built with {manifest['encoder']['identity'][:48]}…; "
                            f"this encoder is {encoder.identity[:48]}…")
    flat = [normalize_name(s) for synonyms in classes for s in synonyms]
    vectors, _ = embed_prompt_names(flat, tuple(manifest["templates"]), encoder,
                                    cache=EmbeddingCache(encoder.identity, encoder.dim))
    rows, start = [], 0
    for synonyms in classes:
        rows.append(vectors[start:start + len(synonyms)].mean(axis=0))
        start += len(synonyms)
    return ExportSelection(name=name, names=[c[0] for c in classes], global_ids=[f"vocab/{c[0]}" for c in classes],
                           synonyms=[[normalize_name(s) for s in c] for c in classes],
                           embeddings=l2_normalize(np.stack(rows)), description={"vocabulary": name})


#: Detic's released models read 512-d CLIP ViT-B/32 text features (MODEL.ROI_BOX_HEAD.ZEROSHOT_WEIGHT_DIM).
DETIC_WEIGHT_DIM = 512


#: Ultralytics' ``YOLOWorld.set_classes`` encodes each class name as it is, with no template around it
ULTRALYTICS_TEMPLATES = ["{}"]
#: The lines that install an ``ultralytics`` export into a ``YOLOWorld`` model: what ``set_classes`` does
#: (``WorldModel.set_classes``: txt_feats and nc; ``YOLOWorld.set_classes``: names, and a new predictor,
#: since a predictor made by an earlier ``predict`` keeps the old names and class count)
ULTRALYTICS_INSTALL = ("feats = torch.load(PATH); model.model.txt_feats = feats['txt_feats']; "
                       "model.model.model[-1].nc = len(feats['names']); model.model.names = feats['names']; "
                       "model.predictor = None")


def check_consumer(fmt: str, output: LabelSpaceOutput, any_template: bool = False) -> None:
    """A build that cannot serve the export's consumer is refused before anything is written: Detic's
    ZeroShotClassifier concatenates a ``ZEROSHOT_WEIGHT_DIM × 1`` zero column to the loaded ``D × C`` matrix,
    so MiniLM's 384-d rows fail deep inside its init ("Expected size 384 but got size 512"); Ultralytics
    encodes bare names, so features of "a photo of a {}." would sit beside none of its own."""
    encoder = output.manifest["encoder"]
    templates = list(output.manifest.get("templates") or [])
    if fmt == "ultralytics" and encoder["name"] == "clip" and templates != ULTRALYTICS_TEMPLATES and not any_template:
        raise ScaledetError(f"--format ultralytics: {output.directory} was encoded with the template(s) "
                            f"{', '.join(repr(t) for t in templates)[:120]}, but YOLOWorld encodes bare class names; "
                            "build with --template '{}', or add --any-template to export these features anyway")
    if fmt == "ultralytics" and encoder["name"] != "clip":
        raise ScaledetError(f"--format ultralytics: YOLOWorld's txt_feats are CLIP ViT-B/32 text features (512-d); "
                            f"{output.directory} was built with {encoder['name']} ({encoder['dim']}-d). Build with "
                            "--encoder clip --clip-weights ViT-B-32.pt --template '{}' and export from that build")
    if fmt == "detic" and encoder["name"] != "clip":
        raise ScaledetError(f"--format detic: Detic's zero-shot classifier reads CLIP text features ({DETIC_WEIGHT_DIM}-d "
                            f"for its released models); {output.directory} was built with {encoder['name']} "
                            f"({encoder['dim']}-d). Build with --encoder clip --clip-weights ViT-B-32.pt (OpenAI's "
                            "file) and export from that build")


def export(selection: ExportSelection, output: LabelSpaceOutput, fmt: str, destination: Path,
           any_template: bool = False) -> list[Path]:
    if fmt not in EXPORT_FORMATS:
        raise ScaledetError(f"--format {fmt!r}: unknown export format (choose from {', '.join(EXPORT_FORMATS)})")
    check_export_name(selection.name)
    check_consumer(fmt, output, any_template)
    with whole_output(destination, EXPORT_KIND, keep_recorded=True) as staging:
        written = _write_export(selection, output, fmt, staging)
        record_output_files(staging, written)
    return [destination / path.name for path in written]


def _write_export(selection: ExportSelection, output: LabelSpaceOutput, fmt: str, destination: Path) -> list[Path]:
    """The files of one export, written into ``destination`` (a staging folder): data first, meta last."""
    base = destination / selection.name
    embeddings = selection.embeddings.astype(np.float32)
    meta = {
        "format": fmt, "rows": len(selection.names), "order_file": f"{selection.name}.labels.txt",
        "encoder": output.manifest["encoder"], "templates": output.manifest["templates"],
        "source_build": str(output.directory), "selection": selection.description,
        "files": {},
    }
    vectors = {"dim": int(embeddings.shape[1]), "dtype": "float32", "l2_normalized": True}
    written: list[Path] = []

    def put(path: Path, write) -> None:
        atomic_write(path, write)
        written.append(path)

    if fmt != "yolo-world":
        meta.update(vectors)
    if fmt == "detic":
        # Detic's config key for the width; every released model uses 512 (ViT-B/32)
        meta["detic"] = {"MODEL.ROI_BOX_HEAD.ZEROSHOT_WEIGHT_DIM": int(embeddings.shape[1]),
                         "MODEL.ROI_BOX_HEAD.ZEROSHOT_WEIGHT_PATH": f"{selection.name}.npy"}
        put(base.with_suffix(".npy"), lambda p: np.save(p, embeddings))
    elif fmt == "torch":
        import torch

        put(base.with_suffix(".pt"), lambda p: torch.save({"embeddings": torch.from_numpy(embeddings),
                                                           "names": selection.names, "global_ids": selection.global_ids,
                                                           "meta": meta}, p))
    elif fmt == "ultralytics":
        import torch

        # what ultralytics' WorldModel.set_classes stores: txt_feats of shape (1, C, D), L2-normalised rows,
        # and the class names (one text per class: the first alternative, as YOLOWorld.set_classes takes)
        names = [synonyms[0] for synonyms in selection.synonyms]
        put(destination / f"{selection.name}.txt_feats.pt",
            lambda p: torch.save({"txt_feats": torch.from_numpy(embeddings)[None], "names": names}, p))
        meta["install"] = ULTRALYTICS_INSTALL
    elif fmt == "csv":
        def write_csv(p: Path) -> None:
            with open(p, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["global_id", "name", *(f"e{i}" for i in range(embeddings.shape[1]))])
                for gid, name, vector in zip(selection.global_ids, selection.names, embeddings):
                    writer.writerow([csv_cell(gid), csv_cell(name), *(f"{v:.7g}" for v in vector)])
        put(base.with_suffix(".csv"), write_csv)
    elif fmt == "parquet":
        table = pa.table({"row": pa.array(range(len(selection.names)), pa.int32()),
                          "global_id": selection.global_ids, "name": selection.names,
                          "embedding": pa.array(list(embeddings), pa.list_(pa.float32()))})
        table = table.replace_schema_metadata({b"scaledet": json.dumps(meta).encode()})
        put(base.with_suffix(".parquet"), lambda p: pq.write_table(table, p))
    else:  # yolo-world: the class texts (config ``class_text_path``); its vectors only with a CLIP build
        put(base.with_suffix(".json"), lambda p: p.write_text(json.dumps(selection.synonyms, ensure_ascii=False, indent=1)))
        if output.manifest["encoder"]["name"] == "clip":
            # YOLO-World's ``embedding_path``: a C × D float32 array in class order (its text model is CLIP)
            put(destination / f"{selection.name}.embeddings.npy", lambda p: np.save(p, embeddings))
            meta["embedding_file"] = {"file": f"{selection.name}.embeddings.npy", **vectors}
    meta["files"] = {"data": written[0].name}
    put(destination / f"{selection.name}.labels.txt",
        lambda p: p.write_text("".join(f"{gid}\n" for gid in selection.global_ids), encoding="utf-8"))
    # one meta file per format: a second export of the same name in another format keeps the first's meta
    put(destination / f"{selection.name}.{fmt}.meta.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return written
