"""Mask R-CNN training speed: iterations per second and peak memory, as JSON.

    python benchmarks/train.py [--setups shapes_demo r50_fpn_512] [--iters 5] [--warmup 1]
        [--device cpu|cuda] [--amp both|off|on] [--threads N] [--profile N] [--quick] [--json PATH]

Setups (randomly initialized models, synthetic shapes images with their masks, the
project's own `engine.train.train_step` with SGD from the config's solver):
  shapes_demo   the demo recipe (configs/shapes_demo.yaml): plain CNN + FPN, 128 x 128
                images, its batch size (4)
  r50_fpn_512   maskrcnn_resnet50_fpn, batch 2, 512 x 512 images, transform min/max size
                set to 512 so the network sees 512 x 512 (the default would upsample to 800)
  r50_fpn_800   maskrcnn_resnet50_fpn, batch 2, 800 x 800 images (COCO's size; for a GPU)
--torchvision also trains torchvision's maskrcnn_resnet50_fpn (random weights, the same
             images, batch, network size and SGD settings) for the R50-FPN setups, in the
             same run: `<setup>_torchvision` entries (where torchvision is installed).
Each figure: --warmup untimed iterations, then --iters timed ones (iterations/s from
their total, and the fastest). Peak memory: CPU RSS sampled during the timed iterations
(and its growth over the RSS before them); on CUDA torch.cuda.max_memory_allocated. On
CUDA, --amp both (default there) measures float32 and float16 mixed precision. Like
`maskrcnn train` on the CPU, glibc malloc is told to keep freed memory for reuse
(maskrcnn.runtime); --system-malloc leaves it as it is.

--profile N  after timing, N more iterations under torch.profiler: the operators with the
             most self CPU time (and self CUDA time on a GPU), operator calls, kernel
             launches and synchronisations per iteration, the forward time of the model's
             top-level parts, and on a GPU the share of the wall time its kernels ran and
             the source lines that made the host wait for the GPU (one more iteration).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import (  # noqa: E402
    RssSampler,
    add_malloc_option,
    apply_malloc_option,
    finish_report,
    machine_info,
    mib,
)

from maskrcnn.config import Config, load_config  # noqa: E402
from maskrcnn.data.shapes import render_shapes_image  # noqa: E402
from maskrcnn.engine.schedule import build_optimizer  # noqa: E402
from maskrcnn.engine.train import train_step  # noqa: E402
from maskrcnn.model.build import build_model  # noqa: E402
from maskrcnn.ops.boxes import masks_to_boxes  # noqa: E402
from maskrcnn.structures import Targets  # noqa: E402

SETUPS: dict[str, tuple[str, list[str], int, int]] = {
    # name: (config, overrides, image size, batch size or 0 for the config's data.batch_size)
    "shapes_demo": ("shapes_demo", [], 128, 0),
    "r50_fpn_512": (
        "maskrcnn_resnet50_fpn",
        ["model.transform.min_size=[512]", "model.transform.max_size=512"],
        512,
        2,
    ),
    "r50_fpn_800": ("maskrcnn_resnet50_fpn", [], 800, 2),  # the COCO setting (GPU runs)
}


def synthetic_batch(batch_size: int, image_size: int, seed: int) -> tuple[list[torch.Tensor], list[Targets]]:
    """Shapes images (3, S, S) float in [0, 1] with boxes, labels 1..3 and masks."""
    images, targets = [], []
    for index in range(batch_size):
        pixels, instances = render_shapes_image(seed, index, image_size, min_shapes=2, max_shapes=4)
        masks = torch.stack([torch.from_numpy(m.astype("uint8")) for _, m in instances])  # (N, S, S)
        labels = torch.tensor([kind + 1 for kind, _ in instances], dtype=torch.int64)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
        targets.append(Targets(boxes=masks_to_boxes(masks), labels=labels, masks=masks))
    return images, targets


def torchvision_step(
    cfg: Config, image_size: int, images: list, targets: list, device: torch.device, amp: bool, amp_dtype: str
):
    """torchvision's maskrcnn_resnet50_fpn (random weights) and one SGD step of it, as
    `train_step` does ours: float16 autocast and loss scaling under `amp`."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=cfg.model.num_classes,
        min_size=image_size, max_size=max(image_size, 1333 if image_size >= 800 else image_size),
    ).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=min(cfg.solver.lr, 0.002), momentum=cfg.solver.momentum,
                                weight_decay=cfg.solver.weight_decay)
    half = getattr(torch, amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and half == torch.float16)
    tv_targets = [{"boxes": t.boxes, "labels": t.labels, "masks": t.masks} for t in targets]

    def step(_iteration: int) -> None:
        with torch.autocast(device_type=device.type, dtype=half, enabled=amp):
            losses = model(images, tv_targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    return model, step


def bench_setup(
    name: str, args: argparse.Namespace, device: torch.device, amp: bool, torchvision_model: bool = False
) -> dict[str, Any]:
    config_name, overrides, image_size, batch_size = SETUPS[name]
    cfg: Config = load_config(config_name, overrides)
    batch_size = batch_size or cfg.data.batch_size
    torch.manual_seed(0)
    images, targets = synthetic_batch(batch_size, image_size, seed=0)
    images = [image.to(device) for image in images]
    targets = [target.to(device) for target in targets]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if torchvision_model:
        model, one_step = torchvision_step(cfg, image_size, images, targets, device, amp, args.amp_dtype)
    else:
        model = build_model(cfg.model).to(device).train()
        if cfg.train.channels_last:  # as `maskrcnn train` does (engine/run_setup.py)
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg.solver)
        for group in optimizer.param_groups:  # a small step: timing only, and no divergence
            group["lr"] = min(group["lr"], 0.002)
        half = getattr(torch, args.amp_dtype)
        scaler = torch.amp.GradScaler(device.type, enabled=amp and half == torch.float16)

        def one_step(iteration: int) -> None:
            train_step(model, images, targets, optimizer=optimizer, scaler=scaler, iteration=iteration, amp=amp,
                       amp_dtype=half)

    def step(iteration: int) -> None:
        one_step(iteration)
        sync()

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with RssSampler() as sampler:
        for i in range(args.iters):
            start = time.perf_counter()
            step(args.warmup + i)
            times.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        "model": "torchvision maskrcnn_resnet50_fpn" if torchvision_model else "this project's",
        "config": config_name,
        "overrides": overrides,
        "batch_size": batch_size,
        "image_hw": [image_size, image_size],
        "device": str(device),
        "amp": args.amp_dtype if amp else False,
        "iterations_timed": len(times),
        "iterations_per_s": round(len(times) / sum(times), 4),
        "fastest_iteration_s": round(min(times), 4),
        "images_per_s": round(batch_size * len(times) / sum(times), 4),
    }
    if device.type == "cuda":
        result["peak_cuda_memory_mib"] = mib(torch.cuda.max_memory_allocated())
    else:
        result["peak_rss_mib"] = mib(sampler.peak)
        result["rss_growth_mib"] = mib(sampler.peak - sampler.start)
    if args.profile > 0:
        result["profile"] = profile_steps(model, step, args.warmup + args.iters, args.profile, device)
    print(f"  {name} amp={amp}: {result['iterations_per_s']} it/s", file=sys.stderr)
    return result


def profile_steps(model: torch.nn.Module, step: Any, first: int, count: int, device: torch.device) -> dict[str, Any]:
    """`count` iterations under torch.profiler: where the time goes, per iteration."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def enter(module: torch.nn.Module, _inputs: Any) -> None:
        module._profile_range = record_function(f"forward: {module._profile_name}")
        module._profile_range.__enter__()

    def leave(module: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        module._profile_range.__exit__(None, None, None)

    handles = []
    for child_name, child in model.named_children():
        child._profile_name = child_name
        handles += [child.register_forward_pre_hook(enter), child.register_forward_hook(leave)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    try:
        with profile(activities=activities) as prof:
            for i in range(count):
                step(first + i)
    finally:
        for handle in handles:
            handle.remove()
    wall_ms = (time.perf_counter() - start) * 1000 / count
    events = prof.key_averages()

    def per_iter_ms(us: float) -> float:
        return round(us / 1000 / count, 3)

    def device_us(event: Any) -> float:
        return float(getattr(event, "self_device_time_total", 0.0) or getattr(event, "self_cuda_time_total", 0.0))

    def top(key: Any, limit: int = 15) -> list[dict[str, Any]]:
        rows = sorted((e for e in events if key(e) > 0), key=key, reverse=True)[:limit]
        return [{"op": e.key, "calls": round(e.count / count, 1), "self_cpu_ms": per_iter_ms(e.self_cpu_time_total),
                 "self_device_ms": per_iter_ms(device_us(e))} for e in rows]

    calls = {e.key: e.count / count for e in events}
    report: dict[str, Any] = {
        "iterations": count,
        "wall_ms_per_iteration": round(wall_ms, 2),
        "aten_calls_per_iteration": round(sum(c for k, c in calls.items() if k.startswith("aten::")), 1),
        "forward_ms_by_part": {e.key.split(": ", 1)[1]: per_iter_ms(e.cpu_time_total) for e in events
                               if e.key.startswith("forward: ")},
        "top_self_cpu": top(lambda e: e.self_cpu_time_total),
    }
    if device.type == "cuda":
        kernel_us = sum(device_us(e) for e in events if not e.key.startswith("forward: "))
        report["device_busy_ms_per_iteration"] = per_iter_ms(kernel_us)
        report["device_busy_share_of_wall"] = round(kernel_us / 1000 / count / wall_ms, 3)
        report["top_self_device"] = top(device_us)
        report["runtime_calls_per_iteration"] = {
            k: round(c, 1) for k, c in calls.items()
            if k.startswith("cuda") and any(w in k for w in ("Launch", "Synchronize", "Memcpy"))
        }
        report["synchronising_lines"] = synchronising_lines(lambda: step(first + count))
    return report


def synchronising_lines(run: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The source lines whose operations made the host wait for the GPU in one call of
    `run` (torch.cuda.set_sync_debug_mode warns once per such operation), most first."""
    import collections
    import warnings

    counts: collections.Counter[str] = collections.Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        if "synchroniz" in str(warning.message):
            counts[f"{Path(warning.filename).name}:{warning.lineno}"] += 1
    return [{"line": line, "count": count} for line, count in counts.most_common(limit)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per setup")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", default=None, choices=("both", "off", "on"), help="CUDA: default both")
    parser.add_argument("--amp-dtype", default="float16", choices=("float16", "bfloat16"),
                        help="the half type of --amp (float16 with loss scaling; bfloat16 without)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_malloc_option(parser)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile N more iterations per setup (0: no profile)")
    parser.add_argument("--quick", action="store_true", help="shapes_demo only, 2 iterations")
    parser.add_argument("--torchvision", action="store_true",
                        help="also train torchvision's maskrcnn_resnet50_fpn for the R50-FPN setups")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.setups, args.iters = ["shapes_demo"], min(args.iters, 2)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    amp_mode = args.amp or ("both" if device.type == "cuda" else "off")
    amp_values = {"both": [False, True], "off": [False], "on": [True]}[amp_mode]
    if device.type == "cpu" and True in amp_values:
        raise SystemExit("--amp: float16 mixed precision is measured on CUDA only")
    malloc_tuned = apply_malloc_option(args)  # as maskrcnn train does on the CPU
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/train.py", *sys.argv[1:]]),
        "malloc_reuses_freed_memory": malloc_tuned,
    }
    report["setups"] = {
        f"{name}{'_amp' if amp else ''}": bench_setup(name, args, device, amp) for name in args.setups for amp in amp_values
    }
    if args.torchvision:
        for name in (n for n in args.setups if n.startswith("r50")):
            for amp in amp_values:
                report["setups"][f"{name}{'_amp' if amp else ''}_torchvision"] = bench_setup(name, args, device, amp, True)
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
