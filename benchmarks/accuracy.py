"""Accuracy per CPU-minute of the from-scratch recipes, as JSON.

    python benchmarks/accuracy.py [--recipes shapes_demo nuclei] [--threads 1]
        [--output runs/accuracy] [--iters N] [--set key=value ...] [--json PATH] [--cpu-clock]

Each recipe is trained for its own budget (its config's solver.max_iter, at most
solver.max_time_s seconds when the recipe sets one, or --iters for a quick check) on its
own generated data, then evaluated on its held-out generated
validation set:
  shapes_demo  exactly what `make demo` trains: 400 + 50 shapes images of 128 px
               (maskrcnn.commands.demo.demo_config)
  nuclei       the `nuclei` recipe on synthetic nuclei (maskrcnn.data.nuclei): its
               config's training and validation sets (different seeds)
Figures per recipe: bbox / segm AP (COCO, maxDets 100 and at the model's cap), the Data
Science Bowl score, iterations, images per iteration, the training loop's wall seconds
(`train_time_s` as summary.json has it), wall and CPU seconds of the whole train call
(this process and its data workers: getrusage), and segm AP per CPU-minute. CPU seconds
are the figure to compare on a shared machine: wall time grows with the other load, CPU
time much less. The machine's load average is recorded before and after each recipe.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, load_average, machine_info  # noqa: E402

from maskrcnn.config import Config, apply_override, load_config  # noqa: E402

RECIPES = ("shapes_demo", "nuclei")
METRIC_KEYS = ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75", "dsb_score")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (data workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def recipe_config(name: str, output: Path, iters: int | None, overrides: list[str]) -> Config:
    """The recipe's config with its data and outputs under `output/name`, then `overrides`."""
    if name == "shapes_demo":
        from maskrcnn.commands.demo import demo_config

        return demo_config(output=output / name, iters=iters, device="cpu", overrides=overrides)
    cfg = load_config(name)
    for split_name, split in (("train", cfg.data.train), ("val", cfg.data.val)):
        split.annotations = str(output / name / "data" / f"{split_name}.json")
        split.images = ""
    cfg.train.output_dir = str(output / name)
    cfg.train.device = "cpu"
    if iters is not None:
        factor = iters / max(1, cfg.solver.max_iter)
        cfg.solver.steps = [max(1, round(step * factor)) for step in cfg.solver.steps]
        cfg.solver.warmup_iters = min(cfg.solver.warmup_iters, max(0, iters // 4))
        cfg.solver.max_iter = iters
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def run_recipe(name: str, output: Path, iters: int | None, overrides: list[str]) -> dict[str, Any]:
    from maskrcnn.data.build import ensure_shapes
    from maskrcnn.engine.train import train

    cfg = recipe_config(name, output, iters, overrides)
    load_before = load_average()
    tick = time.perf_counter()
    ensure_shapes(cfg.data.train, "data.train")  # data generation is not part of training
    ensure_shapes(cfg.data.val, "data.val")
    data_time = time.perf_counter() - tick
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    summary = train(cfg)
    cpu_s = cpu_seconds() - cpu_start
    wall_s = time.perf_counter() - wall_start
    metrics = summary.get("last_eval") or {}
    record: dict[str, Any] = {
        "recipe": name,
        "overrides": overrides,
        "iterations": summary.get("iterations"),  # solver.max_time_s may have shortened the run
        "configured_iterations": cfg.solver.max_iter,
        "time_budget": summary.get("time_budget"),
        "images_per_iteration": cfg.data.batch_size,
        "train_images": cfg.data.train.num_images,
        "val_images": cfg.data.val.num_images,
        "data_generation_s": round(data_time, 1),
        "train_time_s": summary.get("train_time_s"),
        "train_call_wall_s": round(wall_s, 1),
        "train_call_cpu_s": round(cpu_s, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    for key in METRIC_KEYS:
        if key in metrics:
            record[key] = round(float(metrics[key]), 4)
    for key, value in metrics.items():  # AP at the model's detection cap, when above 100
        if key.startswith(("bbox_AP_maxDets", "segm_AP_maxDets")):
            record[key] = round(float(value), 4)
    if "segm_AP" in record and cpu_s > 0:
        record["segm_AP_per_cpu_minute"] = round(record["segm_AP"] / (cpu_s / 60), 4)
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as make demo)")
    parser.add_argument("--output", default="runs/accuracy", help="data, checkpoints and logs go here")
    parser.add_argument("--iters", type=int, default=None, help="override every recipe's iterations (quick checks)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every recipe (e.g. data.val.num_images=20)")
    parser.add_argument("--json", default=None, help="also write the report here (atomically)")
    parser.add_argument("--cpu-clock", action="store_true",
                        help="measure solver.max_time_s in this process's CPU seconds instead of wall seconds: "
                             "on a shared machine a recipe then gets the iterations one quiet thread would")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cpu_clock:
        from maskrcnn.engine import time_budget

        time_budget.CLOCK = time.process_time
    report: dict[str, Any] = {"benchmark": "accuracy", "machine": machine_info(), "threads": args.threads,
                              "budget_clock": "process CPU time" if args.cpu_clock else "wall", "recipes": []}
    for name in args.recipes:
        report["recipes"].append(run_recipe(name, Path(args.output), args.iters, args.overrides))
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
