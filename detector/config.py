"""Training configuration: a YAML file read into dataclasses, checked before any work starts.

Every key is checked against the dataclasses below: an unknown key (a typo such as ``soft_wieght`` must
not silently train the default), a value of the wrong type (``iterations: "ten"``, ``amp: "no"``) or out
of range (``lr: -1``) is a one-line error naming the key and the value. ``KEY=VALUE`` overrides from the
command line (``model.soft_weight=0 schedule.iterations=2000``) are parsed as YAML and checked the same
way. See docs/detector.md for a complete example.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from scaledet.labelspace.io.errors import ConfigError
from scaledet.labelspace.io.text_files import load_yaml

from .config_types import (AUGMENTATIONS, BACKBONES, EVALUATOR_NAMES, NORMS, SAMPLING_MODES, InputConfig,
                           ModelConfig)
from .data.records import DatasetSpec


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
    keep_last: int | None = None  # numbered checkpoints to keep (None: all, as detectron2)
    eval_period: int = 0  # evaluate eval_datasets every N iterations during training (0: only at the end)
    log_every: int = 20


@dataclass
class SamplingConfig:
    mode: str = "per_dataset"
    repeat_factor_threshold: float | None = None  # e.g. 0.001 for LVIS


@dataclass
class PseudoLabelConfig:
    """How ``scaledet pseudo-label``'s boxes (``"pseudo": true``) train: regions matched to one train their
    label in the hard loss with ``hard_weight``; pseudo boxes scoring below ``min_score`` are left out. The
    defaults read a pseudo box as an ordinary box, as every other reader of the file does."""

    hard_weight: float = 1.0
    min_score: float = 0.0


@dataclass
class TrainConfig:
    labelspace: str
    datasets: list[DatasetSpec]
    output_dir: str = "runs/train"
    eval_datasets: list[DatasetSpec] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int | None = None  # DataLoader workers per process; None: the spare cores (at most 8)
    #: the concepts label states use (hard_loss_scope federated): "auto" = LABELSPACE/merge/merged.parquet
    #: when it exists, a merged.parquet path, or null for none (every label its own concept)
    merge: str | None = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- ranges
def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _fraction_open(v) -> bool:
    return 0 < v < 1


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


#: ``section.key`` → (check, what the value must be). Types are checked first, from the dataclasses.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v < 2**63, "from 0 to 2**63 - 1 (torch.manual_seed takes a 64-bit seed)"),
    "num_workers": (lambda v: v is None or v >= 0, "≥ 0, or null for one per spare core"),
    "device": (lambda v: v in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", v) is not None,
               "auto, cpu, cuda, cuda:N or mps"),
    "schedule.iterations": (_positive, "> 0"),
    "schedule.batch_size": (_positive, "> 0"),
    "schedule.lr": (_positive, "> 0"),
    "schedule.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "schedule.weight_decay": (_non_negative, "≥ 0"),
    "schedule.warmup_iterations": (_non_negative, "≥ 0"),
    "schedule.lr_steps": (lambda v: all(0 < f <= 1 for f in v), "fractions of the schedule in (0, 1]"),
    "schedule.lr_decay": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "schedule.clip_grad_norm": (_non_negative, "≥ 0 (0 turns clipping off)"),
    "schedule.checkpoint_every": (_positive, "> 0"),
    "schedule.log_every": (_positive, "> 0"),
    "schedule.keep_last": (lambda v: v is None or v > 0, "> 0 (or null to keep all)"),
    "schedule.eval_period": (_non_negative, "≥ 0 (0: evaluate only at the end)"),
    "sampling.mode": (_one_of(*SAMPLING_MODES), " or ".join(SAMPLING_MODES)),
    "sampling.repeat_factor_threshold": (lambda v: v is None or 0 < v < 1, "in (0, 1), e.g. 0.001"),
    "model.backbone": (_one_of(*BACKBONES), ", ".join(BACKBONES)),
    "model.norm": (_one_of(*NORMS), ", ".join(NORMS)),
    "model.trainable_backbone_layers": (lambda v: 0 <= v <= 5, "0 … 5"),
    "input.augmentation": (_one_of(*AUGMENTATIONS), " or ".join(AUGMENTATIONS)),
    "input.min_size_train": (lambda v: bool(v) and all(s > 0 for s in v), "a non-empty list of sizes > 0"),
    "input.max_size_train": (_positive, "> 0"),
    "input.min_size_test": (_positive, "> 0"),
    "input.max_size_test": (_positive, "> 0"),
    "input.lsj_size": (_positive, "> 0"),
    "input.lsj_scale": (lambda v: len(v) == 2 and 0 < v[0] <= v[1], "[low, high] with 0 < low ≤ high"),
    "model.temperature": (_positive, "> 0"),
    "model.prior_prob": (_fraction_open, "in (0, 1)"),
    "model.soft_weight": (_non_negative, "≥ 0"),
    "model.hard_loss_scope": (_one_of("union", "dataset", "federated"), "union, dataset or federated"),
    "model.rpn_batch_size_per_image": (_positive, "> 0"),
    "model.roi_batch_size_per_image": (_positive, "> 0"),
    "model.roi_fg_iou_thresh": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.roi_bg_iou_thresh": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "model.rpn_pre_nms_top_n_train": (_positive, "> 0"),
    "model.rpn_post_nms_top_n_train": (_positive, "> 0"),
    "model.rpn_pre_nms_top_n_test": (_positive, "> 0"),
    "model.rpn_post_nms_top_n_test": (_positive, "> 0"),
    "model.score_thresh": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "model.nms_thresh": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model.detections_per_img": (_positive, "> 0"),
    "model.fpn_channels": (_positive, "> 0"),
    "model.box_head_dim": (_positive, "> 0"),
    "model.anchor_sizes": (lambda v: v is None or (bool(v) and all(s > 0 for s in v)), "a list of sizes > 0, or null"),
    "model.pooler_sampling_ratio": (_non_negative, "≥ 0 (0: adaptive)"),
    "pseudo_labels.hard_weight": (_non_negative, "≥ 0"),
    "pseudo_labels.min_score": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "datasets[].ratio": (_positive, "> 0"),
    "datasets[].name": (lambda v: bool(v.strip()), "a non-empty name"),
    "datasets[].evaluator": (lambda v: v is None or v in EVALUATOR_NAMES, " or ".join(EVALUATOR_NAMES)),
    "eval_datasets[].name": (lambda v: bool(v.strip()), "a non-empty name"),
    "eval_datasets[].evaluator": (lambda v: v is None or v in EVALUATOR_NAMES, " or ".join(EVALUATOR_NAMES)),
}


#: Keys of earlier configs that now live elsewhere.
MOVED = {"model.min_size": "input.min_size_train (a list) and input.min_size_test",
         "model.max_size": "input.max_size_train and input.max_size_test"}


# --------------------------------------------------------------------------- typed reading
def _type_name(hint) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(hint, str(hint))


def _typed(value: Any, hint: Any, key: str, source: Path, range_key: str) -> Any:
    """``value`` checked against the type ``hint`` (from the dataclass); nested dataclasses recurse."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source, range_key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} = {value!r}: must be a list")
        return [_typed(item, args[0], f"{key}[{i}]", source, f"{range_key}[]") for i, item in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool)
               and math.isfinite(value),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"config field {key} has an unsupported type {hint}")
    if not ok:
        raise ConfigError(f"{source}: {key} = {value!r}: must be {_type_name(hint)}")
    return float(value) if hint is float else value


def _build(cls, values: Any, where: str, source: Path, range_where: str | None = None):
    range_where = where if range_where is None else range_where
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {where or 'the config'} must be a mapping, found {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    range_prefix = f"{range_where}." if range_where else ""
    for name in values:
        if name not in known:
            moved = MOVED.get(f"{prefix}{name}")
            hint = f"; it moved to {moved}" if moved else f" (known: {', '.join(known)})"
            raise ConfigError(f"{source}: unknown key '{prefix}{name}'{hint}")
    checked = {}
    for name, f in known.items():
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing key '{prefix}{name}'")
            continue
        value = _typed(values[name], hints[name], f"{prefix}{name}", source, f"{range_prefix}{name}")
        rule = RANGES.get(f"{range_prefix}{name}")
        if rule is not None and value is not None and not rule[0](value):
            raise ConfigError(f"{source}: {prefix}{name} = {values[name]!r}: must be {rule[1]}")
        checked[name] = value
    return cls(**checked)


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.soft_weight=0`` → (["model", "soft_weight"], 0); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. schedule.iterations=2000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of ``raw`` with each ``KEY=VALUE`` set; a key that names no config field is an error."""
    import copy

    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        cls: Any = TrainConfig
        node = raw
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {text!r}: {'.'.join(path[:depth])} has no item {part}")
                if last:
                    node[int(part)] = value
                    break
                node = node[int(part)]
                continue
            fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
            if part not in fields:
                where = ".".join(path[:depth]) or "the config"
                raise ConfigError(f"override {text!r}: unknown key '{part}' in {where} (known: {', '.join(fields)})")
            hint = typing.get_type_hints(cls)[part]
            if last:
                node[part] = value
                break
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
            if typing.get_origin(hint) is list:
                cls = typing.get_args(hint)[0]
            else:
                cls = hint
    return raw


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = load_yaml(path, ConfigError)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override and check a config; nothing is built before every key has passed."""
    path = Path(path)
    raw = apply_overrides(read_config_file(path), list(overrides or []))
    if not raw.get("datasets"):
        raise ConfigError(f"{path}: 'datasets' must list at least one training dataset")
    config = _build(TrainConfig, raw, "", path)
    if config.input.max_size_train < max(config.input.min_size_train):
        raise ConfigError(f"{path}: input.max_size_train = {config.input.max_size_train} is below the largest "
                          f"input.min_size_train {max(config.input.min_size_train)}")
    if config.model.roi_bg_iou_thresh > config.model.roi_fg_iou_thresh:
        raise ConfigError(f"{path}: model.roi_bg_iou_thresh = {config.model.roi_bg_iou_thresh} is above "
                          f"model.roi_fg_iou_thresh {config.model.roi_fg_iou_thresh}")
    return config


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config (defaults filled in), as written next to a run."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
