"""prepare_for_inference: folded norms, fused ReLU / residual convs, channels-last.

Hand-computed folding, equality with the unprepared model (blocks and whole models, with
frozen BN and eval BatchNorm), unchanged state dicts, clear errors for training and
loading, and torchvision parity on the prepared (default inference) path.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from maskrcnn.checkpoints import load_model, load_state_dict_into, save_model
from maskrcnn.config import load_config
from maskrcnn.model.build import build_model
from maskrcnn.model.inference_opt import (
    FoldedNorm,
    InferenceConv2d,
    InferenceResidualBlock,
    is_prepared_for_inference,
    prepare_for_inference,
)
from maskrcnn.model.norm import FrozenBatchNorm2d
from maskrcnn.model.resnet import BasicBlock, Bottleneck


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics and affine parameters for every (frozen) BatchNorm."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                c = module.running_mean.shape[0]
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model


def test_folding_by_hand():
    # conv: y = 2x + 1; BN: (y - 1) / sqrt(3 + 1) * 4 + 0.5 = (2x) / 2 * 4 + 0.5 = 4x + 0.5; ReLU.
    conv = nn.Conv2d(1, 1, 1)
    norm = nn.BatchNorm2d(1, eps=1.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        norm.weight.fill_(4.0)
        norm.bias.fill_(0.5)
        norm.running_mean.fill_(1.0)
        norm.running_var.fill_(3.0)
    seq = nn.Sequential(conv, norm, nn.ReLU()).eval()
    prepare_for_inference(seq, channels_last=False)
    assert isinstance(seq[0], InferenceConv2d) and seq[0].relu
    assert isinstance(seq[1], FoldedNorm) and isinstance(seq[2], FoldedNorm)
    assert seq[0].folded_weight.flatten().tolist() == [4.0]
    assert seq[0].folded_bias.tolist() == [0.5]
    x = torch.tensor([-1.0, 0.0, 0.25, 2.0]).view(1, 1, 2, 2)
    with torch.inference_mode():
        out = seq(x)
    assert out.flatten().tolist() == [0.0, 0.5, 1.5, 8.5]  # relu(4x + 0.5)


def test_frozen_bn_folding_matches_the_module():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    seq = randomize_norms(nn.Sequential(conv, FrozenBatchNorm2d(5))).eval()
    reference = copy.deepcopy(seq)
    prepare_for_inference(seq)
    x = torch.randn(2, 3, 9, 7)
    with torch.inference_mode():
        assert torch.allclose(seq(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
@pytest.mark.parametrize("block_class", [BasicBlock, Bottleneck])
def test_residual_blocks_fuse_and_match(block_class):
    expansion = block_class.expansion
    downsample = nn.Sequential(nn.Conv2d(16, 8 * expansion, 1, 2, bias=False), FrozenBatchNorm2d(8 * expansion))
    block = block_class(
        in_channels=16, planes=8, stride=2, dilation=1, norm="frozen_bn", downsample=downsample
    )
    same_width = block_class(in_channels=8 * expansion, planes=8, stride=1, dilation=1, norm="frozen_bn", downsample=None)
    model = randomize_norms(nn.Sequential(block, same_width)).eval()
    reference = copy.deepcopy(model)
    prepare_for_inference(model)
    assert all(isinstance(m, InferenceResidualBlock) for m in model)
    x = torch.randn(2, 16, 12, 10)
    with torch.inference_mode():
        expected = reference(x)
        out = model(x)
    assert out.shape == expected.shape == (2, 8 * expansion, 6, 5)
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-4)
    assert out.min() >= 0  # the fused ReLU after the residual add
    with torch.backends.mkldnn.flags(enabled=False):  # the plain-PyTorch path gives the same
        with torch.inference_mode():
            assert torch.allclose(model(x), expected, atol=1e-5, rtol=1e-4)


def test_group_norm_is_left_alone():
    seq = nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.GroupNorm(32, 32), nn.ReLU()).eval()
    reference = copy.deepcopy(seq)
    prepare_for_inference(seq)
    assert isinstance(seq[1], nn.GroupNorm) and isinstance(seq[2], nn.ReLU)
    assert isinstance(seq[0], InferenceConv2d) and not seq[0].relu and not seq[0].folded_norm
    x = torch.randn(1, 4, 6, 6)
    with torch.inference_mode():
        assert torch.allclose(seq(x), reference(x), atol=1e-5)


def test_wide_3x3_convs_run_winograd_and_match():
    generator = torch.Generator().manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU())
    randomize_norms(seq.eval())
    x = torch.randn((2, 128, 20, 28), generator=generator)  # 2 x 5 x 7 = 70 tiles of 4 x 4
    with torch.inference_mode():
        expected = seq(x)
        winograd = prepare_for_inference(copy.deepcopy(seq))
        direct = prepare_for_inference(copy.deepcopy(seq), winograd=False)
        assert winograd[0].winograd and winograd[0].runs_winograd(x) and "winograd" in repr(winograd[0])
        assert not direct[0].winograd and not direct[0].runs_winograd(x)
        assert not winograd[0].runs_winograd(x[:1, :, :8, :8])  # 4 tiles: too few to pay
        scale = expected.abs().max()
        assert (winograd(x) - expected).abs().max() / scale < 5e-5
        assert (direct(x) - expected).abs().max() / scale < 5e-6


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(64, 128, 3, padding=1),  # too narrow
        nn.Conv2d(128, 128, 3, padding=1, stride=2),
        nn.Conv2d(128, 128, 3, padding=2, dilation=2),
        nn.Conv2d(128, 128, 1),
        nn.Conv2d(128, 128, 3, padding=1, groups=2),
    ],
)
def test_other_convs_stay_direct(conv):
    prepared = prepare_for_inference(nn.Sequential(conv).eval())
    assert not prepared[0].winograd


def small_model(v2_norms: bool):
    overrides = [
        "model.num_classes=5",
        "model.backbone.name=resnet18",
        "model.anchors.sizes=[[16],[32],[64],[128],[256]]",
        "model.rpn.pre_nms_top_n_test=100",
        "model.rpn.post_nms_top_n_test=50",
        "model.roi_heads.box_head_dim=64",
        "model.roi_heads.mask_head_channels=32",
        "model.roi_heads.score_thresh=0.0",
        "model.roi_heads.detections_per_img=10",
        "model.transform.min_size=[96]",
        "model.transform.max_size=128",
    ]
    if v2_norms:
        overrides += [
            "model.backbone.fpn_norm=bn",
            "model.rpn.num_convs=2",
            "model.roi_heads.box_head=4conv1fc",
            "model.roi_heads.box_head_norm=bn",
            "model.roi_heads.mask_head_norm=bn",
        ]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    return randomize_norms(build_model(cfg.model)).eval(), cfg


@pytest.mark.parametrize("v2_norms", [False, True])
def test_prepared_model_gives_the_same_detections(v2_norms):
    model, _ = small_model(v2_norms)
    prepared = prepare_for_inference(copy.deepcopy(model))
    assert is_prepared_for_inference(prepared) and not is_prepared_for_inference(model)
    folded = [m for m in prepared.modules() if isinstance(m, FoldedNorm) and m.folded_kind != "ReLU"]
    norms = [m for m in model.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    assert len(folded) == len(norms) > 0  # every norm of these models follows a conv
    images = [torch.rand(3, 80, 112), torch.rand(3, 96, 64)]
    with torch.inference_mode():
        expected = model(images)
        got = prepared(images)
        features = prepared.backbone(torch.rand(1, 3, 64, 64))
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in features.values())
    for a, b in zip(expected, got):
        assert len(a) == len(b) > 0
        assert torch.allclose(a.scores, b.scores, atol=1e-4)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-2)
        assert torch.equal(a.labels, b.labels)
        assert (a.masks - b.masks).abs().max() < 1e-3


def test_state_dict_and_parameters_are_unchanged(tmp_path):
    model, cfg = small_model(v2_norms=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    num_params = sum(p.numel() for p in model.parameters())
    prepare_for_inference(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert sum(p.numel() for p in model.parameters()) == num_params
    # a prepared model saves a checkpoint that rebuilds the unprepared model exactly
    path = tmp_path / "prepared.pt"
    save_model(path, model, cfg)
    loaded, _ = load_model(path)
    assert not is_prepared_for_inference(loaded)
    assert all(torch.equal(loaded.state_dict()[k], before[k]) for k in before)
    fast, _ = load_model(path, for_inference=True)
    assert is_prepared_for_inference(fast) and not fast.training
    convs = [m for m in fast.modules() if isinstance(m, InferenceConv2d)]
    assert any(m.winograd for m in convs)  # the 256-channel FPN / RPN 3x3 convs
    direct, _ = load_model(path, for_inference=True, winograd=False)
    assert not any(m.winograd for m in direct.modules() if isinstance(m, InferenceConv2d))


def test_training_and_loading_are_refused():
    model, _ = small_model(v2_norms=False)
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        prepare_for_inference(model.train())
    model.eval()
    state = copy.deepcopy(model.state_dict())
    prepare_for_inference(model)
    model.train()
    with pytest.raises(RuntimeError, match="prepared for inference"):
        model.backbone(torch.rand(1, 3, 64, 64))
    model.eval()
    with pytest.raises(RuntimeError, match="load the weights first"):
        model.load_state_dict(state)


def test_second_call_changes_nothing():
    model, _ = small_model(v2_norms=False)
    prepare_for_inference(model)
    convs = [id(m) for m in model.modules() if isinstance(m, InferenceConv2d)]
    prepare_for_inference(model)
    assert [id(m) for m in model.modules() if isinstance(m, InferenceConv2d)] == convs


def test_no_detections_and_empty_roi_batches():
    model, _ = small_model(v2_norms=True)
    model.roi_heads.score_thresh = 1.1  # nothing passes: the mask head runs on zero RoIs
    prepare_for_inference(model)
    with torch.inference_mode():
        (det,) = model([torch.rand(3, 64, 64)])
        pooled = model.roi_heads.mask_head(torch.zeros(0, 256, 14, 14))
    assert len(det) == 0 and det.masks.shape == (0, 64, 64)
    assert pooled.shape == (0, 32, 14, 14)


# ---- parity with torchvision on the prepared path ---------------------------------------

PARITY = Path(__file__).resolve().with_name("parity")  # torchvision's recorded answers (tests/model/test_parity.py)


def _parity_module():
    spec = importlib.util.spec_from_file_location("parity_checks", Path(__file__).with_name("test_parity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "model_name, images",
    [("maskrcnn_resnet50_fpn", ("astronaut.png", "chelsea.png", "coffee.png")), ("maskrcnn_resnet50_fpn_v2", ("astronaut.png",))],
)
def test_torchvision_parity_on_the_prepared_path(model_name, images):
    parity = _parity_module()
    weights = parity.load_make_weights()
    spec = json.loads((PARITY / model_name / "spec.json").read_text())
    state_dict = weights.make_weights(weights.load_spec(PARITY / model_name / "spec.json"), seed=spec["seed"])
    model = build_model(load_config(model_name).model)
    load_state_dict_into(model, state_dict)
    model = prepare_for_inference(model.eval())
    assert any(m.winograd for m in model.modules() if isinstance(m, InferenceConv2d))
    expected_all = torch.load(PARITY / model_name / "expected.pt", weights_only=False)
    for name in images:
        expected = expected_all[name]
        with torch.inference_mode():
            (det,) = model([parity.read_image(name)])
        pairs = parity.match_detections(expected, det.boxes, det.scores, det.labels)
        ious = parity.mask_ious(parity.unpack_masks(expected), (det.masks > 0.5).numpy(), pairs)
        assert len(pairs) >= 98, (model_name, name, len(pairs))
        assert float(torch.tensor(ious).median()) >= 0.995, (model_name, name)
        assert float((torch.tensor(ious) >= 0.95).float().mean()) >= 0.95, (model_name, name)
        assert not math.isnan(float(det.scores.sum()))


def test_copies_after_a_forward_run_the_same():
    """The cached oneDNN weights (opaque tensors) are dropped on copy and rebuilt on use."""
    model, _ = small_model(v2_norms=False)
    prepare_for_inference(model)
    images = [torch.rand(3, 64, 80)]
    with torch.inference_mode():
        (first,) = model(images)
        copied = copy.deepcopy(model)
        (again,) = copied(images)
    assert torch.equal(first.scores, again.scores) and torch.equal(first.boxes, again.boxes)


def _benchmark_module(name: str):
    """A script module of benchmarks/ (not a package), imported from its path."""
    import sys

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # the scripts import their sibling helpers
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def test_benchmark_stage_timer_covers_the_pass(monkeypatch):
    """Each part of the pass advances a fake clock by its own power of two, so every stage's
    figure says exactly which parts it counted (a part timed twice, missed, or given to the
    wrong stage shows), not only that the stages add up to the total."""
    from types import SimpleNamespace

    stage_timer = _benchmark_module("stage_timer")
    model, _ = small_model(v2_norms=False)
    prepare_for_inference(model)
    clock = [0.0]
    monkeypatch.setattr(stage_timer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def advance(owner, name, seconds):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            result = original(*args, **kwargs)
            clock[0] += seconds
            return result

        setattr(owner, name, timed)  # an instance attribute; the model is this test's own

    heads = model.roi_heads
    parts = [
        (model.transform, "forward", 1 << 14), (model.backbone.body, "forward", 1), (model.backbone.fpn, "forward", 2),
        (model.rpn.head, "forward", 4), (model.rpn, "forward", 1 << 10), (heads.box_pooler, "forward", 8),
        (heads.box_head, "forward", 16), (heads.box_predictor, "forward", 32), (heads, "detect", 1 << 11),
        (heads.mask_pooler, "forward", 64), (heads.mask_head, "forward", 128), (heads.mask_predictor, "forward", 256),
        (heads, "predict_masks", 1 << 12), (model.transform, "postprocess", 1 << 13), (model, "forward", 1 << 15),
    ]
    for owner, name, seconds in parts:
        advance(owner, name, seconds)
    with stage_timer.StageTimer(model) as timer, torch.inference_mode():
        model([torch.rand(3, 64, 64)])
    expected = {
        "preprocess": 1 << 14, "backbone": 1, "fpn": 2, "rpn_head": 4, "rpn_proposals": 1 << 10, "box_pool": 8,
        "box_head": 16 + 32, "box_postprocess": 1 << 11, "mask_pool": 64, "mask_head": 128 + 256,
        "mask_select": 1 << 12, "paste": 1 << 13, "other": 1 << 15,
    }
    expected["total"] = sum(expected.values())
    assert list(stage_timer.STAGES) == list(expected)[:-1]
    assert timer.stages() == expected
    assert not model._forward_hooks and not model.backbone.body._forward_pre_hooks  # all removed


def test_benchmark_detection_comparison_by_hand():
    from maskrcnn.structures import Detections

    precision = _benchmark_module("precision")
    masks = torch.zeros(2, 10, 10)
    masks[0, :4, :4] = 1.0  # 16 px
    masks[1, 5:, 5:] = 1.0
    reference = Detections(
        boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 10.0, 10.0]]),
        scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([1, 2]),
        masks=masks,
    )
    other_masks = masks.clone()
    other_masks[0, :4, :2] = 0.0  # 8 of 16 px left: IoU 0.5
    other = Detections(
        boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 10.0, 10.0]]),
        scores=torch.tensor([0.85, 0.8]),
        labels=torch.tensor([1, 3]),  # second: other label, not matched
        masks=other_masks,
    )
    result = precision.compare_detections(reference, other)
    assert result["matched"] == 1 and result["reference_detections"] == 2
    assert result["score_abs_change_max"] == pytest.approx(0.05, abs=1e-6)
    assert result["mask_iou_median"] == pytest.approx(0.5)


def test_c4_layout_with_res5_head_matches():
    """The C4 design: res5 blocks run on pooled RoIs (shared head) and are fused too."""
    overrides = [
        "model.num_classes=4",
        "model.backbone.name=resnet18",
        "model.backbone.layout=c4",
        "model.anchors.sizes=[[16,32,64]]",
        "model.anchors.aspect_ratios=[[0.5,1.0,2.0]]",
        "model.rpn.pre_nms_top_n_test=60",
        "model.rpn.post_nms_top_n_test=20",
        "model.roi_heads.box_head=res5",
        "model.roi_heads.box_pool_size=14",
        "model.roi_heads.score_thresh=0.0",
        "model.roi_heads.detections_per_img=5",
        "model.transform.min_size=[64]",
        "model.transform.max_size=96",
    ]
    torch.manual_seed(0)
    model = randomize_norms(build_model(load_config(None, overrides).model)).eval()
    prepared = prepare_for_inference(copy.deepcopy(model))
    assert all(isinstance(b, InferenceResidualBlock) for b in prepared.roi_heads.shared_head.layer4)
    image = [torch.rand(3, 64, 80)]
    with torch.inference_mode():
        (a,), (b,) = model(image), prepared(image)
    assert len(a) == len(b) > 0
    assert torch.allclose(a.scores, b.scores, atol=1e-4) and torch.equal(a.labels, b.labels)
    assert (a.masks - b.masks).abs().max() < 1e-3
