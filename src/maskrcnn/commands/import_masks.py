"""`maskrcnn import-masks`: mask folders (Data Science Bowl or label images) and polygon
annotations (LabelMe, YOLO segmentation) -> COCO JSON."""

from __future__ import annotations

import argparse
from typing import Any

POLYGON_LAYOUTS = ("labelme", "yolo")


def _import(args: argparse.Namespace, output: str) -> dict[str, Any]:
    if args.layout in POLYGON_LAYOUTS:
        from maskrcnn.data.coco import DatasetError

        if args.category is not None:
            raise DatasetError(
                f"--category applies to layouts dsb and labels; layout {args.layout} takes the class names from its files (--classes)"
            )
        if args.layout == "labelme":
            from maskrcnn.data.labelme import import_labelme

            return import_labelme(args.source, output, classes=args.classes)
        from maskrcnn.data.yolo_seg import import_yolo

        return import_yolo(
            args.source, output, images_dir=args.images_dir, labels_dir=args.labels_dir, classes=args.classes
        )
    from maskrcnn.data.mask_folder import import_masks

    return import_masks(
        args.source, output, layout=args.layout, images_dir=args.images_dir, labels_dir=args.labels_dir,
        category=args.category,
    )


def run_import_masks(args: argparse.Namespace) -> int:
    output = args.output or f"{args.source.rstrip('/')}/annotations.json"
    summary = _import(args, output)
    if "categories" in summary:
        counts = ", ".join(f"{n} {c}" for n, c in summary["instances_per_category"].items())
        print(f"wrote {summary['json']}: {summary['num_images']} images, {summary['num_annotations']} instances ({counts})")
    else:
        print(
            f"wrote {summary['json']}: {summary['num_images']} images, "
            f"{summary['num_annotations']} instances of {summary['category']!r}"
        )
    if summary.get("images_without_labels"):
        print(f"  {summary['images_without_labels']} image(s) without a label file: kept as images without objects")
    for reason, count in sorted(summary["skipped"].items()):
        print(f"  skipped {count}: {reason}")
    print(
        "train on it with: maskrcnn train --config CONFIG "
        f"--set data.train.annotations={summary['json']} --set data.train.images={summary['images_dir']}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the `import-masks` command to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "import-masks",
        help="convert mask images, label images, LabelMe or YOLO segmentation files to a COCO JSON file",
        description=(
            "Layout 'dsb': SOURCE/<id>/images/<id>.png with one binary PNG per instance in "
            "SOURCE/<id>/masks/. Layout 'labels': a folder of images and a folder of integer "
            "label images (0 = background, one value per instance), matched by file stem. "
            "Layout 'labelme': SOURCE holds LabelMe .json files (polygons, rectangles, circles; "
            "their labels become the categories). Layout 'yolo': SOURCE/images and SOURCE/labels "
            "with one .txt per image of 'class x1 y1 x2 y2 ...' normalised polygons, and a class "
            "list (--classes, or data.yaml / classes.txt in SOURCE or above it)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", help="the folder to import")
    parser.add_argument(
        "--output", "-o", default=None, help="COCO JSON to write; when not given: SOURCE/annotations.json"
    )
    parser.add_argument(
        "--layout", choices=["dsb", "labels", *POLYGON_LAYOUTS], default="dsb", help="how SOURCE is organised"
    )
    parser.add_argument(
        "--images-dir", default="images", help="layouts 'labels' and 'yolo': images folder, relative to SOURCE"
    )
    parser.add_argument(
        "--labels-dir", default="labels", help="layouts 'labels' and 'yolo': label folder, relative to SOURCE"
    )
    parser.add_argument(
        "--category", default=None, help="the category name; when not given: 'nucleus' for dsb, 'object' for labels"
    )
    parser.add_argument(
        "--classes", default=None, metavar="FILE",
        help="layouts 'yolo' and 'labelme': the class names in order, a data.yaml (names:) or a text file "
        "with one name per line (labelme without it: the labels found, sorted)",
    )
    parser.set_defaults(func=run_import_masks)
