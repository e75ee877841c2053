"""What a training run is built from, one function each, as detectron2's ``DefaultTrainer`` builds its parts
(``build_model``, ``build_detection_train_loader``, ``build_optimizer``, ``build_lr_scheduler``): each can be
called, tested or replaced on its own, and ``Trainer`` only wires them together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import TrainConfig
from .data import CocoDetectionDataset
from .model import build_detector
from .sampling import MultiDatasetBatchSampler, repeat_factors
from .vocabulary import UnifiedLabelSpace


@dataclass
class TrainData:
    """The training datasets, the sampler that draws every rank's batches from them, and the label states
    the federated hard loss was given (recorded in checkpoints; None without it)."""

    datasets: list[CocoDetectionDataset]
    sampler: MultiDatasetBatchSampler
    label_states: dict | None


def build_train_data(config: TrainConfig, labelspace: UnifiedLabelSpace, rank: int = 0) -> TrainData:
    """The config's datasets indexed against ``labelspace``; with ``hard_loss_scope: federated`` each learns
    its images' label states from the build's merge; batches mixed by the config's sampling."""
    datasets = [CocoDetectionDataset(spec, labelspace, train=True, input_config=config.input)
                for spec in config.datasets]
    for dataset in datasets:
        dataset.use_pseudo_labels(config.pseudo_labels.hard_weight, config.pseudo_labels.min_score)
    label_states = None
    if config.model.hard_loss_scope == "federated":
        from scaledet.labelspace.label_states import relations_for_build

        relations = relations_for_build(labelspace.output, config.merge)
        for dataset in datasets:
            dataset.use_label_states(relations)
        label_states = {"merge_file": relations.merge_file, "merge_sha256": relations.merge_sha256,
                        "protocols": {d.spec.name: d.index.protocol for d in datasets}}
    weights = None
    if config.sampling.repeat_factor_threshold:
        weights = [repeat_factors(d.image_labels(), config.sampling.repeat_factor_threshold) for d in datasets]
    sampler = MultiDatasetBatchSampler(
        [len(d) for d in datasets], [spec.ratio for spec in config.datasets], config.schedule.batch_size,
        config.sampling.mode, config.seed, rank, weights)
    return TrainData(datasets, sampler, label_states)


def build_model(config: TrainConfig, labelspace: UnifiedLabelSpace, device: torch.device,
                load_backbone: bool = True) -> torch.nn.Module:
    """The detector over the union's text embeddings, with the soft loss's label-label similarities when
    it is on. ``load_backbone=False`` when a checkpoint supplies every weight (a resumed run)."""
    model = build_detector(config.model, labelspace.embeddings, config.input, load_backbone=load_backbone)
    if config.model.soft_weight > 0:
        model.roi_heads.similarity = labelspace.similarity()
    return model.to(device)


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay over the trainable parameters (frozen backbone stages excluded)."""
    schedule = config.schedule
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=schedule.lr,
                           momentum=schedule.momentum, weight_decay=schedule.weight_decay)


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Linear warm-up, then step decay at fractions of the schedule (detectron2's WarmupMultiStepLR)."""
    schedule = config.schedule
    factor = schedule.lr_decay ** sum(iteration >= math.floor(f * schedule.iterations) for f in schedule.lr_steps)
    if iteration < schedule.warmup_iterations:
        factor *= 0.001 + (1 - 0.001) * iteration / schedule.warmup_iterations
    return factor


def build_lr_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of :func:`lr_factor`, stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda iteration: lr_factor(iteration, config))
