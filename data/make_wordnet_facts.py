"""Generate ``data/wordnet/nouns.json.gz`` (the WordNet noun facts ``merge`` and ``graph`` use) from a WordNet
3.0 database.

    python data/make_wordnet_facts.py [--source /usr/share/wordnet]

Debian's ``wordnet-base`` package installs the database in ``/usr/share/wordnet``. Only the two noun files
are read: ``index.noun`` (lemma → synset offsets, in sense order, which is how a synset name such as
``shoe.n.01`` counts) and ``data.noun`` (each synset's line at its byte offset). Written are facts only, for
every noun synset: its lexicographer file number (noun.animal, noun.artifact, …), its lemmas and its
hypernyms (``@`` and ``@i`` pointers to nouns); and for every lemma its synsets. No glosses, no examples.
WordNet's licence asks that its notice go with every copy of the database, modified or not:
``data/wordnet/LICENSE`` is written from the database's own header.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = "scaledet.wordnet-nouns/1"


def read_index(path: Path) -> dict[str, list[int]]:
    senses = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" "):
                continue  # licence header
            fields = line.split()
            count = int(fields[2])
            senses[fields[0]] = [int(o) for o in fields[-count:]]
    return senses


def read_synsets(path: Path) -> dict[int, list]:
    """offset → [lexicographer file, lemmas (lower case, spaces), hypernym offsets]."""
    synsets = {}
    with open(path, "rb") as handle:
        offset = 0
        for raw in handle:
            line = raw.decode("utf-8", errors="replace")
            if not line.startswith(" "):
                fields = line.split(" | ")[0].split()
                words = int(fields[3], 16)
                lemmas = [fields[4 + 2 * i].lower().replace("_", " ") for i in range(words)]
                position = 4 + 2 * words
                pointers = fields[position + 1: position + 1 + 4 * int(fields[position])]
                hypernyms = [int(pointers[i + 1]) for i in range(0, len(pointers), 4)
                             if pointers[i] in ("@", "@i") and pointers[i + 2] == "n"]
                synsets[offset] = [int(fields[1]), lemmas, hypernyms]
            offset += len(raw)
    return synsets


def licence_text(path: Path) -> str:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith(" "):
                break
            lines.append(line.split(" ", 3)[-1].rstrip() if line[2:].split(" ", 1)[0].isdigit() else line.strip())
    return "\n".join(lines).strip() + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def facts(source: Path) -> dict:
    return {"schema": SCHEMA, "source": "WordNet 3.0: index.noun, data.noun",
            "sha256": {name: sha256(source / name) for name in ("index.noun", "data.noun")},
            "lemmas": read_index(source / "index.noun"),
            "synsets": {str(offset): value for offset, value in sorted(read_synsets(source / "data.noun").items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=HERE / "wordnet")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(facts(args.source), separators=(",", ":"), sort_keys=True).encode()
    (args.out / "nouns.json.gz").write_bytes(gzip.compress(text, mtime=0))
    (args.out / "LICENSE").write_text(licence_text(args.source / "index.noun"))
    print(f"wrote {args.out / 'nouns.json.gz'} and {args.out / 'LICENSE'}")


if __name__ == "__main__":
    main()
