"""`write_report`: every part of the evaluation report, written into one folder.

    DIR/index.html          metrics, per-class table, PR curves, error breakdown, thresholds, worst images
    DIR/report.json         the same numbers, and the list of files written (so a rerun can tidy up)
    DIR/charts/*.png        PR curves and error-breakdown charts (bbox, segm)
    DIR/gallery-<n>.html    thumbnails of the images with the most errors
    DIR/images/<key>.jpg    | .html: a picture and a page per shown image
    DIR/thumbs/<key>.jpg

The folder must be new, empty, or a previous report (it holds report.json): a report
never writes over files it did not create. Everything is relative links; nothing is
fetched from the internet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskrcnn.config import ReportConfig
from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json
from maskrcnn.report.coco_curves import CocoCurves, coco_curves
from maskrcnn.report.error_kinds import ErrorBreakdown, error_breakdown
from maskrcnn.report.html import write_page
from maskrcnn.report.image_pages import rank_images, write_image_pages
from maskrcnn.report.index_page import index_page
from maskrcnn.report.inputs import ReportInputError, ReportInputs, image_records
from maskrcnn.report.plots import error_breakdown_png, pr_curve_png
from maskrcnn.report.thresholds import ThresholdRow, threshold_table

MANIFEST = "report.json"


@dataclass
class ReportSummary:
    index: Path
    files: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock per stage
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # this process's CPU time per stage
    numbers: dict[str, Any] = field(default_factory=dict)  # what report.json holds


def check_report_folder(out_dir: Path) -> list[str]:
    """The files a previous report wrote here ([] for a new or empty folder)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportInputError(f"--report {out_dir}: exists and is not a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return []
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise ReportInputError(
            f"--report {out_dir}: the folder is not empty and holds no {MANIFEST} (not a maskrcnn report); "
            "give a new or empty folder"
        )
    try:
        previous = json.loads(manifest.read_text())
        return [str(f) for f in previous.get("files", [])]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ReportInputError(f"{manifest}: not a maskrcnn report manifest; give a new or empty folder") from None


def _remove_stale(out_dir: Path, previous: list[str], written: list[Path]) -> None:
    """Delete what the previous report wrote and this one did not (e.g. pages of images no longer shown)."""
    now = {p.resolve() for p in written}
    root = out_dir.resolve()
    for name in previous:
        path = (out_dir / name).resolve()
        if path.is_relative_to(root) and path not in now and path.is_file():
            path.unlink()


def write_report(
    inputs: ReportInputs,
    out_dir: str | Path,
    *,
    score_threshold: float = 0.5,
    settings: ReportConfig | None = None,
    source: str = "",
) -> ReportSummary:
    """Write the report for `inputs` into `out_dir`; `score_threshold` is the one pictures
    and the DSB score use (the threshold table shows the others). `source` says in the page
    what was evaluated (weights or predictions file)."""
    settings = settings or ReportConfig()
    out_dir = Path(out_dir)
    previous = check_report_folder(out_dir)
    # Mark the folder as a report first: if this run stops half-way, a rerun may still use it.
    atomic_write_json(out_dir / MANIFEST, {"complete": False, "files": previous})
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal started, cpu_started
        now, cpu_now = time.perf_counter(), time.process_time()
        seconds[name], cpu_seconds[name] = round(now - started, 3), round(cpu_now - cpu_started, 3)
        started, cpu_started = now, cpu_now

    records = image_records(inputs.coco_gt, inputs.results, settings.max_detections)
    iou_types = inputs.iou_types
    curves: dict[str, CocoCurves] = {t: coco_curves(inputs.coco_gt, inputs.results, t) for t in iou_types}
    lap("coco_eval")
    breakdowns: dict[str, ErrorBreakdown] = {
        t: error_breakdown(inputs.coco_gt, records, t, foreground_iou=settings.error_iou,
                           background_iou=settings.background_iou)
        for t in iou_types
    }
    lap("error_breakdown")
    primary = "segm" if "segm" in iou_types else "bbox"
    thresholds: list[ThresholdRow] = threshold_table(
        breakdowns[primary].outcomes, settings.score_thresholds, with_dsb=primary == "segm"
    )
    lap("threshold_table")

    written: list[Path] = []
    charts: dict[str, dict[str, str]] = {}
    for t in iou_types:
        kind = "boxes" if t == "bbox" else "masks"
        pr_path, err_path = out_dir / "charts" / f"pr_{t}.png", out_dir / "charts" / f"errors_{t}.png"
        atomic_write_bytes(pr_path, pr_curve_png(curves[t], f"{kind} ({t}): precision-recall, 100 detections/image"))
        atomic_write_bytes(err_path, error_breakdown_png(breakdowns[t], f"{kind} ({t}) at IoU {settings.error_iou:g}"))
        charts[t] = {"pr": f"charts/{pr_path.name}", "errors": f"charts/{err_path.name}"}
        written += [pr_path, err_path]
    lap("charts")

    names = inputs.class_names
    class_names = [""] * (max(names, default=0) + 1)
    for category_id, name in names.items():
        class_names[category_id] = name
    ranked = rank_images(records, breakdowns[primary].outcomes, score_threshold)
    shown, thumbs, pages = write_image_pages(
        out_dir, inputs.coco_gt, ranked, inputs.images_dir, class_names, settings=settings,
        score_threshold=score_threshold, use_masks=primary == "segm",
    )
    written += pages
    lap("image_pages")

    numbers = _numbers(inputs, records, curves, breakdowns, thresholds, ranked, score_threshold, settings)
    index_path = out_dir / "index.html"
    write_page(index_path, index_page(
        inputs=inputs, records=records, curves=curves, breakdowns=breakdowns, thresholds=thresholds,
        charts=charts, shown=shown, thumbs=thumbs, ranked_count=len(ranked), score_threshold=score_threshold,
        settings=settings, source=source, primary=primary,
    ))
    written.append(index_path)
    lap("index")
    manifest = out_dir / MANIFEST
    files = sorted(str(p.relative_to(out_dir)) for p in written) + [MANIFEST]
    atomic_write_json(manifest, {**numbers, "seconds": seconds, "cpu_seconds": cpu_seconds, "complete": True,
                                 "files": files})
    written.append(manifest)
    _remove_stale(out_dir, previous, written)
    return ReportSummary(index=index_path, files=written, seconds=seconds, cpu_seconds=cpu_seconds, numbers=numbers)


def _numbers(
    inputs: ReportInputs, records: list[Any], curves: dict[str, CocoCurves], breakdowns: dict[str, ErrorBreakdown],
    thresholds: list[ThresholdRow], ranked: list[Any], score_threshold: float, settings: ReportConfig,
) -> dict[str, Any]:
    return {
        "num_images": len(records),
        "num_objects": sum(len(r.gt) for r in records),
        "num_detections": sum(len(r.detections) for r in records),
        "score_threshold": score_threshold,
        "metrics": {f"{t}_{k}": v for t, c in curves.items() for k, v in c.summary.items()}
        | {k: v for k, v in inputs.metrics.items() if k.startswith("dsb_score")},
        "per_class": {
            str(c): {t: {"AP": curves[t].class_ap[c], "AP50": curves[t].class_ap50[c]} for t in curves}
            for c in sorted(inputs.class_names)
        },
        "pr_area_under": {t: dict(zip((f"{x:.2f}" for x in c.iou_thresholds), map(float, c.area_under)))
                          for t, c in curves.items()},
        "errors": {t: b.to_json() for t, b in breakdowns.items()},
        "error_settings": {"foreground_iou": settings.error_iou, "background_iou": settings.background_iou,
                           "max_detections": settings.max_detections},
        "thresholds": [row.to_json() for row in thresholds],
        "images_by_errors": [
            {"image_id": r.record.image_id, "file_name": r.record.file_name, "false_positives": r.false_positives,
             "missed": r.missed} for r in ranked
        ],
    }
