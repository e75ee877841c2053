"""Reading the text files users bring: spreadsheet BOMs, duplicate YAML keys, control characters.

A CSV saved by a spreadsheet starts with a UTF-8 byte-order mark; read naively it becomes part of the
first field (and a class is lost or renamed). A YAML mapping with a repeated key silently keeps the last
value (and a class is lost). A newline or NUL inside a class name breaks every line-oriented file written
from it. Each of these is handled here once, for every reader.
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""

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


def check_name_text(text: str, where: str, error: type[ScaledetError] = ScaledetError) -> None:
    """A class name or synonym must be printable on one line: it ends up in line-oriented files."""
    char = control_character(text)
    if char is not None:
        raise error(f"{where}: name {text!r} contains the control character {char!r}; "
                            "class names must be one line of printable text")
