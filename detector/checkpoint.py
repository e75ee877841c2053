"""Checkpoints: atomic writes, and a refusal to mix a checkpoint with a labelspace it was not trained on."""
from __future__ import annotations

import re

from pathlib import Path

import torch

from scaledet.labelspace.atomic import atomic_write, atomic_write_text
from scaledet.labelspace.errors import ScaledetError, one_line

from .vocabulary import UnifiedLabelSpace


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
    name = pointer.read_text(encoding="utf-8").strip()
    if not name or "/" in name or name.startswith("."):
        raise ScaledetError(f"{pointer}: names no checkpoint ({name!r})")
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
    from scaledet.labelspace.output_dirs import recorded_files

    found = []
    for name in recorded_files(output_dir):
        match = re.fullmatch(r"model_(\d{7})\.pth", name)
        if match and int(match.group(1)) + 1 <= up_to_iteration and (output_dir / name).is_file():
            found.append(output_dir / name)
    return sorted(found)


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves half a file,
    and a failed write (a full disk) leaves the previous checkpoint and no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch reports a failed write (e.g. ENOSPC) as a RuntimeError
            raise ScaledetError(f"{path}: the checkpoint could not be written ({one_line(err)}); is the disk "
                                "full? The previous checkpoint is intact") from None

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True``: a checkpoint holds tensors and plain Python values only, so loading
    one that someone sent you cannot run their code."""
    from scaledet.labelspace.output_dirs import verify_recorded_file

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
    return state


def load_weights(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """``model.load_state_dict`` with a one-line error when the weights do not fit the model the
    checkpoint's config describes (a hand-edited or foreign checkpoint)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise ScaledetError(f"{path}: its weights do not fit the model its config describes "
                            f"({one_line(err, 120)})") from None


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


def labelspace_ids_digest(labelspace: UnifiedLabelSpace) -> str:
    import hashlib

    return hashlib.sha256("\n".join(labelspace.global_ids).encode()).hexdigest()
