"""index.html: the report's front page, section by section (each a function returning HTML)."""

from __future__ import annotations

from typing import Any

from maskrcnn.config import ReportConfig
from maskrcnn.report.coco_curves import SUMMARY_NAMES, CocoCurves
from maskrcnn.report.error_kinds import ERROR_KINDS, ERROR_NAMES, ErrorBreakdown
from maskrcnn.report.html import Html, esc, image, link, number, page, table
from maskrcnn.report.image_pages import RankedImage, gallery_cards, gallery_name
from maskrcnn.report.inputs import ImageRecord, ReportInputs
from maskrcnn.report.plots import ERROR_COLORS
from maskrcnn.report.thresholds import ThresholdRow

IOU_TYPE_NAMES = {"bbox": "boxes (bbox)", "segm": "masks (segm)"}


def _metrics_section(curves: dict[str, CocoCurves], metrics: dict[str, Any]) -> list[str]:
    rows = [[IOU_TYPE_NAMES[t], *(number(c.summary[name]) for name in SUMMARY_NAMES)] for t, c in curves.items()]
    body = ['<h2 id="metrics">Metrics</h2>', table(["", *SUMMARY_NAMES], rows)]
    body.append('<p class="note">COCO AP (pycocotools): AP averaged over IoU 0.50:0.05:0.95; AP50, AP75 at one IoU; '
                "APs/m/l for small (&lt; 32&sup2; px), medium and large objects; '-' where the ground truth has "
                "no object of that size.</p>")
    if isinstance(metrics.get("dsb_score"), (int, float)):
        threshold = metrics.get("dsb_score_threshold")
        note = f" (masks scoring &gt;= {threshold:g})" if isinstance(threshold, (int, float)) else ""
        body.append(f"<p>Data Science Bowl score{note}: <b>{metrics['dsb_score']:.3f}</b></p>")
    return body


def _class_section(inputs: ReportInputs, records: list[ImageRecord], curves: dict[str, CocoCurves],
                   score_threshold: float) -> list[str]:
    gt_count: dict[int, int] = {}
    det_count: dict[int, int] = {}
    det_above: dict[int, int] = {}
    for r in records:
        for a in r.gt:
            gt_count[a["category_id"]] = gt_count.get(a["category_id"], 0) + 1
        for d in r.detections:
            det_count[d["category_id"]] = det_count.get(d["category_id"], 0) + 1
            if d["score"] >= score_threshold:
                det_above[d["category_id"]] = det_above.get(d["category_id"], 0) + 1
    headers: list[object] = ["class", "id", "objects", "detections", f"detections >= {score_threshold:g}"]
    for t in curves:
        headers += [f"{t} AP", f"{t} AP50"]
    rows = []
    for category_id, name in inputs.class_names.items():
        row: list[object] = [name, category_id, number(gt_count.get(category_id, 0)),
                             number(det_count.get(category_id, 0)), number(det_above.get(category_id, 0))]
        for c in curves.values():
            row += [number(c.class_ap.get(category_id)), number(c.class_ap50.get(category_id))]
        rows.append(row)
    return ['<h2 id="classes">Per class</h2>', table(headers, rows),
            '<p class="note">objects: ground-truth instances (crowd regions left out); detections: at most '
            "100 per image, any score. '-': no ground truth of that class.</p>"]


def _curves_section(curves: dict[str, CocoCurves], charts: dict[str, dict[str, str]]) -> list[str]:
    images = "".join(image(charts[t]["pr"], f"precision-recall curves, {t}", css_class="chart", lazy=False)
                     for t in curves)
    return ['<h2 id="curves">Precision-recall curves</h2>',
            '<p class="note">Mean over classes of precision at each recall, one curve per IoU threshold; the '
            "area under a curve is the AP at that IoU (the AP column of the metrics table is their mean).</p>",
            f'<div class="flex">{images}</div>']


def _errors_section(breakdowns: dict[str, ErrorBreakdown], charts: dict[str, dict[str, str]], settings: ReportConfig,
                    primary: str) -> list[str]:
    tf, tb = settings.error_iou, settings.background_iou
    definitions = {
        "cls": f"IoU &gt;= {tf:g} with an object of another class",
        "loc": f"right class, {tb:g} &lt;= IoU &lt; {tf:g}",
        "both": f"wrong class and {tb:g} &lt; IoU &lt; {tf:g}",
        "dupe": f"right class, IoU &gt;= {tf:g}, object already matched by a higher score",
        "bkg": f"IoU &lt;= {tb:g} with every object",
        "miss": "object that no detection matched, and no cls/loc error points at",
    }
    body = ['<h2 id="errors">Error breakdown</h2>',
            f'<p class="note">In the manner of TIDE (Bolya et al., ECCV 2020), at IoU {tf:g}: every false positive '
            "and missed object gets one kind; dAP is what AP at that IoU would gain if that kind alone were fixed "
            "(cls/loc errors become true positives, duplicates, background and both are removed, missed objects "
            "leave the ground truth), each from the same baseline. Every detection counts, at any score.</p>"]
    for t in sorted(breakdowns, key=lambda t: t != primary):
        b = breakdowns[t]
        rows = [[Html(f'<span class="swatch" style="background:{ERROR_COLORS[k]}"></span>{esc(k)}'),
                 ERROR_NAMES[k], Html(definitions[k]), number(b.counts[k]), number(100 * b.delta_ap[k], 2)]
                for k in ERROR_KINDS]
        rows.append(["all FP", "every false positive removed", "", "", number(100 * b.delta_ap["all_fp"], 2)])
        rows.append(["all FN", "every unmatched object removed", "", "", number(100 * b.delta_ap["all_fn"], 2)])
        body += [f"<h3>{esc(IOU_TYPE_NAMES[t])}: AP{int(round(100 * tf))} = {b.ap:.3f}</h3>",
                 '<div class="flex">',
                 table(["kind", "error", "when", "count", "dAP x 100"], rows, name_columns=3),
                 image(charts[t]["errors"], f"error breakdown, {t}", css_class="chart", lazy=False),
                 "</div>"]
    return body


def _threshold_section(rows: list[ThresholdRow], primary: str, tf: float) -> list[str]:
    cells, classes = [], []
    for r in rows:
        best = [name for name, flag in (("F1", r.best_f1), ("DSB", r.best_dsb)) if flag]
        cells.append([f"{r.threshold:g}", number(r.detections), number(r.true_positives), number(r.false_positives),
                      number(r.false_negatives), number(r.precision), number(r.recall), number(r.f1),
                      number(r.dsb_score), "best " + " and ".join(best) if best else ""])
        classes.append("best" if best else "")
    return ['<h2 id="thresholds">Score threshold</h2>',
            f'<p class="note">What <code>maskrcnn predict --score-threshold T</code> would give: detections scoring '
            f"&gt;= T, matched to objects of their class at {primary} IoU &gt;= {tf:g}. DSB: the Data Science Bowl "
            "score (classes ignored, masks only). The best row by F1 and by DSB is marked.</p>",
            table(["threshold", "detections", "TP", "FP", "FN", "precision", "recall", "F1", "DSB", ""], cells,
                  row_classes=classes)]


def _images_section(shown: list[RankedImage], thumbs: dict[str, tuple[int, int]], ranked_count: int,
                    settings: ReportConfig, score_threshold: float) -> list[str]:
    pages = max(1, -(-len(shown) // max(1, settings.images_per_page)))
    first = shown[: settings.index_thumbnails]
    more = link(gallery_name(1), f"all {len(shown)} in the gallery ({pages} page{'s' if pages > 1 else ''})")
    return ['<h2 id="images">Images with the most errors</h2>',
            f'<p class="note">Errors at score &gt;= {score_threshold:g}: false positives + missed objects. Left: the '
            "ground truth; right: predictions vs ground truth (green matched, red missed, magenta false positive). "
            f"{ranked_count} images ranked; {more}.</p>",
            gallery_cards(first, thumbs, prefix="") if first else "<p>no images</p>"]


def index_page(
    *, inputs: ReportInputs, records: list[ImageRecord], curves: dict[str, CocoCurves],
    breakdowns: dict[str, ErrorBreakdown], thresholds: list[ThresholdRow], charts: dict[str, dict[str, str]],
    shown: list[RankedImage], thumbs: dict[str, tuple[int, int]], ranked_count: int, score_threshold: float,
    settings: ReportConfig, source: str, primary: str,
) -> str:
    num_objects = sum(len(r.gt) for r in records)
    num_dets = sum(len(r.detections) for r in records)
    intro = (f"<p>{len(records):,} images, {num_objects:,} objects, {num_dets:,} detections"
             f"{' from ' + str(esc(source)) if source else ''}.</p>")
    nav = [("#metrics", "metrics"), ("#classes", "per class"), ("#curves", "PR curves"), ("#errors", "errors"),
           ("#thresholds", "score threshold"), ("#images", "images")]
    body: list[str] = [intro]
    body += _metrics_section(curves, inputs.metrics)
    body += _class_section(inputs, records, curves, score_threshold)
    body += _curves_section(curves, charts)
    body += _errors_section(breakdowns, charts, settings, primary)
    body += _threshold_section(thresholds, primary, settings.error_iou)
    body += _images_section(shown, thumbs, ranked_count, settings, score_threshold)
    return page("Evaluation report", body, nav=nav)
