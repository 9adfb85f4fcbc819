"""`maskrcnn import-masks`: mask folders (Data Science Bowl or label images) -> COCO JSON."""

from __future__ import annotations

import argparse
from typing import Any


def run_import_masks(args: argparse.Namespace) -> int:
    from maskrcnn.data.mask_folder import import_masks

    output = args.output or f"{args.source.rstrip('/')}/annotations.json"
    summary = import_masks(
        args.source,
        output,
        layout=args.layout,
        images_dir=args.images_dir,
        labels_dir=args.labels_dir,
        category=args.category,
    )
    print(
        f"wrote {summary['json']}: {summary['num_images']} images, "
        f"{summary['num_annotations']} instances of {summary['category']!r}"
    )
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
        help="convert per-instance mask images or label images to a COCO JSON file",
        description=(
            "Layout 'dsb': SOURCE/<id>/images/<id>.png with one binary PNG per instance in "
            "SOURCE/<id>/masks/. Layout 'labels': a folder of images and a folder of integer "
            "label images (0 = background, one value per instance), matched by file stem."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", help="the folder to import")
    parser.add_argument(
        "--output", "-o", default=None, help="COCO JSON to write; when not given: SOURCE/annotations.json"
    )
    parser.add_argument("--layout", choices=["dsb", "labels"], default="dsb", help="how SOURCE is organised")
    parser.add_argument(
        "--images-dir", default="images", help="layout 'labels': images folder, relative to SOURCE"
    )
    parser.add_argument(
        "--labels-dir", default="labels", help="layout 'labels': label images folder, relative to SOURCE"
    )
    parser.add_argument(
        "--category", default=None, help="the category name; when not given: 'nucleus' for dsb, 'object' for labels"
    )
    parser.set_defaults(func=run_import_masks)
