"""Batching: collate, aspect-ratio grouping, and the loader builder.

The order of a training pass depends only on (seed, epoch): call
`set_loader_epoch(loader, epoch)` before each pass (the training loop cycles the loader
that way). To resume in the middle of a pass, `set_loader_epoch(loader, epoch,
skip_batches=k)` drops the first k batches of that pass without reading their images.
Augmentations draw from torch's global generator, so with `num_workers=0` a run that
restores that generator's state on resume sees exactly the same batches.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from maskrcnn.structures import Targets


def collate(batch: Sequence[tuple[Tensor, Targets, dict[str, Any]]]) -> tuple[list[Tensor], list[Targets], list[dict[str, Any]]]:
    """[(image, targets, info), ...] -> ([images], [targets], [infos]); images keep their own sizes."""
    images = [item[0] for item in batch]
    targets = [item[1] for item in batch]
    infos = [item[2] for item in batch]
    return images, targets, infos


class EpochShuffleSampler(Sampler[int]):
    """Indices 0..size-1, shuffled by a generator seeded with seed + epoch (or in order)."""

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def aspect_ratio_groups(aspect_ratios: Sequence[float]) -> list[int]:
    """Group 0 for landscape or square images (w >= h), group 1 for portrait (w < h)."""
    return [0 if ratio >= 1.0 else 1 for ratio in aspect_ratios]


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches whose images all come from one group, taken in the order `sampler` gives.

    Each index joins its group's buffer; a full buffer becomes a batch. What is left at
    the end of a pass comes out as smaller batches, group by group, so every index of the
    pass is used once.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"GroupedBatchSampler: batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip_next(self, num_batches: int) -> None:
        """Leave out the first `num_batches` batches of the next pass (for resuming)."""
        self._skip = num_batches

    def _batches(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        for index in self.sampler:
            group = self.group_ids[index]
            buffer = buffers.setdefault(group, [])
            buffer.append(index)
            if len(buffer) == self.batch_size:
                yield list(buffer)
                buffer.clear()
        for group in sorted(buffers):
            if buffers[group]:
                yield buffers[group]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        for number, batch in enumerate(self._batches()):
            if number >= skip:
                yield batch

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for index in self.sampler:
            counts[self.group_ids[index]] = counts.get(self.group_ids[index], 0) + 1
        return sum(-(-count // self.batch_size) for count in counts.values())


def dataset_aspect_ratios(dataset: Dataset) -> list[float] | None:
    """Width / height per item when the data set can tell without reading images."""
    if isinstance(dataset, Subset):
        ratios = dataset_aspect_ratios(dataset.dataset)
        return None if ratios is None else [ratios[i] for i in dataset.indices]
    if hasattr(dataset, "aspect_ratios"):
        return list(dataset.aspect_ratios())
    return None


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    group_by_aspect_ratio: bool = True,
    distributed: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding (images, targets, infos) lists.

    train: shuffled by (seed, epoch), grouped by aspect ratio when asked. Not train: in
    order, ungrouped. distributed: each process takes its share through
    DistributedSampler (seeded with `seed`; needs torch.distributed initialised).
    """
    size = len(dataset)
    sampler: Sampler[int]
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=False)
    else:
        sampler = EpochShuffleSampler(size, shuffle=train, seed=seed)
    ratios = dataset_aspect_ratios(dataset) if (train and group_by_aspect_ratio) else None
    group_ids = aspect_ratio_groups(ratios) if ratios is not None else [0] * size
    batch_sampler = GroupedBatchSampler(sampler, group_ids, batch_size)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,  # page-locked batches: copies to a GPU without a host wait
        generator=generator,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Set the pass number (fixes the order) and how many leading batches to leave out."""
    batch_sampler = loader.batch_sampler
    if isinstance(batch_sampler, GroupedBatchSampler):
        batch_sampler.set_epoch(epoch)
        batch_sampler.skip_next(skip_batches)
    elif hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
