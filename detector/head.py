"""The ScaleDet classifier: region features → visual embeddings → similarities to label text embeddings.

Shape shorthand (as in the rest of ``detector/``):

* ``R``: regions (proposals) in the batch, all images together
* ``F``: region feature size after the box head (``model.box_head_dim``, 1024 by default)
* ``D``: text-embedding size (384 for MiniLM, 512 for CLIP ViT-B/32)
* ``C``: labels in the vocabulary of this call (the union in training, any set at test time)
* ``logits``: ``R × (C + 1)``; column 0 is background, column ``c + 1`` is vocabulary label ``c``
  (torchvision's convention that label 0 is background, kept so its proposal sampling works unchanged)
* ``cosines``: ``R × C``, ``cos(v_r, t_c)`` before temperature and bias

Like Detic's zero-shot classifier, the vocabulary is data passed at call time, so training on the union
and predicting on "fish, jellyfish, penguin" are the same code path.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ScaleDetClassifier(nn.Module):
    """``logit_c = cos(v, t_c) / temperature + bias``, with a learned background embedding.

    * ``temperature`` 0.02 (a scale of 50 on unit-normalised logits, Detic's value; the paper does not
      publish its own);
    * ``bias`` is one learned scalar, initialised so every sigmoid starts at ``prior_prob`` (0.01): with
      thousands of labels and sigmoid BCE, an unbiased start would spend its first steps only pushing
      every label down;
    * the background embedding is a learned ``D`` vector, normalised like the text embeddings.
    """

    def __init__(self, in_features: int, embed_dim: int, temperature: float = 0.02,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        self.projection = nn.Linear(in_features, embed_dim)
        self.background = nn.Parameter(F.normalize(torch.randn(embed_dim), dim=0))
        self.bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))
        self.temperature = temperature

    def forward(self, features: torch.Tensor, text_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features ``R × F``, text_embeddings ``C × D`` (L2-normalised) → (logits ``R × (C+1)``, cosines ``R × C``)."""
        visual = F.normalize(self.projection(features), dim=-1)
        cosines = visual @ text_embeddings.to(visual.dtype).t()
        background = visual @ F.normalize(self.background, dim=0).to(visual.dtype)
        logits = torch.cat([background[:, None], cosines], dim=1) / self.temperature + self.bias
        return logits, cosines


class ScaleDetBoxPredictor(nn.Module):
    """Classifier plus class-agnostic box regression (4 deltas per region, as in Detic / CenterNet2)."""

    def __init__(self, in_features: int, embed_dim: int, temperature: float = 0.02,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        self.classifier = ScaleDetClassifier(in_features, embed_dim, temperature, prior_prob)
        self.bbox_pred = nn.Linear(in_features, 4)

    def forward(self, features: torch.Tensor, text_embeddings: torch.Tensor):
        features = features.flatten(start_dim=1)
        logits, cosines = self.classifier(features, text_embeddings)
        return logits, cosines, self.bbox_pred(features)
