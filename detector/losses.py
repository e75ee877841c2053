"""ScaleDet's label assignment losses (arXiv 2306.04849, Eq. 6–7), framework-independent.

Shapes as in ``head.py``; ``labels`` is ``R`` int64 in ``0..C`` (0 = background, ``c + 1`` = label ``c``).

* **Hard label assignment**: sigmoid binary cross-entropy of ``logits`` against the one-hot target of
  the assigned label over the unified label space (background regions: a one on the background column).
  Summed over columns, averaged over regions (Detic's normalisation). An optional ``label_mask``
  (``R × (C+1)`` bool) restricts the loss to the columns an image's own dataset can vouch for
  (UniDet-style: a COCO image says nothing about Objects365-only labels); ScaleDet uses no mask.
* **Soft label assignment**: for foreground regions, the mean squared error between the region's cosine
  similarities to all labels and the text-text similarities of its assigned label (a row of
  ``similarity.parquet``), so an ``o365/Sneakers`` region is not pushed away from ``oid/Footwear``.

The classification loss is ``hard + λ · soft``; with λ = 0 the soft term is not computed at all, so the
loss and its gradients are exactly the hard-only model's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor | None = None,
                    region_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-label binary cross-entropy on the assigned label, over the columns ``label_mask`` keeps, each
    region's row scaled by its ``region_weights`` entry (pseudo boxes train with less trust)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    target = torch.zeros_like(logits)
    target[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    per_element = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if label_mask is not None:
        per_element = per_element * label_mask.to(per_element.dtype)
    if region_weights is not None:
        per_element = per_element * region_weights.to(per_element.dtype)[:, None]
    return per_element.sum() / logits.shape[0]


def soft_label_loss(cosines: torch.Tensor, labels: torch.Tensor, similarity_rows: torch.Tensor) -> torch.Tensor:
    """cosines ``R × C``; similarity_rows ``R_fg × C``: the rows of the foreground regions' labels."""
    foreground = labels > 0
    if not foreground.any():
        return cosines.sum() * 0.0
    return F.mse_loss(cosines[foreground].float(), similarity_rows.to(cosines.device).float())


def box_regression_loss(deltas: torch.Tensor, regression_targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-agnostic smooth-L1 on foreground regions, normalised by all regions (torchvision's choice)."""
    foreground = labels > 0
    if labels.numel() == 0:
        return deltas.sum() * 0.0
    return F.smooth_l1_loss(deltas[foreground], regression_targets[foreground], beta=1 / 9,
                            reduction="sum") / labels.numel()
