import pytest
import torch

from maskrcnn.ops.boxes import box_iou
from maskrcnn.ops.matcher import Matcher
from maskrcnn.ops.sampler import sample_balanced, sample_balanced_batch


def test_matcher_thresholds():
    quality = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.0],
            [0.2, 0.6, 0.75, 0.2],
        ]
    )  # (M=2 gt, N=4 pred)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=False)
    # pred0 -> gt0 (0.9); pred1 best 0.6 between; pred2 -> gt1 (0.75); pred3 best 0.2 below
    assert matcher(quality).tolist() == [0, -2, 1, -1]


def test_matcher_low_quality_matches():
    quality = torch.tensor(
        [
            [0.1, 0.4, 0.4, 0.0],  # gt0's best is 0.4, reached by pred1 and pred2
            [0.2, 0.0, 0.5, 0.9],
        ]
    )
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    # pred1 -> gt0 (its own best); pred2 reaches gt0's best but its best gt is gt1 (0.5),
    # and torchvision keeps its best gt; pred3 -> gt1 above threshold; pred0 stays below.
    assert matcher(quality).tolist() == [-1, 0, 1, 1]
    assert Matcher(0.7, 0.3, False)(quality).tolist() == [-1, -2, -2, 1]


def test_matcher_empty():
    matcher = Matcher(0.7, 0.3, True)
    out = matcher(torch.zeros((0, 5)))
    assert out.tolist() == [-1] * 5 and out.dtype == torch.int64
    assert matcher(torch.zeros((3, 0))).shape == (0,)


def test_sampler_counts_and_membership():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 20)
    generator = torch.Generator().manual_seed(0)
    pos, neg = sample_balanced(labels, 16, 0.25, generator=generator)
    assert pos.numel() == 4 and neg.numel() == 12
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 4 and len(set(neg.tolist())) == 12


def test_sampler_few_positives_fill_with_negatives_and_empty():
    labels = torch.tensor([1, 0, 0, 0, -1, 2])
    pos, neg = sample_balanced(labels, 4, 0.5)
    assert sorted(pos.tolist()) == [0, 5]  # label >= 1 counts as positive
    assert neg.numel() == 2
    pos, neg = sample_balanced(torch.zeros((0,), dtype=torch.int64), 256, 0.5)
    assert pos.shape == (0,) and neg.shape == (0,)


def test_sampler_generator_is_reproducible():
    labels = torch.tensor([1] * 50 + [0] * 50)
    a = sample_balanced(labels, 20, 0.5, generator=torch.Generator().manual_seed(3))
    b = sample_balanced(labels, 20, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("low_quality", [True, False])
@pytest.mark.parametrize("max_pairs", [1, 7, 50, 10**6])
def test_match_boxes_in_chunks_equals_the_whole_iou_matrix(low_quality, max_pairs):
    generator = torch.Generator().manual_seed(4)
    corners = torch.rand(300, 2, generator=generator) * 60
    boxes = torch.cat([corners, corners + 4 + torch.rand(300, 2, generator=generator) * 20], dim=1)  # (N, 4)
    boxes[150:] = boxes[:150]  # tied boxes: a gt's highest IoU is reached twice
    gt = boxes[[3, 80, 80, 200]] + 1.5  # a repeated gt too
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)
    expected = matcher(box_iou(gt, boxes))
    got = matcher.match_boxes(gt, boxes, max_pairs=max_pairs)
    assert torch.equal(got, expected)
    assert (expected >= 0).any() and (expected < 0).any()


def test_sampler_batch_counts_are_exact_per_image_and_never_ignored():
    generator = torch.Generator().manual_seed(1)
    images = [
        torch.tensor([1] * 3 + [0] * 40 + [-1] * 30),  # few positives: negatives fill up
        torch.tensor([2] * 50 + [0] * 5 + [-1] * 10),  # few negatives: fewer than the batch
        torch.full((7,), -1),  # all ignored: nothing sampled
    ]
    samples = sample_balanced_batch(images, 16, 0.5, generator=generator)
    assert [(s.positive.numel(), s.negative.numel()) for s in samples] == [(3, 13), (8, 5), (0, 0)]
    for labels, sample in zip(images, samples):
        assert (labels[sample.positive] >= 1).all() and (labels[sample.negative] == 0).all()
        assert sample.positive.unique().numel() == sample.positive.numel()
        assert sample.negative.unique().numel() == sample.negative.numel()


def test_sampler_picks_uniformly():
    """Each of 20 positives is picked by 5-of-20 draws with probability 1/4: over 4000 draws
    every index's count is within 6 standard deviations of 1000 (binomial, sd ~27)."""
    labels = torch.tensor([1] * 20 + [0] * 20 + [-1] * 20)
    generator = torch.Generator().manual_seed(5)
    positive_counts = torch.zeros(60)
    negative_counts = torch.zeros(60)
    for _ in range(4000):
        pos, neg = sample_balanced(labels, 10, 0.5, generator=generator)
        positive_counts[pos] += 1
        negative_counts[neg] += 1
    assert (positive_counts[:20] - 1000).abs().max() < 6 * 27.4
    assert (negative_counts[20:40] - 1000).abs().max() < 6 * 27.4
    assert positive_counts[20:].sum() == 0 and negative_counts[:20].sum() == 0 and negative_counts[40:].sum() == 0


def test_sampler_is_deterministic_under_the_global_seed():
    labels = torch.tensor([1] * 30 + [0] * 300)
    torch.manual_seed(7)
    a = sample_balanced(labels, 64, 0.25)
    torch.manual_seed(7)
    b = sample_balanced(labels, 64, 0.25)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
