"""Host waits per training iteration: the operations that make a GPU wait for the host, as JSON.

    python benchmarks/host_syncs.py [--setups r50_fpn_320 shapes_demo] [--warmup 2] [--iters 3]
        [--device cpu|cuda] [--json PATH]

A GPU runs ahead of the Python code that queues its kernels until the host needs a value
the GPU computes (a count, a scalar, a list): then the host waits for every queued kernel
and the GPU idles while Python catches up. Such waits are invisible on a CPU, but the
operations that cause them are the same there, so they are counted here with
`torch.profiler` on an ordinary CPU training run (randomly initialized model, synthetic
shapes images with masks, `engine.train.train_step` with the config's SGD), per iteration:

  aten::_local_scalar_dense   a tensor read as a Python number: .item(), float(t), int(t),
                              bool(t), `if t:` (seen under aten::item / aten::is_nonzero)
  aten::is_nonzero, aten::equal, aten::allclose
                              a Python bool from a tensor
  aten::nonzero               torch.nonzero, one-argument torch.where, and boolean-mask
                              indexing (t[mask], t[mask] = v: aten::index / index_put_
                              with a bool mask call nonzero for the output's size)
  aten::masked_select         output size depends on the data
  aten::_unique, _unique2, unique_dim, unique_consecutive, unique_dim_consecutive
  aten::repeat_interleave     counted when it reads its total back (no output_size given)
  aten::histc, aten::bincount without minlength ... are not used in a training iteration
  host::tolist, host::numpy, host::cpu
                              Tensor.tolist(), Tensor.numpy() and Tensor.cpu() called from
                              this project's code (not aten operators: this script wraps
                              them in a profiler range so they are counted the same way)

A wait is counted once, at the outermost counted operation (bool(t) counts
aten::is_nonzero, not also its aten::_local_scalar_dense). The JSON has one entry per
setup: `config`, `syncs_per_iteration`, `by_op` and `by_source` (the first frame of this
project's code in the Python stack of each counted operation, `file.py:line`), per
iteration. Where the CPU takes a path of its own because reading a value costs nothing
there (RoIAlign's exact band lengths, ops/roi_align.py), the path a GPU takes is counted
(HOST_BOUNDS_EVERYWHERE), and NMS counts as one wait per call (see host::nms).
On CUDA (--device cuda) the same iterations run once more under
torch.cuda.set_sync_debug_mode("warn") and the warnings are counted as a cross-check
(`cuda_sync_warnings_per_iteration`, by source line): those are the waits the CUDA
runtime itself saw.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import finish_report, machine_info
from train import synthetic_batch

import maskrcnn
from maskrcnn.config import load_config
from maskrcnn.engine.schedule import build_optimizer
from maskrcnn.engine.train import train_step
from maskrcnn.model.build import build_model
from maskrcnn.ops import roi_align as roi_align_module

SETUPS: dict[str, tuple[str, list[str], int, int]] = {
    # name: (config, overrides, image size, batch size or 0 for the config's data.batch_size)
    "r50_fpn_320": (
        "maskrcnn_resnet50_fpn",
        ["model.transform.min_size=[320]", "model.transform.max_size=320"],
        320,
        2,
    ),
    "shapes_demo": ("shapes_demo", [], 128, 0),
}

SYNC_OPS = frozenset({
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::equal",
    "aten::allclose",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::unique_dim_consecutive",
    "host::tolist",
    "host::numpy",
    "host::cpu",
    "host::tensor_to_device",
    "host::nms",
})
# Counted only when a wait happens inside it (a child in SYNC_OPS): repeat_interleave
# without output_size reads its total back, with output_size it does not.
SYNC_WHEN_INNER = frozenset({"aten::repeat_interleave"})
PACKAGE_DIR = str(Path(maskrcnn.__file__).resolve().parent)  # wrapper frames: absolute file names
PACKAGE_PREFIX = "maskrcnn/"  # profiler events: file names relative to sys.path


@contextlib.contextmanager
def host_reads_counted() -> Iterator[None]:
    """Run inside a profiler range, when called from this project's code: Tensor.tolist /
    numpy / cpu (a copy to the host), torch.tensor / as_tensor of Python or NumPy data
    with a device (a blocking copy to the device, which waits for the GPU's queue), and
    each NMS call (its CPU path works on the host; on a GPU it copies its suppression
    bits back once: counted as one wait, whatever runs inside)."""
    import maskrcnn.model.roi_heads as roi_heads_module
    import maskrcnn.model.rpn as rpn_module

    def wrap(label: str, original: Callable[..., Any], when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            frame = sys._getframe(1)
            if not frame.f_code.co_filename.startswith(PACKAGE_DIR) or not when(*args, **kwargs):
                return original(*args, **kwargs)
            with record_function(f"{label} {Path(frame.f_code.co_filename).name}:{frame.f_lineno}"):
                return original(*args, **kwargs)

        return wrapper

    def copies_to_device(data: Any = None, *args: Any, device: Any = None, **kwargs: Any) -> bool:
        return device is not None and not isinstance(data, torch.Tensor)

    patches: list[tuple[Any, str, Any]] = [
        (torch.Tensor, name, wrap(f"host::{name}", getattr(torch.Tensor, name))) for name in ("tolist", "numpy", "cpu")
    ]
    patches += [(torch, name, wrap("host::tensor_to_device", getattr(torch, name), copies_to_device))
                for name in ("tensor", "as_tensor")]
    patches += [(module, name, wrap("host::nms", getattr(module, name)))
                for module in (rpn_module, roi_heads_module) for name in ("nms_per_image", "batched_nms")
                if hasattr(module, name)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _sync_name(name: str) -> str:
    """`host::numpy ops.py:12` -> `host::numpy` (the range's label carries its call line)."""
    return name.split(" ", 1)[0]


def _source(event: Any) -> str:
    """Where the wait comes from: the call line for the host:: ranges (recorded by the
    wrapper), else the innermost function of this project's code around the event,
    `path(def line): name` (with_stack records Python functions as parent events)."""
    if event.name.startswith("host::"):
        return event.name.split(" ", 1)[1]
    while event is not None:
        if event.name.startswith(PACKAGE_PREFIX) and "(" in event.name:
            return event.name[len(PACKAGE_PREFIX):]
        event = event.cpu_parent
    return "outside the package"


def _counted(event: Any) -> bool:
    """Outermost counted operation: a SYNC_OPS name (or a SYNC_WHEN_INNER with one inside)
    with no counted ancestor."""
    def is_sync(e: Any) -> bool:
        if _sync_name(e.name) in SYNC_OPS:
            return True
        return e.name in SYNC_WHEN_INNER and any(is_sync(c) for c in e.cpu_children)

    if not is_sync(event):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if is_sync(parent):
            return False
        parent = parent.cpu_parent
    return True


def count_syncs(events: list[Any], iterations: int) -> dict[str, Any]:
    by_op: collections.Counter[str] = collections.Counter()
    by_source: collections.Counter[str] = collections.Counter()
    for event in events:
        if _counted(event):
            by_op[_sync_name(event.name)] += 1
            by_source[_source(event)] += 1

    def per_iter(counter: collections.Counter[str]) -> dict[str, float]:
        return {k: round(v / iterations, 2) for k, v in counter.most_common()}

    return {
        "syncs_per_iteration": round(sum(by_op.values()) / iterations, 2),
        "by_op": per_iter(by_op),
        "by_source": per_iter(by_source),
    }


def cuda_sync_warnings(run: Callable[[int], None], first: int, count: int) -> dict[str, Any]:
    """Waits the CUDA runtime saw: set_sync_debug_mode("warn") warnings over `count` iterations."""
    by_line: collections.Counter[str] = collections.Counter()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(count):
                run(first + i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        if "synchroniz" in str(warning.message):
            by_line[f"{Path(warning.filename).name}:{warning.lineno}"] += 1
    return {
        "cuda_sync_warnings_per_iteration": round(sum(by_line.values()) / count, 2),
        "cuda_sync_warnings_by_line": {k: round(v / count, 2) for k, v in by_line.most_common(25)},
    }


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    config_name, overrides, image_size, batch_size = SETUPS[name]
    cfg = load_config(config_name, overrides)
    batch_size = batch_size or cfg.data.batch_size
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.solver)
    for group in optimizer.param_groups:  # a small step: no divergence over a few iterations
        group["lr"] = min(group["lr"], 0.002)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    images, targets = synthetic_batch(batch_size, image_size, seed=0)
    images = [image.to(device) for image in images]
    targets = [target.to(device) for target in targets]

    def step(iteration: int) -> None:
        train_step(model, images, targets, optimizer=optimizer, scaler=scaler, iteration=iteration)

    for i in range(args.warmup):
        step(i)
    # RoIAlign reads exact tap counts back on the CPU (free there); count the GPU's path
    roi_align_module.HOST_BOUNDS_EVERYWHERE = True
    with host_reads_counted(), profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
        for i in range(args.iters):
            step(args.warmup + i)
    result: dict[str, Any] = {
        "config": config_name,
        "overrides": overrides,
        "batch_size": batch_size,
        "image_hw": [image_size, image_size],
        "device": str(device),
        "iterations_counted": args.iters,
        **count_syncs(prof.events(), args.iters),
    }
    roi_align_module.HOST_BOUNDS_EVERYWHERE = False
    if device.type == "cuda":
        result.update(cuda_sync_warnings(step, args.warmup + args.iters, args.iters))
    print(f"  {name}: {result['syncs_per_iteration']} host waits per iteration", file=sys.stderr)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--warmup", type=int, default=2, help="uncounted iterations first")
    parser.add_argument("--iters", type=int, default=3, help="counted iterations per setup")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    report: dict[str, Any] = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/host_syncs.py", *(argv if argv is not None else sys.argv[1:])]),
        "counted_ops": sorted(SYNC_OPS | SYNC_WHEN_INNER),
        "setups": {name: measure(name, args, device) for name in args.setups},
    }
    return finish_report(report, args.json)


if __name__ == "__main__":
    main()
