"""Reading the text files users bring: spreadsheet BOMs, duplicate YAML keys, control characters.

A CSV saved by a spreadsheet starts with a UTF-8 byte-order mark; read naively it becomes part of the
first field (and a class is lost or renamed). A YAML mapping with a repeated key silently keeps the last
value (and a class is lost). A newline or NUL inside a class name breaks every line-oriented file written
from it; a bidirectional override or zero-width character makes a name that looks like another. A 1 KB YAML
file of nested aliases expands to gigabytes. A CSV cell that starts with ``=`` runs as a formula in a
spreadsheet. Each of these is handled here once, for every reader and writer.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import yaml

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


def stream_json_items(path: Path, prefix: str, error: type[ScaledetError] = ScaledetError,
                      problem: str = "malformed JSON") -> Iterator[Any]:
    """The items at ``prefix`` (ijson's notation: ``categories.item``) of a JSON file, streamed so that a
    1 GB annotation file is never in memory, after a BOM; a JSON error is one ``error`` line."""
    import ijson

    try:
        with open(path, "rb") as handle:
            yield from ijson.items(skip_bom(handle), prefix, use_float=True)
    except ijson.JSONError as err:
        raise error(f"{path}: {problem} ({one_line(err)})") from None


def check_list_or_absent(path: Path, key: str) -> None:
    """A top-level ``key`` is a list or absent: ``"annotations": null`` streams as no items at all, which
    would silently train on images without boxes. Only called when nothing was streamed (a second pass)."""
    import ijson

    with open(path, "rb") as handle:
        for prefix, event, _ in ijson.parse(skip_bom(handle)):
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one silently), more
    than ``YAML_MAX_ALIASES`` aliases and nesting deeper than ``YAML_MAX_DEPTH``."""

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
