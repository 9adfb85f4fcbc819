"""Average precision at one IoU threshold from scored hits, as COCO computes it.

Per class: detections sorted by score (highest first; ties keep their order), cumulative
true and false positives, precision made non-increasing from the right, then read at the
101 recall points 0, 0.01, ..., 1 (zero past the highest recall reached). The mean is over
the classes that have ground truth; a class without ground truth has no AP.

The error breakdown (maskrcnn.report.error_kinds) re-evaluates with errors fixed; it uses these
functions so that every "fixed" AP is computed the same way as the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class ClassHits:
    """One class's detections (score, correct?) and its number of ground-truth objects."""

    scores: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    num_gt: int = 0

    def add(self, score: float, correct: bool) -> None:
        self.scores.append(float(score))
        self.correct.append(bool(correct))


def average_precision(scores: Iterable[float], correct: Iterable[bool], num_gt: int) -> float | None:
    """COCO's 101-point interpolated AP of one class; None when the class has no ground truth."""
    if num_gt <= 0:
        return None
    scores_np = np.asarray(list(scores), dtype=np.float64)  # (D,)
    correct_np = np.asarray(list(correct), dtype=bool)  # (D,)
    if scores_np.size == 0:
        return 0.0
    order = np.argsort(-scores_np, kind="mergesort")
    hits = correct_np[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # non-increasing from the right
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(per_class: dict[int, ClassHits]) -> float:
    """Mean AP over the classes with ground truth (0 when none has any)."""
    values = [average_precision(h.scores, h.correct, h.num_gt) for h in per_class.values()]
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else 0.0
