"""Assembling the detector: torchvision's four parts (transform, backbone, RPN, RoI heads) in one
constructor, with ScaleDet's RoI heads. Backbones: ``resnet50`` (real use), ``resnet18`` and
``mobilenet_v3`` (CPU tests); no weights are downloaded, a local backbone checkpoint can be named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from scaledet.labelspace.errors import ScaledetError, one_line

from .head import ScaleDetBoxPredictor
from .roi_heads import ScaleDetRoIHeads

BACKBONES = ("resnet50", "resnet18", "mobilenet_v3")


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    norm: str = "auto"
    trainable_backbone_layers: int = 3
    min_size: int = 800
    max_size: int = 1333
    temperature: float = 0.02
    prior_prob: float = 0.01
    soft_weight: float = 1.0
    hard_loss_scope: str = "union"
    rpn_batch_size_per_image: int = 256
    roi_batch_size_per_image: int = 512
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100


NORMS = ("auto", "frozen_bn", "bn", "gn")


def norm_layer(config: ModelConfig):
    """Frozen BatchNorm for a pretrained backbone (torchvision's default); trainable GroupNorm (ResNets) or
    BatchNorm (MobileNet, whose channel counts do not divide into groups) when training from scratch: with
    random weights a frozen, identity BatchNorm lets activations grow unchecked and training diverges."""
    if config.norm not in NORMS:
        raise ScaledetError(f"model.norm {config.norm!r}: choose from {', '.join(NORMS)}")
    norm = config.norm
    if norm == "auto":
        norm = "frozen_bn" if config.backbone_weights else ("bn" if config.backbone == "mobilenet_v3" else "gn")
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    return lambda channels: nn.GroupNorm(32, channels)


def build_backbone(config: ModelConfig) -> nn.Module:
    if config.backbone not in BACKBONES:
        raise ScaledetError(f"model.backbone {config.backbone!r}: choose from {', '.join(BACKBONES)}")
    trainable = config.trainable_backbone_layers if config.backbone_weights else 5
    if config.backbone == "mobilenet_v3":
        backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                      norm_layer=norm_layer(config), trainable_layers=min(trainable, 6))
    else:
        backbone = resnet_fpn_backbone(backbone_name=config.backbone, weights=None, norm_layer=norm_layer(config),
                                       trainable_layers=trainable)
    if config.backbone_weights:
        load_backbone_weights(backbone, Path(config.backbone_weights))
    return backbone


def load_backbone_weights(backbone: nn.Module, path: Path) -> None:
    """Load an ImageNet classification checkpoint (torchvision layout) into the backbone's body."""
    if not path.is_file():
        raise ScaledetError(f"model.backbone_weights {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ScaledetError(f"model.backbone_weights {path}: not a torch checkpoint ({one_line(err)})") from None
    body = backbone.body
    own = body.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(matched) < len(own) // 2:
        raise ScaledetError(f"model.backbone_weights {path}: only {len(matched)} of {len(own)} tensors fit this backbone")
    body.load_state_dict(matched, strict=False)


def anchor_generator(backbone_name: str) -> AnchorGenerator:
    if backbone_name == "mobilenet_v3":
        sizes = ((32, 64, 128, 256, 512),) * 3
    else:
        sizes = ((32,), (64,), (128,), (256,), (512,))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def build_detector(config: ModelConfig, vocabulary: torch.Tensor) -> GeneralizedRCNN:
    """A Faster R-CNN FPN with ScaleDet's RoI heads; ``vocabulary`` is the ``C × D`` training label space."""
    backbone = build_backbone(config)
    anchors = anchor_generator(config.backbone)
    rpn = RegionProposalNetwork(
        anchors, RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=config.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
        nms_thresh=0.7,
    )
    feature_names = [name for name in backbone(torch.zeros(1, 3, 64, 64)).keys() if name != "pool"]
    box_roi_pool = MultiScaleRoIAlign(featmap_names=feature_names, output_size=7, sampling_ratio=2)
    representation = 1024
    roi_heads = ScaleDetRoIHeads(
        box_roi_pool, TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=config.roi_batch_size_per_image,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=config.score_thresh,
        nms_thresh=config.nms_thresh, detections_per_img=config.detections_per_img,
        box_predictor=ScaleDetBoxPredictor(representation, vocabulary.shape[1], config.temperature,
                                           config.prior_prob),
        vocabulary=vocabulary, soft_weight=config.soft_weight, hard_loss_scope=config.hard_loss_scope,
    )
    transform = GeneralizedRCNNTransform(config.min_size, config.max_size,
                                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform)
