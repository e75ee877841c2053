"""The training loop: multi-dataset batches, hard + soft losses, AMP on CUDA, DDP through torchrun,
progress bar, JSON-lines metrics, numbered atomic checkpoints, evaluation during training, exact resume."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scaledet.labelspace.io.atomic import atomic_write_text
from scaledet.labelspace.io.errors import ScaledetError, one_line
from scaledet.labelspace.io.output_dirs import check_output_dir, mark_output_dir, output_kind, record_output_files
from scaledet.labelspace.io.temporaries import remove_stale_temporaries

from .checkpoint import (FINAL_NAME, check_compatible, last_checkpoint, load_checkpoint,
                         load_weights, numbered_checkpoint_name, point_to, prune_checkpoints, run_checkpoints,
                         save_checkpoint)
from .config import TrainConfig, config_to_yaml
from .builders import build_lr_scheduler, build_model, build_optimizer, build_train_data
from .data import to_float
from .data.loader import IterationBatches, MultiDataset, build_train_loader, default_num_workers, worker_error
from .sampling import stable_seed
from .vocabulary import UnifiedLabelSpace, labelspace_ids_digest

METRICS_NAME = "metrics.json"
CONFIG_NAME = "config.yaml"
TRAIN_KIND = "training run"


def check_run_dir(output_dir: Path, resume: bool, force: bool) -> Path:
    """Where a run may write: a new or empty directory; with ``--resume`` the run being continued; an
    earlier run or anything else only with ``--force`` (which starts over, overwriting what it writes)."""
    if resume:
        if output_kind(output_dir) != TRAIN_KIND:
            raise ScaledetError(f"--resume: {output_dir} holds no training run to continue")
        return output_dir
    output_dir = check_output_dir(output_dir, TRAIN_KIND, "output_dir", force)
    if not force and output_dir.is_dir() and output_kind(output_dir) == TRAIN_KIND:
        raise ScaledetError(f"output_dir {output_dir}: holds an earlier run; add --resume to continue it, --force to "
                            "start over in it (its checkpoints will be overwritten), or choose another output_dir")
    return output_dir


@dataclasses.dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on GPUs, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return DistributedContext(torch.distributed.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, context: DistributedContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ScaledetError("device: cuda requested but no CUDA device is available")
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    if name.startswith("cuda:") and name[5:].isdigit():
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(name.split(":", 1)[1]) >= count:
            raise ScaledetError(f"device: {name} requested but this machine has {count} CUDA device(s)"
                                + (f" (cuda:0 … cuda:{count - 1})" if count else ""))
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ScaledetError("device: mps requested but this machine has no Apple GPU (or this torch lacks MPS)")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ScaledetError(f"device: {name!r} is not a device torch knows ({one_line(err, 80)}); use auto, cpu, "
                            "cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """Build everything from a config; ``train()`` runs (or resumes) the schedule."""

    def __init__(self, config: TrainConfig, resume: bool = False, show_progress: bool = True,
                 force: bool = False) -> None:
        self.config = config
        self.context = init_distributed()
        self.device = resolve_device(config.device, self.context)
        self.output_dir = check_run_dir(Path(config.output_dir), resume, force)
        if resume and last_checkpoint(self.output_dir) is None:
            # stopped before its first checkpoint was complete (a kill during it): like detectron2's
            # resume_or_load, start the schedule from its beginning
            if self.context.is_main:
                print(f"note: --resume: {self.output_dir} has no complete checkpoint yet (the run stopped before its "
                      "first); starting from iteration 0", file=sys.stderr)
            resume = False
        self.show_progress = show_progress and self.context.is_main
        seed_everything(config.seed + self.context.rank)
        self.labelspace = UnifiedLabelSpace(config.labelspace)
        data = build_train_data(config, self.labelspace, self.context.rank)
        self.datasets, self.sampler, self.label_states = data.datasets, data.sampler, data.label_states
        # a resumed run takes every weight from its checkpoint: no ImageNet file is read
        self.model = build_model(config, self.labelspace, self.device, load_backbone=not resume)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = build_lr_scheduler(config, self.optimizer)
        self.num_workers = (config.num_workers if config.num_workers is not None
                            else default_num_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_iteration = 0
        self.own_checkpoints: list[Path] = []  # numbered checkpoints of this run, oldest first: what keep_last prunes
        if resume:
            self._resume()
        self.ddp_model = self.model
        if self.context.world_size > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        path = last_checkpoint(self.output_dir)
        if path is None or not path.is_file():
            raise ScaledetError(f"--resume: no checkpoint to continue from in {self.output_dir} "
                                f"(its last_checkpoint names {path})")
        state = load_checkpoint(path)
        check_compatible(state, self.labelspace, path, same_labels=True)
        recorded = (state.get("label_states") or {}).get("merge_sha256")
        if self.label_states is not None and recorded != self.label_states["merge_sha256"]:
            raise ScaledetError(f"--resume: {path} was trained with the label states of merge "
                                f"{(state.get('label_states') or {}).get('merge_file') or 'none'} ({str(recorded)[:12]}), "
                                f"this config gives {self.label_states['merge_file'] or 'none'} "
                                f"({str(self.label_states['merge_sha256'])[:12]}); resuming would change the loss")
        load_weights(self.model, state, path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.start_iteration = int(state["iteration"])
            self.own_checkpoints = run_checkpoints(self.output_dir, self.start_iteration)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise ScaledetError(f"{path}: its optimizer state does not fit this config ({one_line(err, 100)})") from None

    def state(self, iteration: int) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": iteration,
            "config": self.config.to_dict(),
            "labelspace": self.labelspace_info(),
            "label_states": self.label_states,
        }

    def labelspace_info(self) -> dict:
        """What a checkpoint records of the labelspace it was trained on (checked on load and resume)."""
        return {**self.labelspace.fingerprint(), "directory": str(self.labelspace.directory),
                "global_ids_sha256": labelspace_ids_digest(self.labelspace),
                "templates": self.labelspace.output.manifest["templates"],
                "encoder_name": self.labelspace.encoder["name"]}

    # ------------------------------------------------------------------ loop
    def load_batch(self, iteration: int) -> list:
        """Iteration ``iteration``'s batch read in this process (what a DataLoader worker would return)."""
        dataset = MultiDataset(self.datasets)
        return [dataset[key] for key in IterationBatches(self.sampler, iteration, iteration + 1).batch(iteration)]

    def _to_device(self, batch: list):
        images = [to_float(image.to(self.device, non_blocking=True)) for image, _ in batch]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in target.items()} for _, target in batch]
        return images, targets

    def step(self, iteration: int, batch: list | None = None) -> dict[str, float]:
        torch.manual_seed(stable_seed("step", self.config.seed, self.context.rank, iteration))
        images, targets = self._to_device(batch if batch is not None else self.load_batch(iteration))
        self.ddp_model.train()
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            losses = self.ddp_model(images, targets)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise ScaledetError(f"iteration {iteration}: loss became {total.item()}; lower schedule.lr "
                                "(the last checkpoint is intact)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        if self.config.schedule.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.schedule.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used (detectron2 logs it before stepping)
        self.scheduler.step()
        return {"total_loss": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()}, "lr": lr}

    def _save(self, done: int, path: Path | None = None) -> Path:
        path = path or self.output_dir / numbered_checkpoint_name(done)
        save_checkpoint(self.state(done), path)
        record_output_files(self.output_dir, [path])  # its sha256, checked whenever it is loaded
        point_to(self.output_dir, path)
        if path.name != FINAL_NAME and path not in self.own_checkpoints:
            self.own_checkpoints.append(path)
        prune_checkpoints(self.own_checkpoints, self.config.schedule.keep_last)
        return path

    def _evaluate_during_training(self, done: int, checkpoint: Path, metrics: "MetricsLog | None") -> None:
        """``eval_period``: evaluate the checkpoint just written, log its numbers with the losses."""
        from .evaluation.checkpoint_eval import evaluate_checkpoint

        try:
            table, _ = evaluate_checkpoint(self.config, checkpoint, self.device, force=True, model=self.model,
                                           state={"iteration": done, "labelspace": self.labelspace_info()},
                                           labelspace=self.labelspace)
        finally:
            self.model.roi_heads.set_vocabulary(self.labelspace.embeddings)  # back to the training union
            self.model.train()
        if metrics is not None:
            metrics.write({"iteration": done - 1, **evaluation_scalars(table)})

    def train(self, stop_after: int | None = None) -> Path:
        """Run the schedule from the current iteration; ``stop_after`` ends early (after saving a
        checkpoint), as an interrupted run would, and returns the checkpoint path."""
        config = self.config
        iterations = config.schedule.iterations
        if self.context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.output_dir)
            mark_output_dir(self.output_dir, TRAIN_KIND)
            atomic_write_text(self.output_dir / CONFIG_NAME, config_to_yaml(config))
        metrics = MetricsLog(self.output_dir / METRICS_NAME, self.start_iteration) if self.context.is_main else None
        bar = None
        if self.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=iterations, initial=self.start_iteration, desc="train", unit="it", dynamic_ncols=True)
        saved = None
        loader = build_train_loader(self.datasets, self.sampler, self.start_iteration, iterations, self.num_workers,
                                    pin_memory=self.device.type == "cuda")
        batches = iter(loader)
        for iteration in range(self.start_iteration, iterations):
            start = time.perf_counter()
            try:
                batch = next(batches)
            except ScaledetError as err:  # raised in a worker: keep its one line
                raise worker_error(err) from None
            waited = time.perf_counter() - start  # time the step waited for data (detectron2's data_time)
            values = self.step(iteration, batch)
            done = iteration + 1
            if metrics is not None and (done % config.schedule.log_every == 0 or done == iterations):
                # detectron2's JSONWriter: the 0-based index of the step just run (model_{iteration:07d}.pth is
                # the checkpoint after it), total_loss, time and data_time in seconds, the step's own lr
                metrics.write({"iteration": iteration, **values, "time": time.perf_counter() - start,
                               "data_time": waited})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{values['total_loss']:.3f}", hard=f"{values['loss_hard']:.3f}")
            stopping = stop_after is not None and done >= stop_after
            evaluating = (config.schedule.eval_period and done % config.schedule.eval_period == 0
                          and done < iterations and config.eval_datasets)
            if self.context.is_main and (done % config.schedule.checkpoint_every == 0 or stopping or evaluating):
                saved = self._save(done)
            if self.context.is_main and evaluating:
                self._evaluate_during_training(done, saved, metrics)
            if stopping:
                break
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
        if stop_after is not None and stop_after < iterations:
            return saved
        final = self.output_dir / FINAL_NAME
        if self.context.is_main:
            self._save(iterations, final)
        if self.context.world_size > 1:
            torch.distributed.barrier()
        return final


def evaluation_scalars(table: dict[str, dict]) -> dict:
    """Evaluation numbers keyed as detectron2's EvalHook flattens them: ``bbox/AP`` for one dataset,
    ``NAME/bbox/AP`` for several (suite rows such as ``odinw (mean of 13)`` included)."""
    if len(table) == 1:
        (values,) = table.values()
        return {f"bbox/{k}": v for k, v in values.items()}
    return {f"{name}/bbox/{k}": v for name, values in table.items() for k, v in values.items()}


def log_final_evaluation(output_dir: Path, iterations: int, table: dict[str, dict]) -> None:
    """The evaluation after training, as detectron2 records it: one more ``metrics.json`` row at the last
    iteration, and the same scalars in TensorBoard."""
    log = MetricsLog(Path(output_dir) / METRICS_NAME, iterations, keep_all=True)
    log.write({"iteration": iterations - 1, **evaluation_scalars(table)})
    log.close()


class MetricsLog:
    """Metrics as JSON lines (``metrics.json``, detectron2's format), one object per logged iteration, and
    the same numbers as TensorBoard scalars (``OUTPUT_DIR/events.out.tfevents.*``). A resumed run drops the
    JSON lines past its checkpoint (rewritten atomically) and TensorBoard purges its later steps; a new run
    leaves an earlier file alone until its first line."""

    def __init__(self, path: Path, start_iteration: int, keep_all: bool = False) -> None:
        self.path = path
        self.truncate_on_first_write = start_iteration == 0
        if start_iteration > 0 and path.is_file() and not keep_all:
            kept = []
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # bad lines are dropped
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if isinstance(record, dict) and isinstance(record.get("iteration"), int) \
                        and record["iteration"] < start_iteration:
                    kept.append(line + "\n")
            atomic_write_text(path, "".join(kept))
        self.events = _tensorboard_writer(path.parent, 0 if keep_all else start_iteration)

    def write(self, row: dict) -> None:
        mode = "w" if self.truncate_on_first_write else "a"
        self.truncate_on_first_write = False
        with open(self.path, mode, encoding="utf-8") as handle:
            # 7 significant digits: compact, and exact enough for a learning rate of 1e-5 (6 decimals are not)
            handle.write(json.dumps({k: (float(f"{v:.7g}") if isinstance(v, float) else v) for k, v in row.items()})
                         + "\n")
        if self.events is not None:
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    self.events.add_scalar(key, value, row["iteration"])
            self.events.flush()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()


def _tensorboard_writer(directory: Path, start_iteration: int):
    """A SummaryWriter, or None where the tensorboard package is missing (the JSON lines still hold all)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory), purge_step=start_iteration if start_iteration else None)
