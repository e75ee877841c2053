"""Training configuration: a YAML file read into dataclasses, with one-line errors for mistakes.

Unknown keys are errors (a typo such as ``soft_wieght`` must not silently train the default), and so are
values of the wrong type. See docs/detector.md for a complete example.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaledet.labelspace.errors import ScaledetError, one_line

from .data import DatasetSpec
from .model import ModelConfig
from .sampling import SAMPLING_MODES


@dataclass
class ScheduleConfig:
    iterations: int = 1000
    batch_size: int = 2  # images per process
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    lr_steps: list[float] = field(default_factory=lambda: [0.67, 0.89])  # fractions of iterations
    lr_decay: float = 0.1
    clip_grad_norm: float = 10.0
    checkpoint_every: int = 500
    log_every: int = 20


@dataclass
class SamplingConfig:
    mode: str = "per_dataset"
    repeat_factor_threshold: float | None = None  # e.g. 0.001 for LVIS


@dataclass
class TrainConfig:
    labelspace: str
    datasets: list[DatasetSpec]
    output_dir: str = "runs/train"
    eval_datasets: list[DatasetSpec] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: Any, where: str, source: Path):
    if not isinstance(values, dict):
        raise ScaledetError(f"{source}: '{where}' must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ScaledetError(f"{source}: unknown key '{where + '.' if where else ''}{unknown[0]}' "
                            f"(known: {', '.join(known)})")
    missing = [name for name, f in known.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in values]
    if missing:
        raise ScaledetError(f"{source}: missing key '{where + '.' if where else ''}{missing[0]}'")
    try:
        return cls(**values)
    except TypeError as err:
        raise ScaledetError(f"{source}: bad '{where}' ({err})") from None


def _datasets(values: Any, where: str, source: Path) -> list[DatasetSpec]:
    if not isinstance(values, list):
        raise ScaledetError(f"{source}: '{where}' must be a list of datasets")
    specs = [_build(DatasetSpec, item, f"{where}[{i}]", source) for i, item in enumerate(values)]
    for spec in specs:
        if spec.ratio <= 0:
            raise ScaledetError(f"{source}: dataset {spec.name} has ratio {spec.ratio}; ratios must be > 0")
    return specs


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ScaledetError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ScaledetError(f"{path}: malformed YAML ({one_line(err)})") from None
    if not isinstance(raw, dict):
        raise ScaledetError(f"{path}: a config is a YAML mapping")
    raw = {**raw, **(overrides or {})}
    values = dict(raw)
    values["datasets"] = _datasets(raw.get("datasets"), "datasets", path) if "datasets" in raw else None
    if values["datasets"] is None or not values["datasets"]:
        raise ScaledetError(f"{path}: 'datasets' must list at least one training dataset")
    values["eval_datasets"] = _datasets(raw.get("eval_datasets", []), "eval_datasets", path)
    values["model"] = _build(ModelConfig, raw.get("model", {}), "model", path)
    values["schedule"] = _build(ScheduleConfig, raw.get("schedule", {}), "schedule", path)
    values["sampling"] = _build(SamplingConfig, raw.get("sampling", {}), "sampling", path)
    config = _build(TrainConfig, values, "", path)
    if config.sampling.mode not in SAMPLING_MODES:
        raise ScaledetError(f"{path}: sampling.mode {config.sampling.mode!r}: choose from {', '.join(SAMPLING_MODES)}")
    if config.model.hard_loss_scope not in ("union", "dataset"):
        raise ScaledetError(f"{path}: model.hard_loss_scope {config.model.hard_loss_scope!r}: choose union or dataset")
    if config.model.soft_weight < 0:
        raise ScaledetError(f"{path}: model.soft_weight must be ≥ 0")
    if config.schedule.iterations <= 0 or config.schedule.batch_size <= 0:
        raise ScaledetError(f"{path}: schedule.iterations and schedule.batch_size must be positive")
    return config
