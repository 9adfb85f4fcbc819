"""The full model: losses, overfitting, empty images, inference output, input checks, layouts."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.model.build import ModelConfigError, build_model
from maskrcnn.model.mask_rcnn import LOSS_NAMES
from maskrcnn.ops.boxes import box_iou
from maskrcnn.structures import Targets

TINY = [
    "model.num_classes=3",
    "model.backbone.name=plain",
    "model.backbone.norm=bn",
    "model.backbone.freeze_at=0",
    "model.backbone.plain_channels=[8,16,32,32,32]",
    "model.backbone.fpn_channels=32",
    "model.anchors.sizes=[[8],[16],[32],[64],[128]]",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
    "model.rpn.batch_size_per_image=64",
    "model.roi_heads.box_head_dim=64",
    "model.roi_heads.mask_head_channels=16",
    "model.roi_heads.batch_size_per_image=64",
    "model.roi_heads.detections_per_img=20",
    "model.transform.min_size=[64]",
    "model.transform.max_size=64",
]


def tiny_model(*extra: str):
    torch.manual_seed(0)
    return build_model(load_config(None, TINY + list(extra)).model)


def shapes_sample(size: int = 64) -> tuple[torch.Tensor, Targets]:
    """A dark image with a bright square (class 1) and a mid-grey disc (class 2)."""
    image = torch.full((3, size, size), 0.1)
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 8:28, 10:30] = 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks[1] = ((yy - 44) ** 2 + (xx - 42) ** 2 <= 12**2).to(torch.uint8)
    image[:, masks[0].bool()] = 0.9
    image[:, masks[1].bool()] = torch.tensor([0.2, 0.7, 0.4])[:, None]
    boxes = torch.tensor([[10.0, 8.0, 30.0, 28.0], [30.0, 32.0, 55.0, 57.0]])
    return image, Targets(boxes=boxes, labels=torch.tensor([1, 2]), masks=masks)


def test_training_returns_the_five_losses_and_backpropagates():
    model = tiny_model().train()
    image, target = shapes_sample()
    target = Targets(boxes=target.boxes.double(), labels=target.labels, masks=target.masks.bool())  # any float/mask type
    losses = model([image, torch.rand(3, 48, 80)], [target, Targets.empty(48, 80)])
    assert tuple(losses) == LOSS_NAMES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head_norm", ["none", "bn"])
def test_images_without_instances_give_zero_mask_and_box_losses(head_norm):
    model = tiny_model(f"model.roi_heads.mask_head_norm={head_norm}").train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 50, 64)], [Targets.empty(64, 64), Targets.empty(50, 64)])
    assert losses["loss_mask"].item() == 0.0 and losses["loss_box_reg"].item() == 0.0
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_classifier"] > 0 and losses["loss_objectness"] > 0
    sum(losses.values()).backward()  # still connected to the graph
    assert model.roi_heads.mask_predictor.conv5_mask.weight.grad is not None


def test_no_detections_at_inference():
    model = tiny_model("model.roi_heads.score_thresh=1.0", "model.roi_heads.mask_head_norm=bn").eval()
    with torch.no_grad():
        detections = model([torch.rand(3, 64, 64), torch.rand(3, 32, 48)])
    assert [len(d) for d in detections] == [0, 0]
    assert detections[1].masks.shape == (0, 32, 48) and detections[1].boxes.shape == (0, 4)


def test_a_few_sgd_steps_drive_every_loss_down():
    model = tiny_model().train()
    image, target = shapes_sample()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    history = []
    for _ in range(60):
        losses = model([image], [target])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    # The box-regression losses first grow (as proposals improve, more RoIs are foreground:
    # they are summed over foreground and divided by all sampled), so compare the end with
    # the early peak.
    for name in LOSS_NAMES:
        early_peak = max(h[name] for h in history[:10])
        last = sum(h[name] for h in history[-3:]) / 3
        assert last < 0.6 * early_peak, (name, early_peak, last)

    # ...and at inference the best detection of each class lies on its object
    with torch.no_grad():
        (det,) = model.eval()([image])
    for label in (1, 2):
        best = torch.where(det.labels == label)[0][0]  # highest score of that class
        gt_mask = target.masks[label - 1].bool()
        mask = det.masks[best] > 0.5
        mask_iou = (mask & gt_mask).sum() / (mask | gt_mask).sum()
        assert box_iou(det.boxes[best : best + 1], target.boxes[label - 1 : label]).item() > 0.4
        assert mask_iou > 0.5, (label, float(mask_iou))


def test_inference_returns_detections_at_original_size():
    model = tiny_model().eval()
    with torch.no_grad():
        detections = model([torch.rand(3, 64, 64), torch.rand(3, 40, 100)])
    assert len(detections) == 2
    for det, (h, w) in zip(detections, [(64, 64), (40, 100)]):
        n = len(det)
        assert det.boxes.shape == (n, 4) and det.scores.shape == (n,) and det.labels.shape == (n,)
        assert det.masks.shape == (n, h, w) and n <= 20
        if n:
            assert det.boxes[:, 2].max() <= w and det.boxes[:, 3].max() <= h
            assert det.labels.min() >= 1 and det.labels.max() <= 2
            assert torch.all(det.scores[:-1] >= det.scores[1:])  # highest first
            assert 0.0 <= det.masks.min() and det.masks.max() <= 1.0


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([torch.rand(64, 64)], r"images\[0\]: expected shape \(3, H, W\)"),
        ([torch.rand(4, 64, 64)], r"expected shape \(3, H, W\)"),
        ([torch.zeros(3, 64, 64, dtype=torch.uint8)], "expected a float tensor"),
        ([], "non-empty list"),
    ],
)
def test_bad_images_raise_clear_errors(images, message):
    model = tiny_model().eval()
    with pytest.raises((ValueError, TypeError), match=message):
        model(images)


def test_bad_targets_raise_clear_errors():
    model = tiny_model().train()
    image, target = shapes_sample()
    bad_boxes = Targets(boxes=torch.zeros(2, 5), labels=target.labels, masks=target.masks)
    with pytest.raises(ValueError, match=r"boxes: expected shape \(N, 4\)"):
        model([image], [bad_boxes])
    bad_label = Targets(boxes=target.boxes, labels=torch.tensor([1, 7]), masks=target.masks)
    with pytest.raises(ValueError, match=r"label 7 is out of range; expected 1..2 \(num_classes = 3"):
        model([image], [bad_label])
    no_masks = Targets(boxes=target.boxes, labels=target.labels)
    with pytest.raises(ValueError, match="masks"):
        model([image], [no_masks])
    with pytest.raises(ValueError, match="needs targets"):
        model([image])


@pytest.mark.parametrize(
    "extra",
    [
        ["model.roi_heads.mask_head=mlp", "model.roi_heads.pooler=roi_pool"],
        ["model.roi_heads.mask_loss=softmax", "model.roi_heads.box_head=4conv1fc", "model.roi_heads.box_head_norm=gn"],
        ["model.rpn.num_convs=2", "model.roi_heads.mask_head_norm=bn", "model.roi_heads.mask_on=false"],
    ],
)
def test_head_variants_train_and_infer(extra):
    model = tiny_model(*extra).train()
    image, target = shapes_sample()
    losses = model([image], [target])
    sum(losses.values()).backward()
    assert ("loss_mask" in losses) == ("model.roi_heads.mask_on=false" not in extra)
    with torch.no_grad():
        (det,) = model.eval()([image])
    assert (det.masks is None) == ("model.roi_heads.mask_on=false" in extra)


@pytest.mark.parametrize("layout", ["c4", "dc5"])
def test_single_level_layouts(layout):
    cfg = load_config(f"maskrcnn_resnet50_{layout}", [
        "model.backbone.name=resnet18", "model.num_classes=3", "model.transform.min_size=[64]",
        "model.transform.max_size=64", "model.rpn.pre_nms_top_n_test=100", "model.rpn.post_nms_top_n_test=20",
        "model.rpn.pre_nms_top_n_train=200", "model.rpn.post_nms_top_n_train=50",
        "model.roi_heads.box_head_dim=32", "model.roi_heads.batch_size_per_image=32",
    ])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    image, target = shapes_sample()
    losses = model([image], [target])
    assert set(losses) == set(LOSS_NAMES)
    sum(losses.values()).backward()
    with torch.no_grad():
        (det,) = model.eval()([image])
    assert det.masks.shape[1:] == (64, 64)
    if layout == "c4":
        assert any(k.startswith("roi_heads.shared_head.layer4.") for k in model.state_dict())


def test_config_errors_are_clear():
    with pytest.raises(ModelConfigError, match="1 feature level"):
        build_model(load_config(None, ["model.backbone.layout=dc5", "model.backbone.name=resnet18"]).model)
    with pytest.raises(ModelConfigError, match="'res5' needs model.backbone.layout 'c4'"):
        build_model(load_config(None, ["model.roi_heads.box_head=res5"]).model)
    with pytest.raises(ModelConfigError, match="model.roi_heads.mask_head: unknown value 'deep'"):
        build_model(load_config(None, ["model.roi_heads.mask_head=deep"]).model)
    with pytest.raises(ModelConfigError, match=r"mask_positives_per_image: expected 0 \(every foreground RoI\)"):
        build_model(load_config(None, ["model.roi_heads.mask_positives_per_image=-1"]).model)


def test_mask_positives_per_image_caps_the_mask_head_batch():
    # With the cap, the mask head sees at most that many foreground RoIs per image, a
    # subset of the box branch's foreground with their own labels and matched masks.
    model = tiny_model("model.roi_heads.mask_positives_per_image=1").train()
    image, target = shapes_sample()
    seen: list[int] = []
    model.roi_heads.mask_head.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape[0]))
    samples: list = []
    original = model.roi_heads.mask_rois
    model.roi_heads.mask_rois = lambda s: (samples.append((s, original(s))), samples[-1][1])[1]
    losses = model([image, image.flip(-1)], [target, Targets(target.boxes, target.labels, target.masks.flip(-1))])
    assert torch.isfinite(losses["loss_mask"])
    assert seen == [sum(min(1, full.num_foreground) for full, _ in samples)]
    for full, capped in samples:
        assert full.num_foreground >= 2 and capped.num_foreground == 1  # the gt boxes at least
        rows = [int(torch.nonzero((full.boxes == box).all(dim=1))[0]) for box in capped.foreground_boxes]
        assert all(r < full.num_foreground for r in rows)
        assert torch.equal(capped.foreground_labels, full.labels[rows])
        assert torch.equal(capped.foreground_matched_gt, full.matched_gt[rows])
    uncapped = tiny_model().roi_heads
    assert uncapped.mask_positives_per_image == 0 and uncapped.mask_rois(samples[0][0]) is samples[0][0]
