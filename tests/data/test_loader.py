from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler, SequentialSampler

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.loader import (
    EpochShuffleSampler,
    GroupedBatchSampler,
    aspect_ratio_groups,
    build_loader,
    collate,
    set_loader_epoch,
)
from maskrcnn.structures import Targets


def test_collate_keeps_lists():
    items = [(torch.zeros(3, 4, 5), Targets.empty(4, 5), {"image_id": 1}),
             (torch.zeros(3, 6, 2), Targets.empty(6, 2), {"image_id": 2})]
    images, targets, infos = collate(items)
    assert [tuple(i.shape) for i in images] == [(3, 4, 5), (3, 6, 2)]
    assert len(targets) == 2 and [i["image_id"] for i in infos] == [1, 2]


def test_aspect_ratio_groups():
    assert aspect_ratio_groups([1.5, 1.0, 0.5]) == [0, 0, 1]


def test_grouped_batches_by_hand():
    groups = [0, 1, 0, 1, 0, 0, 1]
    sampler = GroupedBatchSampler(SequentialSampler(range(7)), groups, batch_size=2)
    # 0,2 fill group 0; 1,3 fill group 1; 4,5 group 0; leftovers: [6] of group 1
    assert list(sampler) == [[0, 2], [1, 3], [4, 5], [6]]
    assert len(sampler) == 4


def test_grouped_batches_use_every_index_once_and_never_mix_groups():
    groups = [i % 3 == 0 for i in range(23)]
    sampler = GroupedBatchSampler(EpochShuffleSampler(23, shuffle=True, seed=4), [int(g) for g in groups], 4)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(23))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    assert len(sampler) == len(batches)


def test_order_depends_on_seed_and_epoch_only():
    first = EpochShuffleSampler(50, shuffle=True, seed=1)
    second = EpochShuffleSampler(50, shuffle=True, seed=1)
    assert list(first) == list(second)
    first.set_epoch(1)
    assert list(first) != list(second)
    second.set_epoch(1)
    assert list(first) == list(second)
    assert list(EpochShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_skip_next_drops_leading_batches_once():
    sampler = GroupedBatchSampler(SequentialSampler(range(6)), [0] * 6, batch_size=2)
    sampler.skip_next(2)
    assert list(sampler) == [[4, 5]]
    assert list(sampler) == [[0, 1], [2, 3], [4, 5]]


def test_grouping_over_a_distributed_sampler_splits_the_data():
    dataset = list(range(10))
    per_rank = []
    for rank in range(2):
        inner = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3)
        per_rank.append([i for b in GroupedBatchSampler(inner, [i % 2 for i in range(10)], 2) for i in b])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(10))
    assert not set(per_rank[0]) & set(per_rank[1])


def test_build_loader_over_a_dataset(tiny_coco):
    dataset = CocoDataset(*tiny_coco)
    train = build_loader(dataset, batch_size=2, train=True, seed=0)
    set_loader_epoch(train, 0)
    batches = list(train)
    # one landscape and one portrait image: grouping keeps them apart
    assert sorted(len(b[0]) for b in batches) == [1, 1]
    plain = build_loader(dataset, batch_size=2, train=True, group_by_aspect_ratio=False, seed=0)
    assert [len(b[0]) for b in plain] == [2]
    evaluation = build_loader(dataset, batch_size=1, train=False)
    assert [b[2][0]["image_id"] for b in evaluation] == [1, 2]


def test_set_loader_epoch_changes_and_fixes_the_order(tiny_coco):
    dataset = CocoDataset(*tiny_coco)

    def order(epoch: int, skip: int = 0) -> list[int]:
        loader = build_loader(dataset, batch_size=1, train=True, seed=5)
        set_loader_epoch(loader, epoch, skip_batches=skip)
        return [b[2][0]["image_id"] for b in loader]

    assert order(3) == order(3)
    assert order(3, skip=1) == order(3)[1:]
    assert {tuple(order(e)) for e in range(6)} == {(1, 2), (2, 1)}
