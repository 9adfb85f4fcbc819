"""Why AP is what it is: a TIDE-style error breakdown (Bolya et al., ECCV 2020).

Detections are first matched as COCO does at IoU t_f (0.5): highest score first, each
takes the unmatched ground-truth object of its class with the highest IoU >= t_f. A
detection inside a crowd region of its class (overlap >= t_f) that matched nothing is
ignored. Every other unmatched detection is a false positive of the first kind that fits
(IoU_same: its highest IoU with an object of its class; IoU_other: with an object of
another class; t_b = 0.1):

  loc    localisation: IoU_same in [t_b, t_f)          (right class, poor box/mask)
  cls    classification: IoU_other >= t_f              (right place, wrong class)
  dupe   duplicate: IoU_same >= t_f with an object already matched by a higher score
  bkg    background: IoU with every object <= t_b      (nothing there)
  both   classification and localisation: none of the above (IoU_other in (t_b, t_f))

A ground-truth object no detection matched is `miss`ed when no cls or loc error points at
it (those errors already account for it).

What fixing each kind would add to AP (dAP) is measured as TIDE does, one kind at a
time, each from the same baseline: a cls or loc error becomes a true positive of its
object (only the highest-scoring one per object, and only if the object is unmatched;
the others are removed), dupe, bkg and both errors are removed, and a missed object is
removed from the ground truth. Two more oracles bound the rest: every false positive
removed, every unmatched object removed. dAP is clamped at 0 (101-point sampling can
make a fix look a hair negative), as TIDE does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskrcnn.report.ap import ClassHits, mean_average_precision
from maskrcnn.report.inputs import ImageRecord, iou_matrices

ERROR_KINDS: tuple[str, ...] = ("cls", "loc", "both", "dupe", "bkg", "miss")
ERROR_NAMES: dict[str, str] = {
    "cls": "classification (wrong class)",
    "loc": "localisation (right class, poor overlap)",
    "both": "classification and localisation",
    "dupe": "duplicate detection",
    "bkg": "background (nothing there)",
    "miss": "missed object",
}
CORRECT = "tp"
IGNORED = "ignored"


@dataclass
class ImageOutcome:
    """Per-detection kind (tp, ignored or an error kind), the object a cls/loc error points
    at (-1 otherwise), which object each detection matched, and per-object status."""

    image_id: int
    det_kinds: list[str]
    det_targets: list[int]  # object index for cls/loc errors, else -1
    det_matched_gt: list[int]  # object index for tp, else -1
    det_classes: list[int]
    det_scores: list[float]
    gt_classes: list[int]
    gt_matched: list[bool]
    gt_missed: list[bool]  # unmatched and not the target of any cls/loc error
    iou: np.ndarray = field(repr=False)  # (D, G) IoU of every detection with every object, any class

    def error_count(self, min_score: float = 0.0) -> dict[str, int]:
        counts = {kind: 0 for kind in ERROR_KINDS}
        for kind, score in zip(self.det_kinds, self.det_scores):
            if kind in counts and score >= min_score:
                counts[kind] += 1
        counts["miss"] = int(sum(self.gt_missed))
        return counts


def classify_image(
    coco_gt: Any, record: ImageRecord, iou_type: str, *, foreground_iou: float, background_iou: float
) -> ImageOutcome:
    """Match one image's detections and name every false positive and missed object."""
    ious = iou_matrices(coco_gt, record, iou_type)
    det_classes, gt_classes = record.det_classes, record.gt_classes  # (D,), (G,)
    num_det, num_gt = len(det_classes), len(gt_classes)
    same_class = det_classes[:, None] == gt_classes[None, :]  # (D, G)
    iou_same = np.where(same_class, ious.gt, 0.0)  # (D, G)
    iou_other = np.where(same_class, 0.0, ious.gt)  # (D, G)

    matched_gt = np.full(num_det, -1, dtype=np.int64)
    gt_taken = np.zeros(num_gt, dtype=bool)
    for d in range(num_det):  # detections are sorted by score, highest first
        if num_gt == 0:
            break
        candidates = np.where(gt_taken, -1.0, iou_same[d])
        g = int(np.argmax(candidates))
        if candidates[g] >= foreground_iou:
            matched_gt[d], gt_taken[g] = g, True

    kinds: list[str] = []
    targets: list[int] = []
    for d in range(num_det):
        target = -1
        if matched_gt[d] >= 0:
            kind = CORRECT
        elif ious.crowd.shape[1] and np.any((ious.crowd[d] >= foreground_iou) & (ious.crowd_classes == det_classes[d])):
            kind = IGNORED
        elif num_gt == 0:
            kind = "bkg"
        else:
            best_same, best_other = int(np.argmax(iou_same[d])), int(np.argmax(iou_other[d]))
            used_same = np.where(gt_taken, iou_same[d], 0.0)
            if background_iou <= iou_same[d, best_same] < foreground_iou:
                kind, target = "loc", best_same
            elif iou_other[d, best_other] >= foreground_iou:
                kind, target = "cls", best_other
            elif used_same.max() >= foreground_iou:
                kind = "dupe"
            elif ious.gt[d].max() <= background_iou:
                kind = "bkg"
            else:
                kind = "both"
        kinds.append(kind)
        targets.append(target)
    pointed_at = {t for t in targets if t >= 0}
    return ImageOutcome(
        image_id=record.image_id,
        det_kinds=kinds,
        det_targets=targets,
        det_matched_gt=matched_gt.tolist(),
        det_classes=det_classes.tolist(),
        det_scores=record.det_scores.tolist(),
        gt_classes=gt_classes.tolist(),
        gt_matched=gt_taken.tolist(),
        gt_missed=[not gt_taken[g] and g not in pointed_at for g in range(num_gt)],
        iou=ious.gt,
    )


# ---------------------------------------------------------------------------------------
# Oracles: AP with one kind of error fixed
# ---------------------------------------------------------------------------------------


def _fixable_winners(outcomes: list[ImageOutcome]) -> set[tuple[int, int]]:
    """(image, detection) of the highest-scoring cls/loc error per unmatched object: the one
    that a fix turns into a true positive (TIDE's BestGTMatch)."""
    winners: set[tuple[int, int]] = set()
    for i, out in enumerate(outcomes):
        best: dict[int, int] = {}
        for d, (kind, target) in enumerate(zip(out.det_kinds, out.det_targets)):
            if kind in ("cls", "loc") and not out.gt_matched[target]:
                if target not in best or out.det_scores[d] > out.det_scores[best[target]]:
                    best[target] = d
        winners.update((i, d) for d in best.values())
    return winners


def hits_with_fix(outcomes: list[ImageOutcome], class_ids: list[int], fix: str | None) -> dict[int, ClassHits]:
    """Per-class scored hits after applying oracle `fix`: None (baseline), an ERROR_KINDS
    entry, "all_fp" (every false positive removed) or "all_fn" (every unmatched object removed)."""
    per_class = {c: ClassHits() for c in class_ids}
    winners = _fixable_winners(outcomes) if fix in ("cls", "loc") else set()
    for i, out in enumerate(outcomes):
        for g, cls in enumerate(out.gt_classes):
            removed = (fix == "miss" and out.gt_missed[g]) or (fix == "all_fn" and not out.gt_matched[g])
            if not removed:
                per_class.setdefault(cls, ClassHits()).num_gt += 1
        for d, kind in enumerate(out.det_kinds):
            cls, score = out.det_classes[d], out.det_scores[d]
            if kind == IGNORED:
                continue
            if kind == CORRECT:
                per_class.setdefault(cls, ClassHits()).add(score, True)
            elif fix == "all_fp" or kind == fix:
                if (i, d) in winners:  # becomes a true positive of its object's class
                    per_class.setdefault(out.gt_classes[out.det_targets[d]], ClassHits()).add(score, True)
            else:
                per_class.setdefault(cls, ClassHits()).add(score, False)
    return per_class


@dataclass
class ErrorBreakdown:
    iou_type: str
    ap: float  # baseline AP at foreground_iou, over classes with ground truth
    counts: dict[str, int]
    delta_ap: dict[str, float]  # per ERROR_KINDS entry and "all_fp", "all_fn"
    outcomes: list[ImageOutcome] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"iou_type": self.iou_type, "ap": self.ap, "counts": self.counts, "delta_ap": self.delta_ap}


def error_breakdown(
    coco_gt: Any,
    records: list[ImageRecord],
    iou_type: str,
    *,
    foreground_iou: float,
    background_iou: float,
) -> ErrorBreakdown:
    outcomes = [
        classify_image(coco_gt, r, iou_type, foreground_iou=foreground_iou, background_iou=background_iou)
        for r in records
    ]
    class_ids = sorted(int(c) for c in coco_gt.getCatIds())
    baseline = mean_average_precision(hits_with_fix(outcomes, class_ids, None))
    counts = {kind: 0 for kind in ERROR_KINDS}
    for out in outcomes:
        for kind, n in out.error_count().items():
            counts[kind] += n
    delta = {
        fix: max(0.0, mean_average_precision(hits_with_fix(outcomes, class_ids, fix)) - baseline)
        for fix in (*ERROR_KINDS, "all_fp", "all_fn")
    }
    return ErrorBreakdown(iou_type=iou_type, ap=baseline, counts=counts, delta_ap=delta, outcomes=outcomes)
