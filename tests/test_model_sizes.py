"""The model's size knobs (pyramid width, box-head width, anchor sizes, RoIAlign sampling): the defaults build
torchvision's model, so earlier checkpoints load unchanged; other values build the narrower model they name;
a wrong value is one line."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli, write_train_config
from scaledet.detector.data import InputConfig
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from scaledet.detector.model import ModelConfig, build_detector, norm_layer
from scaledet.labelspace.io.errors import ScaledetError

SIZES = InputConfig(min_size_train=[96], max_size_train=96, min_size_test=96, max_size_test=96)


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_sizes_are_torchvisions_and_narrow_sizes_build_the_model_they_name():
    torch.manual_seed(0)
    vocabulary = F.normalize(torch.randn(5, 32), dim=1)
    config = ModelConfig(backbone="resnet18")
    default = build_detector(config, vocabulary, SIZES)
    stock = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=norm_layer(config),
                                trainable_layers=5)
    assert {k: v.shape for k, v in default.backbone.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}  # an earlier checkpoint's weights fit
    assert default.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert default.roi_heads.box_roi_pool.sampling_ratio == 2
    matcher = default.roi_heads.proposal_matcher
    assert (matcher.high_threshold, matcher.low_threshold) == (0.5, 0.5)  # torchvision's positives

    narrow_config = ModelConfig(backbone="resnet18", fpn_channels=64, box_head_dim=256, pooler_sampling_ratio=1,
                                anchor_sizes=[16, 32, 64, 128, 256], roi_batch_size_per_image=16, soft_weight=0.0,
                                roi_fg_iou_thresh=0.6)
    narrow = build_detector(narrow_config, vocabulary, SIZES)
    assert narrow.backbone.out_channels == 64
    assert all(block[0].out_channels == 64 for block in narrow.backbone.fpn.layer_blocks)
    assert narrow.roi_heads.box_head.fc6.in_features == 64 * 7 * 7
    assert narrow.roi_heads.box_head.fc7.out_features == 256
    assert narrow.roi_heads.box_predictor.classifier.projection.in_features == 256
    assert narrow.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))
    assert narrow.roi_heads.box_roi_pool.sampling_ratio == 1
    matcher = narrow.roi_heads.proposal_matcher  # foreground from IoU 0.6, background below 0.5, between left out
    assert (matcher.high_threshold, matcher.low_threshold) == (0.6, 0.5)
    assert _parameters(narrow) < 0.6 * _parameters(default)

    images = [torch.rand(3, 96, 96) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 44.0]]), "labels": torch.tensor([2]),
                "label_mask": torch.ones(5, dtype=torch.bool)} for _ in range(2)]
    losses = narrow.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    detections = narrow.eval()([images[0]])
    assert detections[0]["boxes"].shape[1] == 4


def test_anchor_sizes_that_do_not_fit_the_pyramid_are_one_line():
    with pytest.raises(ScaledetError, match=r"model.anchor_sizes \[16, 32\]: a resnet18 FPN has 5 levels"):
        build_detector(ModelConfig(backbone="resnet18", anchor_sizes=[16, 32]), torch.eye(3), SIZES)
    mobile = build_detector(ModelConfig(backbone="mobilenet_v3", anchor_sizes=[16, 32]), torch.eye(3), SIZES)
    assert mobile.rpn.anchor_generator.sizes == ((16, 32),) * 3  # every size at each of MobileNet's levels


@pytest.mark.parametrize("override, expected", [
    ("model.fpn_channels=0", "model.fpn_channels = 0: must be > 0"),
    ("model.anchor_sizes=[16, -1]", "model.anchor_sizes = [16, -1]: must be a list of sizes > 0, or null"),
    ("model.anchor_sizes=[16, 32]", "model.anchor_sizes [16, 32]: a resnet18 FPN has 5 levels"),
    ("model.roi_fg_iou_thresh=0.4", "model.roi_bg_iou_thresh = 0.5 is above model.roi_fg_iou_thresh 0.4"),
])
def test_bad_sizes_in_a_config_are_one_line(shapes_world, tmp_path, override, expected):
    config = write_train_config(shapes_world, tmp_path / "run", schedule={"iterations": 1})
    done = run_cli("scaledet", "train", "--config", str(config), override, "--quiet")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
