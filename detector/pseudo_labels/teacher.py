"""A scaledet checkpoint as the teacher: run over a unified file's images in the file's own categories.

Detections are written in chunks (``OUT/teacher/part-NNNNNN.json``, each renamed into place when whole)
beside a ``progress.json`` that names the unified file's and the checkpoint's sha256. A run that is killed
keeps its finished chunks; run the same command again and only the images of missing chunks are detected.
Chunks of another file or checkpoint are never mixed in: they are set aside and detected again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from scaledet.labelspace.io.atomic import atomic_write_json, atomic_write_text
from scaledet.labelspace.io.digests import sha256_of_file
from scaledet.labelspace.io.errors import ScaledetError

from .run import UnifiedFile

TEACHER_DIR = "teacher"
CALIBRATION_TEACHER_DIR = "teacher-calibration"  # the teacher's detections on a --calibration file
CHUNK_IMAGES = 256


def _collate(batch):
    return batch


def part_path(folder: Path, chunk: int) -> Path:
    return folder / f"part-{chunk:06d}.json"


def teacher_results(unified_file: UnifiedFile, checkpoint: Path, image_root: Path, to: Path, device: torch.device,
                    trust_checkpoint: bool = False, batch_size: int = 2, num_workers: int = 0,
                    chunk_images: int = CHUNK_IMAGES, show_progress: bool = False,
                    say: Callable[[str], None] = lambda text: None,
                    folder_name: str = TEACHER_DIR) -> tuple[list[Path], int]:
    """(the chunk files holding the teacher's COCO results over every image, images detected by this call),
    kept in ``to/folder_name``. ``unified_file`` is what :meth:`UnifiedFile.read` read (its build names the
    label space)."""
    from ..checkpoint import check_compatible, load_model_from_checkpoint
    from ..data import CocoDetectionDataset, DatasetSpec, to_float
    from ..vocabulary import UnifiedLabelSpace

    unified = unified_file.path
    model, state = load_model_from_checkpoint(checkpoint, device, trust_checkpoint)
    labelspace = UnifiedLabelSpace(unified_file.meta["build"])
    check_compatible(state, labelspace, checkpoint)
    spec = DatasetSpec(name="teacher", annotations=str(unified), images=str(image_root), labelspace_key="unified")
    dataset = CocoDetectionDataset(spec, labelspace, train=False)
    category_ids = [c["id"] for c in dataset.categories]
    model.eval()
    model.roi_heads.set_vocabulary(labelspace.embeddings[dataset.category_union_indices()].to(device))

    folder = to / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    progress = {"unified_sha256": sha256_of_file(unified), "checkpoint_sha256": sha256_of_file(checkpoint),
                "images": len(dataset), "chunk_images": chunk_images}
    progress_file = folder / "progress.json"
    try:
        previous = json.loads(progress_file.read_text(encoding="utf-8")) if progress_file.is_file() else None
    except (OSError, ValueError):
        previous = None
    if previous != progress:
        for stale in folder.glob("part-*.json"):
            stale.unlink()
        atomic_write_json(progress_file, progress)
    chunks = range((len(dataset) + chunk_images - 1) // chunk_images)
    missing = [c for c in chunks if not part_path(folder, c).is_file()]
    if len(missing) < len(chunks):
        say(f"teacher: {len(chunks) - len(missing)} of {len(chunks)} chunks already detected; resuming")
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(min(chunk_images, len(dataset) - c * chunk_images) for c in missing), desc=folder_name,
                   unit="img", leave=False)
    detected = 0
    with torch.no_grad():
        for chunk in missing:
            indices = list(range(chunk * chunk_images, min(len(dataset), (chunk + 1) * chunk_images)))
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                                 num_workers=num_workers, collate_fn=_collate)
            results = []
            for batch in loader:
                outputs = model([to_float(image.to(device)) for image, _ in batch])
                for (_, target), output in zip(batch, outputs):
                    for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                                 output["labels"].tolist()):
                        x1, y1, x2, y2 = box
                        results.append({"image_id": int(target["image_id"]), "category_id": category_ids[label],
                                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                        "score": round(score, 5)})
                if bar is not None:
                    bar.update(len(batch))
            atomic_write_text(part_path(folder, chunk), json.dumps(results, separators=(",", ":")))
            detected += len(indices)
    if bar is not None:
        bar.close()
    parts = [part_path(folder, c) for c in chunks]
    if not all(p.is_file() for p in parts):
        raise ScaledetError(f"{folder}: a chunk of the teacher's detections disappeared while it ran; run again")
    return parts, detected
