"""Cost of each training augmentation per image, against one training iteration, as JSON.

    python benchmarks/augment.py [--sizes 256 1000] [--repeats 7] [--threads 1] [--no-train-step] [--json PATH]

Scenes (grey microscopy-like images stored as RGB, with their full-size uint8 masks as the
data set produces them):
  256   256 x 256, 20 ellipses
  1000  1000 x 1000, 300 ellipses (a dense nuclei image)
Each transform runs with probability 1 on the same scene; figures are the median and the
fastest of --repeats calls after one untimed call. A geometric transform given masks
fresh from the data set first scans them once for their tight boxes
("mask_extents_scan", included in its figure); inside a pipeline later transforms reuse
the boxes the earlier one recorded, so the scan is paid once per image. "pipeline_all_on" is a build_transforms
pipeline with every augmentation on at the probabilities of docs/augmentation.md's example,
timed over --repeats x 4 seeded draws (mean per image, since what it does varies per draw).
"train_step" is one training iteration (forward, backward, SGD update) of the shapes_demo
recipe's model (plain CNN + FPN, the project's smallest) on one such image at its own size:
augmentation is cheap if it is a small fraction of even that.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info, summarize_times, time_runs  # noqa: E402

from maskrcnn.config import AugmentConfig, load_config  # noqa: E402
from maskrcnn.data.geometric import (  # noqa: E402
    RandomRotate90,
    RandomScaleJitter,
    RandomTranspose,
    RandomVerticalFlip,
)
from maskrcnn.data.instance_masks import mask_extents  # noqa: E402
from maskrcnn.data.photometric import (  # noqa: E402
    IntensityJitter,
    RandomGaussianBlur,
    RandomGaussianNoise,
)
from maskrcnn.data.transforms import RandomCrop, RandomHorizontalFlip, build_transforms  # noqa: E402
from maskrcnn.ops.boxes import masks_to_boxes  # noqa: E402
from maskrcnn.structures import Targets  # noqa: E402

INSTANCES = {256: 20, 1000: 300}

ALL_ON = AugmentConfig(
    horizontal_flip=0.5, vertical_flip=0.5, transpose=0.5, scale_jitter=0.5, scale_range=[0.5, 1.5],
    brightness=0.2, contrast=0.2, gamma=0.3, blur=0.3, blur_sigma=[0.5, 1.5], noise=0.3, noise_sigma=[0.01, 0.05],
)  # fmt: skip


def ellipse_scene(size: int, count: int, seed: int = 0) -> tuple[torch.Tensor, Targets]:
    """A grey (3, S, S) image with `count` bright ellipses and their (count, S, S) uint8 masks."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros((count, size, size), dtype=torch.uint8)
    radius_max = max(4, int(size / (count**0.5) / 2))
    for i in range(count):
        ry, rx = (torch.randint(3, radius_max + 1, (2,), generator=generator)).tolist()
        cy, cx = torch.randint(0, size, (2,), generator=generator).tolist()
        y0, y1, x0, x1 = max(0, cy - ry), min(size, cy + ry + 1), max(0, cx - rx), min(size, cx + rx + 1)
        rows = torch.arange(y0, y1).view(-1, 1).float()
        cols = torch.arange(x0, x1).view(1, -1).float()
        masks[i, y0:y1, x0:x1] = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1).to(torch.uint8)
    keep = masks.flatten(1).amax(1) > 0
    masks = masks[keep]
    plane = 0.1 + 0.6 * masks.amax(0).float() + 0.05 * torch.rand((size, size), generator=generator)
    image = plane.clamp(0, 1).expand(3, size, size).contiguous()
    labels = torch.ones(len(masks), dtype=torch.int64)
    return image, Targets(boxes=masks_to_boxes(masks), labels=labels, masks=masks)


def single_transforms(size: int) -> dict[str, Callable]:
    return {
        "horizontal_flip": RandomHorizontalFlip(1.0),
        "vertical_flip": RandomVerticalFlip(1.0),
        "rotate90": RandomRotate90(1.0),
        "transpose": RandomTranspose(1.0),
        "random_crop": RandomCrop(1.0, 0.6),
        "scale_jitter_zoom_in_1.5": RandomScaleJitter(1.0, (1.5, 1.5)),
        "scale_jitter_zoom_out_0.5": RandomScaleJitter(1.0, (0.5, 0.5)),
        f"scale_jitter_lsj_{size}_0.1-2.0": RandomScaleJitter(1.0, (0.1, 2.0), target_size=size),
        "brightness_contrast_gamma": IntensityJitter(0.2, 0.2, 0.3),
        "blur_sigma_1.5": RandomGaussianBlur(1.0, (1.5, 1.5)),
        "noise": RandomGaussianNoise(1.0, (0.03, 0.03)),
    }


def train_step_seconds(image: torch.Tensor, targets: Targets, repeats: int) -> dict[str, Any]:
    from maskrcnn.engine.schedule import build_optimizer
    from maskrcnn.engine.train import train_step
    from maskrcnn.model.build import build_model

    size = image.shape[-1]
    cfg = load_config("shapes_demo", [f"model.transform.min_size=[{size}]", f"model.transform.max_size={size}",
                                      "model.roi_heads.detections_per_img=100"])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    optimizer = build_optimizer(model, cfg.solver)
    for group in optimizer.param_groups:
        group["lr"] = 0.001
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    counter = iter(range(10**6))

    def step() -> None:
        train_step(model, [image], [targets], optimizer=optimizer, scaler=scaler, iteration=next(counter))

    return summarize_times(time_runs(step, max(2, repeats // 2), warmup=1))


def bench_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    image, targets = ellipse_scene(size, INSTANCES[size])
    result: dict[str, Any] = {"image_hw": [size, size], "instances": len(targets), "grey_rgb": True,
                              "mask_megabytes": round(targets.masks.numel() / 1e6, 1), "transforms": {}}  # fmt: skip
    result["mask_extents_scan"] = summarize_times(time_runs(lambda: mask_extents(targets.masks), args.repeats))
    for name, transform in single_transforms(size).items():
        torch.manual_seed(0)
        result["transforms"][name] = summarize_times(time_runs(lambda t=transform: t(image, targets), args.repeats))
        print(f"  {size}: {name} {result['transforms'][name]['median_s']} s", file=sys.stderr)
    pipeline = build_transforms(ALL_ON, train=True)
    torch.manual_seed(0)
    pipeline(image, targets)
    draws = []
    for _ in range(args.repeats * 4):
        start = time.perf_counter()
        pipeline(image, targets)
        draws.append(time.perf_counter() - start)
    result["pipeline_all_on"] = {"pipeline": repr(pipeline), "mean_s": round(statistics.fmean(draws), 4),
                                 "slowest_s": round(max(draws), 4), "draws": len(draws)}  # fmt: skip
    if not args.no_train_step:
        step = train_step_seconds(image, targets, args.repeats)
        result["train_step_shapes_demo_model_1_image"] = step
        result["pipeline_mean_over_train_step_median"] = round(result["pipeline_all_on"]["mean_s"] / step["median_s"], 4)
        print(f"  {size}: train step {step['median_s']} s", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 1000], choices=sorted(INSTANCES))
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per transform")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as in a data-loader worker)")
    parser.add_argument("--no-train-step", action="store_true", help="leave out the training-iteration reference")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": machine_info(), "command": " ".join(["benchmarks/augment.py", *sys.argv[1:]])}
    report["sizes"] = {str(size): bench_size(size, args) for size in args.sizes}
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
