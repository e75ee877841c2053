"""The ScaleDet losses on plain tensors, and λ = 0 against the hard-only model on a real detector."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scaledet.detector.losses import hard_label_loss, soft_label_loss
from scaledet.detector.model import ModelConfig, build_detector
from scaledet.labelspace.similarity import SimilarityMatrix


def test_hard_loss_is_sigmoid_bce_against_one_hot_over_the_union():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)  # 3 labels + background column 0
    labels = torch.tensor([0, 1, 3, 2, 1])
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 4).float(), reduction="sum") / 5
    assert torch.allclose(hard_label_loss(logits, labels), expected)


def test_hard_loss_mask_ignores_columns_outside_the_images_dataset():
    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    labels = torch.tensor([1, 0, 2])
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    masked = hard_label_loss(logits, labels, mask)
    changed = logits.clone()
    changed[:, 3:] = 50.0  # confident wrong answers on labels the dataset does not annotate
    assert torch.allclose(hard_label_loss(changed, labels, mask), masked)
    assert hard_label_loss(changed, labels) > masked


def test_soft_loss_is_mse_to_the_assigned_labels_similarity_row():
    cosines = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.3, 0.3], [0.1, 0.8, 0.5]])
    labels = torch.tensor([1, 0, 2])  # region 1 is background: not in the soft loss
    similarity = torch.tensor([[1.0, 0.7, 0.1], [0.7, 1.0, 0.2], [0.1, 0.2, 1.0]])
    rows = similarity[labels[labels > 0] - 1]
    expected = ((cosines[[0, 2]] - rows) ** 2).mean()
    assert torch.allclose(soft_label_loss(cosines, labels, rows), expected)
    assert soft_label_loss(rows.clone(), torch.tensor([1, 2]), rows) == 0


def _detector(soft_weight: float, vocabulary: torch.Tensor):
    torch.manual_seed(1)
    from scaledet.detector.data import InputConfig

    config = ModelConfig(backbone="resnet18", roi_batch_size_per_image=32, rpn_post_nms_top_n_train=64,
                         soft_weight=soft_weight)
    model = build_detector(config, vocabulary, InputConfig(min_size_train=[96], max_size_train=96, min_size_test=96,
                                                           max_size_test=96))
    n = vocabulary.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sim = (vocabulary @ vocabulary.T).numpy()
    model.roi_heads.similarity = SimilarityMatrix("dense", n, i.ravel(), j.ravel(), sim.ravel())
    return model.train()


def _losses_and_grads(model, images, targets, keys):
    torch.manual_seed(7)  # proposal sampling draws from the global generator
    model.zero_grad()
    losses = model(images, targets)
    sum(losses[k] for k in keys).backward()
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_lambda_zero_gives_exactly_the_hard_only_loss_and_gradients():
    torch.manual_seed(0)
    vocabulary = F.normalize(torch.randn(6, 32), dim=1)
    images = [torch.rand(3, 96, 96) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2]),
                "label_mask": torch.ones(6, dtype=torch.bool)} for _ in range(2)]
    hard_only = _detector(0.0, vocabulary)
    with_soft = _detector(0.5, vocabulary)
    with_soft.load_state_dict(hard_only.state_dict())
    keys = ["loss_hard", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"]
    losses0, grads0 = _losses_and_grads(hard_only, images, targets, keys)
    assert "loss_soft" not in losses0
    losses_soft, grads_soft_total = _losses_and_grads(with_soft, images, targets, keys + ["loss_soft"])
    _, grads_soft_only = _losses_and_grads(with_soft, images, targets, ["loss_soft"])
    for key in keys:
        assert torch.equal(losses0[key], losses_soft[key]), key
    assert losses_soft["loss_soft"] > 0
    differs = 0
    for name, grad in grads0.items():
        without_soft = grads_soft_total[name] - grads_soft_only.get(name, torch.zeros_like(grad))
        assert torch.allclose(grad, without_soft, rtol=1e-4, atol=1e-5), name  # float summation order only
        differs += not torch.allclose(grad, grads_soft_total[name])
    assert differs > 0  # the soft term does reach the parameters when λ > 0
