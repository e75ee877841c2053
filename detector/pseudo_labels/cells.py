"""What one image of a unified file says about each of its categories, read from the file's own lists, as
the LVIS API, detectron2 and scaledet's training read them (``unify`` writes every state explicitly)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaledet.labelspace.label_states import NEGATIVE, PARTIAL, POSITIVE, UNKNOWN


@dataclass
class ImageCells:
    """One image's lists as category id arrays: ``negative`` (``neg_category_ids``), ``partial``
    (``not_exhaustive_category_ids``) and ``boxed`` (categories with a box of their own)."""

    negative: np.ndarray
    partial: np.ndarray
    boxed: np.ndarray

    @classmethod
    def of(cls, image: dict, boxed_categories: np.ndarray) -> "ImageCells":
        return cls(np.asarray(image.get("neg_category_ids") or [], dtype=np.int64),
                   np.asarray(image.get("not_exhaustive_category_ids") or [], dtype=np.int64),
                   np.unique(boxed_categories.astype(np.int64)))

    def states(self, categories: np.ndarray) -> np.ndarray:
        """The state of each of ``categories``: partial (not exhaustive) over positive (boxed) over negative,
        else unknown. A category both boxed and listed negative is read as present, as ``unify`` combines."""
        states = np.full(len(categories), UNKNOWN, dtype=np.int8)
        states[np.isin(categories, self.negative)] = NEGATIVE
        states[np.isin(categories, self.boxed)] = POSITIVE
        states[np.isin(categories, self.partial)] = PARTIAL
        return states

    def exhaustive(self) -> np.ndarray:
        """Category ids whose every instance in this image is known: boxed and not partial, or negative."""
        positive = np.setdiff1d(self.boxed, self.partial)
        return np.union1d(positive, np.setdiff1d(self.negative, self.boxed))


def may_receive(states: np.ndarray) -> np.ndarray:
    """Cells that pseudo boxes may fill: nothing known (unknown) or present but not every instance boxed."""
    return (states == UNKNOWN) | (states == PARTIAL)
