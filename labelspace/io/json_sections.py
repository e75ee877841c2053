"""Where each top-level value of a large JSON object lies in its file, found without parsing it.

A COCO-format file is one object: ``info``, ``images``, ``annotations``, ``categories`` and so on. A
streaming reader asked for ``categories.item`` still tokenizes the whole file, because it cannot know where
``categories`` is; ``unify`` reads categories, images, annotations and the images again for shared names,
so it tokenized an Objects365-sized file four times. :func:`json_sections` finds the byte span of every
top-level array or object in one vectorised pass (``bytes.translate`` and NumPy: strings by their quotes,
escapes included, then bracket depth outside strings), and the reader parses only the span it needs.

The result is trusted only when it is checked: the text between the spans (keys and scalar values) must
parse as a JSON object with unique keys, whose array and object values are exactly the spans found. Any
doubt (a key that crosses a read block, a malformed file, a top-level array) gives None, and the caller
reads the whole file as before, so what a file means and every error message stay the same.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Bytes scanned at a time: the per-byte arrays of one block (about ten bytes per byte) stay in the CPU cache
SCAN_BLOCK = 1 << 18
#: Files smaller than this are read whole: scanning them would save nothing
SCAN_MIN_BYTES = 1 << 22
#: The text between spans (keys and scalar values) is parsed to check the spans; more than this is not
#: an annotation file's shape, and the file is read whole
_MAX_SKELETON = 1 << 24
#: How far back from a span's opening bracket its key may start
_KEY_WINDOW = 1 << 16

_BOM = b"\xef\xbb\xbf"  # skipped as text_files.skip_bom does (this module sits below text_files)
_QUOTES = bytes(1 if c == ord('"') else 0 for c in range(256))
_BRACKETS = bytes(1 if c in b"[{" else 2 if c in b"]}" else 0 for c in range(256))
_BACKSLASH_RUN = re.compile(rb"\\+")


@dataclass(frozen=True)
class JsonSections:
    """The spans (``start``, ``end``: byte offsets, end exclusive) of the top-level array and object values
    by key, and the keys whose values are scalars (not spans)."""

    spans: dict[str, tuple[int, int]]
    scalar_keys: frozenset[str]


_cache: dict[tuple[str, int, int], JsonSections | None] = {}


def cached_sections(path: Path) -> JsonSections | None:
    """:func:`json_sections` of a file, found once per version of the file (its size and mtime)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        if len(_cache) >= 32:
            _cache.pop(next(iter(_cache)))
        _cache[key] = json_sections(path)
    return _cache[key]


def json_sections(path: Path, block: int = SCAN_BLOCK) -> JsonSections | None:
    """The top-level spans of a JSON object file, or None when the file is not one or anything is unsure."""
    with open(path, "rb") as handle:
        offset = 3 if handle.read(3) == _BOM else 0
        first = offset
        handle.seek(offset)
        in_string, depth, backslashes = 0, 0, 0
        starts: list[tuple[int, str]] = []
        ends: list[int] = []
        while True:
            chunk = handle.read(block)
            if not chunk:
                break
            quotes = np.frombuffer(chunk.translate(_QUOTES), dtype=np.uint8)
            if backslashes or b"\\" in chunk:
                quotes, backslashes = _unescaped(chunk, quotes, backslashes)
            inside = np.bitwise_xor.accumulate(quotes)  # 1 from an opening quote to before its closing one
            if in_string:
                inside ^= 1
            in_string = int(inside[-1])
            kinds = np.frombuffer(chunk.translate(_BRACKETS), dtype=np.uint8)
            positions = np.flatnonzero((kinds != 0) & (inside == 0))
            steps = np.where(kinds[positions] == 1, 1, -1)
            after = depth + np.cumsum(steps)
            if len(after) and int(after.min()) < 0:
                return None
            before = after - steps
            for position in positions[(steps == 1) & (before == 1)].tolist():
                key = _key_before(chunk, inside, position)
                if key is None:
                    return None
                starts.append((offset + position, key))
            ends.extend((offset + positions[(steps == -1) & (after == 1)] + 1).tolist())
            if len(after):
                depth = int(after[-1])
            offset += len(chunk)
        if depth != 0 or in_string or len(starts) != len(ends):
            return None
        spans = {}
        for (start, key), end in zip(starts, ends):
            if end <= start or key in spans:
                return None
            spans[key] = (start, end)
        return _checked(handle, first, offset, spans)


def _unescaped(chunk: bytes, quotes: np.ndarray, carried: int) -> tuple[np.ndarray, int]:
    """The quote marks without escaped quotes (after an odd run of backslashes, the run possibly begun in
    the block before), and the length of the run of backslashes that ends the block."""
    quotes = quotes.copy()
    trailing = carried
    if carried % 2 and chunk[:1] == b'"':
        quotes[0] = 0
    for run in _BACKSLASH_RUN.finditer(chunk):
        length = run.end() - run.start() + (carried if run.start() == 0 else 0)
        if run.end() < len(chunk):
            if length % 2 and chunk[run.end()] == ord('"'):
                quotes[run.end()] = 0
        else:
            trailing = length
    if not chunk.endswith(b"\\"):
        trailing = 0
    return quotes, trailing


def _key_before(chunk: bytes, inside: np.ndarray, position: int) -> str | None:
    """The key of the value opening at ``position``: the string just before it and its colon."""
    close = chunk.rfind(b'"', max(0, position - _KEY_WINDOW), position)
    if close < 1 or inside[close] or chunk[close + 1:position].strip() != b":":
        return None
    window = inside[max(0, close - _KEY_WINDOW):close]
    outside = np.flatnonzero(window == 0)
    if not len(outside):
        return None
    opening = max(0, close - _KEY_WINDOW) + int(outside[-1]) + 1
    try:
        key = json.loads(chunk[opening:close + 1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return key if isinstance(key, str) else None


def _checked(handle, first: int, end_of_file: int, spans: dict[str, tuple[int, int]]) -> JsonSections | None:
    """The spans, if the text around them is a JSON object with these keys, each once, and these spans as
    its only array and object values."""
    pieces, cursor = [], first
    for start, end in sorted(spans.values()):
        handle.seek(start)
        opening = handle.read(1)
        handle.seek(cursor)
        pieces.append(handle.read(start - cursor))
        pieces.append(b"[]" if opening == b"[" else b"{}")
        cursor = end
        if sum(len(p) for p in pieces) > _MAX_SKELETON:
            return None
    handle.seek(cursor)
    pieces.append(handle.read(min(end_of_file - cursor, _MAX_SKELETON + 1)))
    keys: list[str] = []
    try:
        skeleton = json.loads(b"".join(pieces).decode("utf-8"), object_pairs_hook=_top_level_pairs(keys))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(skeleton, dict) or len(keys) != len(set(keys)):
        return None
    containers = {k for k, v in skeleton.items() if isinstance(v, (list, dict))}
    if containers != set(spans):
        return None
    return JsonSections(spans, frozenset(set(skeleton) - containers))


def _top_level_pairs(keys: list[str]):
    """An ``object_pairs_hook`` that records the keys of the outermost object (the last one completed)."""
    def hook(items):
        keys[:] = [k for k, _ in items]
        return dict(items)
    return hook
