"""The bridge from `maskrcnn evaluate` to the report: load what evaluate scored, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maskrcnn.data.coco import load_coco_gt
from maskrcnn.evaluation.prediction_files import load_prediction_file
from maskrcnn.report.build import write_report
from maskrcnn.report.inputs import ReportInputs


def write_evaluation_report(
    report_dir: str | Path,
    *,
    annotations: str | Path,
    metrics: dict[str, Any],
    results: list[dict[str, Any]] | None = None,
    predictions: str | Path | None = None,
    images: str | Path | None = None,
    weights: str | Path | None = None,
    score_threshold: float = 0.5,
) -> Path:
    """Write the report of one evaluation (model `results`, or a `predictions` file) and
    print where it is; returns the path of index.html."""
    coco_gt, _warnings = load_coco_gt(annotations)
    if results is None:
        if predictions is None:
            raise ValueError("write_evaluation_report: give results or a predictions file")
        results = load_prediction_file(predictions, annotations, coco_gt)
    source = f"weights {weights}" if weights is not None else f"predictions {predictions}" if predictions else ""
    inputs = ReportInputs(
        coco_gt=coco_gt, results=list(results), images_dir=Path(images) if images is not None else None, metrics=metrics
    )
    summary = write_report(inputs, report_dir, score_threshold=score_threshold, source=source)
    total = sum(summary.seconds.values())
    print(f"report: {summary.index} ({len(summary.files)} files, {total:.1f} s)")
    return summary.index
