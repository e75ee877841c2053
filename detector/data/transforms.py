"""Training-time augmentation, as the field trains: random horizontal flip, multi-scale shortest-edge
resize (detectron2's ``ResizeShortestEdge``, the default) or large-scale jitter (Detic / CenterNet2's
choice), and one fixed size at test time.

Flip and jitter happen here, on uint8 images in the DataLoader workers. The shortest-edge resize happens in
the model's transform (torchvision's ``GeneralizedRCNNTransform`` picks a size per image in training and
maps boxes back to the original image at test time), so evaluation never sees a training-time transform.
Every random choice comes from a generator seeded by (seed, rank, iteration, position in the batch), so
``--resume`` and any number of workers give the same augmented batches.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config_types import InputConfig  # defined without torch, so that config.py needs none


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a C × H × W image and its xyxy boxes: x1' = W − x2, x2' = W − x1."""
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image.flip(-1), flipped


def large_scale_jitter(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, size: int,
                       scale: tuple[float, float], generator: torch.Generator):
    """Resize so the longer side is ``size × s`` (s uniform in ``scale``), then crop or pad to size × size;
    boxes are scaled, shifted, clipped, and those left with no area are dropped (with their labels)."""
    height, width = image.shape[-2:]
    s = float(scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator))
    factor = size * s / max(height, width)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    resized = _resize_uint8(image, new_h, new_w)
    boxes = boxes * torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
    top = int(torch.randint(0, max(0, new_h - size) + 1, (), generator=generator))
    left = int(torch.randint(0, max(0, new_w - size) + 1, (), generator=generator))
    crop = resized[:, top:top + size, left:left + size]
    canvas = torch.zeros((image.shape[0], size, size), dtype=torch.uint8)
    canvas[:, :crop.shape[1], :crop.shape[2]] = crop
    boxes = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, crop.shape[2])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, crop.shape[1])
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
    return canvas, boxes[keep], labels[keep]


def _resize_uint8(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize in PIL's integer arithmetic: the same bytes in a worker (1 thread) and in the main
    process (several), which float interpolation does not guarantee."""
    from PIL import Image

    array = image.permute(1, 2, 0).contiguous().numpy()
    resized = Image.fromarray(array).resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def augment(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, config: InputConfig,
            generator: torch.Generator):
    """The training transform of one image (uint8 in, uint8 out)."""
    if config.random_flip and bool(torch.rand((), generator=generator) < 0.5):
        image, boxes = hflip(image, boxes)
    if config.augmentation == "large_scale_jitter":
        image, boxes, labels = large_scale_jitter(image, boxes, labels, config.lsj_size, tuple(config.lsj_scale),
                                                  generator)
    return image, boxes, labels


def model_sizes(config: InputConfig) -> tuple[tuple[int, ...], int, int, int]:
    """(train shortest edges, train max size, test shortest edge, test max size) for the model's resize;
    under large-scale jitter the images already have their training size."""
    if config.augmentation == "large_scale_jitter":
        return (config.lsj_size,), config.lsj_size, config.min_size_test, config.max_size_test
    return tuple(config.min_size_train), config.max_size_train, config.min_size_test, config.max_size_test
