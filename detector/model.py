"""Assembling the detector: torchvision's four parts (transform, backbone, RPN, RoI heads) in one
constructor, with ScaleDet's RoI heads. Backbones: ``resnet50`` (real use), ``resnet18`` and
``mobilenet_v3`` (CPU tests). ``backbone_weights`` names ImageNet weights through torchvision's weights API
(``imagenet`` for the backbone's default, or an enum such as ``ResNet50_Weights.IMAGENET1K_V2``), read from
torch's cache directory, or a local checkpoint file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from scaledet.labelspace.io.errors import ScaledetError, one_line

from .config_types import BACKBONES, NORMS, ModelConfig  # defined without torch, so that config.py needs none
from .head import ScaleDetBoxPredictor
from .roi_heads import ScaleDetRoIHeads


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


def build_backbone(config: ModelConfig, load_weights: bool = True) -> nn.Module:
    """The backbone ``config`` describes. ``load_weights=False`` builds the same architecture (frozen
    BatchNorm where pretrained weights were named) without reading ``backbone_weights``: for a model whose
    every weight comes from a checkpoint, which then needs no ImageNet file."""
    if config.backbone not in BACKBONES:
        raise ScaledetError(f"model.backbone {config.backbone!r}: choose from {', '.join(BACKBONES)}")
    trainable = config.trainable_backbone_layers if config.backbone_weights else 5
    if config.backbone == "mobilenet_v3":
        backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                      norm_layer=norm_layer(config), trainable_layers=min(trainable, 6))
    else:
        backbone = resnet_fpn_backbone(backbone_name=config.backbone, weights=None, norm_layer=norm_layer(config),
                                       trainable_layers=trainable)
    if config.fpn_channels != backbone.out_channels:  # torchvision builds 256; the same pyramid, narrower
        in_channels = [block[0].in_channels for block in backbone.fpn.inner_blocks]
        backbone.fpn = FeaturePyramidNetwork(in_channels, config.fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = config.fpn_channels
    if config.backbone_weights and load_weights:
        load_backbone_weights(backbone, config)
    return backbone


#: ``backbone_weights: imagenet`` → this enum's DEFAULT (torchvision's recommended ImageNet weights).
WEIGHT_ENUMS = {"resnet50": "ResNet50_Weights", "resnet18": "ResNet18_Weights",
                "mobilenet_v3": "MobileNet_V3_Large_Weights"}


def torchvision_weights(name: str, backbone: str):
    """The torchvision weights enum ``name`` means, or None when ``name`` is a file path."""
    import torchvision

    if name == "imagenet":
        return getattr(torchvision.models, WEIGHT_ENUMS[backbone]).DEFAULT
    head, dot, _ = name.partition(".")
    if dot and head.endswith("_Weights") and "/" not in name:
        try:
            return torchvision.models.get_weight(name)
        except (ValueError, AttributeError, KeyError):
            raise ScaledetError(f"model.backbone_weights {name!r}: not a torchvision weights name "
                                f"(e.g. {WEIGHT_ENUMS[backbone]}.DEFAULT or imagenet)") from None
    return None


def cached_weights_file(weights) -> Path:
    """Where torchvision's weights API keeps ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def backbone_state_dict(config: ModelConfig) -> tuple[dict, str]:
    """(state dict, where it came from) for ``model.backbone_weights``.

    Every file is read with ``weights_only=True``, so a weights file can hold tensors and plain values but
    never code: a pickle planted in torch's cache is refused in one line, not run. torchvision's own loader
    (``weights.get_state_dict``) unpickles with ``weights_only=False`` and may download; it is never called.
    Nothing is downloaded at run time: a missing file is a one-line error saying where to put it."""
    name = config.backbone_weights
    weights = torchvision_weights(name, config.backbone)
    if weights is None:
        path = Path(name)
        if not path.is_file():
            raise ScaledetError(f"model.backbone_weights {path}: file not found")
        return _load_tensors(path, f"model.backbone_weights {path}"), str(path)
    cached = cached_weights_file(weights)
    if not cached.is_file():
        raise ScaledetError(f"model.backbone_weights {name}: {weights} is not in torch's cache and nothing is "
                            f"downloaded at run time; put {cached.name} ({weights.url}) into {cached.parent}")
    _check_hash_prefix(cached, f"model.backbone_weights {name}")
    return _load_tensors(cached, f"model.backbone_weights {name}: {cached}"), str(cached)


def _check_hash_prefix(path: Path, where: str) -> None:
    """torchvision's file names end in the first hex digits of the file's sha256 (``resnet18-f37072fd.pth``),
    as torch.hub checks them: a replaced or damaged file is refused before it is read."""
    import re

    from scaledet.labelspace.io.digests import sha256_of_file

    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if match is None:
        return
    if not sha256_of_file(path).startswith(match.group(1)):
        raise ScaledetError(f"{where}: {path} does not match the sha256 its name promises ({match.group(1)}…); "
                            "delete it and put a good copy there")


def _load_tensors(path: Path, where: str) -> dict:
    """A state dict read with ``weights_only=True``; anything else (code in the pickle, a damaged file) is
    one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refused, truncated or not a torch file
        raise ScaledetError(f"{where}: not a plain weights file, refused ({one_line(err, 80)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ScaledetError(f"{where}: not a state dict (a mapping of parameter names to tensors)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(backbone: nn.Module, config: ModelConfig) -> None:
    """Load ImageNet classification weights (torchvision layout) into the backbone's body."""
    state, source = backbone_state_dict(config)
    body = backbone.body
    own = body.state_dict()
    renamed = {k.removeprefix("features."): v for k, v in state.items()}  # MobileNet's body is its features
    matched = {k: v for k, v in {**state, **renamed}.items() if k in own and own[k].shape == v.shape}
    if len(matched) < len(own) // 2:
        raise ScaledetError(f"model.backbone_weights {source}: only {len(matched)} of {len(own)} tensors fit the "
                            f"{config.backbone} backbone")
    body.load_state_dict(matched, strict=False)


class ResizingTransform(GeneralizedRCNNTransform):
    """torchvision's transform with detectron2's sizes: in training a shortest edge drawn from the
    ``min_size_train`` choices (torch's RNG, seeded per iteration); at test time one fixed size. Boxes are
    mapped back to the original image by torchvision's postprocess, so results are in image pixels."""

    def __init__(self, train_sizes: tuple[int, ...], train_max: int, test_size: int, test_max: int) -> None:
        super().__init__(train_sizes, train_max, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
        self.sizes = {True: (tuple(train_sizes), train_max), False: ((test_size,), test_max)}

    def resize(self, image, target=None):
        self.min_size, self.max_size = self.sizes[self.training]
        height, width = image.shape[-2:]
        scale = min(max(self.min_size) / min(height, width), self.max_size / max(height, width))
        if min(height, width) * scale < 1:  # torchvision would fail deep inside interpolate
            raise ScaledetError(f"an image of {width} × {height} pixels is too thin for the model's input sizes "
                                f"(shortest side {max(self.min_size)}, longest {self.max_size}): its short side "
                                "would shrink below one pixel")
        return super().resize(image, target)


RESNET_LEVELS = 5  # P2 … P5 and the max-pooled P6


def anchor_generator(config: ModelConfig) -> AnchorGenerator:
    """Three aspect ratios at every size: ResNets one size per pyramid level, MobileNet all sizes at each of
    its three levels (torchvision's layouts)."""
    chosen = tuple(config.anchor_sizes or (32, 64, 128, 256, 512))
    if config.backbone == "mobilenet_v3":
        sizes = (chosen,) * 3
    else:
        if len(chosen) != RESNET_LEVELS:
            raise ScaledetError(f"model.anchor_sizes {list(chosen)}: a {config.backbone} FPN has {RESNET_LEVELS} levels "
                                f"(P2 … P6), so give {RESNET_LEVELS} sizes, one per level")
        sizes = tuple((size,) for size in chosen)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def build_detector(config: ModelConfig, vocabulary: torch.Tensor, input_config=None,
                   load_backbone: bool = True) -> GeneralizedRCNN:
    """A Faster R-CNN FPN with ScaleDet's RoI heads; ``vocabulary`` is the ``C × D`` training label space,
    ``input_config`` (:class:`~.data.transforms.InputConfig`) the image sizes. ``load_backbone=False`` when
    a checkpoint will supply every weight (predict, eval, resume)."""
    from .data.transforms import InputConfig, model_sizes

    backbone = build_backbone(config, load_weights=load_backbone)
    anchors = anchor_generator(config)
    rpn = RegionProposalNetwork(
        anchors, RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=config.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
        nms_thresh=0.7,
    )
    feature_names = [name for name in backbone(torch.zeros(1, 3, 64, 64)).keys() if name != "pool"]
    box_roi_pool = MultiScaleRoIAlign(featmap_names=feature_names, output_size=7,
                                      sampling_ratio=config.pooler_sampling_ratio)
    representation = config.box_head_dim
    roi_heads = ScaleDetRoIHeads(
        box_roi_pool, TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        fg_iou_thresh=config.roi_fg_iou_thresh, bg_iou_thresh=config.roi_bg_iou_thresh,
        batch_size_per_image=config.roi_batch_size_per_image,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=config.score_thresh,
        nms_thresh=config.nms_thresh, detections_per_img=config.detections_per_img,
        box_predictor=ScaleDetBoxPredictor(representation, vocabulary.shape[1], config.temperature,
                                           config.prior_prob),
        vocabulary=vocabulary, soft_weight=config.soft_weight, hard_loss_scope=config.hard_loss_scope,
    )
    transform = ResizingTransform(*model_sizes(input_config or InputConfig()))
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform)
