from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.coco import CocoDataset, DatasetError, make_coco
from maskrcnn.evaluation.coco_metrics import coco_evaluate, dsb_score_from_coco
from maskrcnn.evaluation.dsb_score import dsb_image_score, dsb_score
from maskrcnn.evaluation.model_eval import evaluate_model
from maskrcnn.evaluation.prediction_files import evaluate_files
from maskrcnn.evaluation.results import detections_to_coco_results
from maskrcnn.ops.masks import mask_to_rle
from maskrcnn.structures import Detections


def _square(height: int, width: int, y0: int, x0: int, side: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0 : y0 + side, x0 : x0 + side] = 1
    return mask


# Ground truth: two 40x40 images; image 1 has a 12-px square (category 5) and a 16-px
# square (category 9); image 2 has one 10-px square (category 5).
GT_SQUARES = {1: [(5, 2, 3, 12), (9, 20, 20, 16)], 2: [(5, 5, 25, 10)]}


def _gt_dict() -> dict:
    images = [{"id": i, "file_name": f"{i}.png", "height": 40, "width": 40} for i in GT_SQUARES]
    annotations = []
    for image_id, squares in GT_SQUARES.items():
        for category_id, y0, x0, side in squares:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                "segmentation": mask_to_rle(_square(40, 40, y0, x0, side)),
                "bbox": [x0, y0, side, side], "area": side * side, "iscrowd": 0,
            })
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}]}


def _perfect_detections(shift: int = 0) -> tuple[list[Detections], list[dict]]:
    """Detections equal to the ground truth, moved `shift` pixels right; labels 1 (cat 5), 2 (cat 9)."""
    detections, infos = [], []
    for image_id, squares in GT_SQUARES.items():
        boxes, masks, labels = [], [], []
        for category_id, y0, x0, side in squares:
            boxes.append([x0 + shift, y0, x0 + shift + side, y0 + side])
            masks.append(_square(40, 40, y0, x0 + shift, side).astype(np.float32) * 0.9)
            labels.append(1 if category_id == 5 else 2)
        detections.append(Detections(
            boxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.linspace(0.9, 0.8, len(boxes)),
            labels=torch.tensor(labels), masks=torch.from_numpy(np.stack(masks)),
        ))
        infos.append({"image_id": image_id, "height": 40, "width": 40})
    return detections, infos


LABEL_TO_CATEGORY = {1: 5, 2: 9}


def test_detections_to_coco_results_by_hand():
    det = Detections(boxes=torch.tensor([[2.0, 3.0, 7.0, 11.0]]), scores=torch.tensor([0.75]),
                     labels=torch.tensor([2]), masks=torch.from_numpy(_square(12, 10, 3, 2, 5) * 0.6)[None].float())
    (result,) = detections_to_coco_results([det], [{"image_id": 4}], LABEL_TO_CATEGORY)
    assert result["image_id"] == 4 and result["category_id"] == 9
    assert result["bbox"] == [2.0, 3.0, 5.0, 8.0] and result["score"] == 0.75
    assert isinstance(result["segmentation"]["counts"], str) and result["segmentation"]["size"] == [12, 10]
    # probability 0.6 is above the 0.5 threshold but not above 0.7
    below = detections_to_coco_results([det], [{"image_id": 4}], LABEL_TO_CATEGORY, mask_threshold=0.7)
    from maskrcnn.ops.masks import rle_to_mask
    assert rle_to_mask(result["segmentation"]).sum() == 25 and rle_to_mask(below[0]["segmentation"]).sum() == 0
    empty = Detections(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64))
    assert detections_to_coco_results([empty], [{"image_id": 1}], LABEL_TO_CATEGORY) == []


def test_perfect_predictions_score_one_and_shifted_boxes_less():
    coco_gt = make_coco(_gt_dict())
    perfect = detections_to_coco_results(*_perfect_detections(), LABEL_TO_CATEGORY)
    metrics = coco_evaluate(coco_gt, perfect)
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["bbox_APl"] == -1.0  # no large objects in the ground truth
    shifted = coco_evaluate(coco_gt, detections_to_coco_results(*_perfect_detections(shift=3), LABEL_TO_CATEGORY))
    assert 0.0 < shifted["bbox_AP"] < 0.9 and 0.0 < shifted["segm_AP"] < 0.9
    assert shifted["bbox_AP50"] == pytest.approx(1.0)  # IoU of a 10-px square moved 3 px is 7/13 > 0.5


def test_empty_results_give_zeros():
    metrics = coco_evaluate(make_coco(_gt_dict()), [])
    assert set(metrics) == {f"{t}_{s}" for t in ("bbox", "segm") for s in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    assert all(v == 0.0 for v in metrics.values())


def test_dsb_score_by_hand():
    gt = np.stack([_square(20, 20, 0, 0, 4), _square(20, 20, 10, 10, 5)])
    pred = np.stack([
        _square(20, 20, 0, 0, 4),  # IoU 1 with the first
        _square(20, 20, 10, 10, 4),  # inside the second: IoU 16/25 = 0.64
        _square(20, 20, 15, 0, 3),  # matches nothing
    ])
    # t in 0.50, 0.55, 0.60: TP 2, FP 1, FN 0 -> 2/3; t in 0.65 .. 0.95: TP 1, FP 2, FN 1 -> 1/4
    expected = (3 * 2 / 3 + 7 * 1 / 4) / 10
    assert dsb_image_score(pred, gt) == pytest.approx(expected)
    nothing = np.zeros((0, 20, 20), np.uint8)
    assert dsb_image_score(nothing, nothing) == 1.0
    assert dsb_image_score(nothing, gt) == 0.0
    assert dsb_score([pred, nothing, nothing], [gt, nothing, gt]) == pytest.approx((expected + 1.0 + 0.0) / 3)
    assert dsb_score([torch.from_numpy(gt)], [torch.from_numpy(gt)]) == 1.0


def test_dsb_score_from_coco_rles_equals_the_dense_mask_score():
    """dsb_score_from_coco works on RLEs (pycocotools IoU); it must agree with the dense
    masks' score, overlapping predictions and an image without predictions included."""
    rng = np.random.default_rng(0)
    images, anns, results, dense_gt, dense_pred = [], [], [], [], []
    for i in range(4):
        h, w = 30 + 5 * i, 40
        gt = np.zeros((5, h, w), np.uint8)
        for k in range(5):
            y, x = rng.integers(0, h - 9), rng.integers(0, w - 9)
            gt[k, y : y + rng.integers(3, 9), x : x + rng.integers(3, 9)] = 1
        shifted = [np.roll(gt[k], int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2))) for k in range(5)]
        pred = np.stack(shifted + [(rng.random((h, w)) > 0.95).astype(np.uint8)]) if i < 3 else np.zeros((0, h, w), np.uint8)
        images.append({"id": i + 1, "height": h, "width": w, "file_name": f"{i}.png"})
        for k in range(5):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "segmentation": mask_to_rle(gt[k]),
                         "area": float(gt[k].sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0})
        for k in range(len(pred)):
            results.append({"image_id": i + 1, "category_id": 1, "segmentation": mask_to_rle(pred[k]), "score": 0.9})
        dense_gt.append(gt)
        dense_pred.append(pred)
    coco = make_coco({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]})
    expected = dsb_score(dense_pred, dense_gt)
    assert 0.0 < expected < 1.0
    assert dsb_score_from_coco(coco, results, 0.5) == pytest.approx(expected, abs=1e-12)


def test_dsb_score_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="2 images of predictions but 1"):
        dsb_score([np.zeros((0, 2, 2))] * 2, [np.zeros((0, 2, 2))])
    with pytest.raises(ValueError, match="same height and width"):
        dsb_score([np.ones((1, 2, 2))], [np.ones((1, 3, 2))])


def test_evaluate_files_scores_a_predictions_file(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(_gt_dict()))
    perfect = detections_to_coco_results(*_perfect_detections(), LABEL_TO_CATEGORY)
    low = dict(perfect[0], score=0.1, bbox=[30, 30, 5, 5], segmentation=mask_to_rle(_square(40, 40, 30, 30, 5)))
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(perfect + [low]))
    metrics = evaluate_files(gt_path, pred_path)
    assert metrics["segm_AP"] == pytest.approx(1.0) and metrics["bbox_AP"] == pytest.approx(1.0)
    assert metrics["dsb_score"] == pytest.approx(1.0)  # the low-score extra is below 0.5
    assert metrics["num_predictions"] == 4
    assert evaluate_files(gt_path, pred_path, score_threshold=0.05)["dsb_score"] < 1.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(perfect[0], image_id=77)]))
    with pytest.raises(DatasetError, match=r"bad\.json: result 0: image_id 77 is not in the ground truth"):
        evaluate_files(gt_path, bad)


class _Oracle(torch.nn.Module):
    """Stands in for a model: returns fixed detections in order, checks eval mode and inputs."""

    def __init__(self, detections: list[Detections]) -> None:
        super().__init__()
        self.detections = list(detections)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images, targets=None):
        assert not self.training and targets is None
        assert all(i.dim() == 3 and i.shape[0] == 3 for i in images)
        return [self.detections.pop(0) for _ in images]


def test_evaluate_model_runs_the_model_over_a_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for i in GT_SQUARES:
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "gt.json").write_text(json.dumps(_gt_dict()))
    dataset = CocoDataset(tmp_path / "gt.json", tmp_path / "images", transforms=lambda i, t: (i.flip(-1), t))
    model = _Oracle(_perfect_detections()[0])
    model.train()
    metrics, results = evaluate_model(model, dataset, device="cpu", batch_size=2, progress=False)
    assert metrics["segm_AP"] == pytest.approx(1.0) and metrics["dsb_score"] == pytest.approx(1.0)
    assert len(results) == 3 and metrics["num_images"] == 2
    assert model.training and dataset.transforms is not None  # both restored


def test_evaluate_model_pastes_masks_in_chunks_as_the_model_would(tmp_path):
    """evaluate_model keeps the model's masks M x M and pastes a few at a time; the RLEs
    must equal those of the model's own full-size paste."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_model import tiny_overrides

    from maskrcnn.config import load_config
    from maskrcnn.data.shapes import generate_shapes
    from maskrcnn.model.build import build_model

    torch.manual_seed(0)
    cfg = load_config("shapes_demo", tiny_overrides(detections_per_img=40))
    model = build_model(cfg.model).eval()
    generate_shapes(tmp_path, 3, image_size=48, seed=5)
    dataset = CocoDataset(tmp_path / "annotations.json", tmp_path / "images")
    _, results = evaluate_model(model, dataset, device="cpu", batch_size=2, progress=False)
    expected = []
    with torch.inference_mode():
        for index in range(len(dataset)):
            image, _target, info = dataset[index]
            expected += detections_to_coco_results(model([image]), [info], dataset.label_to_category_id)
    assert len(results) == len(expected) > 40  # more than one chunk of 32 in some image
    assert [r["segmentation"] for r in results] == [r["segmentation"] for r in expected]
    assert [r["bbox"] for r in results] == [r["bbox"] for r in expected]
