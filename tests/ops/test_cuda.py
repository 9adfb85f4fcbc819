"""The ops on CUDA give the CPU's answers (skipped without a GPU)."""

import pytest
import torch

from maskrcnn.ops import sparse_sampling
from maskrcnn.ops.anchors import AnchorGenerator
from maskrcnn.ops.compiled import OWN_OPS_ENV, torchvision_ops
from maskrcnn.ops.masks import crop_and_resize_masks, paste_masks_in_image
from maskrcnn.ops.nms import batched_nms, nms
from maskrcnn.ops.roi_align import roi_align, roi_pool

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def own_ops(monkeypatch):
    """This project's CUDA ops, not torchvision's (test_torchvision_ops_match_recorded_answers)."""
    monkeypatch.setenv(OWN_OPS_ENV, "1")


@pytest.mark.parametrize("min_work", [0, 1 << 60])  # sparse product / gather path
def test_roi_align_and_pool_cuda_match_cpu(parity_ops, min_work, monkeypatch):
    monkeypatch.setattr(sparse_sampling, "SPARSE_MIN_WORK", min_work)
    feature, rois = parity_ops["feature"], parity_ops["rois"]
    for case in parity_ops["roi_align"][:4]:
        settings = (case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"])
        leaf = feature.cuda().requires_grad_(True)
        out = roi_align(leaf, rois.cuda(), *settings)
        torch.testing.assert_close(out.cpu(), case["out"], atol=1e-4, rtol=0)
        out.sum().backward()
        cpu_leaf = feature.clone().requires_grad_(True)
        roi_align(cpu_leaf, rois, *settings).sum().backward()
        torch.testing.assert_close(leaf.grad.cpu(), cpu_leaf.grad, atol=1e-4, rtol=0)
    case = parity_ops["roi_pool"][0]
    out = roi_pool(feature.cuda(), rois.cuda(), case["output_size"], case["spatial_scale"])
    torch.testing.assert_close(out.cpu(), case["out"], atol=1e-4, rtol=0)


def test_nms_cuda_matches_torchvision(parity_ops):
    boxes, scores = parity_ops["nms_boxes"].cuda(), parity_ops["nms_scores"].cuda()
    for case in parity_ops["nms"]:
        assert torch.equal(nms(boxes, scores, case["iou_threshold"]).cpu(), case["keep"])
    keep = batched_nms(boxes, scores, parity_ops["nms_idxs"].cuda(), parity_ops["batched_nms"][0]["iou_threshold"])
    assert torch.equal(keep.cpu(), parity_ops["batched_nms"][0]["keep"])


def test_masks_and_anchors_cuda_match_cpu():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand((5, 28, 28), generator=generator)
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [0, 0, 63, 47], [10, 10, 11, 11], [-5, -5, 20, 20], [40, 30, 70, 60]])
    pasted = paste_masks_in_image(probabilities.cuda(), boxes.cuda(), (48, 64))
    torch.testing.assert_close(pasted.cpu(), paste_masks_in_image(probabilities, boxes, (48, 64)), atol=1e-5, rtol=0)
    masks = (torch.rand((5, 48, 64), generator=generator) > 0.5).to(torch.uint8)
    targets = crop_and_resize_masks(masks.cuda(), boxes.cuda(), 14)
    torch.testing.assert_close(targets.cpu(), crop_and_resize_masks(masks, boxes, 14), atol=1e-5, rtol=0)
    generator_cuda = AnchorGenerator([[32], [64]], [[0.5, 1.0, 2.0]] * 2)
    on_gpu = generator_cuda((64, 96), [(16, 24), (8, 12)], "cuda", torch.float32)
    on_cpu = generator_cuda((64, 96), [(16, 24), (8, 12)], "cpu", torch.float32)
    for a, b in zip(on_gpu, on_cpu):
        assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("num", [300, 6000])  # shifted boxes / one pass with categories
def test_batched_nms_cuda_with_valid_mask_matches_cpu(num):
    generator = torch.Generator().manual_seed(3)
    corner = torch.rand((num, 2), generator=generator) * 400
    boxes = torch.cat([corner, corner + torch.rand((num, 2), generator=generator) * 60 + 1], dim=1)
    scores = torch.rand(num, generator=generator)
    idxs = torch.randint(0, 5, (num,), generator=generator)
    valid = torch.rand(num, generator=generator) > 0.3
    on_gpu = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.7, valid.cuda())
    assert torch.equal(on_gpu.cpu(), batched_nms(boxes, scores, idxs, 0.7, valid))


def test_torchvision_ops_match_recorded_answers(parity_ops, monkeypatch):
    """Where torchvision's CUDA kernels work, roi_align / nms / batched_nms use them: the
    recorded answers, and this project's CUDA ops' answers."""
    monkeypatch.delenv(OWN_OPS_ENV)
    if torchvision_ops(torch.device("cuda")) is None:
        pytest.skip("torchvision's CUDA ops are not available here")
    feature, rois = parity_ops["feature"].cuda(), parity_ops["rois"].cuda()
    for case in parity_ops["roi_align"][:4]:
        settings = (case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"])
        compiled = roi_align(feature, rois, *settings)
        torch.testing.assert_close(compiled.cpu(), case["out"], atol=1e-4, rtol=0)
        monkeypatch.setenv(OWN_OPS_ENV, "1")
        torch.testing.assert_close(compiled, roi_align(feature, rois, *settings), atol=1e-4, rtol=0)
        monkeypatch.delenv(OWN_OPS_ENV)
    boxes, scores = parity_ops["nms_boxes"].cuda(), parity_ops["nms_scores"].cuda()
    for case in parity_ops["nms"]:
        assert torch.equal(nms(boxes, scores, case["iou_threshold"]).cpu(), case["keep"])
    keep = batched_nms(boxes, scores, parity_ops["nms_idxs"].cuda(), parity_ops["batched_nms"][0]["iou_threshold"])
    assert torch.equal(keep.cpu(), parity_ops["batched_nms"][0]["keep"])
