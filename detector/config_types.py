"""The dataclasses and choice lists of a training config, without torch.

A config is read and checked (``config.py``) before anything heavy is imported: a typo in a key or a value is
a one-line error in a fraction of a second, not after importing torch and torchvision (about 2.5 s of CPU).
The modules that use these settings (``model.py``, ``data/transforms.py``, ``sampling.py``) import them from
here; ``evaluation.EVALUATORS`` maps the names of ``EVALUATOR_NAMES`` (``tests/test_layers.py`` checks both
this and that no torch is imported).
"""
from __future__ import annotations

from dataclasses import dataclass, field

BACKBONES = ("resnet50", "resnet18", "mobilenet_v3")


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    norm: str = "auto"
    trainable_backbone_layers: int = 3
    temperature: float = 0.02
    prior_prob: float = 0.01
    soft_weight: float = 1.0
    hard_loss_scope: str = "union"
    rpn_batch_size_per_image: int = 256
    roi_batch_size_per_image: int = 512
    #: a proposal trains the box head as foreground from this IoU with a box, as background below
    #: ``roi_bg_iou_thresh``, and is left out in between (torchvision's box_fg/bg_iou_thresh; detectron2's
    #: ROI_HEADS.IOU_THRESHOLDS). Tighter positives teach shapes that differ only in outline (docs/detector.md).
    roi_fg_iou_thresh: float = 0.5
    roi_bg_iou_thresh: float = 0.5
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    # Sizes a small model or small images want (detectron2's MODEL.FPN.OUT_CHANNELS, MODEL.ROI_BOX_HEAD.FC_DIM,
    # MODEL.ANCHOR_GENERATOR.SIZES, MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO); the defaults are torchvision's.
    fpn_channels: int = 256
    box_head_dim: int = 1024
    #: one anchor size per FPN level for ResNets (P2 … P6, 5 sizes); every size at each of MobileNet's levels.
    #: null: 32 … 512, as torchvision.
    anchor_sizes: list[int] | None = None
    pooler_sampling_ratio: int = 2  # samples per RoIAlign bin side; 0: adaptive, as detectron2


NORMS = ("auto", "frozen_bn", "bn", "gn")

AUGMENTATIONS = ("resize_shortest_edge", "large_scale_jitter")


@dataclass
class InputConfig:
    augmentation: str = "resize_shortest_edge"
    min_size_train: list[int] = field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    max_size_train: int = 1333
    min_size_test: int = 800
    max_size_test: int = 1333
    random_flip: bool = True
    lsj_size: int = 1024  # large_scale_jitter: the square training size
    lsj_scale: list[float] = field(default_factory=lambda: [0.1, 2.0])


#: The evaluators a dataset entry may name; ``evaluation.EVALUATORS`` maps each to its class.
EVALUATOR_NAMES = ("coco", "lvis", "lvis-fixed", "oid", "oid-expanded")

#: How a batch is drawn from several datasets (``sampling.MultiDatasetBatchSampler``).
SAMPLING_MODES = ("per_dataset", "mixed")
