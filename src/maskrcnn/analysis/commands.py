"""`maskrcnn analyze ...`: params, receptive-field, anchors, rpn-targets, flops, augment.

`register(subparsers)` adds the `analyze` command; each subcommand prints readable tables
and, with `--json PATH`, writes its figures as JSON (atomically). Plots are PNG files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from maskrcnn.analysis.errors import AnalysisError
from maskrcnn.analysis.table import format_table
from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json

HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter
DEFAULT_CONFIG = "maskrcnn_resnet50_fpn"
DEFAULT_OUTPUT = "runs/analyze"


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def _add_config_args(p: argparse.ArgumentParser, checkpoint: bool = False) -> None:
    p.add_argument("--config", default=None,
                   help=f"built-in config name or YAML file; when not given: {DEFAULT_CONFIG}, or the checkpoint's own")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.backbone.name=resnet18 (repeatable)")  # fmt: skip
    if checkpoint:
        p.add_argument("--checkpoint", default=None,
                       help="native checkpoint, or a torchvision state dict together with --config")  # fmt: skip


def _add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures to this JSON file")


def _config(args: argparse.Namespace) -> Any:
    from maskrcnn.config import load_config

    return load_config(args.config or DEFAULT_CONFIG, args.overrides)


def _model(args: argparse.Namespace) -> tuple[Any, str]:
    """(Mask R-CNN model, description) from --checkpoint or --config/--set."""
    if getattr(args, "checkpoint", None):
        from maskrcnn.checkpoints import load_model

        config = _config(args) if (args.config or args.overrides) else None
        model, cfg = load_model(args.checkpoint, config=config)
        return model, f"checkpoint {args.checkpoint} (config {cfg.name})"
    from maskrcnn.model.build import build_model

    cfg = _config(args)
    return build_model(cfg.model), f"config {cfg.name}"


def _write_json(path: str | None, data: Any) -> None:
    if path:
        atomic_write_json(path, data)
        print(f"\nwrote {path}")


def _giga(value: int) -> str:
    return f"{value / 1e9:.2f}"


# ---------------------------------------------------------------------------------------
# params
# ---------------------------------------------------------------------------------------


def _parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        height, width, channels = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise AnalysisError(f"--input-shape: expected H,W,C such as 256,256,3, got {text!r}") from None
    return height, width, channels


def run_params(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.params import (
        mask_rcnn_stage,
        overall_total,
        param_table,
        stage_totals,
        table_to_json,
    )
    from maskrcnn.analysis.stages import (
        parse_image_size,
        run_mask_rcnn_stages,
        shape_copy,
    )

    if args.model == "unet":
        from maskrcnn.analysis.unet import get_unet, unet_example_input

        shape = _parse_input_shape(args.input_shape)
        model = get_unet(shape, n_filters=args.n_filters, n_classes=args.classes)
        rows = param_table(model, unet_example_input(shape))
        what = f"U-Net get_unet({shape}, n_filters={args.n_filters}), {args.classes} sigmoid outputs, input 1x{shape[2]}x{shape[0]}x{shape[1]}"  # noqa: E501
    else:
        size = parse_image_size(args.image_size)
        model, source = _model(args)

        def forward(m: Any, _: Any) -> None:
            run_mask_rcnn_stages(m, size, args.proposals, args.detections)

        rows = param_table(shape_copy(model), None, forward=forward, stage_of=mask_rcnn_stage)
        what = (f"Mask R-CNN from {source}; image {size[0]}x{size[1]}, box head on {args.proposals} RoIs, "
                f"mask head on {args.detections} RoIs")  # fmt: skip
    print(what)
    if not args.stages_only:
        print(format_table(
            ["layer", "type", "output shape", "calls", "trainable", "frozen"],
            [[r.name, r.kind, r.output_shape, r.calls, r.trainable, r.frozen] for r in rows],
        ))  # fmt: skip
    totals = stage_totals(rows)
    print(format_table(["stage", "trainable", "frozen", "total"],
                       [[s.stage, s.trainable, s.frozen, s.total] for s in totals], title="\nper stage"))  # fmt: skip
    total = overall_total(rows)
    print(f"\ntotal: {total.total:,} parameters ({total.trainable:,} trainable, {total.frozen:,} frozen)")
    _write_json(args.json, {"model": what, **table_to_json(rows)})
    return 0


def _add_params(sub: Any) -> None:
    p = sub.add_parser("params", formatter_class=HELP_FORMAT,
                       help="every layer's output shape and parameter count (trainable, frozen), per stage and total",
                       description="Per-layer output shapes and parameter counts of a built-in config, a checkpoint, "
                                   "or the shipped U-Net example (--model unet).")  # fmt: skip
    p.add_argument("--model", choices=["unet"], default=None, help="a shipped example network instead of Mask R-CNN")
    p.add_argument("--input-shape", default="256,256,3", help="U-Net input as H,W,C")
    p.add_argument("--n-filters", type=int, default=16, help="U-Net filters of the first stage")
    p.add_argument("--classes", type=int, default=10, help="U-Net sigmoid outputs")
    _add_config_args(p, checkpoint=True)
    p.add_argument("--image-size", default="800x1216", help="Mask R-CNN input HxW (padded to size_divisible)")
    p.add_argument("--proposals", type=int, default=1000, help="RoIs through the box head")
    p.add_argument("--detections", type=int, default=100, help="RoIs through the mask head")
    p.add_argument("--stages-only", action="store_true", help="print only the per-stage totals")
    _add_json_arg(p)
    p.set_defaults(func=run_params)


# ---------------------------------------------------------------------------------------
# receptive-field
# ---------------------------------------------------------------------------------------


def _rf_table(rows: list[Any], with_stage: bool) -> str:
    headers = (["stage"] if with_stage else []) + ["layer", "kernel", "stride", "dilation", "eff. stride", "receptive field"]  # noqa: E501
    return format_table(headers, [
        ([r.stage] if with_stage else []) + [r.name, r.kernel, r.stride, r.dilation, r.effective_stride, r.receptive_field]
        for r in rows
    ])  # fmt: skip


def run_receptive_field(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.receptive_field import (
        RFRow,
        backbone_receptive_fields,
        parse_layers,
        receptive_fields,
    )

    if args.layers:
        rows = receptive_fields(parse_layers(args.layers))
        print(f"layers {args.layers}  (R_t = R_(t-1) + (K_t - 1) * ES_(t-1) * D_t,  ES_t = ES_(t-1) * S_t)")
        print(_rf_table(rows, with_stage=False))
        _write_json(args.json, {"layers": [vars(r) for r in rows]})
        return 0
    cfg = _config(args)
    result = backbone_receptive_fields(cfg.model)
    print(f"config {cfg.name}: backbone {result['backbone']}, layout {result['layout']} (main path of the actual modules)")
    if not args.no_layers:
        print(_rf_table([RFRow(**r) for r in result["layers"]], with_stage=True))
    print(format_table(["stage", "eff. stride", "receptive field"],
                       [[s["stage"], s["effective_stride"], s["receptive_field"]] for s in result["stages"]],
                       title="\nper stage (output of its last layer)"))  # fmt: skip
    print(format_table(["level", "stride", "RF own stage", "RF with top-down"],
                       [[lv["level"], lv["stride"], lv["own_stage"], lv["with_top_down"]] for lv in result["levels"]],
                       title="\nper output level"))  # fmt: skip
    anchors = result["anchors"]
    if anchors and "note" in anchors[0]:
        print(f"\nanchor check skipped: {anchors[0]['note']}")
    else:
        print(format_table(
            ["level", "anchor size", "RF own stage", "fits", "RF with top-down", "fits"],
            [[a["level"], a["size"], a["own_stage"], a["fits_own_stage"], a["with_top_down"], a["fits_with_top_down"]]
             for a in anchors],
            title="\ndoes each anchor size fit inside its level's receptive field?",
        ))  # fmt: skip
    _write_json(args.json, {"config": cfg.name, **result})
    return 0


def _add_receptive_field(sub: Any) -> None:
    p = sub.add_parser("receptive-field", formatter_class=HELP_FORMAT,
                       help="kernel, stride, dilation, effective stride and receptive field per layer",
                       description="Receptive fields of a config's backbone (per layer, stage, FPN level; anchor "
                                   "sizes checked against them), or of a plain layer list given with --layers.")  # fmt: skip
    p.add_argument("--layers", default=None,
                   help="comma-separated convK / poolK with optional sS stride and dD dilation, e.g. "
                        "conv5,pool2,conv3s2d2 (a pool's stride defaults to its size, a conv's to 1)")  # fmt: skip
    _add_config_args(p)
    p.add_argument("--no-layers", action="store_true", help="omit the per-layer table of a config's backbone")
    _add_json_arg(p)
    p.set_defaults(func=run_receptive_field)


# ---------------------------------------------------------------------------------------
# anchors
# ---------------------------------------------------------------------------------------


def run_anchors(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.anchor_stats import analyze_anchors, format_anchor_report

    cfg = _config(args)
    result, png = analyze_anchors(
        args.annotations, cfg.model, images_dir=args.images, clusters=args.clusters, seed=args.seed,
        reach_iou=args.reach_iou, original_pixels=args.original_pixels,
    )  # fmt: skip
    result["config"] = cfg.name
    print(f"config {cfg.name}")
    print(format_anchor_report(result, max_listed=args.list))
    plot = Path(args.output) / "anchor_histograms.png"
    atomic_write_bytes(plot, png)
    print(f"\nwrote {plot}")
    _write_json(args.json, result)
    return 0


def _add_anchors(sub: Any) -> None:
    p = sub.add_parser("anchors", formatter_class=HELP_FORMAT,
                       help="box size/aspect histograms, k-means anchor suggestions, anchor coverage",
                       description="Statistics of the ground-truth boxes of a COCO JSON against the config's anchors.")  # fmt: skip
    p.add_argument("--annotations", required=True, help="COCO JSON file")
    p.add_argument("--images", default=None, help="image folder, only needed when the JSON lacks height/width")
    _add_config_args(p)
    p.add_argument("--clusters", type=int, default=None,
                   help="k of the k-means; when not given: anchor sizes x aspect ratios of the config")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="k-means initialization seed")
    p.add_argument("--reach-iou", type=float, default=None,
                   help="list boxes whose best anchor IoU is below this; when not given: the config's rpn.fg_iou_thresh")  # fmt: skip
    p.add_argument("--original-pixels", action="store_true",
                   help="histograms in annotated pixels instead of pixels after the config's resize")  # fmt: skip
    p.add_argument("--list", type=int, default=20, help="boxes not reached to print (all go to --json)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for anchor_histograms.png")
    _add_json_arg(p)
    p.set_defaults(func=run_anchors)


# ---------------------------------------------------------------------------------------
# rpn-targets
# ---------------------------------------------------------------------------------------


def run_rpn_targets(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.rpn_targets import (
        draw_rpn_targets,
        load_annotated_image,
        rpn_targets,
    )

    cfg = _config(args)
    output = Path(args.output)
    annotations = args.annotations
    if args.shapes:
        from maskrcnn.data.shapes import generate_shapes

        annotations = generate_shapes(output / "shapes", 1, args.shapes_size, args.seed)
    elif not annotations:
        raise AnalysisError("rpn-targets: give --annotations COCO.json (with --image PATH) or --shapes")
    image, boxes, name = load_annotated_image(annotations, None if args.shapes else args.image, args.images)
    targets = rpn_targets(image.shape[:2], boxes, cfg.model, seed=args.seed)
    g = targets["geometry"]
    rpn = cfg.model.rpn
    print(f"{name}: {image.shape[0]}x{image.shape[1]} -> resized {g.resized[0]}x{g.resized[1]}, padded "
          f"{g.padded[0]}x{g.padded[1]}; {len(boxes)} boxes; config {cfg.name}: positive IoU >= {rpn.fg_iou_thresh}, "
          f"negative < {rpn.bg_iou_thresh}, low-quality matches {'on' if rpn.allow_low_quality_matches else 'off'}, "
          f"sample {rpn.batch_size_per_image} at <= {rpn.positive_fraction:.0%} positive")  # fmt: skip
    keys = ["anchors", "positive", "negative", "ignored", "sampled_positive", "sampled_negative"]
    rows = [[lv["level"]] + [lv[k] for k in keys] for lv in targets["levels"]]
    rows.append(["all"] + [targets["counts"][k] for k in keys])
    print(format_table(["level", "anchors", "positive", "negative", "ignored", "sampled pos", "sampled neg"], rows))
    plot = output / "rpn_targets.png"
    atomic_write_bytes(plot, draw_rpn_targets(image, g, targets, max_ignored=args.max_ignored, seed=args.seed))
    print(f"\nwrote {plot}")
    _write_json(args.json, {
        "image": name, "config": cfg.name, "image_hw": list(image.shape[:2]), "resized_hw": list(g.resized),
        "padded_hw": list(g.padded), "counts": targets["counts"], "levels": targets["levels"],
    })  # fmt: skip
    return 0


def _add_rpn_targets(sub: Any) -> None:
    p = sub.add_parser("rpn-targets", formatter_class=HELP_FORMAT,
                       help="draw an image's anchors as positive / negative / ignored, with counts",
                       description="Label every anchor of one image as the RPN trains it (matcher thresholds and "
                                   "balanced sampler of the config) and draw them.")  # fmt: skip
    p.add_argument("--annotations", default=None, help="COCO JSON holding the image's boxes")
    p.add_argument("--image", default=None, help="image file, matched by file name in the JSON; when not given: the JSON's first image")
    p.add_argument("--images", default=None, help="image folder of the JSON; when not given: beside the JSON")
    p.add_argument("--shapes", action="store_true", help="use a generated shapes image instead")
    p.add_argument("--shapes-size", type=int, default=256, help="side of the generated shapes image")
    _add_config_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (and of the shapes image)")
    p.add_argument("--max-ignored", type=int, default=100, help="ignored anchors drawn at most")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for rpn_targets.png")
    _add_json_arg(p)
    p.set_defaults(func=run_rpn_targets)


# ---------------------------------------------------------------------------------------
# flops
# ---------------------------------------------------------------------------------------


def run_flops(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.flops import count_macs
    from maskrcnn.analysis.stages import parse_image_size

    size = parse_image_size(args.image_size)  # before building: a typo fails fast
    model, source = _model(args)
    macs = count_macs(model, size, args.proposals, args.detections)
    total = macs["total"] or 1
    print(f"{source}: input {size[0]}x{size[1]}, box head on {args.proposals} RoIs, mask head on {args.detections} RoIs")
    print(format_table(
        ["stage", "GMACs", "share"],
        [[stage, _giga(v), f"{100 * v / total:.1f}%"] for stage, v in macs.items()],
        title="multiply-accumulates of Conv2d / ConvTranspose2d / Linear layers (FLOPs ~ 2 x MACs)",
    ))  # fmt: skip
    _write_json(args.json, {"source": source, "image_size": list(size), "proposals": args.proposals,
                            "detections": args.detections, "macs": macs})  # fmt: skip
    return 0


def _add_flops(sub: Any) -> None:
    p = sub.add_parser("flops", formatter_class=HELP_FORMAT,
                       help="multiply-accumulates per stage, counted from the layers",
                       description="MACs of backbone, FPN, RPN head, box head and mask head, counted with forward "
                                   "hooks from the layers' actual input/output shapes.")  # fmt: skip
    _add_config_args(p, checkpoint=True)
    p.add_argument("--image-size", default="800x1216", help="network input HxW (padded to size_divisible)")
    p.add_argument("--proposals", type=int, default=1000, help="RoIs through the box head")
    p.add_argument("--detections", type=int, default=100, help="RoIs through the mask head")
    _add_json_arg(p)
    p.set_defaults(func=run_flops)


# ---------------------------------------------------------------------------------------
# augment
# ---------------------------------------------------------------------------------------


def run_augment(args: argparse.Namespace) -> int:
    from maskrcnn.analysis.augment_grid import (
        augmented_samples,
        check_grid_options,
        draw_augment_grid,
    )
    from maskrcnn.data.build import build_dataset
    from maskrcnn.visualize.panels import save_image

    check_grid_options(args.samples, args.cell, args.columns)
    cfg = _config(args)
    dataset = build_dataset(cfg.data.train, cfg.data.augment, train=True)
    pipeline, dataset.transforms = dataset.transforms, None  # applied here, seeded
    samples = augmented_samples(dataset, pipeline, args.samples, seed=args.seed, image_index=args.image)
    print(f"config {cfg.name}: training set {cfg.data.train.annotations} ({len(dataset)} images)")
    print(f"pipeline: {pipeline}" if pipeline is not None else "data.augment switches every augmentation off: "
          "the grid shows the training images as they are")  # fmt: skip
    rows = [[s.index, s.file_name, "original" if s.original else "augmented", f"{s.input_hw[0]}x{s.input_hw[1]}",
             f"{s.image.shape[0]}x{s.image.shape[1]}", s.input_instances, len(s.targets)] for s in samples]  # fmt: skip
    print(format_table(["index", "file", "sample", "input HxW", "output HxW", "instances in", "out"], rows))
    title = f"{cfg.name}: data.augment, seed {args.seed}"
    picture = draw_augment_grid(samples, dataset.class_names, cell=args.cell, columns=args.columns, title=title,
                                boxes=not args.no_boxes)  # fmt: skip
    path = Path(args.output) / "augment_grid.png"
    save_image(path, picture)
    print(f"\nwrote {path}")
    _write_json(args.json, {"config": cfg.name, "pipeline": repr(pipeline), "seed": args.seed,
                            "samples": [s.summary() for s in samples]})  # fmt: skip
    return 0


def _add_augment(sub: Any) -> None:
    p = sub.add_parser("augment", formatter_class=HELP_FORMAT,
                       help="a grid PNG of augmented training samples with their masks and boxes",
                       description="Read the config's training set, put samples through its data.augment pipeline "
                                   "and draw them with their masks, boxes and classes, to look at before training.")  # fmt: skip
    _add_config_args(p)
    p.add_argument("--samples", type=int, default=16, help="cells in the grid")
    p.add_argument("--image", type=int, default=None,
                   help="show this training image (index) as it is, then samples-1 augmentations of it; "
                        "when not given: images 0, 1, 2, ... augmented once each")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentations' random numbers")
    p.add_argument("--cell", type=int, default=256, help="longer side of each drawn sample, in pixels")
    p.add_argument("--columns", type=int, default=None, help="grid columns; when not given: about square")
    p.add_argument("--no-boxes", action="store_true", help="draw masks only (clearer for crowded images)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for augment_grid.png")
    _add_json_arg(p)
    p.set_defaults(func=run_augment)


# ---------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add `analyze` with its subcommands to the main parser's subparsers."""
    p = subparsers.add_parser("analyze", formatter_class=HELP_FORMAT,
                              help="look inside a model: params, receptive-field, anchors, rpn-targets, flops, augment",
                              description="Tools to look inside a model and a data set.")  # fmt: skip
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    _add_params(sub)
    _add_receptive_field(sub)
    _add_anchors(sub)
    _add_rpn_targets(sub)
    _add_flops(sub)
    _add_augment(sub)

    def no_analysis(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_analysis)
