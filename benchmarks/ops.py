"""Time the core ops on the CPU (or --device cuda) and print the figures as JSON.

    python benchmarks/ops.py [--repeats 7] [--threads N] [--device cpu|cuda]

RoIAlign: 1000 boxes, 256 channels, 200 x 304 map (an 800 x 1216 image at stride 4),
7 x 7 output, sampling ratio 2, spatial_scale 1/4; forward, forward + backward, and
forward from a channels-last map (skips one copy of the map).
NMS: 4000 boxes, IoU 0.7; batched NMS: the same boxes in 80 categories, IoU 0.5.
Boxes are random inside the 800 x 1216 image (corners uniform, sides 8..400 px).
Each figure is the median (and the minimum) of --repeats runs after one warm-up run; the
machine's 1-minute load average is printed too, since other processes skew the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch

from maskrcnn.ops.nms import batched_nms, nms
from maskrcnn.ops.roi_align import roi_align

IMAGE_H, IMAGE_W = 800, 1216


def random_boxes(num: int, generator: torch.Generator) -> torch.Tensor:
    """(num, 4) boxes inside the image: sides uniform in [8, 400] px, clipped to the image."""
    sides = 8 + torch.rand((num, 2), generator=generator) * 392  # (num, 2) w, h
    corner = torch.rand((num, 2), generator=generator) * torch.tensor([IMAGE_W, IMAGE_H])
    corner = torch.minimum(corner, torch.tensor([IMAGE_W, IMAGE_H]) - sides)
    return torch.cat([corner, corner + sides], dim=1)


def timings_ms(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Median and minimum wall time of `repeats` runs after one warm-up run, and the median
    CPU time of this process (all its threads; with one thread, what the wall time would be
    on an otherwise idle machine)."""
    run()
    sync()
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "median": round(statistics.median(times) * 1000, 2),
        "min": round(min(times) * 1000, 2),
        "cpu_median": round(statistics.median(cpu_times) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)

    feature = torch.randn((2, 256, 200, 304), generator=generator).to(device)
    boxes = random_boxes(1000, generator)
    batch_index = torch.randint(0, 2, (1000, 1), generator=generator).float()
    rois = torch.cat([batch_index, boxes], dim=1).to(device)  # (1000, 5)

    def align_forward() -> object:
        with torch.no_grad():
            return roi_align(feature, rois, 7, 0.25, sampling_ratio=2, aligned=False)

    feature_channels_last = feature.contiguous(memory_format=torch.channels_last)

    def align_forward_channels_last() -> object:
        with torch.no_grad():
            return roi_align(feature_channels_last, rois, 7, 0.25, sampling_ratio=2, aligned=False)

    leaf = feature.clone().requires_grad_(True)

    def align_forward_backward() -> object:
        leaf.grad = None
        out = roi_align(leaf, rois, 7, 0.25, sampling_ratio=2, aligned=False)
        out.backward(torch.ones_like(out))
        return leaf.grad

    nms_boxes = random_boxes(4000, generator).to(device)
    nms_scores = torch.rand(4000, generator=generator).to(device)
    nms_classes = torch.randint(0, 80, (4000,), generator=generator).to(device)

    figures = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "roi_align_forward_ms": timings_ms(align_forward, args.repeats, sync),
        "roi_align_forward_backward_ms": timings_ms(align_forward_backward, args.repeats, sync),
        "roi_align_forward_channels_last_input_ms": timings_ms(align_forward_channels_last, args.repeats, sync),
        "nms_4000_iou0.7_ms": timings_ms(lambda: nms(nms_boxes, nms_scores, 0.7), args.repeats, sync),
        "nms_4000_kept": int(nms(nms_boxes, nms_scores, 0.7).numel()),
        "batched_nms_4000_80cls_iou0.5_ms": timings_ms(
            lambda: batched_nms(nms_boxes, nms_scores, nms_classes, 0.5), args.repeats, sync
        ),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
