"""`maskrcnn evaluate ... --report DIR`: a self-contained HTML evaluation report.

    inputs.py       ground truth + COCO results, grouped per image; IoU matrices (pycocotools)
    coco_curves.py  COCOeval kept in full: summary, AP per class, PR curves per IoU threshold
    ap.py           COCO's 101-point AP at one IoU, for the error oracles
    errors.py       TIDE-style error kinds (cls, loc, both, dupe, bkg, miss) and dAP per kind
    thresholds.py   precision, recall, F1 and DSB score per score threshold
    plots.py        matplotlib charts (PR curves, error breakdown)
    html.py         escaping, tables, the page template (inline CSS, no script, no URL)
    image_pages.py  worst images: side-by-side pictures, thumbnails, a page each, gallery pages
    index_page.py   index.html
    build.py        write_report: all of the above into one folder
    evaluate_hook.py  what `maskrcnn evaluate --report` calls
"""

from maskrcnn.report.build import ReportSummary, write_report
from maskrcnn.report.inputs import ReportInputError, ReportInputs

__all__ = ["ReportInputError", "ReportInputs", "ReportSummary", "write_report"]
