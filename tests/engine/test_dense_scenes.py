"""Dense scenes (issue 11 item 4): up to 1000 detections per image, COCO maxDets at the
model's cap beside the standard 100, and every sampling/NMS knob a recipe may set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.data.coco import CocoDataset
from maskrcnn.evaluation.model_eval import evaluate_model, model_max_dets
from maskrcnn.model.build import build_model

DENSE_OVERRIDES = [
    "model.transform.min_size=[128]",
    "model.transform.max_size=128",
    "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.backbone.fpn_channels=16",
    "model.roi_heads.box_head_dim=32",
    "model.roi_heads.mask_head_channels=16",
    "model.roi_heads.detections_per_img=1000",
    "model.roi_heads.nms_thresh=0.9",
    "model.rpn.pre_nms_top_n_test=2000",
    "model.rpn.post_nms_top_n_test=2000",
    "model.rpn.nms_thresh=0.9",
    "model.test_augment=none",  # one pass: its cap is what these tests check
]


@pytest.fixture(scope="module")
def dense_model():
    torch.manual_seed(0)
    return build_model(load_config("shapes_demo", DENSE_OVERRIDES).model).eval()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """A tiny model runs fastest on one thread on a shared CPU; the setting is put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_thousand_detections_per_image(dense_model):
    """A random tiny model gives thousands of candidate boxes: the cap, not anything else, decides."""
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        (det,) = dense_model([image])
    assert len(det) == 1000 and det.masks.shape == (1000, 128, 128)
    assert model_max_dets(dense_model) == 1000
    dense_model.roi_heads.detections_per_img = 100
    try:
        with torch.inference_mode():
            (capped,) = dense_model([image])
    finally:
        dense_model.roi_heads.detections_per_img = 1000
    assert len(capped) == 100
    torch.testing.assert_close(capped.scores, det.scores[:100])  # the same best 100, in order


def test_evaluation_uses_the_models_cap_as_max_dets(dense_model, tmp_path, monkeypatch):
    monkeypatch.setattr(dense_model.roi_heads, "detections_per_img", 300)  # above 100, and quicker to score
    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    boxes = [[8 * i + 1, 8 * j + 1, 6, 6] for i in range(15) for j in range(15)]  # 225 small objects
    gt = {
        "images": [{"id": 1, "file_name": "a.png", "height": 128, "width": 128}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 36, "iscrowd": 0,
                         "segmentation": [[b[0], b[1], b[0] + 6, b[1], b[0] + 6, b[1] + 6, b[0], b[1] + 6]]}
                        for k, b in enumerate(boxes)],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    dataset = CocoDataset(tmp_path / "gt.json", tmp_path / "images")
    metrics, results = evaluate_model(dense_model, dataset, device="cpu", progress=False, dsb_score_threshold=0.3)
    assert metrics["max_dets"] == 300 and metrics["num_detections"] == len(results) == 300
    for key in ("bbox_AP", "segm_AP", "bbox_AP@maxDets=300", "segm_AP75@maxDets=300", "segm_APs@maxDets=300"):
        assert key in metrics
    assert metrics["dsb_score_threshold"] == 0.3
    per_category = np.bincount([r["category_id"] for r in results])
    assert per_category.max() > 100  # so maxDets=300 really admits more than the standard figure does


@pytest.mark.parametrize(
    "key, value, attribute",
    [
        ("model.rpn.batch_size_per_image", 512, lambda m: m.rpn.batch_size_per_image),
        ("model.rpn.positive_fraction", 0.25, lambda m: m.rpn.positive_fraction),
        ("model.rpn.nms_thresh", 0.8, lambda m: m.rpn.nms_thresh),
        ("model.rpn.pre_nms_top_n_train", 3000, lambda m: m.rpn.pre_nms_top_n[0]),
        ("model.rpn.pre_nms_top_n_test", 3000, lambda m: m.rpn.pre_nms_top_n[1]),
        ("model.rpn.post_nms_top_n_train", 2500, lambda m: m.rpn.post_nms_top_n[0]),
        ("model.rpn.post_nms_top_n_test", 2500, lambda m: m.rpn.post_nms_top_n[1]),
        ("model.roi_heads.batch_size_per_image", 1024, lambda m: m.roi_heads.batch_size_per_image),
        ("model.roi_heads.positive_fraction", 0.5, lambda m: m.roi_heads.positive_fraction),
        ("model.roi_heads.nms_thresh", 0.6, lambda m: m.roi_heads.nms_thresh),
        ("model.roi_heads.score_thresh", 0.01, lambda m: m.roi_heads.score_thresh),
        ("model.roi_heads.detections_per_img", 800, lambda m: m.roi_heads.detections_per_img),
    ],
)
def test_sampling_and_nms_knobs_reach_the_model(key, value, attribute):
    model = build_model(load_config("shapes_demo", [*DENSE_OVERRIDES, f"{key}={value}"]).model)
    assert attribute(model) == value
