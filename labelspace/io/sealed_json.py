"""JSON documents that carry the sha256 of their own content.

A build's ``manifest.json``, an output folder's marker and the annotation index's ``meta.json`` are small
files that say how to read big ones: a flipped byte in them (a template, a recorded digest, a category's
union index) silently changes what is read, and a flipped key name turns into an internal error. Each
carries a digest of the rest of its content under one key, checked before any other key is used.
"""
from __future__ import annotations

import hashlib
import json


def content_sha256(document: dict, key: str) -> str:
    """sha256 of ``document`` without ``key``, keys sorted: the same whatever the file's formatting."""
    content = {name: value for name, value in document.items() if name != key}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def seal(document: dict, key: str) -> dict:
    """``document`` with its digest under ``key``."""
    return {**document, key: content_sha256(document, key)}


def is_sealed(document: object, key: str) -> bool:
    """Whether ``document`` is a JSON object whose digest under ``key`` matches its content."""
    return isinstance(document, dict) and document.get(key) == content_sha256(document, key)
