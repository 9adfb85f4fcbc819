"""Winograd F(4x4, 3x3) against oneDNN's direct convolution, for the 3x3 convs of
Mask R-CNN R50-FPN on an 800 x 1216 image, as JSON (CPU).

    python benchmarks/winograd.py [--repeats 5] [--threads N] [--system-malloc] [--json PATH]

Each case is one 3x3, stride-1 conv with bias (channels-last input, what a prepared model
runs): the direct conv (`InferenceConv2d` with Winograd off: oneDNN) and
`ops.winograd.winograd_conv3x3` are timed alternately in the same loop (fastest of
--repeats after a warm-up) so that load on the machine hits both alike. Also the largest
difference from the direct conv, relative to the output's largest value, and whether a
prepared model would take the Winograd path for this shape (`InferenceConv2d.runs_winograd`:
>= 128 channels and >= 64 tiles).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import (  # noqa: E402
    add_malloc_option,
    apply_malloc_option,
    finish_report,
    machine_info,
)

from maskrcnn.model.inference_opt import InferenceConv2d  # noqa: E402
from maskrcnn.ops.winograd import winograd_conv3x3, winograd_weight  # noqa: E402

# (where in the model, N, C_in = C_out, H, W)
CASES = (
    ("res2 conv2 (stride 4)", 1, 64, 200, 304),
    ("res3 conv2 (stride 8)", 1, 128, 100, 152),
    ("res4 conv2 (stride 16)", 1, 256, 50, 76),
    ("res5 conv2 (stride 32)", 1, 512, 25, 38),
    ("FPN output / RPN conv, P2", 1, 256, 200, 304),
    ("FPN output / RPN conv, P3", 1, 256, 100, 152),
    ("FPN output / RPN conv, P4", 1, 256, 50, 76),
    ("FPN output / RPN conv, P5", 1, 256, 25, 38),
    ("RPN conv, P6", 1, 256, 13, 19),
    ("mask head conv, 100 RoIs", 100, 256, 14, 14),
    ("v2 box head conv, 1000 RoIs", 1000, 256, 7, 7),
)


def bench_case(n: int, channels: int, h: int, w: int, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn((n, channels, h, w), generator=generator).contiguous(memory_format=torch.channels_last)
    direct = InferenceConv2d.from_conv(conv).eval().to(memory_format=torch.channels_last)
    weight_u = winograd_weight(direct.folded_weight)
    bias = direct.folded_bias
    times: dict[str, list[float]] = {"direct": [], "winograd": []}
    runs = {"direct": lambda: direct(x), "winograd": lambda: winograd_conv3x3(x, weight_u, bias)}
    with torch.inference_mode():
        reference, result = runs["direct"](), runs["winograd"]()  # also the warm-up
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        direct.winograd = direct.supports_winograd()  # what prepare_for_inference sets
        taken = direct.runs_winograd(x)
    error = float((result - reference).abs().max() / reference.abs().max())
    fastest = {name: min(t) for name, t in times.items()}
    return {
        "shape_nchw": [n, channels, h, w],
        "direct_ms": round(fastest["direct"] * 1000, 2),
        "winograd_ms": round(fastest["winograd"] * 1000, 2),
        "speedup": round(fastest["direct"] / fastest["winograd"], 2),
        "max_error_relative": float(f"{error:.2e}"),
        "prepared_model_uses_winograd": taken,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_malloc_option(parser)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/winograd.py", *sys.argv[1:]]),
        "malloc_reuses_freed_memory": apply_malloc_option(args),
        "cases": {},
    }
    for where, n, channels, h, w in CASES:
        report["cases"][where] = bench_case(n, channels, h, w, args.repeats)
        print(f"  {where}: {report['cases'][where]}", file=sys.stderr)
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
