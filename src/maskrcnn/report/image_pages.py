"""The images with the most errors: side-by-side pictures, thumbnails, a page per image, a gallery.

An image's errors, at the report's score threshold t: its false positives (detections
scoring >= t that match nothing and are not in a crowd region) plus the objects no
detection scoring >= t matched. Images are ranked by that number (then by id), and the
first `ReportConfig.image_pages` get a picture and a page:

  images/<key>.jpg    ground truth (left) | predictions >= t vs ground truth (right), drawn
                      by maskrcnn.visualize.overlays (matched green, missed red, false
                      positives magenta; same matching as the report: same class, IoU >= 0.5)
  thumbs/<key>.jpg    a small copy for the gallery
  images/<key>.html   the picture and a table of every detection >= t with its error kind
  gallery-<n>.html    `images_per_page` thumbnails per page, worst first, loaded lazily

Without an images folder (results scored against a JSON only) the pictures are drawn on a
grey canvas of the image's size.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskrcnn.config import ReportConfig
from maskrcnn.data.images import ImageReadError, read_image
from maskrcnn.io_utils import atomic_write_bytes
from maskrcnn.ops.masks import rle_to_mask
from maskrcnn.report.error_kinds import CORRECT, ERROR_NAMES, IGNORED, ImageOutcome
from maskrcnn.report.html import Html, esc, image, link, number, page, table, write_page
from maskrcnn.report.inputs import ImageRecord
from maskrcnn.visualize.overlays import draw_gt_vs_pred, draw_instances
from maskrcnn.visualize.panels import side_by_side, with_title

MISSING_IMAGE_GREY = 96


@dataclass
class RankedImage:
    record: ImageRecord
    outcome: ImageOutcome
    false_positives: int  # at the score threshold
    missed: int  # at the score threshold
    key: str  # file stem for this image's picture and page

    @property
    def errors(self) -> int:
        return self.false_positives + self.missed


def rank_images(records: list[ImageRecord], outcomes: list[ImageOutcome], score_threshold: float) -> list[RankedImage]:
    ranked = []
    for record, out in zip(records, outcomes, strict=True):
        scores = np.asarray(out.det_scores, dtype=np.float64)
        above = scores >= score_threshold
        kinds = np.asarray(out.det_kinds, dtype=object)
        false_positives = int(np.sum(above & (kinds != CORRECT) & (kinds != IGNORED)))
        matched = {out.det_matched_gt[d] for d in np.flatnonzero(above) if out.det_matched_gt[d] >= 0}
        ranked.append(RankedImage(record, out, false_positives, len(out.gt_classes) - len(matched), ""))
    ranked.sort(key=lambda r: (-r.errors, r.record.image_id))
    for position, item in enumerate(ranked, start=1):
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(item.record.file_name).stem)[:60] or "image"
        item.key = f"{position:05d}_{stem}"
    return ranked


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------


def _load_image(record: ImageRecord, images_dir: Path | None) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 and a note when the real image could not be shown."""
    blank = np.full((record.height, record.width, 3), MISSING_IMAGE_GREY, dtype=np.uint8)
    if images_dir is None:
        return blank, "no --images folder given: drawn on a grey canvas"
    try:
        pixels = read_image(images_dir / record.file_name)
    except ImageReadError as exc:
        return blank, f"image not shown ({exc})"
    if pixels.shape[:2] != (record.height, record.width):
        return blank, f"image is {pixels.shape[1]}x{pixels.shape[0]}, the annotations say {record.width}x{record.height}"
    return pixels, None


def _xyxy(boxes_xywh: list[list[float]]) -> np.ndarray:
    boxes = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)  # (N, 4) x y w h
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)  # (N, 4) x1 y1 x2 y2


def draw_comparison(
    coco_gt: Any, item: RankedImage, images_dir: Path | None, class_names: list[str], *,
    score_threshold: float, iou_threshold: float, use_masks: bool, panel_size: int,
) -> tuple[np.ndarray, str | None]:
    """Ground truth | predictions >= t vs ground truth, as one (H', W', 3) uint8 picture."""
    record = item.record
    pixels, note = _load_image(record, images_dir)
    longest = max(record.height, record.width)
    scale = float(max(1, panel_size // longest)) if longest <= panel_size else panel_size / longest
    dets = [d for d in record.detections if d["score"] >= score_threshold]
    gt_boxes = _xyxy([a["bbox"] for a in record.gt])  # (G, 4)
    gt_labels = np.asarray([a["category_id"] for a in record.gt], dtype=np.int64)
    pred_boxes = _xyxy([d["bbox"] for d in dets])  # (N, 4)
    pred_labels = np.asarray([d["category_id"] for d in dets], dtype=np.int64)
    pred_scores = np.asarray([d["score"] for d in dets], dtype=np.float32)
    gt_masks = pred_masks = None
    if use_masks:
        shape = (0, record.height, record.width)
        gt_masks = np.stack([coco_gt.annToMask(a) > 0 for a in record.gt]) if record.gt else np.zeros(shape, bool)
        pred_masks = (
            np.stack([rle_to_mask(d["segmentation"], record.height, record.width) > 0 for d in dets])
            if dets else np.zeros(shape, bool)
        )
    truth = draw_instances(pixels, gt_boxes, gt_labels, None, gt_masks, class_names, scale=scale)
    versus = draw_gt_vs_pred(
        pixels, gt_boxes, gt_masks, pred_boxes, pred_scores, pred_masks, gt_labels=gt_labels,
        pred_labels=pred_labels, class_names=class_names, iou_threshold=iou_threshold, scale=scale,
    )
    left = with_title(truth, f"ground truth: {len(record.gt)} objects")
    right = with_title(versus, f"predictions (score >= {score_threshold:g}) vs ground truth")
    return side_by_side(left, right), note


def _picture_bytes(pixels: np.ndarray) -> bytes:
    """JPEG at quality 90 without chroma subsampling (thin coloured outlines stay sharp):
    several times smaller and faster to write than PNG for photographs and noisy images."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def _thumbnail_bytes(pixels: np.ndarray, width: int) -> tuple[bytes, int, int]:
    picture = Image.fromarray(pixels)
    height = max(1, round(picture.height * width / picture.width))
    picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue(), width, height


# ---------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------


def gallery_name(page_number: int) -> str:
    return f"gallery-{page_number}.html"


def _detection_rows(item: RankedImage, class_names: list[str], score_threshold: float) -> list[list[object]]:
    out, record = item.outcome, item.record
    rows: list[list[object]] = []
    for d, det in enumerate(record.detections):
        if det["score"] < score_threshold:
            break  # sorted by score
        kind = out.det_kinds[d]
        same_class = [g for g, c in enumerate(out.gt_classes) if c == out.det_classes[d]]
        best_same = max((out.iou[d, g] for g in same_class), default=0.0)
        best_any = float(out.iou[d].max()) if out.iou.shape[1] else 0.0
        result = {CORRECT: "correct", IGNORED: "ignored (crowd region)"}.get(kind, ERROR_NAMES.get(kind, kind))
        rows.append([d + 1, _name(class_names, det["category_id"]), result, f"{det['score']:.3f}",
                     number(float(best_same)), number(best_any)])
    return rows


def _name(class_names: list[str], category_id: int) -> str:
    return class_names[category_id] if 0 <= category_id < len(class_names) and class_names[category_id] else str(category_id)


def image_page(item: RankedImage, *, class_names: list[str], score_threshold: float, note: str | None,
               gallery_page: int, picture_name: str) -> str:
    record, out = item.record, item.outcome
    below = sum(1 for d in record.detections if d["score"] < score_threshold)
    matched_now = {out.det_matched_gt[d] for d, det in enumerate(record.detections)
                   if det["score"] >= score_threshold and out.det_matched_gt[d] >= 0}
    missed = [g for g in range(len(record.gt)) if g not in matched_now]
    body = [
        f"<p>{esc(record.file_name)} (image id {record.image_id}, {record.width}x{record.height} px): "
        f"{item.false_positives} false positives and {item.missed} missed objects at score &gt;= {score_threshold:g}; "
        f"{below} more detections score below it (AP counts them).</p>",
    ]
    if note:
        body.append(f'<p class="note">{esc(note)}</p>')
    body.append(image(picture_name, f"ground truth and predictions of {record.file_name}", css_class="full", lazy=False))
    body.append(f"<h2>Detections scoring &gt;= {score_threshold:g}</h2>")
    body.append('<p class="note">IoU with the best object of the same class / of any class. Error kinds as in the '
                "report's error breakdown (TIDE).</p>")
    rows = _detection_rows(item, class_names, score_threshold)
    body.append(table(["#", "class", "result", "score", "IoU same class", "IoU any"], rows, name_columns=3)
                if rows else "<p>none</p>")
    body.append(f"<h2>Objects missed at score &gt;= {score_threshold:g}</h2>")
    if missed:
        rows = []
        for g in missed:
            x, y, w, h = record.gt[g]["bbox"]
            if out.gt_matched[g]:
                reason = "matched only by a detection scoring below the threshold"
            elif out.gt_missed[g]:
                reason = "no detection of it (missed)"
            else:
                reason = "only detections of the wrong class or with a poor overlap (cls or loc errors, at any score)"
            rows.append([_name(class_names, out.gt_classes[g]), reason, f"{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}"])
        body.append(table(["class", "why", "box x, y, w, h"], rows, name_columns=3))
    else:
        body.append("<p>none</p>")
    nav = [("../index.html", "report"), (f"../{gallery_name(gallery_page)}", f"gallery page {gallery_page}")]
    return page(f"{record.file_name}", body, nav=nav)


def gallery_page(items: list[RankedImage], thumbs: dict[str, tuple[int, int]], *, page_number: int, page_count: int,
                 total_images: int, score_threshold: float) -> str:
    pager = ['<p class="pager">pages: ']
    for n in range(1, page_count + 1):
        pager.append(f"<span>{n}</span>" if n == page_number else link(gallery_name(n), n))
    pager.append("</p>")
    body = [
        f'<p class="note">Images ranked by errors at score &gt;= {score_threshold:g} (false positives + missed '
        f"objects), worst first; {total_images} images in all, pictures for the first "
        f"{len(thumbs)}. Click a picture for its page.</p>",
        Html("".join(pager)),
        gallery_cards(items, thumbs, prefix=""),
        Html("".join(pager)),
    ]
    return page(f"Images with the most errors: page {page_number} of {page_count}", body,
                nav=[("index.html", "report")])


def gallery_cards(items: list[RankedImage], thumbs: dict[str, tuple[int, int]], *, prefix: str) -> Html:
    cards = ['<div class="gallery">']
    for item in items:
        width, height = thumbs[item.key]
        picture = image(f"{prefix}thumbs/{item.key}.jpg", item.record.file_name, width=width, height=height)
        cards.append(
            f'<div class="card"><a href="{esc(prefix)}images/{esc(item.key)}.html">{picture}'
            f"<b>{esc(item.record.file_name)}</b><br>{item.errors} errors: {item.false_positives} false pos., "
            f"{item.missed} missed</a></div>"
        )
    cards.append("</div>")
    return Html("\n".join(cards))


def write_image_pages(
    out_dir: Path, coco_gt: Any, ranked: list[RankedImage], images_dir: Path | None, class_names: list[str], *,
    settings: ReportConfig, score_threshold: float, use_masks: bool,
) -> tuple[list[RankedImage], dict[str, tuple[int, int]], list[Path]]:
    """Pictures, thumbnails, image pages and gallery pages for the worst images.

    Returns (the images shown, thumbnail sizes by key, the files written)."""
    shown = ranked[: settings.image_pages]
    per_page = max(1, settings.images_per_page)
    page_count = max(1, -(-len(shown) // per_page))
    thumbs: dict[str, tuple[int, int]] = {}
    written: list[Path] = []
    for position, item in enumerate(shown):
        picture, note = draw_comparison(
            coco_gt, item, images_dir, class_names, score_threshold=score_threshold,
            iou_threshold=settings.error_iou, use_masks=use_masks, panel_size=settings.panel_size,
        )
        picture_path = out_dir / "images" / f"{item.key}.jpg"
        atomic_write_bytes(picture_path, _picture_bytes(picture))
        thumb, width, height = _thumbnail_bytes(picture, settings.thumbnail_width)
        thumb_path = out_dir / "thumbs" / f"{item.key}.jpg"
        atomic_write_bytes(thumb_path, thumb)
        thumbs[item.key] = (width, height)
        page_path = out_dir / "images" / f"{item.key}.html"
        write_page(page_path, image_page(item, class_names=class_names, score_threshold=score_threshold, note=note,
                                         gallery_page=position // per_page + 1, picture_name=picture_path.name))
        written += [picture_path, thumb_path, page_path]
    for n in range(1, page_count + 1):
        path = out_dir / gallery_name(n)
        write_page(path, gallery_page(shown[(n - 1) * per_page : n * per_page], thumbs, page_number=n,
                                      page_count=page_count, total_images=len(ranked), score_threshold=score_threshold))
        written.append(path)
    return shown, thumbs, written
