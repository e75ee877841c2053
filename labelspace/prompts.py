"""Label names → prompt texts.

Normalisation rule (documented in docs/labelspace.md), applied to ``prompt_name`` or else ``name``:

1. ``_`` becomes a space (LVIS ``bow_(weapon)`` → ``bow (weapon)``);
2. ``/`` separates alternatives and becomes `` or `` (Objects365 ``Cabinet/shelf`` → ``cabinet or shelf``),
   except in the abbreviation ``w/`` ("with"), which stays one word (xView's ``Truck w/Box`` → ``truck w/box``);
3. runs of white space collapse to one space, ends are stripped;
4. the text is lower-cased (both supported encoders are uncased or nearly so; lower case keeps
   ``Sneakers`` and ``sneakers`` one text, one cache entry).

The parenthesised LVIS sense is kept: stripping it makes names collide (bow, fish, pan, salmon).
"""
from __future__ import annotations

import re

from .io.errors import ScaledetError
from .taxonomy import Category

DEFAULT_TEMPLATE = "a photo of a {}."

#: The ensemble used with ``--templates ensemble``: common CLIP-style detection prompts.
ENSEMBLE_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)

_SLASH = re.compile(r"(?<!\bw)(?<!\bW)\s*/\s*")  # not the "/" of "w/" (with)
_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Turn a dataset's class name into the words a text encoder should see."""
    text = name.replace("_", " ")
    text = _SLASH.sub(" or ", text)
    text = _SPACES.sub(" ", text).strip()
    return text.lower()


def prompt_name(category: Category) -> str:
    return normalize_name(category.prompt_name or category.name)


def resolve_templates(templates: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...]:
    """``None`` → the default template; ``"ensemble"`` → the ensemble; else each must hold one ``{}``."""
    if templates is None:
        return (DEFAULT_TEMPLATE,)
    if isinstance(templates, str):
        templates = [templates]
    if list(templates) == ["ensemble"]:
        return ENSEMBLE_TEMPLATES
    for template in templates:
        if template.count("{}") != 1:
            raise ScaledetError(f"--template {template!r}: a template needs exactly one '{{}}' for the name")
    return tuple(templates)


def render(template: str, name: str) -> str:
    return template.replace("{}", name)
