"""Checkpoints: atomic writes, and a refusal to mix a checkpoint with a labelspace it was not trained on."""
from __future__ import annotations

from pathlib import Path

import torch

from scaledet.labelspace.atomic import atomic_write
from scaledet.labelspace.errors import ScaledetError, one_line

from .vocabulary import UnifiedLabelSpace


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ScaledetError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ScaledetError(f"{path}: not a readable checkpoint ({one_line(err)})") from None
    if not isinstance(state, dict) or "model" not in state or "labelspace" not in state:
        raise ScaledetError(f"{path}: not a scaledet checkpoint")
    return state


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
