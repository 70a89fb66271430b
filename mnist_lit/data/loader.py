"""Batches as index slices of whole-split tensors: seeded per epoch, resumable mid-epoch, sharded across ranks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import Tensor


class EpochBatchSampler:
    """Yields index batches for one rank; the order is a pure function of (seed, epoch).

    Lightning calls ``set_epoch`` (through ``TensorBatchLoader.sampler``) at the start of every epoch, so a
    resumed run replays exactly the batches an uninterrupted run would see. Under DDP every rank draws the
    same permutation and keeps every ``world_size``-th element: disjoint shards of equal length (the tail
    that does not divide evenly is dropped while shuffling, so no rank waits on a batch the others lack).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in the order they are visited."""
        if not self.shuffle:
            return torch.arange(self.rank, self.num_items, self.world_size)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(self.num_items, generator=generator)
        usable = self.num_items - self.num_items % self.world_size
        return permutation[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.indices().split(self.batch_size))

    def __len__(self) -> int:
        if self.shuffle:
            shard_size = self.num_items // self.world_size
        else:
            shard_size = len(range(self.rank, self.num_items, self.world_size))
        return -(-shard_size // self.batch_size)


class TensorBatchLoader:
    """Iterates ``(images, labels)`` batches as index slices of two whole-split tensors, where a DataLoader would.

    ``sampler`` is where Lightning looks for ``set_epoch`` (it never calls it on a batch sampler), and
    ``state_dict``/``load_state_dict`` make it resumable: a run restored from a mid-epoch checkpoint skips the
    batches the interrupted run already trained on. The epoch's indices are copied to the data's device once,
    so when the splits live on a GPU every batch is gathered there and the host never touches a batch.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_sampler: EpochBatchSampler) -> None:
        self.images = images
        self.labels = labels
        self.batch_sampler = batch_sampler
        self._served = 0  # batches handed out in the current pass over this epoch
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) from a checkpoint

    @property
    def sampler(self) -> EpochBatchSampler:
        return self.batch_sampler

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: the epoch is read on the first ``next``, after Lightning's ``set_epoch``.
        skip = 0
        if self._resume is not None:
            resume_epoch, resume_skip = self._resume
            self._resume = None
            skip = resume_skip if resume_epoch == self.batch_sampler.epoch else 0
        self._served = skip
        on_device = self.batch_sampler.indices().to(self.images.device).split(self.batch_sampler.batch_size)
        for indices in itertools.islice(on_device, skip, None):
            self._served += 1
            # index_select copies whole rows; ``images[indices]`` walks them element by element.
            yield self.images.index_select(0, indices), self.labels.index_select(0, indices)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the served batches on the next pass, if that pass is the same epoch (else start fresh)."""
        self._resume = (int(state["epoch"]), int(state["batches_served"]))
