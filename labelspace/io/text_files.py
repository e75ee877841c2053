"""Reading the text files users bring: spreadsheet BOMs, duplicate YAML keys, control characters.

A CSV saved by a spreadsheet starts with a UTF-8 byte-order mark; read naively it becomes part of the
first field (and a class is lost or renamed). A YAML mapping with a repeated key silently keeps the last
value (and a class is lost). A newline or NUL inside a class name breaks every line-oriented file written
from it; a bidirectional override or zero-width character makes a name that looks like another. A 1 KB YAML
file of nested aliases expands to gigabytes. A CSV cell that starts with ``=`` runs as a formula in a
spreadsheet. Each of these is handled here once, for every reader and writer.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import yaml

from . import json_sections
from .errors import ScaledetError, one_line

UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: Path, error: type[ScaledetError] = ScaledetError) -> str:
    """A UTF-8 text file without its BOM; a one-line ``error`` for other encodings."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def skip_bom(handle: BinaryIO) -> BinaryIO:
    """Position a binary handle after a leading UTF-8 BOM, if there is one."""
    if handle.read(3) != UTF8_BOM:
        handle.seek(0)
    return handle


#: Deepest nesting of brackets a streamed JSON file may have. Annotation files nest 5 deep (a polygon in a
#: segmentation in an annotation in a list in the file); ijson keeps a prefix string per open level, so N
#: levels cost O(N²) memory: a 200 KB file of brackets alone needs about 19 GB.
JSON_MAX_DEPTH = 1000


_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
#: One token of the exact count: a whole string (skipped), a bracket, or a string that goes on past the block.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|"')
_BRACKET_STEP = np.zeros(256, dtype=np.int32)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


class NestingGuard:
    """A binary file wrapper for ijson that refuses JSON nested deeper than ``JSON_MAX_DEPTH`` before ijson
    parses it.

    Each chunk costs one ``bytes.translate`` (3–10 % of ijson's time): brackets alone, strings or not,
    bound the depth from above (a running count, and its peak inside the chunk when the count is near the
    limit). Only when that bound passes the limit does the guard count exactly, with strings skipped
    (brackets in a name nest nothing): once over the file so far, then chunk by chunk. So a file whose
    strings hold unmatched brackets is never refused for them, and costs one exact pass at most."""

    def __init__(self, handle: BinaryIO, path: Path, error: type[ScaledetError]) -> None:
        self.handle, self.path, self.error = handle, path, error
        self.start = handle.tell()
        self.depth_bound = 0
        self.exact: tuple[int, bytes] | None = None  # (depth, unfinished string) once counting exactly

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        if self.exact is not None:
            self.exact = self._count(chunk, *self.exact, self.handle.tell() - len(chunk))
            return chunk
        brackets = chunk.translate(None, _NOT_BRACKETS)
        opens = brackets.count(b"[") + brackets.count(b"{")
        if self.depth_bound + opens > JSON_MAX_DEPTH:
            steps = _BRACKET_STEP[np.frombuffer(brackets, dtype=np.uint8)]
            if self.depth_bound + int(np.cumsum(steps).max()) > JSON_MAX_DEPTH:
                self.exact = self._count_from_start(self.handle.tell())
                return chunk
        self.depth_bound = max(0, self.depth_bound + 2 * opens - len(brackets))
        return chunk

    def _count_from_start(self, end: int) -> tuple[int, bytes]:
        state: tuple[int, bytes] = (0, b"")
        offset = self.start
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            while offset < end:
                data = handle.read(min(1 << 20, end - offset))
                if not data:
                    break
                state = self._count(data, *state, offset)
                offset += len(data)
        return state

    def _count(self, data: bytes, depth: int, tail: bytes, offset: int) -> tuple[int, bytes]:
        """(depth, unfinished string) after ``data``, counted outside strings; an error past the limit."""
        buffer = tail + data
        offset -= len(tail)
        for match in _JSON_TOKEN.finditer(buffer):
            char = match.group()[:1]
            if char in (b"[", b"{"):
                depth += 1
                if depth > JSON_MAX_DEPTH:
                    raise self.error(f"{self.path}: nested deeper than {JSON_MAX_DEPTH} levels (byte "
                                     f"{offset + match.start()}); annotation files need 5")
            elif char in (b"]", b"}"):
                depth = max(depth - 1, 0)
            elif match.group() == b'"':  # a string that goes on in the next block
                return depth, buffer[match.start():]
        return depth, b""


def stream_json_items(path: Path, prefix: str, error: type[ScaledetError] = ScaledetError,
                      problem: str = "malformed JSON") -> Iterator[Any]:
    """The items at ``prefix`` (ijson's notation: ``categories.item``) of a JSON file, streamed so that a
    1 GB annotation file is never in memory, after a BOM and within ``JSON_MAX_DEPTH``; a JSON error is
    one ``error`` line."""
    import ijson

    span = _span_of(path, prefix)
    if span is None:
        yield from _whole_file_items(path, prefix, error, problem)
        return
    (start, end), within = span
    if end <= start:  # the file has no such key
        return
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            yield from ijson.items(NestingGuard(_Span(handle, end), path, error), within, use_float=True)
    except ijson.JSONError as err:
        for _ in _whole_file_items(path, prefix, error, problem):  # the error as a whole-file read gives it
            pass
        raise error(f"{path}: {problem} ({one_line(err)})") from None


def _whole_file_items(path: Path, prefix: str, error: type[ScaledetError], problem: str) -> Iterator[Any]:
    import ijson

    try:
        with open(path, "rb") as handle:
            yield from ijson.items(NestingGuard(skip_bom(handle), path, error), prefix, use_float=True)
    except ijson.JSONError as err:
        raise error(f"{path}: {problem} ({one_line(err)})") from None


def _span_of(path: Path, prefix: str) -> tuple[tuple[int, int], str] | None:
    """(the byte span of the top-level value the prefix starts with, the prefix within it), for a large
    file whose top-level spans are known (:mod:`.json_sections`); None to read the whole file. A key the
    file lacks reads as an empty span, as a whole-file read finds nothing there either."""
    key, _, within = prefix.partition(".")
    if not key or key == "item":
        return None
    try:
        if Path(path).stat().st_size < json_sections.SCAN_MIN_BYTES:
            return None
    except OSError:
        return None  # the whole-file read says what is wrong
    sections = json_sections.cached_sections(path)
    if sections is None or key in sections.scalar_keys:
        return None
    return sections.spans.get(key, (0, 0)), within


class _Span:
    """A binary file read from its current position up to ``end`` (exclusive), for ijson."""

    def __init__(self, handle: BinaryIO, end: int) -> None:
        self.handle, self.end = handle, end

    def read(self, size: int = -1) -> bytes:
        left = self.end - self.handle.tell()
        if left <= 0:
            return b""
        return self.handle.read(left if size < 0 else min(size, left))

    def tell(self) -> int:
        return self.handle.tell()


def check_list_or_absent(path: Path, key: str) -> None:
    """A top-level ``key`` is a list or absent: ``"annotations": null`` streams as no items at all, which
    would silently train on images without boxes. Only called when nothing was streamed (a second pass)."""
    import ijson

    with open(path, "rb") as handle:
        for prefix, event, _ in ijson.parse(NestingGuard(skip_bom(handle), path, ScaledetError)):
            if prefix == key:
                if event not in ("start_array", "end_array"):
                    kind = {"start_map": "an object", "null": "null", "string": "text", "number": "a number",
                            "boolean": "true/false"}.get(event, event)
                    raise ScaledetError(f"{path}: '{key}' is {kind}; expected a list")
                return


#: Bounds on a YAML document: aliases (each may stand for a whole subtree, so a few nested ones expand to
#: gigabytes) and nesting depth. Configs and data.yaml files need neither anywhere near these.
YAML_MAX_ALIASES = 100
YAML_MAX_DEPTH = 50
#: Bound on the document's size with every alias expanded (nodes): nine aliases of nine, nine levels deep,
#: stay under the alias count but stand for 387 million values once a reader walks them.
YAML_MAX_EXPANDED_NODES = 1_000_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one silently), more
    than ``YAML_MAX_ALIASES`` aliases, nesting deeper than ``YAML_MAX_DEPTH``, and a document that expands
    to more than ``YAML_MAX_EXPANDED_NODES`` nodes, all before anything is built from it."""

    def compose_document(self):
        document = super().compose_document()
        if document is not None and _expanded_size(document) > YAML_MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"its aliases expand to more than {YAML_MAX_EXPANDED_NODES:,} values", document.start_mark)
        return document

    def compose_node(self, parent, index):
        depth = getattr(self, "_depth", 0) + 1
        if depth > YAML_MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {YAML_MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        if self.check_event(yaml.events.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > YAML_MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {YAML_MAX_ALIASES} aliases (*name)",
                                                  self.peek_event().start_mark)
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key; construct_mapping reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the tree under ``root`` with every alias expanded, counted once per shared node (memo), so
    the count of a bomb is cheap even though its expansion is not."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias (&a [*a]) counts once instead of looping
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(key) + size(value) for key, value in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, YAML_MAX_EXPANDED_NODES + 1)
        return sizes[id(node)]

    return size(root)


def load_yaml(path: Path, error: type[ScaledetError] = ScaledetError) -> Any:
    """Parse a YAML file strictly (duplicate keys are errors), with one-line errors naming the file."""
    text = read_text(path, error)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        detail = one_line(err).replace('"<unicode string>", ', "")
        raise error(f"{path}: malformed YAML ({detail})") from None


def control_character(text: str) -> str | None:
    """The first control or line-separator character of ``text`` (newline, NUL, tab, U+2028 …), if any."""
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return char
    return None


#: Characters that reorder text (bidirectional embeddings, overrides, isolates, marks): a name holding one
#: can display as another name.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Characters that take no room: a name made of them alone looks empty, or like a name without them.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
#: Letters that draw nothing (the Hangul fillers): a name of them alone prints as blank.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _visible(char: str) -> bool:
    """Whether ``char`` shows something on its own: not a space, a zero-width or format character (tag
    characters included), a blank letter, or a combining mark, which only changes the character before it."""
    return not (char.isspace() or char in ZERO_WIDTH or char in BLANK_LETTERS
                or unicodedata.category(char) in ("Cf", "Mn", "Me"))


def check_name_text(text: str, where: str, error: type[ScaledetError] = ScaledetError) -> None:
    """A class name or synonym must be printable on one line (it ends up in line-oriented files), hold no
    bidirectional control, and not be empty once zero-width characters are removed (look-alike names)."""
    char = control_character(text)
    if char is not None:
        raise error(f"{where}: name {ascii(text)[:80]} contains the control character {char!r}; "
                    "class names must be one line of printable text")
    bidi = next((c for c in text if c in BIDI_CONTROLS), None)
    if bidi is not None:
        raise error(f"{where}: name {ascii(text)[:80]} contains the bidirectional control U+{ord(bidi):04X}, "
                    "which makes it display as another text; remove it")
    if not any(_visible(c) for c in text):
        raise error(f"{where}: name {ascii(text)[:80]} shows nothing (only spaces, zero-width, format or blank "
                    "characters and combining marks); give it a visible name")


#: OWASP's rule for CSV injection: a cell starting with one of these is a formula in a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A text cell safe to open in a spreadsheet: one that would start a formula gets a leading ``'``
    (numbers are left as they are). :func:`csv_cell_value` reads it back."""
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        try:
            float(text)
            return text
        except ValueError:
            return "'" + text
    return text


def csv_cell_value(text: str) -> str:
    """The text a :func:`csv_cell` stands for."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text
