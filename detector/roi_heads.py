"""torchvision RoI heads with the ScaleDet box predictor and losses.

The glue to torchvision lives here and only here: proposal matching and sampling are torchvision's
(``RoIHeads.select_training_samples``); classification, losses and post-processing are ScaleDet's
(``head.py``, ``losses.py``), written against plain tensors so they could move to another framework.

Targets carry, besides torchvision's ``boxes`` and ``labels`` (``union index + 1``), a ``label_mask``:
a ``C`` bool vector of the labels the image's dataset annotates, used when the hard loss is masked
(``dataset`` scope); and with the ``federated`` scope ``label_states``, the image's ``C`` int8 states
(``labelspace/label_states.py``): the hard loss then uses, on every region, the columns the image vouches
for (its negatives and its own exhaustively boxed positives), and on each foreground region also its
assigned label's column; unknown labels are never trained as negatives. ``box_weights`` (one per box)
weight the hard loss of the regions matched to each box: ``scaledet pseudo-label``'s boxes train with
``pseudo_labels.hard_weight``, annotations with 1.
"""
from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from .head import ScaleDetBoxPredictor
from .losses import box_regression_loss, hard_label_loss, soft_label_loss

HARD_LOSS_SCOPES = ("union", "dataset", "federated")


class ScaleDetRoIHeads(RoIHeads):
    """Box branch of Faster R-CNN with ScaleDet's vision-language classifier.

    ``vocabulary`` (a ``C × D`` buffer) is what the classifier scores against: the union's embeddings in
    training, any set at test time (``set_vocabulary``). ``similarity`` provides the soft-loss targets:
    any object with ``rows(indices) -> R × C tensor`` (``labelspace.SimilarityMatrix``).
    """

    def __init__(self, *args, box_predictor: ScaleDetBoxPredictor, vocabulary: torch.Tensor,
                 soft_weight: float = 1.0, hard_loss_scope: str = "union", **kwargs) -> None:
        super().__init__(*args, box_predictor=box_predictor, **kwargs)
        if hard_loss_scope not in HARD_LOSS_SCOPES:
            raise ValueError(f"hard_loss_scope must be one of {HARD_LOSS_SCOPES}, not {hard_loss_scope!r}")
        self.register_buffer("vocabulary", vocabulary.clone(), persistent=False)
        self.soft_weight = soft_weight
        self.hard_loss_scope = hard_loss_scope
        self.similarity = None
        #: keep only each proposal's best label (Detic's demo default, ``ONE_CLASS_PER_PROPOSAL``) and suppress
        #: overlaps across labels (class-agnostic NMS, Ultralytics' ``agnostic_nms``): one caption per object in
        #: a drawing. Off for evaluation, where AP needs every label's score.
        self.one_label_per_proposal = False

    def set_vocabulary(self, embeddings: torch.Tensor) -> None:
        self.vocabulary = embeddings.to(self.vocabulary.device, torch.float32)

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            proposals, matched, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        logits, cosines, deltas = self.box_predictor(box_features, self.vocabulary)
        if self.training:
            weights = region_weights(targets, matched, labels)
            return [], self.losses(logits, cosines, deltas, proposals, labels, regression_targets, targets, weights)
        return self.postprocess(logits, deltas, proposals, image_shapes), {}

    # ------------------------------------------------------------------ training
    def losses(self, logits, cosines, deltas, proposals, labels, regression_targets, targets,
               weights: torch.Tensor | None = None) -> dict:
        labels_all = torch.cat(labels)
        label_mask = None
        if self.hard_loss_scope == "dataset":
            per_image = [torch.cat([t["label_mask"].new_ones(1), t["label_mask"]])[None].expand(len(p), -1)
                         for t, p in zip(targets, proposals)]
            label_mask = torch.cat(per_image)
        elif self.hard_loss_scope == "federated":
            label_mask = federated_label_mask(targets, labels)
        losses = {
            "loss_hard": hard_label_loss(logits, labels_all, label_mask, weights),
            "loss_box_reg": box_regression_loss(deltas, torch.cat(regression_targets), labels_all),
        }
        if self.soft_weight > 0:
            if self.similarity is None:
                raise RuntimeError("soft label loss needs the label similarity (set roi_heads.similarity)")
            foreground = labels_all[labels_all > 0] - 1
            rows = self.similarity.rows(foreground.cpu())
            losses["loss_soft"] = self.soft_weight * soft_label_loss(cosines, labels_all, rows)
        return losses

    # ------------------------------------------------------------------ inference
    def postprocess(self, logits, deltas, proposals, image_shapes) -> list[dict[str, torch.Tensor]]:
        """Sigmoid scores per vocabulary label, class-agnostic boxes, per-label NMS (Detic-style); with
        ``one_label_per_proposal``, each proposal's best label and NMS across labels."""
        counts = [len(p) for p in proposals]
        boxes_all = self.box_coder.decode(deltas, proposals).reshape(-1, 4)
        scores_all = torch.sigmoid(logits[:, 1:].float())
        if self.one_label_per_proposal and scores_all.shape[1] > 1:
            best = scores_all.argmax(dim=1, keepdim=True)
            scores_all = torch.zeros_like(scores_all).scatter_(1, best, scores_all.gather(1, best))
        results = []
        for boxes, scores, shape in zip(boxes_all.split(counts), scores_all.split(counts), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            region, label = torch.nonzero(scores > self.score_thresh, as_tuple=True)
            kept_scores = scores[region, label]
            if kept_scores.numel() > 10 * self.detections_per_img:  # bound NMS work for huge vocabularies
                top = kept_scores.topk(10 * self.detections_per_img).indices
                region, label, kept_scores = region[top], label[top], kept_scores[top]
            kept_boxes = boxes[region]
            valid = box_ops.remove_small_boxes(kept_boxes, min_size=1e-2)
            kept_boxes, kept_scores, label = kept_boxes[valid], kept_scores[valid], label[valid]
            # one group per label; with one label per proposal a single group, so overlaps of other labels go too
            groups = torch.zeros_like(label) if self.one_label_per_proposal else label
            keep = box_ops.batched_nms(kept_boxes, kept_scores, groups, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": kept_boxes[keep], "scores": kept_scores[keep], "labels": label[keep]})
        return results


def region_weights(targets: list[dict], matched: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor | None:
    """Each sampled region's hard-loss weight: its matched box's ``box_weights`` entry when it is foreground,
    1 for background; None when every weight is 1 (the loss is then exactly the unweighted one)."""
    given = [t["box_weights"] for t in targets if "box_weights" in t]
    if not given or bool((torch.cat(given) == 1).all()):  # one device sync per step, not one per image
        return None
    weights = []
    for target, regions, region_labels in zip(targets, matched, labels):
        box_weights = target.get("box_weights")
        weight = torch.ones(len(region_labels), device=region_labels.device)
        if box_weights is not None and len(box_weights):
            foreground = region_labels > 0
            weight[foreground] = box_weights.to(weight.device)[regions[foreground].clamp(min=0)]
        weights.append(weight)
    return torch.cat(weights)


def federated_label_mask(targets: list[dict], labels: list[torch.Tensor]) -> torch.Tensor:
    """``R × (C+1)`` bool: per image, the background column, the columns its label states vouch for on
    every region (:func:`~scaledet.labelspace.label_states.hard_loss_columns`), and each region's own
    assigned column."""
    from scaledet.labelspace.label_states import hard_loss_columns

    masks = []
    for target, region_labels in zip(targets, labels):
        device = region_labels.device
        vouched = hard_loss_columns(target["label_states"].to(device), target["label_mask"].to(device))
        mask = torch.cat([vouched.new_ones(1), vouched])[None].repeat(len(region_labels), 1)
        mask[torch.arange(len(region_labels), device=mask.device), region_labels] = True
        masks.append(mask)
    return torch.cat(masks)
