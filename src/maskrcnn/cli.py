"""`maskrcnn <command>`: the command line.

This file only declares the commands and their options; each command's work lives in the
module that owns the concern, imported when the command runs (so `maskrcnn --help` stays
fast):

    train         maskrcnn.api.train (which runs maskrcnn.engine.train.train)
    predict       maskrcnn.commands.predict.run_predict
    evaluate      maskrcnn.commands.evaluate.run_evaluate
    demo          maskrcnn.commands.demo.run_demo
    configs       maskrcnn.config (list built-in configs / print one as YAML)
    import-masks  registered by maskrcnn.commands.import_masks
    analyze       registered by maskrcnn.analysis.commands
    serve         registered by maskrcnn.serve.commands
    export        registered by maskrcnn.export.commands

Commands registered by other modules call `parser.set_defaults(func=handler)` where
`handler(args) -> int | None`. Errors a user can cause (`maskrcnn.errors.UserError`, plus
missing files and permissions) end with one line
`maskrcnn: error: ...` on stderr and exit status 1; set MASKRCNN_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from maskrcnn import __version__
from maskrcnn.commands.image_options import add_image_options
from maskrcnn.errors import UserError, error_message, is_user_error

Handler = Callable[[argparse.Namespace], "int | None"]
HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter
EXTERNAL_COMMANDS = (
    ("import-masks", "maskrcnn.commands.import_masks"),
    ("analyze", "maskrcnn.analysis.commands"),
    ("serve", "maskrcnn.serve.commands"),
    ("export", "maskrcnn.export.commands"),
)


# ---------------------------------------------------------------------------------------
# Command handlers (thin: parse -> call the owning module)
# ---------------------------------------------------------------------------------------


def _set_threads(threads: int) -> None:
    """Limit PyTorch's CPU threads for this process (0: leave PyTorch's default).

    On a shared or busy CPU, several threads per process can make small models many times
    slower (threads wait on each other at every operation); one thread avoids that.
    """
    if threads < 0:
        raise ThreadsOptionError(f"--threads: expected 0 (PyTorch's default) or a positive number, got {threads}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


class ThreadsOptionError(UserError):
    """A negative --threads value."""


def _cmd_train(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from maskrcnn.api import train

    summary = train(args.config, overrides=args.set, resume=args.resume, output_dir=args.output, device=args.device,
                    init_weights=args.init_weights)
    shown = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    for key, value in shown.items():
        print(f"{key:>24}  {value:.4f}" if isinstance(value, float) else f"{key:>24}  {value}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from maskrcnn.commands.image_options import image_option_values
    from maskrcnn.commands.predict import PredictOptions, run_predict

    options = PredictOptions(
        weights=args.weights,
        config=args.config,
        output=args.output,
        score_threshold=args.score_threshold,
        mask_threshold=args.mask_threshold,
        mask_paste=args.mask_paste,
        test_augment=args.test_augment,
        device=args.device,
        batch_size=args.batch_size,
        overlays=not args.no_overlays,
        progress=not args.quiet,
        precision=args.precision,
        **image_option_values(args),
    )
    run_predict(args.images, options)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from maskrcnn.commands.evaluate import run_evaluate

    run_evaluate(
        annotations=args.annotations,
        weights=args.weights,
        images=args.images,
        predictions=args.predictions,
        config=args.config,
        device=args.device,
        batch_size=args.batch_size,
        score_threshold=args.dsb_score_threshold,
        max_dets=args.max_dets,
        test_augment=args.test_augment,
        mask_threshold=args.mask_threshold,
        mask_paste=args.mask_paste,
        json_path=args.json,
        report_dir=args.report,
        progress=not args.quiet,
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from maskrcnn.commands.demo import run_demo

    run_demo(
        output=args.output,
        iters=args.iters,
        train_images=args.train_images,
        val_images=args.val_images,
        image_size=args.image_size,
        overrides=args.set,
        device=args.device,
        seed=args.seed,
        num_overlays=args.overlays,
    )
    return 0


def _cmd_configs(args: argparse.Namespace) -> int:
    from maskrcnn.config import (
        CONFIG_DIR,
        builtin_config_names,
        dump_config,
        load_config,
    )

    if args.name is None:
        print("built-in configs (maskrcnn configs NAME prints one as YAML):")
        for name in builtin_config_names():
            first_line = (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()[:1]
            note = first_line[0].lstrip("# ").strip() if first_line and first_line[0].startswith("#") else ""
            print(f"  {name:<32} {note}")
        return 0
    print(dump_config(load_config(args.name, args.set)), end="")
    return 0


# ---------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set solver.lr=0.01 (repeatable)",
    )


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model from a config", formatter_class=HELP_FORMAT,
                       description="Train Mask R-CNN: built-in config name or YAML file, plus --set overrides.")
    p.add_argument("--config", default="shapes_demo", help="built-in config name or YAML file")
    _add_set_option(p)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt")
    p.add_argument("--init-weights", default=None, metavar="FILE",
                   help="start a new run from these weights: a maskrcnn checkpoint, a torchvision Mask R-CNN "
                        "or ImageNet ResNet state dict (None: the config's train.init_weights)")
    p.add_argument("--output", default=None, help="output folder (None: the config's train.output_dir)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (None: the config's train.device)")
    p.add_argument("--threads", type=int, default=0,
                   help="PyTorch CPU threads (0: PyTorch's default)")
    p.set_defaults(func=_cmd_train)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="run a model on images; write COCO-format predictions and overlays",
                       formatter_class=HELP_FORMAT,
                       description="Detect and segment objects in images (files, folders or glob patterns).")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns (quote globs)")
    p.add_argument("--weights", required=True, help="native checkpoint, or a torchvision state dict with --config")
    p.add_argument("--config", default=None,
                   help="built-in config name or YAML file (needed for plain torchvision state dicts)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this")
    _add_mask_threshold(p)
    _add_mask_paste(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call")
    p.add_argument("--output", default="runs/predict", help="folder for predictions.json and overlays/")
    p.add_argument("--threads", type=int, default=0,
                   help="PyTorch CPU threads (0: PyTorch's default)")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    p.add_argument("--precision", default="fp32", help="fp32, or bf16 on CPUs with AVX512_BF16/AMX (docs/export.md)")
    _add_test_augment(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_image_options(p)  # --tile, --tile-overlap, --tile-scale, --label-image, --intensity, --max-image-pixels
    p.set_defaults(func=_cmd_predict)


def _add_mask_threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask-threshold", type=float, default=None,
                   help="a pixel is in a mask when its probability is above this (None: the checkpoint's "
                        "model.roi_heads.mask_threshold, 0.5 unless its recipe sets another)")


def _add_mask_paste(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mask-paste", default=None, choices=["torchvision", "exact"],
                   help="how mask grids become image masks: torchvision's paste (one pixel larger) or exact "
                        "(None: the checkpoint's model.roi_heads.mask_paste; docs/recipes.md)")


def _add_test_augment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-augment", default=None, choices=["none", "flips", "dihedral"],
                   help="none, flips (4 passes) or dihedral (8: flips and transposes): predict on mirrored copies "
                        "and merge them (None: the checkpoint's model.test_augment; docs/training.md)")


class _DeprecatedSpelling(argparse.Action):
    """An option's old name: stores its value as the new name does and says so on stderr."""

    def __init__(self, *args: Any, new_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new_name = new_name

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"maskrcnn: note: {option_string} is deprecated here, use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="COCO box/mask AP and the Data Science Bowl score",
                       formatter_class=HELP_FORMAT,
                       description="Evaluate a checkpoint on a COCO data set (--weights, --images) or a "
                                   "predictions file (--predictions) against COCO ground truth.")
    p.add_argument("--annotations", required=True, help="ground-truth COCO JSON")
    p.add_argument("--weights", default=None, help="checkpoint to run on --images")
    p.add_argument("--images", default=None, help="image folder the annotations' file_name values are relative to")
    p.add_argument("--predictions", default=None, help="COCO results JSON (e.g. from maskrcnn predict)")
    p.add_argument("--config", default=None, help="built-in config for a plain torchvision state dict")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call")
    p.add_argument("--dsb-score-threshold", dest="dsb_score_threshold", type=float,
                   default=None, metavar="T",
                   help="detections scoring at least T count for the Data Science Bowl score "
                        "(None: the config's evaluation.dsb_score_threshold)")
    # The old spelling: in `predict`, --score-threshold filters detections; here it never did.
    p.add_argument("--score-threshold", dest="dsb_score_threshold", type=float, metavar="T",
                   action=_DeprecatedSpelling, new_name="--dsb-score-threshold", help=argparse.SUPPRESS)
    p.add_argument("--max-dets", type=int, default=None, metavar="N",
                   help="COCO maxDets reported beside the standard 100 (None: the model's "
                        "detections_per_img; for --predictions the most results of one image and category)")
    _add_test_augment(p)
    _add_mask_threshold(p)
    _add_mask_paste(p)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the metrics to this JSON file")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write an HTML report (index.html, charts, pictures of the worst images) into this "
                        "new or empty folder; with --predictions, add --images to see the pictures (docs/report.md)")
    p.add_argument("--threads", type=int, default=0,
                   help="PyTorch CPU threads (0: PyTorch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="generate shapes, train a small model, evaluate, draw overlays",
                       formatter_class=HELP_FORMAT,
                       description="End to end on generated shapes: data, training (CPU-sized recipe "
                                   "shapes_demo), COCO evaluation, overlay pictures and a loss plot.")
    p.add_argument("--output", default="runs/demo", help="output folder")
    p.add_argument("--iters", type=int, default=None, help="training iterations (None: the recipe's)")
    p.add_argument("--train-images", type=int, default=None, help="generated training images (None: the recipe's)")
    p.add_argument("--val-images", type=int, default=None, help="generated validation images (None: the recipe's)")
    p.add_argument("--image-size", type=int, default=None, help="side of generated images in pixels (None: the recipe's)")
    _add_set_option(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed for data generation and training")
    p.add_argument("--threads", type=int, default=2,
                   help="PyTorch CPU threads (0: PyTorch's default). On an idle 2-core CPU two threads train about "
                        "1.5x the iterations of one in the recipe's 480 s budget; on a busy CPU give 1 (two threads "
                        "that wait for each other can be many times slower)")
    p.add_argument("--overlays", type=int, default=6, help="validation images to draw")
    p.set_defaults(func=_cmd_demo)


def _add_configs(sub: Any) -> None:
    p = sub.add_parser("configs", help="list built-in configs, or print one as YAML", formatter_class=HELP_FORMAT)
    p.add_argument("name", nargs="?", default=None, help="built-in config name or YAML file to print")
    _add_set_option(p)
    p.set_defaults(func=_cmd_configs)


def _add_external(sub: Any, command: str, module_name: str) -> None:
    """Let another module register its command; if it cannot, keep a stub that says why."""
    try:
        importlib.import_module(module_name).register(sub)
    except Exception as exc:  # noqa: BLE001 - one missing part must not break the other commands
        reason = f"{type(exc).__name__}: {exc}"
        p = sub.add_parser(command, help=f"(unavailable: {reason})", add_help=True)

        def unavailable(_: argparse.Namespace) -> int:
            raise CommandUnavailableError(f"the {command!r} command is unavailable ({module_name}: {reason})")

        p.set_defaults(func=unavailable)


class CommandUnavailableError(UserError, RuntimeError):
    """A command whose module could not be imported."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn", formatter_class=HELP_FORMAT,
        description="Mask R-CNN instance segmentation: train, evaluate, predict, analyse.",
        epilog="Run `maskrcnn COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_train(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_configs(sub)
    for command, module_name in EXTERNAL_COMMANDS:
        _add_external(sub, command, module_name)
    parser.choices_by_command = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


# Commands that only run the model forward. Their OpenMP threads sleep instead of spinning
# while they wait: on a quiet 2-core Xeon the same speed (R50-FPN 2.58 s a 800x1201 image
# either way), on a busy one 6x faster (8.7 s against 54 s at load 6; benchmarks/omp_wait.py).
# Training keeps OpenMP's default: sleeping cost it 14 % on the quiet machine.
INFERENCE_COMMANDS = frozenset({"predict", "evaluate", "serve", "export"})


def sleep_while_waiting_for_inference(command: str | None) -> None:
    """Set OMP_WAIT_POLICY=PASSIVE for an inference command unless the user set it. It must
    be set before torch starts OpenMP, which no command has done by now."""
    if command in INFERENCE_COMMANDS and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    handler: Handler | None = getattr(args, "func", None) or getattr(args, "handler", None)
    if handler is None:  # no command, or a command group (e.g. `analyze`) without its subcommand
        if args.command is None:
            parser.print_help()
            return 0
        parser.choices_by_command[args.command].print_help()
        return 2
    sleep_while_waiting_for_inference(args.command)
    try:
        status = handler(args)
    except KeyboardInterrupt:
        print("maskrcnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user errors become one line; bugs keep their traceback
        if os.environ.get("MASKRCNN_DEBUG") or not is_user_error(exc):
            raise
        print(f"maskrcnn: error: {error_message(exc)}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))  # a training run stopped by a signal: 75
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
