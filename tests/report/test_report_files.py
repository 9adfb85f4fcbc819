"""The written report: files exist, links resolve, nothing external, the folder rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_case import SIZE, case_gt, case_results

from maskrcnn.config import ReportConfig
from maskrcnn.data.coco import make_coco
from maskrcnn.report import ReportInputError, ReportInputs, write_report

LINK = re.compile(r'(?:href|src)="([^"]+)"')


def three_images(tmp_path: Path) -> tuple[dict, list[dict], Path]:
    """The case repeated on images 1..3; image 3 has no detections."""
    gt = case_gt()
    base_anns = gt["annotations"]
    gt["images"] = [{"id": i, "file_name": f"img{i}.png", "height": SIZE, "width": SIZE} for i in (1, 2, 3)]
    gt["annotations"] = [{**a, "id": 10 * i + a["id"], "image_id": i} for i in (1, 2, 3) for a in base_anns]
    results = [{**r, "image_id": i} for i in (1, 2) for r in case_results()]
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    return gt, results, images


def links_of(page: Path) -> list[str]:
    return [h.split("#")[0] for h in LINK.findall(page.read_text()) if not h.startswith("#")]


def test_report_files_links_and_no_urls(tmp_path) -> None:
    gt, results, images = three_images(tmp_path)
    settings = ReportConfig(images_per_page=2, index_thumbnails=2)
    out = tmp_path / "report"
    summary = write_report(ReportInputs(make_coco(gt), results, images, {"dsb_score": 0.25, "dsb_score_threshold": 0.5}),
                           out, settings=settings)
    assert summary.index == out / "index.html"
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert sorted(summary.files) == written
    names = {str(p.relative_to(out)) for p in written}
    assert {"index.html", "report.json", "gallery-1.html", "gallery-2.html", "charts/pr_bbox.png",
            "charts/pr_segm.png", "charts/errors_segm.png"} <= names
    assert sum(n.startswith("images/") and n.endswith(".html") for n in names) == 3
    # Worst first. Images 1 and 2 at score >= 0.5: d1, d3, d4, d5 false positives, g2, g3, g4
    # missed (7 errors); image 3 has no detection: its 6 objects missed.
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["images_by_errors"] == [
        {"image_id": 1, "file_name": "img1.png", "false_positives": 4, "missed": 3},
        {"image_id": 2, "file_name": "img2.png", "false_positives": 4, "missed": 3},
        {"image_id": 3, "file_name": "img3.png", "false_positives": 0, "missed": 6},
    ]
    assert numbers["errors"]["segm"]["counts"] == {"cls": 2, "loc": 2, "both": 0, "dupe": 2, "bkg": 2, "miss": 8}
    for page in [p for p in written if p.suffix == ".html"]:
        targets = links_of(page)
        assert targets, page
        for target in targets:
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
    for path in written:
        data = path.read_bytes()
        assert b"http://" not in data and b"https://" not in data, path
    index = (out / "index.html").read_text()
    assert "<script" not in index and "@import" not in index
    for section in ('id="metrics"', 'id="classes"', 'id="curves"', 'id="errors"', 'id="thresholds"', 'id="images"'):
        assert section in index
    assert 'loading="lazy"' in (out / "gallery-1.html").read_text()
    assert "Data Science Bowl score" in index and "0.250" in index
    for chart in ("charts/pr_segm.png", "charts/errors_bbox.png"):
        with Image.open(out / chart) as picture:
            assert picture.width > 300 and picture.height > 200


def test_report_without_images_and_boxes_only(tmp_path) -> None:
    results = case_results(with_masks=False)
    out = tmp_path / "report"
    write_report(ReportInputs(make_coco(case_gt()), results, None), out)
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert "charts/pr_bbox.png" in names and "charts/pr_segm.png" not in names
    page = next((out / "images").glob("*.html")).read_text()
    assert "no --images folder given: drawn on a grey canvas" in page
    rows = json.loads((out / "report.json").read_text())["thresholds"]
    assert all(r["dsb_score"] is None for r in rows)


def test_report_folder_rules(tmp_path) -> None:
    gt, results, images = three_images(tmp_path)
    coco = make_coco(gt)
    foreign = tmp_path / "not_a_report"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ReportInputError, match="not a maskrcnn report"):
        write_report(ReportInputs(coco, results, images), foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "report"
    write_report(ReportInputs(coco, results, images), out, settings=ReportConfig(image_pages=3))
    assert len(list((out / "images").glob("*.jpg"))) == 3
    (out / "my_notes.txt").write_text("kept")
    write_report(ReportInputs(coco, results, images), out, settings=ReportConfig(image_pages=1))
    assert len(list((out / "images").glob("*.jpg"))) == 1  # the pages no longer shown are removed
    assert (out / "my_notes.txt").read_text() == "kept"  # what the report did not write stays


def test_report_with_no_detections_and_markup_in_names(tmp_path) -> None:
    gt = case_gt()
    gt["categories"][0]["name"] = "<b>circle</b>"
    gt["images"][0]["file_name"] = "we<ird> & name.png"
    out = tmp_path / "report"
    write_report(ReportInputs(make_coco(gt), [], None), out)
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["num_detections"] == 0
    assert numbers["errors"]["bbox"]["counts"] == {"cls": 0, "loc": 0, "both": 0, "dupe": 0, "bkg": 0, "miss": 6}
    assert numbers["metrics"]["bbox_AP"] == 0.0
    for page in [out / "index.html", *(out / "images").glob("*.html")]:
        text = page.read_text()
        assert "<b>circle</b>" not in text and "we<ird>" not in text
    assert "&lt;b&gt;circle&lt;/b&gt;" in (out / "index.html").read_text()
    assert all((page.parent / t).is_file() for page in out.rglob("*.html") for t in links_of(page))


def test_report_interrupted_then_rerun(tmp_path, monkeypatch) -> None:
    import maskrcnn.report.build as build

    coco = make_coco(case_gt())
    out = tmp_path / "report"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "write_image_pages", fail)
    with pytest.raises(KeyboardInterrupt):
        write_report(ReportInputs(coco, case_results(with_masks=False), None), out)
    assert json.loads((out / "report.json").read_text())["complete"] is False
    monkeypatch.undo()
    write_report(ReportInputs(coco, case_results(with_masks=False), None), out)
    assert json.loads((out / "report.json").read_text())["complete"] is True
