"""LVIS synset hypernyms from a local WordNet 3.0 database, when one is installed (never downloaded).

LVIS names every category by a WordNet synset (``shoe.n.01``). With the WordNet database files on disk
(Debian's ``wordnet-base`` package puts them in ``/usr/share/wordnet``; ``$SCALEDET_WORDNET`` names
another folder) the label graph gains hypernym ``parent`` edges between LVIS labels, and hypernym queries
("fruit", "animal") reach every LVIS label below the term. Without the files, both quietly do without.

Only the two noun files are read: ``index.noun`` (lemma → synset offsets, in sense order, which is how a
synset name's number counts) and ``data.noun`` (a synset's line at its byte offset, whose ``@`` / ``@i``
pointers are its hypernyms).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

DEFAULT_LOCATIONS = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))


def find_wordnet() -> Path | None:
    candidates = [Path(os.environ["SCALEDET_WORDNET"])] if os.environ.get("SCALEDET_WORDNET") else []
    for directory in candidates + list(DEFAULT_LOCATIONS):
        if (directory / "index.noun").is_file() and (directory / "data.noun").is_file():
            return directory
    return None


class WordNetNouns:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.senses: dict[str, list[int]] = {}
        with open(directory / "index.noun", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(" "):
                    continue  # licence header
                fields = line.split()
                synset_count = int(fields[2])
                self.senses[fields[0]] = [int(o) for o in fields[-synset_count:]]
        self._data = open(directory / "data.noun", "rb")  # noqa: SIM115 - kept open for seeks
        self._hypernyms = lru_cache(maxsize=None)(self._read_hypernyms)

    def offset(self, synset_name: str) -> int | None:
        """``shoe.n.01`` → the synset's offset in data.noun (None for unknown names or other parts of speech)."""
        parts = synset_name.rsplit(".", 2)
        if len(parts) != 3 or parts[1] != "n" or not parts[2].isdigit():
            return None
        offsets = self.senses.get(parts[0].lower())
        number = int(parts[2])
        return offsets[number - 1] if offsets and 0 < number <= len(offsets) else None

    def noun_senses(self, word: str) -> list[int]:
        return self.senses.get(word.strip().lower().replace(" ", "_"), [])

    def _fields(self, offset: int) -> list[str]:
        self._data.seek(offset)
        return self._data.readline().decode("utf-8", errors="replace").split(" | ")[0].split()

    def lexicographer_file(self, offset: int) -> int:
        """The synset's lexicographer file number (5 = noun.animal, 6 = noun.artifact, 13 = noun.food, …)."""
        return int(self._fields(offset)[1])

    def words(self, offset: int) -> tuple[str, ...]:
        """The lemmas of a synset, lower case with spaces (``french horn``, ``horn``)."""
        fields = self._fields(offset)
        word_count = int(fields[3], 16)
        return tuple(fields[4 + 2 * i].lower().replace("_", " ") for i in range(word_count))

    def _read_hypernyms(self, offset: int) -> tuple[int, ...]:
        fields = self._fields(offset)
        word_count = int(fields[3], 16)
        position = 4 + 2 * word_count
        pointer_count = int(fields[position])
        pointers = fields[position + 1: position + 1 + 4 * pointer_count]
        return tuple(int(pointers[i + 1]) for i in range(0, len(pointers), 4)
                     if pointers[i] in ("@", "@i") and pointers[i + 2] == "n")

    def ancestors(self, offset: int) -> set[int]:
        seen: set[int] = set()
        stack = list(self._hypernyms(offset))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._hypernyms(current))
        return seen
