"""The `maskrcnn evaluate` job: COCO box/mask AP and the 2018 Data Science Bowl score.

Two ways in:
  * a checkpoint (--weights) run over a COCO data set (--annotations, --images);
  * a COCO results file (--predictions, e.g. from `maskrcnn predict`) against --annotations.
The metrics come from maskrcnn.engine.evaluate (pycocotools); this module loads things,
maps model labels to the data set's category ids, prints a table and writes JSON.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class EvaluateInputError(ValueError):
    """Options of `maskrcnn evaluate` that do not go together, or an unusable input file."""


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """A small fixed-width table of COCO AP (rows bbox, segm) plus the DSB score if present."""
    header = f"{'':6}" + "".join(f"{c:>8}" for c in AP_COLUMNS)
    lines = [header]
    for kind in ("bbox", "segm"):
        if not any(f"{kind}_{c}" in metrics for c in AP_COLUMNS):
            continue
        cells = []
        for column in AP_COLUMNS:
            value = metrics.get(f"{kind}_{column}")
            valid = isinstance(value, (int, float)) and not math.isnan(value) and value >= 0
            cells.append(f"{value:>8.3f}" if valid else f"{'-':>8}")
        lines.append(f"{kind:6}" + "".join(cells))
    if "dsb_score" in metrics:
        threshold = metrics.get("dsb_score_threshold")
        note = f" (masks scoring >= {threshold:g})" if isinstance(threshold, (int, float)) else ""
        lines.append(f"Data Science Bowl score{note}: {metrics['dsb_score']:.3f}")
    return "\n".join(lines)


def _check_inputs(annotations: Any, weights: Any, images: Any, predictions: Any) -> None:
    if not Path(annotations).is_file():
        raise FileNotFoundError(2, "annotations file not found", str(annotations))
    if (weights is None) == (predictions is None):
        raise EvaluateInputError("give either --weights (with --images) or --predictions, not both or neither")
    if weights is not None and images is None:
        raise EvaluateInputError("--weights needs --images: the folder the annotations' file_name values are in")
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(2, "images folder not found", str(images))
    for path in (weights, predictions):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(2, "file not found", str(path))


def remap_image_ids_by_file_name(results: list[dict[str, Any]], gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Give results that carry a `file_name` the ground truth's image_id of that file.

    `maskrcnn predict` numbers images by position; matching by file name (full relative
    path, else base name) lets its output be scored against any COCO JSON. Results
    without file_name, or whose file is unknown, keep their image_id.
    """
    by_path = {str(Path(img["file_name"])): img["id"] for img in gt.get("images", []) if "file_name" in img}
    by_name: dict[str, Any] = {}
    for img in gt.get("images", []):
        if "file_name" in img:
            by_name.setdefault(Path(img["file_name"]).name, img["id"])
    remapped = []
    for row in results:
        name = row.get("file_name") if isinstance(row, dict) else None
        if isinstance(row, dict) and isinstance(name, str):
            image_id = by_path.get(str(Path(name)), by_name.get(Path(name).name))
            if image_id is not None:
                row = {**row, "image_id": image_id}
        remapped.append(row)
    return remapped


def evaluate_checkpoint(
    *,
    annotations: str | Path,
    images: str | Path,
    weights: str | Path,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 1,
    score_threshold: float = 0.5,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a checkpoint over a COCO data set: (metrics, COCO results).

    Model labels become category ids by the checkpoint's own mapping when it has one
    (trained on another JSON's categories), by label == category id for 91-class COCO
    weights without one (torchvision's), else by the data set's mapping.
    """
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.evaluate import dsb_score_from_coco, evaluate_model
    from maskrcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(weights, config=config, device=device)
    dataset = CocoDataset(annotations, images)
    num_classes = int(predictor.config.model.num_classes) if predictor.config is not None else None
    if predictor.label_to_category_id is not None:
        dataset.label_to_category_id = dict(predictor.label_to_category_id)
    elif num_classes == 91:
        dataset.label_to_category_id = {label: label for label in range(1, 91)}
    elif num_classes is not None and num_classes != dataset.num_classes:
        raise EvaluateInputError(
            f"{weights}: the model predicts {num_classes - 1} classes but {annotations} has "
            f"{dataset.num_classes - 1} categories, and the checkpoint stores no label_to_category_id"
        )
    started = time.perf_counter()
    metrics, results = evaluate_model(
        predictor.model, dataset, device=predictor.device, batch_size=batch_size, progress=progress
    )
    metrics = dict(metrics)
    if "dsb_score" in metrics:
        metrics["dsb_score"] = float(dsb_score_from_coco(dataset.coco, results, score_threshold))
        metrics["dsb_score_threshold"] = score_threshold
    metrics["eval_time_s"] = round(time.perf_counter() - started, 2)
    return metrics, results


def evaluate_predictions_file(
    *, annotations: str | Path, predictions: str | Path, score_threshold: float = 0.5
) -> dict[str, Any]:
    """Score a COCO results JSON against a ground-truth COCO JSON (image ids matched by
    file_name first when the results carry it, as `maskrcnn predict` writes them)."""
    import tempfile

    from maskrcnn.engine.evaluate import evaluate_files

    try:
        results = json.loads(Path(predictions).read_text())
        gt = json.loads(Path(annotations).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluateInputError(f"{predictions} / {annotations}: not valid JSON ({exc})") from None
    remapped = remap_image_ids_by_file_name(results, gt) if isinstance(results, list) and isinstance(gt, dict) else results
    if remapped == results:
        metrics = evaluate_files(annotations, predictions, score_threshold=score_threshold)
    else:
        with tempfile.TemporaryDirectory(prefix="maskrcnn-eval-") as folder:
            remapped_path = Path(folder) / Path(predictions).name
            remapped_path.write_text(json.dumps(remapped))
            metrics = evaluate_files(annotations, remapped_path, score_threshold=score_threshold)
    metrics = dict(metrics)
    if "dsb_score" in metrics:
        metrics["dsb_score_threshold"] = score_threshold
    return metrics


def evaluate_metrics(
    *,
    annotations: str | Path,
    weights: str | Path | None = None,
    images: str | Path | None = None,
    predictions: str | Path | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 1,
    score_threshold: float = 0.5,
    progress: bool = False,
    results_out: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics of a checkpoint or a predictions file; the model's COCO results are appended
    to `results_out` when given (the --report needs them)."""
    _check_inputs(annotations, weights, images, predictions)
    if predictions is not None:
        return evaluate_predictions_file(
            annotations=annotations, predictions=predictions, score_threshold=score_threshold
        )
    metrics, results = evaluate_checkpoint(
        annotations=annotations, images=images, weights=weights, config=config, device=device,
        batch_size=batch_size, score_threshold=score_threshold, progress=progress,
    )
    if results_out is not None:
        results_out.extend(results)
    return metrics


def run_evaluate(
    *, json_path: str | Path | None = None, report_dir: str | Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`maskrcnn evaluate`: compute, print the table, write JSON (atomically) when asked,
    and the HTML report (maskrcnn.report) into `report_dir` when given."""
    from maskrcnn.io_utils import atomic_write_json

    if report_dir is not None:
        from maskrcnn.report.build import check_report_folder

        check_report_folder(Path(report_dir))  # before the model runs, not after
    results: list[dict[str, Any]] = []
    metrics = evaluate_metrics(**kwargs, results_out=results)
    print(format_metrics_table(metrics))
    if json_path is not None:
        atomic_write_json(json_path, metrics)
        print(f"metrics: {json_path}")
    if report_dir is not None:
        from maskrcnn.report.evaluate_hook import write_evaluation_report

        write_evaluation_report(
            report_dir, annotations=kwargs["annotations"], metrics=metrics,
            results=results if kwargs.get("weights") is not None else None, predictions=kwargs.get("predictions"),
            images=kwargs.get("images"), weights=kwargs.get("weights"),
            score_threshold=float(metrics.get("dsb_score_threshold", 0.5)),  # the one the DSB score used
        )
    return metrics
