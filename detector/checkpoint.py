"""Checkpoints: atomic writes, a digest each one carries, and a refusal to mix a checkpoint with a
labelspace it was not trained on.

A checkpoint's run folder records its sha256 in the folder's marker, but a checkpoint is copied on its own
(to a cluster, into a model zoo), where no marker follows it. So each checkpoint also carries
``content_sha256``: a digest of everything else it holds, tensors by their bytes. A flipped bit anywhere in
the weights (an exponent bit turns 8 detections into 0) is then refused wherever the file goes. A
checkpoint that carries no digest and has no marker to check is loaded only when the user says so
(``--trust-checkpoint``).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from scaledet.labelspace.io.atomic import atomic_write, atomic_write_text
from scaledet.labelspace.io.errors import ScaledetError, one_line

from .vocabulary import UnifiedLabelSpace, labelspace_ids_digest


DIGEST_KEY = "content_sha256"
TRUST_FLAG = "--trust-checkpoint"
FINAL_NAME = "model_final.pth"
POINTER_NAME = "last_checkpoint"


def numbered_checkpoint_name(iterations_done: int) -> str:
    """detectron2's naming: the checkpoint after iteration index i (0-based) is ``model_{i:07d}.pth``."""
    return f"model_{iterations_done - 1:07d}.pth"


def final_checkpoint(output_dir: Path) -> Path:
    return Path(output_dir) / FINAL_NAME


def last_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint the ``last_checkpoint`` pointer names (``--resume`` continues from it)."""
    pointer = Path(output_dir) / POINTER_NAME
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ScaledetError(f"{pointer}: not text (it should name a checkpoint of this folder)") from None
    if not name or "/" in name or name.startswith(".") or not name.isprintable():
        raise ScaledetError(f"{pointer}: names no checkpoint ({name[:60]!r})")
    return Path(output_dir) / name


def point_to(output_dir: Path, checkpoint: Path) -> None:
    atomic_write_text(Path(output_dir) / POINTER_NAME, checkpoint.name + "\n")


def prune_checkpoints(own: list[Path], keep_last: int | None) -> None:
    """Keep only the newest ``keep_last`` of ``own``, the numbered checkpoints this run wrote (and, on
    ``--resume``, those of the run it continues, as its marker lists them), oldest first. Only these are
    ever removed: a checkpoint of an earlier run started over with ``--force``, or a ``model_*.pth`` someone
    put in the folder, is not this run's to delete. ``model_final.pth`` is never in the list."""
    if not keep_last:
        return
    while len(own) > keep_last:
        own.pop(0).unlink(missing_ok=True)


def run_checkpoints(output_dir: Path, up_to_iteration: int) -> list[Path]:
    """The numbered checkpoints a run being resumed wrote, oldest first: those its folder's marker lists,
    up to the iteration it continues from (a later one belongs to no run that leads here)."""
    from scaledet.labelspace.io.output_dirs import recorded_files

    found = []
    for name in recorded_files(output_dir):
        match = re.fullmatch(r"model_(\d{7})\.pth", name)
        if match and int(match.group(1)) + 1 <= up_to_iteration and (output_dir / name).is_file():
            found.append(output_dir / name)
    return sorted(found)


def content_digest(state: dict) -> str:
    """sha256 of a checkpoint's content except the digest itself: every tensor by dtype, shape and bytes,
    every other value by its ``repr``, dict keys in sorted order (so the digest does not depend on how
    the file was pickled)."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{data.dtype}{tuple(value.shape)}".encode())
            if data.numel():
                digest.update(data.view(torch.uint8).numpy().tobytes() if data.dtype != torch.uint8
                              else data.numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{type(value).__name__}:{value!r}".encode())

    feed({key: value for key, value in state.items() if key != DIGEST_KEY})
    return digest.hexdigest()


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves half a file,
    and a failed write (a full disk) leaves the previous checkpoint and no temporary file. The state is
    saved with its :func:`content_digest`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, DIGEST_KEY: content_digest(state)}

    def write(tmp: Path) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch reports a failed write (e.g. ENOSPC) as a RuntimeError
            raise ScaledetError(f"{path}: the checkpoint could not be written ({one_line(err)}); is the disk "
                                "full? The previous checkpoint is intact") from None

    atomic_write(path, write)


def load_checkpoint(path: str | Path, trust_unverified: bool = False) -> dict:
    """Load with ``weights_only=True``: a checkpoint holds tensors and plain Python values only, so loading
    one that someone sent you cannot run their code. Its content must match the digest it carries, or the
    sha256 its run folder's marker recorded; with neither, it loads only with ``trust_unverified``."""
    from scaledet.labelspace.io.output_dirs import recorded_sha256, verify_recorded_file

    path = Path(path)
    if not path.is_file():
        raise ScaledetError(f"{path}: checkpoint not found")
    verify_recorded_file(path)  # its run recorded its sha256 when it was saved
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise ScaledetError(f"{path}: not a readable checkpoint ({one_line(err)})") from None
    if (not isinstance(state, dict) or not isinstance(state.get("model"), dict)
            or not isinstance(state.get("labelspace"), dict) or not isinstance(state.get("config"), dict)):
        raise ScaledetError(f"{path}: not a scaledet checkpoint")
    carried = state.get(DIGEST_KEY)
    if carried is not None and carried != content_digest(state):
        raise ScaledetError(f"{path}: its content does not match the sha256 it carries (a damaged file); copy it "
                            "again from its run folder")
    if carried is None and recorded_sha256(path) is None and not trust_unverified:
        raise ScaledetError(f"{path}: carries no digest and no run folder's marker lists it, so damage cannot be "
                            f"detected; load it anyway with {TRUST_FLAG}")
    return state


def load_weights(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """``model.load_state_dict`` with a one-line error when the weights do not fit the model the
    checkpoint's config describes (a hand-edited or foreign checkpoint)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise ScaledetError(f"{path}: its weights do not fit the model its config describes "
                            f"({one_line(err, 120)})") from None


def load_model_from_checkpoint(path: str | Path, device: torch.device,
                               trust_unverified: bool = False) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on ``device``, checkpoint state): the detector the checkpoint's own config
    describes, with its weights. Predict and evaluation both start here."""
    from .data.transforms import InputConfig
    from .model import ModelConfig, build_detector

    state = load_checkpoint(path, trust_unverified)
    model_section = state["config"].get("model")
    dim = state["labelspace"].get("dim")
    if not isinstance(model_section, dict) or isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ScaledetError(f"{path}: not a scaledet checkpoint (no model config or embedding dimension)")
    known = {f for f in ModelConfig.__dataclass_fields__}
    input_section = state["config"].get("input") or {}
    try:
        config = ModelConfig(**{k: v for k, v in model_section.items() if k in known})
        sizes = InputConfig(**{k: v for k, v in input_section.items() if k in InputConfig.__dataclass_fields__})
        model = build_detector(config, torch.zeros(1, dim), sizes, load_backbone=False)  # the checkpoint has them
    except (TypeError, ValueError) as err:
        raise ScaledetError(f"{path}: its model config cannot be built ({one_line(err)})") from None
    load_weights(model, state, path)
    return model.to(device).eval(), state


def check_compatible(state: dict, labelspace: UnifiedLabelSpace, checkpoint_path: Path | str,
                     same_labels: bool = False) -> None:
    """The text embeddings must come from the encoder the checkpoint was trained with (same space, same
    dimension); for resuming training, the union itself must be the same too."""
    trained = state["labelspace"]
    current = labelspace.fingerprint()
    if trained["encoder_identity"] != current["encoder_identity"] or trained["dim"] != current["dim"]:
        raise ScaledetError(
            f"{labelspace.directory}: built with encoder {current['encoder_identity'][:48]}… ({current['dim']}-d) but "
            f"{checkpoint_path} was trained with {trained['encoder_identity'][:48]}… ({trained['dim']}-d)")
    if same_labels and trained.get("global_ids_sha256") != labelspace_ids_digest(labelspace):
        raise ScaledetError(f"{labelspace.directory}: a different label union from the one {checkpoint_path} was "
                            "trained on; resume with the same labelspace build")

