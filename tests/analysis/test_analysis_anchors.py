"""analyze anchors: mode-bin statistics, IoU k-means, and anchor coverage on hand-made boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskrcnn.analysis.anchor_stats import (
    analyze_anchors,
    histogram_stats,
    kmeans_iou,
    suggest_anchors,
)
from maskrcnn.config import load_config

TINY = [
    "model.num_classes=3", "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.fpn_channels=16", "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.transform.min_size=[64]", "model.transform.max_size=64",
    "model.anchors.sizes=[[16],[32],[64],[128],[256]]", "model.anchors.aspect_ratios=[[1.0],[1.0],[1.0],[1.0],[1.0]]",
]  # fmt: skip


def write_coco(path: Path, boxes: list[list[float]], extra: list[dict] | None = None) -> Path:
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for i, b in enumerate(boxes)
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "annotations": annotations + (extra or []),
        "categories": [{"id": 1, "name": "thing"}],
    }
    path.write_text(json.dumps(data))
    return path


def test_histogram_mode_bin_by_hand() -> None:
    stats = histogram_stats(np.array([1.0, 1.0, 1.0, 2.0, 10.0]), bin_counts=(10, 20))
    for s in stats:  # first bin [1, 1.9) or [1, 1.45) holds the three ones
        assert (s["count"], s["mean"], s["variance"], s["share"], s["low"]) == (3, 1.0, 0.0, 0.6, 1.0)
    assert stats[0]["high"] == pytest.approx(1.9)
    last = histogram_stats(np.array([0.0, 10.0, 10.0]), bin_counts=(10,))[0]
    assert (last["count"], last["mean"], last["low"], last["high"]) == (2, 10.0, 9.0, 10.0)  # closed last bin
    assert histogram_stats(np.array([]), bin_counts=(10,))[0]["count"] == 0


def test_kmeans_iou_finds_two_clear_clusters() -> None:
    wh = np.array([[10.0, 10.0]] * 5 + [[100.0, 50.0]] * 5 + [[11.0, 9.0]])
    centroids, assignment = kmeans_iou(wh, 2, seed=3)
    np.testing.assert_allclose(centroids, [[10.0 + 1 / 6, 10.0 - 1 / 6], [100.0, 50.0]])
    assert assignment.tolist() == [0] * 5 + [1] * 5 + [0]


def test_suggest_anchors_groups_sizes_and_ratios() -> None:
    suggestion = suggest_anchors(np.array([[10.0, 10.0], [100.0, 50.0], [40.0, 40.0]]), 3, 1)
    assert suggestion["sizes"] == [[10.0], [40.0], [70.7]]
    assert suggestion["aspect_ratios"] == [0.79]  # (0.5 * 1 * 1) ** (1/3)


def test_coverage_and_boxes_not_reached(tmp_path: Path) -> None:
    crowd = {"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}
    empty = {"id": 11, "image_id": 1, "category_id": 1, "bbox": [3, 3, 0, 4], "iscrowd": 0}
    # a 16x16 box equal to a P2 anchor, a 32x32 box equal to a P3 anchor, and a 1x1 box
    path = write_coco(tmp_path / "a.json", [[0, 0, 16, 16], [0, 0, 32, 32], [30, 30, 1, 1]], [crowd, empty])
    result, png = analyze_anchors(path, load_config(None, TINY).model, clusters=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (result["boxes"], result["left_out_annotations"]) == (3, 2)
    coverage = result["coverage"]
    shares = {lv["level"]: (lv["share_iou_0.5"], lv["share_iou_0.7"]) for lv in coverage["levels"]}
    assert shares["p2"] == pytest.approx((1 / 3, 1 / 3)) and shares["p3"] == pytest.approx((1 / 3, 1 / 3))
    assert shares["p4"] == (0.0, 0.0)
    assert coverage["all_levels"]["share_iou_0.5"] == pytest.approx(2 / 3)
    (missed,) = coverage["not_reached"]
    assert missed["annotation_id"] == 3 and missed["bbox"] == [30, 30, 1, 1]
    assert missed["best_iou"] == pytest.approx(1 / 256, abs=1e-4) and missed["best_level"] == "p2"
    assert result["area"]["mean"] == pytest.approx((256 + 1024 + 1) / 3)
    json.dumps(result)  # JSON-ready


def test_json_without_sizes_needs_images(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}], "annotations": [],
                                "categories": [{"id": 1, "name": "t"}]}))  # fmt: skip
    with pytest.raises(ValueError, match="--images"):
        analyze_anchors(path, load_config(None, TINY).model)
