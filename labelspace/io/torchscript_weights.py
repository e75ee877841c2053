"""The tensors of a TorchScript archive, read without running anything in it.

OpenAI released CLIP as TorchScript (``ViT-B-32.pt``). ``torch.jit.load`` would compile the archive's code
and run its ``__setstate__`` hooks; ``torch.load(weights_only=True)`` refuses TorchScript outright. The
archive is a zip whose ``data.pkl`` holds the module tree as a pickle of ``__torch__.*`` objects, tensors
rebuilt from the storages under ``data/``. This module reads that pickle with an unpickler that knows only
script objects (as inert attribute bags), ``_rebuild_tensor_v2``, storage types, typed-list builders and
``OrderedDict``, each replaced by a plain function of its own, and refuses every other global, so a crafted archive cannot reach code. The archive's own code is never read.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import torch

#: Storage classes a TorchScript pickle names → the element type of their bytes.
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


#: Bounds on what an archive entry may expand to before it is read. ``torch.jit.save`` stores entries
#: uncompressed and weights barely compress, so an entry that claims to grow more than
#: ``MAX_EXPANSION`` times is a zip bomb (3 MB of deflated zeros claim 7.7 GB).
MAX_EXPANSION = 20
MAX_ENTRY_BYTES = 8 << 30


class UnsafeArchive(ValueError):
    """The archive names something other than modules, tensors and storages, or an entry would expand
    beyond the bounds above."""


def read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """An entry's bytes, after checking what its header claims (zipfile stops at the claimed size, so the
    claim bounds what is allocated)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_ENTRY_BYTES or info.file_size > MAX_EXPANSION * info.compress_size + (1 << 20):
        raise UnsafeArchive(f"entry {name[:60]} expands from {info.compress_size:,} to {info.file_size:,} bytes "
                            "(a zip bomb?); not read")
    return archive.read(name)


class _ScriptObject:
    """A ``__torch__.*`` object: its pickled attributes, nothing else (no methods of the archive run)."""

    def __setstate__(self, state) -> None:
        self.attributes = state if isinstance(state, dict) else {}


#: ``torch.jit._pickle`` helpers a TorchScript pickle names for typed lists: all of them just make a list.
LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_genericlist")


def _as_list(items=()) -> list:
    return list(items)


def _restore_type_tag(value, type_tag=None):
    return value


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, requires_grad=False, hooks=None,
                    metadata=None) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


class _Unpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch.jit._pickle" and name in LIST_BUILDERS:
            return _as_list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return _restore_type_tag
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise UnsafeArchive(f"it names {module}.{name}, which a weights file has no need of")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) >= 3 and saved_id[0] == "storage"
                and isinstance(saved_id[1], torch.dtype) and isinstance(saved_id[2], str)):
            raise UnsafeArchive(f"unexpected persistent id {str(saved_id)[:40]}")
        raw = bytearray(read_entry(self.archive, f"{self.prefix}/data/{saved_id[2]}"))
        if not raw:
            return torch.empty(0, dtype=saved_id[1])
        return torch.frombuffer(raw, dtype=saved_id[1])


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """``{"visual.conv1.weight": tensor, …}``: every tensor attribute of the archive's module tree, named
    as ``state_dict()`` names them (non-persistent buffers included; callers keep the keys they expect).
    Raises :class:`UnsafeArchive`, ``zipfile.BadZipFile``, ``KeyError`` or ``pickle.UnpicklingError`` for a
    file that is not a plain TorchScript archive."""
    with zipfile.ZipFile(path) as archive:
        data_files = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(data_files) != 1:
            raise UnsafeArchive("not one TorchScript data.pkl in the archive")
        prefix = data_files[0].split("/")[0]
        root = _Unpickler(archive, prefix, read_entry(archive, data_files[0])).load()
    tensors: dict[str, torch.Tensor] = {}
    stack = [("", root)]
    while stack:
        name, node = stack.pop()
        if not isinstance(node, _ScriptObject):
            continue
        for attribute, value in getattr(node, "attributes", {}).items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}{attribute}"] = value.clone()
            elif isinstance(value, _ScriptObject):
                stack.append((f"{name}{attribute}.", value))
    return tensors
