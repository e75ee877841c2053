"""What a label's name means, from the evidence a build holds: its terms and, with WordNet, its senses.

Two labels may name one concept only if they share a *term* (a normalised name, synonym or ``/``
alternative, singular), a WordNet synset, or a very close prompt embedding. Whether they *do* depends on
the sense: ``oid/Mouse`` under ``Animal`` is not ``coco/mouse`` in ``electronic``. The sense evidence is:

* an LVIS label's ``synset`` (definite);
* the *context* of any other label: the parenthesised qualifier of its name (``bat (animal)``), its COCO
  ``supercategory`` and the names of its ancestors in its dataset's hierarchy (OpenImages ``Mouse`` →
  ``Animal``). With WordNet installed, a term's noun senses are narrowed to those with the context word
  among the lemmas of the sense or of one of its hypernyms (``mouse.n.04`` is below ``electronic device``);
  when no sense fits, all of them stay possible (``outdoor`` says nothing about a bench).

Senses are compared by their *kind*, WordNet's lexicographer file (animal, artifact, person, …), not by
synset: WordNet splits one everyday concept into senses a detector cannot tell apart (``broccoli`` the
plant and the food, ``cow`` and ``beef`` the cattle, ``refrigerator`` and ``electric refrigerator``). Food
and plant count as one kind for that reason. A mouse that is an animal and one that is an artifact differ.

Without WordNet, the terms alone decide and every sense check passes.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .prompts import normalize_name
from .wordnet import WordNetNouns

#: A parenthesised sense at the end of a name: ``bow (weapon)``, LVIS ``bat_(animal)`` once normalised.
_QUALIFIER = re.compile(r"\s*\((?P<qualifier>.*)\)\s*$")
_WORD = re.compile(r"[a-z]+")
#: Words of a context that say nothing about a sense.
_CONTEXT_STOPWORDS = frozenset({"and", "or", "of", "the", "a", "other", "others", "misc", "miscellaneous", "none",
                                "thing", "things", "object", "objects", "item", "items", "stuff"})
#: Plural-looking nouns that are not plurals of another label (used when WordNet cannot tell).
_PLURALIA_TANTUM = frozenset({"glasses", "sunglasses", "scissors", "binoculars", "pliers", "tongs", "pants",
                              "shorts", "jeans", "trousers", "goggles", "headphones", "earphones", "tights",
                              "chopsticks", "dice", "species", "series", "news", "bus", "gas", "lens",
                              "canvas", "cactus", "asparagus", "hummus", "octopus", "walrus", "hippopotamus",
                              "citrus", "bass", "glass", "grass", "dress", "cross", "compass", "mattress"})


def singular(term: str) -> str:
    """The singular of a term's last word, by English spelling rules (``skis`` → ``ski``)."""
    head, _, last = term.rpartition(" ")
    if len(last) <= 3 or last in _PLURALIA_TANTUM or last.endswith(("ss", "us", "sis", "xis", "nis", "ris")):
        return term
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        last = last[:-2]
    elif last.endswith("s"):
        last = last[:-1]
    return f"{head} {last}" if head else last


def split_qualifier(name: str) -> tuple[str, str | None]:
    """``bat (animal)`` → (``bat``, ``animal``); a name without one → (name, None)."""
    match = _QUALIFIER.search(name)
    return (name[:match.start()].strip(), match["qualifier"].strip()) if match else (name, None)


def label_terms(name: str, synonyms: list[str] | tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
    """The surface forms a label answers to, as (names, wider names).

    Names: each normalised name and synonym without its qualifier, a ``/`` name joined (``Picture/Frame``
    → ``picture frame``) and its first alternative (``Orange/Tangerine`` → ``orange``), and their
    singulars. Wider names: the later alternatives (``tangerine``): a label named ``Monitor/TV`` covers TVs
    but is more than a TV, so a ``tv`` label is finer than it, not the same."""
    names: set[str] = set()
    wider: set[str] = set()
    for text in (name, *synonyms):
        raw = text.replace("_", " ").lower()
        base, qualifier = split_qualifier(normalize_name(raw.replace("/", " ")))
        forms, later = {base}, set()
        if qualifier and " " not in qualifier and "/" not in raw:
            forms.add(f"{qualifier} {base}")  # ``football (American)`` is an ``american football``
        if "/" in raw:
            parts = shared_head_alternatives([split_qualifier(normalize_name(part))[0]
                                              for part in raw.split("/") if part.strip()])
            forms.add(parts[0])
            later.update(parts[1:])
        for form in forms:
            closed = _closed_up(form) if "/" not in raw or form != base else ()  # not ``Bowl/Basin`` → bowlbasin
            names.update(f for f in (form, singular(form), *closed) if f)
        for form in later:
            wider.update(f for f in (form, singular(form)) if f)
    return names, wider - names


def shared_head_alternatives(parts: list[str]) -> list[str]:
    """``Cutting/chopping Board`` → ``cutting board``, ``chopping board``: one-word alternatives before a
    last alternative of several words share its head (its words after the first)."""
    if len(parts) < 2 or any(len(part.split()) != 1 for part in parts[:-1]) or len(parts[-1].split()) < 2:
        return parts
    head = parts[-1].split(" ", 1)[1]
    return [f"{part} {head}" for part in parts[:-1]] + [parts[-1]]


def _closed_up(form: str) -> tuple[str, ...]:
    """A name of two words written as one (``hot dog`` / ``hotdog``, ``waste basket`` / ``wastebasket``):
    the same name split differently into words."""
    words = form.split()
    return ("".join(words), singular("".join(words))) if len(words) == 2 else ()


def _spelled_alike(word: str, other: str) -> bool:
    """Two spellings of one word (``racket`` / ``racquet``, ``gray`` / ``grey``), not a word and its
    derivative (``sign`` / ``signal``) nor two words (``sign`` / ``mark``)."""
    if word == other or word[:2] != other[:2] or other.startswith(word) or word.startswith(other):
        return False
    return difflib.SequenceMatcher(None, word, other).ratio() >= 0.75


def is_modified_form(term: str, other: str) -> bool:
    """``other`` is ``term`` with words added before or after: a kind of it (``side table``, ``sports
    ball``) or a thing used with it (``table tennis racket``); either way not the same concept."""
    if term == other or not term or not other:
        return False
    return other.endswith(" " + term) or other.startswith(term + " ")


def context_words(texts: list[str]) -> set[str]:
    words: set[str] = set()
    for text in texts:
        words.update(w for w in _WORD.findall(text.lower().replace("_", " ")) if w not in _CONTEXT_STOPWORDS)
    return words


@dataclass
class LabelSense:
    """The evidence about one label's meaning."""

    terms: set[str]
    context: set[str]
    #: Possible WordNet synsets (offsets): None when WordNet has nothing to say about this label.
    senses: frozenset[int] | None = None
    #: The kinds of those senses (lexicographer files, food and plant as one); None with the senses.
    kinds: frozenset[int] | None = None


#: noun.food and noun.plant: the fruit and the plant it grows on are one thing to a detector.
_KIND_ALIASES = {13: 20}
#: Lexicographer files of things one can draw a box around: the top concepts (``person.n.01``), animal,
#: artifact, body, food, location, object, person, plant, substance. A detection label is one of these; its
#: abstract senses (``american football`` the game, noun.act; LVIS's ``book.n.01``, the written work) are
#: not what it means, and say nothing about which visible thing it is.
PHYSICAL_KINDS = frozenset({3, 5, 6, 8, 13, 15, 17, 18, 20, 27})


class SenseResolver:
    """Turns (terms, context, synset) into sense sets with a local WordNet; a no-op without one."""

    def __init__(self, wordnet: WordNetNouns | None) -> None:
        self.wordnet = wordnet
        self._hypernym_words: dict[int, set[str]] = {}

    def _words_above(self, offset: int) -> set[str]:
        """Every word of the lemmas of a synset and of all its hypernyms."""
        if offset not in self._hypernym_words:
            words: set[str] = set()
            for synset in (offset, *self.wordnet.ancestors(offset)):
                for lemma in self.wordnet.words(synset):
                    words.update(_WORD.findall(lemma))
            self._hypernym_words[offset] = words
        return self._hypernym_words[offset]

    def term_senses(self, term: str) -> set[int]:
        """Noun senses of a term, trying its singular, then its other spellings (:meth:`_spelled_otherwise`),
        when the term itself is not a lemma."""
        if self.wordnet is None:
            return set()
        for form in dict.fromkeys((term, singular(term))):
            if senses := self.wordnet.noun_senses(form):
                return set(senses)
        return self._spelled_otherwise(singular(term))

    def _other_spellings(self, words: str, synonyms: bool) -> list[str]:
        """``words`` hyphenated and closed up (``ping-pong``, ``pingpong``), and the same for the lemmas of its
        senses that are other spellings of it (``racquet``), or any of those lemmas when ``synonyms`` (only
        for a compound, whose senses are few: ``table tennis`` → ``ping-pong``; a single word has too many:
        ``sign`` → ``mark``)."""
        lemmas = {lemma for sense in self.wordnet.noun_senses(words) for lemma in self.wordnet.words(sense)}
        forms = [words, *sorted(lemma for lemma in lemmas if synonyms or _spelled_alike(words, lemma))]
        spelled = (variant for form in forms for variant in (form, form.replace(" ", "-"),
                                                              form.replace(" ", "").replace("-", "")))
        return list(dict.fromkeys(spelled))

    def _spelled_otherwise(self, term: str) -> set[int]:
        """Senses of a compound that WordNet lists under other words for its parts.

        * Its modifier or its head spelled otherwise, or a compound modifier replaced by a synonym
          (:meth:`_other_spellings`): ``table tennis racket`` is
          WordNet's ``table-tennis racquet`` and ``table tennis paddle`` its ``pingpong paddle``, one synset.
          A replaced compound must itself be a lemma, so a wrong reading needs a lemma to exist by chance.
        * ``A B C`` read as ``A B / A C`` (a dropped slash): ``trash bin can`` is ``trash bin`` or ``trash
          can``, when those two are lemmas of one synset."""
        words = term.split()
        if len(words) < 2:
            return set()
        modifier, head = " ".join(words[:-1]), words[-1]
        for modified in self._other_spellings(modifier, synonyms=" " in modifier):
            for headed in self._other_spellings(head, synonyms=False):
                if senses := self.wordnet.noun_senses(f"{modified} {headed}"):
                    return set(senses)
        if len(words) == 3:
            first, second = (set(self.wordnet.noun_senses(f"{words[0]} {w}")) for w in words[1:])
            return first & second
        return set()

    def kinds(self, senses: frozenset[int]) -> frozenset[int]:
        return frozenset(_KIND_ALIASES.get(k, k) for k in (self.wordnet.lexicographer_file(s) for s in senses))

    def resolve(self, terms: set[str], context: set[str], synset: str | None) -> LabelSense:
        sense = LabelSense(terms=terms, context=context)
        if self.wordnet is None:
            return sense
        if synset and (offset := self.wordnet.offset(synset)) is not None:
            if self.wordnet.lexicographer_file(offset) not in PHYSICAL_KINDS:
                return sense
            sense.senses = frozenset({offset})
        else:
            candidates = set().union(*(self.term_senses(t) for t in terms)) if terms else set()
            candidates = {s for s in candidates if self.wordnet.lexicographer_file(s) in PHYSICAL_KINDS}
            if not candidates:
                return sense  # WordNet knows no visible thing by this name: it has nothing to say
            fitting = {s for s in candidates if self._words_above(s) & context} if context else set()
            sense.senses = frozenset(fitting or candidates)
        sense.kinds = self.kinds(sense.senses)
        return sense

    def is_below(self, narrow: frozenset[int], broad: frozenset[int]) -> bool:
        """Every sense of ``narrow`` lies strictly below some sense of ``broad`` (``handgun`` below ``gun``)."""
        if self.wordnet is None or not narrow or not broad:
            return False
        return all(self.wordnet.ancestors(s) & broad for s in narrow) and not (narrow & broad)
