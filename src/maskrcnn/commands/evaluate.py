"""The `maskrcnn evaluate` job: COCO box/mask AP and the 2018 Data Science Bowl score.

Two ways in:
  * a checkpoint (--weights) run over a COCO data set (--annotations, --images);
  * a COCO results file (--predictions, e.g. from `maskrcnn predict`) against --annotations.
The metrics come from maskrcnn.evaluation (pycocotools); this module loads things,
maps model labels to the data set's category ids, prints a table and writes JSON.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from maskrcnn.config import EvaluationConfig
from maskrcnn.data.coco import CocoDataset
from maskrcnn.errors import UserError
from maskrcnn.evaluation.coco_metrics import max_dets_key
from maskrcnn.evaluation.model_eval import evaluate_model
from maskrcnn.evaluation.prediction_files import evaluate_files
from maskrcnn.inference.predictor import Predictor
from maskrcnn.io_utils import atomic_write_json, prepare_output_file
from maskrcnn.report.build import check_report_folder
from maskrcnn.report.evaluate_hook import write_evaluation_report

AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class EvaluateInputError(UserError):
    """Options of `maskrcnn evaluate` that do not go together, or an unusable input file."""


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """A small fixed-width table of COCO AP (rows bbox, segm at maxDets 100, then the same at
    the model's larger cap when there is one) plus the DSB score if present."""
    max_dets = int(metrics["max_dets"]) if isinstance(metrics.get("max_dets"), (int, float)) else None
    rows = [(kind, kind, lambda key: key) for kind in ("bbox", "segm")]
    if max_dets is not None:
        rows += [(kind, f"{kind} @maxDets={max_dets}", lambda key: max_dets_key(key, max_dets)) for kind in ("bbox", "segm")]
    width = max(len(label) for _, label, _ in rows) + 1
    lines = [f"{'':{width}}" + "".join(f"{c:>8}" for c in AP_COLUMNS)]
    for kind, label, key_of in rows:
        if not any(key_of(f"{kind}_{c}") in metrics for c in AP_COLUMNS):
            continue
        cells = []
        for column in AP_COLUMNS:
            value = metrics.get(key_of(f"{kind}_{column}"))
            valid = isinstance(value, (int, float)) and not math.isnan(value) and value >= 0
            cells.append(f"{value:>8.3f}" if valid else f"{'-':>8}")
        lines.append(f"{label:{width}}" + "".join(cells))
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


def check_category_ids(model_ids: set[int], gt_ids: set[int], *, coco_model: bool, weights: Any, annotations: Any) -> None:
    """The model's category ids must be the ground truth's (a 91-class COCO model may be
    scored on a subset of COCO's categories); otherwise AP would score unrelated classes."""
    missing = sorted(gt_ids - model_ids)
    extra = sorted(model_ids - gt_ids)
    if missing or (extra and not coco_model):
        raise EvaluateInputError(
            f"{weights}: the model's category ids {sorted(model_ids)} differ from {annotations}'s "
            f"{sorted(gt_ids)}; evaluate on ground truth with the categories the model was trained on"
        )


def evaluate_checkpoint(
    *,
    annotations: str | Path,
    images: str | Path,
    weights: str | Path,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 1,
    score_threshold: float | None = None,
    max_dets: int | None = None,
    progress: bool = True,
    test_augment: str | None = None,
    mask_threshold: float | None = None,
    mask_paste: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a checkpoint over a COCO data set: (metrics, COCO results).

    Model labels become category ids by the checkpoint's own mapping when it has one
    (trained on another JSON's categories), by label == category id for 91-class COCO
    weights without one (torchvision's), else by the data set's mapping; the model's
    category ids must then be the data set's. `score_threshold` (DSB score) defaults to
    the checkpoint config's evaluation.dsb_score_threshold; `max_dets` to the model's
    detections_per_img; `mask_threshold` to the model's model.roi_heads.mask_threshold.
    The model is the Predictor's prepared one, the same `maskrcnn predict` runs (not the
    plain model that training evaluates).
    """
    predictor = Predictor.from_checkpoint(
        weights, config=config, device=device, test_augment=test_augment, mask_paste=mask_paste,
        mask_threshold=mask_threshold,
    )
    dataset = CocoDataset(annotations, images)
    if len(dataset) == 0:
        missing = dataset.warnings.get("image file missing", 0)
        first = f" (first: {dataset.missing_images[0]})" if dataset.missing_images else ""
        raise EvaluateInputError(
            f"{annotations}: none of its {missing} images was found under {images}{first}; "
            "--images must be the folder its file_name values are relative to"
            if missing else f"{annotations}: no images to evaluate on"
        )
    num_classes = int(predictor.config.model.num_classes) if predictor.config is not None else None
    coco_model = False
    if predictor.label_to_category_id is not None:
        dataset.label_to_category_id = dict(predictor.label_to_category_id)
    elif num_classes == 91:
        dataset.label_to_category_id = {label: label for label in range(1, 91)}
        coco_model = True
    elif num_classes is not None and num_classes != dataset.num_classes:
        raise EvaluateInputError(
            f"{weights}: the model predicts {num_classes - 1} classes but {annotations} has "
            f"{dataset.num_classes - 1} categories, and the checkpoint stores no label_to_category_id"
        )
    check_category_ids(
        set(dataset.label_to_category_id.values()), set(dataset.category_id_to_label),
        coco_model=coco_model, weights=weights, annotations=annotations,
    )
    if score_threshold is None:
        score_threshold = _config_dsb_threshold(predictor.config)
    started = time.perf_counter()
    metrics, results = evaluate_model(
        predictor.detector, dataset, device=predictor.device, batch_size=batch_size, progress=progress,
        dsb_score_threshold=score_threshold, max_dets=max_dets,
    )
    metrics = dict(metrics)
    metrics["eval_time_s"] = round(time.perf_counter() - started, 2)
    return metrics, results


def _config_dsb_threshold(cfg: Any) -> float:
    evaluation = getattr(cfg, "evaluation", None) or EvaluationConfig()
    return float(evaluation.dsb_score_threshold)


def evaluate_predictions_file(
    *,
    annotations: str | Path,
    predictions: str | Path,
    score_threshold: float | None = None,
    max_dets: int | None = None,
) -> dict[str, Any]:
    """Score a COCO results JSON against a ground-truth COCO JSON (image ids matched by
    file_name first when the results carry it, as `maskrcnn predict` writes them)."""
    if score_threshold is None:
        score_threshold = _config_dsb_threshold(None)
    return dict(evaluate_files(annotations, predictions, score_threshold=score_threshold, max_dets=max_dets))


def evaluate_metrics(
    *,
    annotations: str | Path,
    weights: str | Path | None = None,
    images: str | Path | None = None,
    predictions: str | Path | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 1,
    score_threshold: float | None = None,
    max_dets: int | None = None,
    progress: bool = False,
    results_out: list[dict[str, Any]] | None = None,
    test_augment: str | None = None,
    mask_threshold: float | None = None,
    mask_paste: str | None = None,
) -> dict[str, Any]:
    """Metrics of a checkpoint or a predictions file; the model's COCO results are appended
    to `results_out` when given (the --report needs them).

    `score_threshold`: for the DSB score (None: the config's evaluation.dsb_score_threshold).
    `max_dets`: COCO maxDets reported beside the standard 100 (None: the model's
    detections_per_img, or the most results one image has in a predictions file).
    `test_augment`: overrides the checkpoint's model.test_augment (None: keep it).
    `mask_threshold`, `mask_paste`: override its model.roi_heads ones (None: keep them)."""
    _check_inputs(annotations, weights, images, predictions)
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise EvaluateInputError(f"--dsb-score-threshold: expected a number in [0, 1], got {score_threshold}")
    if max_dets is not None and max_dets < 1:
        raise EvaluateInputError(f"--max-dets: expected a positive integer, got {max_dets}")

    if predictions is not None:
        if mask_threshold is not None:
            raise EvaluateInputError("--mask-threshold needs --weights: a predictions file's masks are already binary")
        if mask_paste is not None:
            raise EvaluateInputError("--mask-paste needs --weights: a predictions file's masks are already pasted")
        return evaluate_predictions_file(
            annotations=annotations, predictions=predictions, score_threshold=score_threshold, max_dets=max_dets
        )
    metrics, results = evaluate_checkpoint(
        annotations=annotations, images=images, weights=weights, config=config, device=device,
        batch_size=batch_size, score_threshold=score_threshold, max_dets=max_dets, progress=progress,
        test_augment=test_augment, mask_threshold=mask_threshold, mask_paste=mask_paste,
    )
    if results_out is not None:
        results_out.extend(results)
    return metrics


def run_evaluate(
    *, json_path: str | Path | None = None, report_dir: str | Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`maskrcnn evaluate`: compute, print the table, write JSON (atomically) when asked,
    and the HTML report (maskrcnn.report) into `report_dir` when given. A --json path or a
    report folder that cannot be written stops before anything is computed."""
    if json_path is not None:
        prepare_output_file(json_path, "metrics JSON (--json)")
    if report_dir is not None:
        check_report_folder(Path(report_dir))  # before the model runs, not after
    results: list[dict[str, Any]] = []
    metrics = evaluate_metrics(**kwargs, results_out=results)
    print(format_metrics_table(metrics))
    if json_path is not None:
        atomic_write_json(json_path, metrics)
        print(f"metrics: {json_path}")
    if report_dir is not None:
        write_evaluation_report(
            report_dir, annotations=kwargs["annotations"], metrics=metrics,
            results=results if kwargs.get("weights") is not None else None, predictions=kwargs.get("predictions"),
            images=kwargs.get("images"), weights=kwargs.get("weights"),
            score_threshold=float(metrics.get("dsb_score_threshold", 0.5)),  # the one the DSB score used
        )
    return metrics
