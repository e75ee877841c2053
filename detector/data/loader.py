"""Batches for the training loop from DataLoader workers, deterministic whatever the number of workers.

The batch of iteration ``i`` on process ``rank`` is a pure function of (seed, rank, i) (``sampling.py``).
The batch sampler below yields those batches for a range of iterations, each item carrying its own
augmentation seed, so a worker needs no state of its own: a run resumed at iteration ``i``, with any
number of workers, sees exactly the images and augmentations an uninterrupted run saw.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from scaledet.labelspace.io.errors import ScaledetError

from ..sampling import MultiDatasetBatchSampler, stable_seed
from .dataset import CocoDetectionDataset


def _cpu_times(cpus: set[int], stat: Path) -> dict[int, tuple[int, int]]:
    """Per allowed CPU: (idle ticks, all ticks) from ``/proc/stat``; idle includes iowait."""
    times = {}
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(value) for value in fields[:8]]
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def free_cores(sample_seconds: float = 0.5, stat: Path = Path("/proc/stat")) -> int:
    """Cores this process may use that are idle now (at least 1), measured over ``sample_seconds``.

    Threads sized to all cores of a busy machine spin against each other: the demo took 734 s of CPU time on
    a loaded 2-core machine against 200 s idle. The one-minute load average is no measure of this: it counts
    tasks waiting on I/O and, in containers, the host's housekeeping, so an idle 2-core container can show a
    load of 1 and would train on one thread. Where ``/proc/stat`` is not there, the load average is used."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        before = _cpu_times(cores, stat)
        if not before:
            raise OSError("no per-CPU lines")
        time.sleep(sample_seconds)
        after = _cpu_times(cores, stat)
        idle = sum((after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in after if c in before)
    except (OSError, ValueError, IndexError):
        try:
            idle = len(cores) - os.getloadavg()[0]
        except OSError:
            idle = float(len(cores))
    return max(1, min(len(cores), round(idle)))


def default_num_workers(processes_per_node: int = 1) -> int:
    """One core per process stays with the training loop; the rest decode images (at most 8 each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(1, processes_per_node) - 1))


class IterationBatches(torch.utils.data.Sampler):
    """For iterations ``start … stop − 1``: lists of (dataset, image, augmentation seed)."""

    def __init__(self, sampler: MultiDatasetBatchSampler, start: int, stop: int) -> None:
        self.sampler, self.start, self.stop = sampler, start, stop

    def batch(self, iteration: int) -> list[tuple[int, int, int]]:
        return [(dataset, image, stable_seed("augment", self.sampler.seed, self.sampler.rank, iteration, position))
                for position, (dataset, image) in enumerate(self.sampler.batch(iteration))]

    def __iter__(self):
        for iteration in range(self.start, self.stop):
            yield self.batch(iteration)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class MultiDataset(torch.utils.data.Dataset):
    """The training datasets behind one ``__getitem__`` taking (dataset, image, augmentation seed)."""

    def __init__(self, datasets: list[CocoDetectionDataset]) -> None:
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key: tuple[int, int, int]):
        dataset, image, seed = key
        return self.datasets[dataset].item(image, torch.Generator().manual_seed(seed))


def keep_as_list(batch: list) -> list:
    return batch


def build_train_loader(datasets: list[CocoDetectionDataset], sampler: MultiDatasetBatchSampler, start: int,
                       stop: int, num_workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        MultiDataset(datasets), batch_sampler=IterationBatches(sampler, start, stop), collate_fn=keep_as_list,
        num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None)


def worker_error(err: ScaledetError) -> ScaledetError:
    """A user error raised in a worker reaches the main process wrapped with the worker's traceback; keep
    its one line."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else str(err)
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return ScaledetError(last[len(prefix):] if last.startswith(prefix) else last)
