"""The batch sampler: reshuffled per epoch from (seed, epoch), complete in evaluation, disjoint across ranks."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.data.loader import EpochBatchSampler


def test_training_batches_reshuffle_each_epoch_reproducibly() -> None:
    def order(epoch: int, seed: int = 0) -> torch.Tensor:
        sampler = EpochBatchSampler(1000, 100, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return torch.cat(list(sampler))

    assert sorted(order(0).tolist()) == list(range(1000))
    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(0), order(1))
    assert not torch.equal(order(0, seed=0), order(0, seed=1))


def test_evaluation_batches_are_in_order_and_complete() -> None:
    sampler = EpochBatchSampler(250, 100, shuffle=False)
    batches = list(sampler)
    assert [len(batch) for batch in batches] == [100, 100, 50] and len(sampler) == 3
    assert torch.equal(torch.cat(batches), torch.arange(250))


@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_take_disjoint_shards_of_equal_length(shuffle: bool) -> None:
    shards = []
    for rank in range(3):
        sampler = EpochBatchSampler(1001, 50, shuffle=shuffle, seed=5, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shard = torch.cat(list(sampler))
        assert len(sampler) == -(-len(shard) // 50)
        shards.append(set(shard.tolist()))
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    if shuffle:  # training: equal shard lengths so no rank waits on a batch the others lack
        assert {len(shard) for shard in shards} == {333}
    else:  # evaluation: every image is seen exactly once
        assert len(shards[0] | shards[1] | shards[2]) == 1001
