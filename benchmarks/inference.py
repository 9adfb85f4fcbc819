"""Mask R-CNN inference speed on this machine, as JSON (CPU by default).

    python benchmarks/inference.py [--models maskrcnn_resnet50_fpn maskrcnn_resnet50_fpn_v2]
        [--images astronaut chelsea coffee] [--repeats 5] [--quick] [--profile-stages]
        [--batch] [--baseline] [--precision fp32|bf16|int8] [--threads N] [--json PATH]

For each built-in config and parity image (weights rebuilt by
../shared/parity/make_weights.py, loaded as a user would, then `prepare_for_inference`):
latency per image (one warm-up, then fastest and median of --repeats), the
multiply-accumulates `maskrcnn analyze flops` counts for that input size, proposal count
and detection count, the float32 2048 x 2048 matmul rate measured in the same run (best of
several, before and after), and efficiency = 2 x MACs / (fastest latency x best matmul
rate), counting every conv as a direct convolution. The wide 3x3 convs run by Winograd
F(4x4, 3x3) multiply less than that count: `gmacs_executed` and `efficiency_executed` use
the multiply-accumulates actually done. Peak memory: RSS sampled during one untimed run (peak and growth over the RSS
before it), and the process's getrusage peak at the end.

--profile-stages  wall time per stage (benchmarks/stage_timer.py), from the fastest of
                  --profile-repeats profiled runs
--baseline        also time the model without prepare_for_inference (same run) -> speedup
--batch           8 images of mixed sizes: images/s in one batch vs one at a time
--precision       bf16 (CPU autocast) or int8 (dynamic quantization of the Linear layers);
                  reports the change against float32 detections
--no-winograd     prepare without the Winograd 3x3 convs (direct oneDNN convs only)
--system-malloc   leave glibc malloc as it is (default: maskrcnn.runtime.reuse_freed_memory,
                  as the Predictor does)
--quick           1 image, 2 repeats, no memory run (a smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import (  # noqa: E402
    PARITY,
    RssSampler,
    add_malloc_option,
    apply_malloc_option,
    finish_report,
    machine_info,
    matmul_gflops,
    mib,
    summarize_times,
    time_runs,
)
from precision import compare_detections, precision_context, quantize_linear_int8  # noqa: E402
from stage_timer import StageTimer  # noqa: E402

from maskrcnn.analysis.flops import count_macs  # noqa: E402
from maskrcnn.checkpoints import load_state_dict_into  # noqa: E402
from maskrcnn.config import load_config  # noqa: E402
from maskrcnn.model.build import build_model  # noqa: E402
from maskrcnn.model.inference_opt import InferenceConv2d, prepare_for_inference  # noqa: E402

MODELS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
IMAGES = ("astronaut", "chelsea", "coffee")
# The figures for torchvision 0.28 on this kind of machine (quiet), fastest of 3.
TORCHVISION_SECONDS = {"astronaut": 3.3, "chelsea": 4.6, "coffee": 4.6}


def read_image(name: str) -> torch.Tensor:
    """A parity image as the model takes it: (3, H, W) float32 RGB in [0, 1]."""
    array = np.asarray(Image.open(PARITY / "images" / f"{name}.png").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def parity_model(name: str) -> nn.Module:
    """The built-in config `name` with the parity weights, in eval mode (not prepared)."""
    spec = importlib.util.spec_from_file_location("parity_make_weights", PARITY / "make_weights.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state_dict = module.make_weights(module.load_spec(PARITY / name / "spec.json"))
    model = build_model(load_config(name).model)
    load_state_dict_into(model, state_dict)
    return model.eval()


def observe_one_run(model: nn.Module, image: torch.Tensor, context: Any) -> dict[str, Any]:
    """Run once; the resized size, proposals and detections of that run (and the detections)."""
    seen: dict[str, Any] = {"winograd_macs_saved": 0}

    def count_winograd(conv: InferenceConv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inputs[0]
        if conv.runs_winograd(x):
            n, c, h, w = x.shape
            tiles = n * -(-h // 4) * -(-w // 4)
            seen["winograd_macs_saved"] += (n * h * w * 9 - tiles * 36) * c * conv.out_channels

    handles = [
        model.transform.register_forward_hook(lambda m, i, out: seen.__setitem__("batch", out[0])),
        model.rpn.register_forward_hook(lambda m, i, out: seen.__setitem__("proposals", out[0])),
    ] + [m.register_forward_hook(count_winograd) for m in model.modules() if isinstance(m, InferenceConv2d)]
    try:
        with torch.inference_mode(), context():
            (detections,) = model([image])
    finally:
        for handle in handles:
            handle.remove()
    return {
        "resized_hw": list(seen["batch"].image_sizes[0]),
        "padded_hw": list(seen["batch"].tensor.shape[-2:]),
        "num_proposals": int(seen["proposals"][0].shape[0]),
        "num_detections": len(detections),
        "detections": detections,
        "winograd_macs_saved": seen["winograd_macs_saved"],
    }


def latency(model: nn.Module, images: list[torch.Tensor], repeats: int, context: Any) -> list[float]:
    def run() -> None:
        with torch.inference_mode(), context():
            model(images)

    return time_runs(run, repeats, warmup=1)


def memory(model: nn.Module, image: torch.Tensor, context: Any) -> dict[str, float]:
    with RssSampler() as sampler, torch.inference_mode(), context():
        model([image])
    return {"peak_rss_mib": mib(sampler.peak), "rss_growth_mib": mib(sampler.peak - sampler.start)}


def profile_stages(model: nn.Module, image: torch.Tensor, repeats: int, context: Any) -> dict[str, float]:
    """Stage seconds of the fastest of `repeats` profiled runs."""
    best: dict[str, float] | None = None
    for _ in range(repeats):
        with StageTimer(model) as timer, torch.inference_mode(), context():
            model([image])
        stages = timer.stages()
        if best is None or stages["total"] < best["total"]:
            best = stages
    assert best is not None
    return {k: round(v, 4) for k, v in best.items()}


def bench_model(name: str, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    reference = parity_model(name)
    model = prepare_for_inference(copy.deepcopy(reference), winograd=args.winograd) if args.prepare else reference
    context = precision_context(args.precision)
    if args.precision == "int8":
        model = quantize_linear_int8(model)
    result: dict[str, Any] = {
        "prepared_for_inference": args.prepare,
        "winograd": args.prepare and args.winograd,
        "precision": args.precision,
        "images": {},
    }
    for image_name in args.images:
        image = read_image(image_name)
        seen = observe_one_run(model, image, context)
        # Counted on the float model (same layers and shapes; a quantized copy cannot run on "meta").
        macs = count_macs(reference, tuple(seen["resized_hw"]), seen["num_proposals"], seen["num_detections"])
        times = latency(model, [image], args.repeats, context)
        fastest = min(times)
        executed = macs["total"] - seen["winograd_macs_saved"]
        entry: dict[str, Any] = {
            "image_hw": list(image.shape[-2:]),
            **{k: v for k, v in seen.items() if k not in ("detections", "winograd_macs_saved")},
            "latency": summarize_times(times),
            "gmacs": {k: round(v / 1e9, 2) for k, v in macs.items()},
            "gmacs_executed": round(executed / 1e9, 2),
            "efficiency": round(2 * macs["total"] / (fastest * rate * 1e9), 3),
            "efficiency_executed": round(2 * executed / (fastest * rate * 1e9), 3),
        }
        if image_name in TORCHVISION_SECONDS and name == "maskrcnn_resnet50_fpn":
            entry["torchvision_reference_s"] = TORCHVISION_SECONDS[image_name]
        if args.baseline and args.prepare:
            base_times = latency(reference, [image], args.repeats, contextlib.nullcontext)
            entry["unprepared_latency"] = summarize_times(base_times)
            entry["speedup_vs_unprepared"] = round(min(base_times) / fastest, 3)
        if args.precision != "fp32":
            float_seen = observe_one_run(reference, image, contextlib.nullcontext)
            entry["vs_float32"] = compare_detections(float_seen["detections"], seen["detections"])
        if args.profile_stages:
            entry["stages_s"] = profile_stages(model, image, args.profile_repeats, context)
        if not args.quick:
            entry["memory"] = memory(model, image, context)
        result["images"][image_name] = entry
        print(f"  {name} {image_name}: {entry['latency']} eff {entry['efficiency']}", file=sys.stderr)
    if args.batch:
        result["batch"] = bench_batch(model, args, context)
    return result


def mixed_batch() -> list[torch.Tensor]:
    """8 images of mixed sizes: the three parity images, their mirror images, two crops
    (3/4 of the height of the first, 5/6 of the width of the third)."""
    images = [read_image(name) for name in IMAGES]
    flipped = [image.flip(-1) for image in images]
    first_h, third_w = images[0].shape[-2], images[2].shape[-1]
    crops = [images[0][:, : first_h * 3 // 4, :], images[2][:, :, : third_w * 5 // 6]]
    return images + flipped + crops


def bench_batch(model: nn.Module, args: argparse.Namespace, context: Any) -> dict[str, Any]:
    images = mixed_batch()
    repeats = max(1, min(args.repeats, 2))
    one_at_a_time = time_runs(
        lambda: [latency_free_run(model, [image], context) for image in images], repeats, warmup=0
    )
    batched = time_runs(lambda: latency_free_run(model, images, context), repeats, warmup=0)
    return {
        "num_images": len(images),
        "sizes_hw": [list(image.shape[-2:]) for image in images],
        "one_at_a_time_images_per_s": round(len(images) / min(one_at_a_time), 3),
        "batched_images_per_s": round(len(images) / min(batched), 3),
        "batched_over_one_at_a_time": round(min(one_at_a_time) / min(batched), 3),
        "runs": repeats,
    }


def latency_free_run(model: nn.Module, images: list[torch.Tensor], context: Any) -> None:
    with torch.inference_mode(), context():
        model(images)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per image after one warm-up")
    parser.add_argument("--quick", action="store_true", help="first image only, 2 repeats, no memory run")
    parser.add_argument("--profile-stages", action="store_true", help="time per stage")
    parser.add_argument("--profile-repeats", type=int, default=3, help="profiled runs per image (fastest kept)")
    parser.add_argument("--batch", action="store_true", help="8 mixed-size images: batched vs one at a time")
    parser.add_argument("--baseline", action="store_true", help="also time the model without prepare_for_inference")
    parser.add_argument("--no-prepare", dest="prepare", action="store_false", help="skip prepare_for_inference")
    parser.add_argument("--no-winograd", dest="winograd", action="store_false", help="direct 3x3 convs only")
    add_malloc_option(parser)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.images = args.images[:1]
        args.repeats = min(args.repeats, 2)
    if args.repeats < 1 or args.profile_repeats < 1:
        parser.error("--repeats and --profile-repeats: expected >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if not PARITY.is_dir():
        raise SystemExit(f"parity fixtures not found at {PARITY} (the shared/ folder beside the repository)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    malloc_tuned = apply_malloc_option(args)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/inference.py", *sys.argv[1:]]),
        "malloc_reuses_freed_memory": malloc_tuned,
    }
    rate_before = matmul_gflops()
    report["models"] = {}
    for name in args.models:
        report["models"][name] = bench_model(name, args, rate_before)
    rate_after = matmul_gflops()
    rate = max(rate_before, rate_after)
    if rate != rate_before:  # efficiencies use the best rate seen in the run
        for model_result in report["models"].values():
            for entry in model_result["images"].values():
                for key in ("efficiency", "efficiency_executed"):
                    entry[key] = round(entry[key] * rate_before / rate, 3)
    report["matmul_2048_fp32_gflops"] = {"before": round(rate_before, 1), "after": round(rate_after, 1), "used": round(rate, 1)}
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
