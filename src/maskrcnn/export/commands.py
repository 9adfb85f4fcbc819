"""`maskrcnn export`: a checkpoint -> one ONNX file with the whole inference path."""

from __future__ import annotations

import argparse
from typing import Any

from maskrcnn.config import MASK_PASTES, TEST_AUGMENT_MODES
from maskrcnn.errors import UserError
from maskrcnn.export.onnx_export import DEFAULT_OPSET


class ExportFormatError(UserError):
    """An export format this version cannot write."""


def run_export(args: argparse.Namespace) -> int:
    if args.format != "onnx":
        raise ExportFormatError(f"--format {args.format!r}: expected onnx")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from maskrcnn.export.onnx_export import export_checkpoint
    from maskrcnn.model.test_augment import orientations

    exported = export_checkpoint(
        args.weights, args.output, config=args.config, paste_masks=not args.no_paste, opset=args.opset,
        test_augment=args.test_augment, mask_paste=args.mask_paste,
    )
    size_mb = exported.path.stat().st_size / 2**20
    masks = "(D, M, M) in each box" if args.no_paste else f"(D, H, W) pasted {exported.mask_paste}"
    print(f"wrote {exported.path} ({size_mb:.1f} MiB, opset {args.opset}): image (H, W, 3) uint8 -> boxes, labels, scores, masks {masks}")
    passes = len(orientations(exported.test_augment))
    print(f"mask paste: {exported.mask_paste}; test-time augmentation: {exported.test_augment} "
          f"({passes} pass{'es' if passes > 1 else ''}); as `maskrcnn predict` with the same settings")
    return 0


def register(subparsers: Any) -> None:
    """Add the `export` command to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "export",
        help="write the model's whole inference path to an ONNX file (ONNX Runtime, OpenVINO)",
        description=(
            "Export resize, normalisation, backbone, RPN, RoI heads, mask head, mask pasting (the model's "
            "paste) and test-time augmentation to one ONNX file that takes an (H, W, 3) uint8 RGB image of "
            "any size and gives `maskrcnn predict`'s answer. See docs/export.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--weights", required=True, help="native checkpoint, or a torchvision state dict with --config")
    parser.add_argument("--config", default=None, help="built-in config name or YAML file (for torchvision state dicts)")
    parser.add_argument("--format", default="onnx", help="output format (onnx)")
    parser.add_argument("--output", default="model.onnx", help="file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (16 or later)")
    parser.add_argument("--no-paste", action="store_true",
                        help="output (D, M, M) mask probabilities inside each box instead of pasted (D, H, W) masks")
    parser.add_argument("--test-augment", choices=TEST_AUGMENT_MODES, default=None,
                        help="put test-time augmentation in the graph: none (one pass), flips (4 passes: mirror "
                        "images, merged as `maskrcnn predict` merges them) or dihedral (8) (None: the checkpoint's "
                        "model.test_augment)")
    parser.add_argument("--mask-paste", choices=MASK_PASTES, default=None,
                        help="how the graph pastes masks: torchvision's or exact (None: the checkpoint's "
                        "model.roi_heads.mask_paste)")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (0: PyTorch's default)")
    parser.set_defaults(func=run_export)
