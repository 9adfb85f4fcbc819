"""Our Predictor against the deployment runtimes on our own exported ONNX file, as JSON.

    python benchmarks/runtimes.py [--images astronaut chelsea coffee | --image-files FILE...] [--repeats 3]
        [--threads 2] [--weights FILE --config NAME] [--test-augment none|flips|dihedral] [--onnx FILE] [--json PATH]

One process, one interleaved run (the order of the runtimes rotates every round, so a
burst of load from elsewhere hits all of them): our Predictor in float32 and in bfloat16
(--precision bf16), ONNX Runtime (CPU, float32) on the file `maskrcnn export` writes,
OpenVINO on the same file with INFERENCE_PRECISION_HINT f32 and bf16. Weights: the R50-FPN
parity fixtures (../shared/parity/make_weights.py) unless --weights is given; images: the
parity images at full size (resized to 800 px by the model), or --image-files. The file is
exported with the checkpoint's mask paste and test-time augmentation (or --test-augment,
which the Predictors then use too), so every runtime computes the same thing; the report
records what the file holds (its metadata). Every runtime gets the same
(H, W, 3) uint8 image and `--threads` threads; each call is timed from the image to
thresholded NumPy outputs.

Reported: per runtime and image the times (fastest, median), the per-call ratio to our
float32 Predictor (min, median over image x round), parity of ONNX Runtime and OpenVINO
f32 with our float32 output (the criterion of ../shared/parity/README.md), agreement of
each bf16 path with its own float32 path as COCO box / mask AP (float32 detections as
ground truth: all of them, and those scoring >= 0.5), the CPU flags that matter
(avx512_bf16, amx_bf16, ...) and the load average before, during and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import PARITY, finish_report, load_average, machine_info  # noqa: E402

from maskrcnn.evaluation.agreement import agreement_ap  # noqa: E402
from maskrcnn.export.compare import DetectionSet, compare_detections  # noqa: E402
from maskrcnn.inference.precision import cpu_flags  # noqa: E402

RUNTIMES = ("predictor_fp32", "predictor_bf16", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16")
# Our float32 Predictor with direct oneDNN convolutions only (no Winograd): which is faster
# depends on the CPU (Winograd was chosen on an AVX2 machine).
DIRECT = "predictor_fp32_direct"
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx512_vnni", "avx512_fp16")
Prediction = dict[str, np.ndarray]


def parity_weights(folder: Path) -> Path:
    """The R50-FPN parity weights as a torchvision-format file (what a user brings)."""
    import importlib.util
    import json

    spec_module = importlib.util.spec_from_file_location("parity_make_weights", PARITY / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec_module)
    spec_module.loader.exec_module(make_weights)
    spec_path = PARITY / "maskrcnn_resnet50_fpn" / "spec.json"
    seed = json.loads(spec_path.read_text())["seed"]
    path = folder / "maskrcnn_resnet50_fpn_parity.pth"
    torch.save(make_weights.make_weights(make_weights.load_spec(spec_path), seed=seed), path)
    return path


def onnx_outputs_to_prediction(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray) -> Prediction:
    return {"boxes": boxes, "labels": labels.astype(np.int64), "scores": scores, "masks": masks > 0.5}


def build_runners(
    weights: Path, config: str | None, onnx_path: Path, threads: int, test_augment: str | None = None
) -> dict[str, Callable[[np.ndarray], Prediction]]:
    import onnxruntime as ort
    import openvino as ov

    from maskrcnn import Predictor

    runners: dict[str, Callable[[np.ndarray], Prediction]] = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor.from_checkpoint(
            weights, config=config, device="cpu", score_threshold=0.0, precision=precision, test_augment=test_augment
        )
        runners[f"predictor_{precision}"] = predictor
    runners[DIRECT] = Predictor.from_checkpoint(
        weights, config=config, device="cpu", score_threshold=0.0, winograd=False, test_augment=test_augment
    )

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    runners["onnxruntime_fp32"] = lambda image: onnx_outputs_to_prediction(*session.run(None, {"image": image}))

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    for hint in ("f32", "bf16"):
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        })
        request = compiled.create_infer_request()

        def run_openvino(image: np.ndarray, request: Any = request) -> Prediction:
            outputs = list(request.infer({"image": image}).values())  # in the file's output order
            return onnx_outputs_to_prediction(*outputs)

        runners[f"openvino_{'fp32' if hint == 'f32' else 'bf16'}"] = run_openvino
    return runners


def as_detection_set(prediction: Prediction) -> DetectionSet:
    return DetectionSet(prediction["boxes"], prediction["labels"], prediction["scores"], prediction["masks"])


def ratio_summary(ratios: list[float]) -> dict[str, float]:
    return {"min": round(min(ratios), 3), "median": round(statistics.median(ratios), 3), "max": round(max(ratios), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="+", default=["astronaut", "chelsea", "coffee"])
    parser.add_argument("--image-files", nargs="+", default=None, help="image files to use instead of --images")
    parser.add_argument("--test-augment", choices=("none", "flips", "dihedral"), default=None,
                        help="for the file and the Predictors (default: the checkpoint's model.test_augment)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="checkpoint (default: the R50-FPN parity weights)")
    parser.add_argument("--config", default=None, help="config for a torchvision state dict")
    parser.add_argument("--onnx", default=None, help="an exported file to use instead of exporting now")
    parser.add_argument("--json", default=None, help="also write the report here")
    parser.add_argument(
        "--clock", choices=("wall", "process"), default="wall",
        help="process: this process's CPU seconds instead of wall time; with --threads 1 it is "
        "barely changed by other jobs on the machine, so runtimes compare per core on a busy CPU",
    )
    parser.add_argument(
        "--runtimes", nargs="+", default=None, choices=RUNTIMES + (DIRECT,),
        help="only these (predictor_fp32 is always run: the ratios are to it); default: all",
    )
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    runtimes = ("predictor_fp32",) + tuple(r for r in args.runtimes or RUNTIMES + (DIRECT,) if r != "predictor_fp32")

    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    report: dict[str, Any] = {
        "command": "benchmarks/runtimes.py " + " ".join(sys.argv[1:]),
        "machine": {
            **machine_info(),
            "cpu_flags_of_interest": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
            "cpu_flags": " ".join(sorted(flags)),
        },
        "threads": args.threads,
        # OpenMP's spin-waiting decides PyTorch's speed on a shared CPU (see docs/export.md)
        "environment": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "KMP_BLOCKTIME")},
    }
    workdir = Path(tempfile.mkdtemp(prefix="maskrcnn_runtimes_"))
    weights = Path(args.weights) if args.weights else parity_weights(workdir)
    config = args.config if args.weights else "maskrcnn_resnet50_fpn"
    onnx_path = Path(args.onnx) if args.onnx else workdir / "model.onnx"
    if not args.onnx:
        from maskrcnn.export.onnx_export import export_checkpoint

        start = time.perf_counter()
        export_checkpoint(weights, onnx_path, config=config, test_augment=args.test_augment)
        report["export_s"] = round(time.perf_counter() - start, 1)
    report["onnx_file_mib"] = round(onnx_path.stat().st_size / 2**20, 1)
    import onnx

    report["onnx_file_metadata"] = {
        p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props
        if p.key in ("maskrcnn.mask_paste", "maskrcnn.test_augment", "maskrcnn.mask_threshold")
    }

    import onnxruntime
    import openvino

    report["versions"] = {"onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__}
    runners = build_runners(weights, config, onnx_path, args.threads, args.test_augment)
    if args.image_files:
        images = {Path(f).name: np.asarray(Image.open(f).convert("RGB")) for f in args.image_files}
    else:
        images = {name: np.asarray(Image.open(PARITY / "images" / f"{name}.png").convert("RGB")) for name in args.images}

    # Warm-up round: first-call costs (weight packing, graph compilation), and the outputs compared below.
    outputs: dict[str, dict[str, Prediction]] = {name: {} for name in runtimes}
    warmup_s: dict[str, dict[str, float]] = {name: {} for name in runtimes}
    for image_name, image in images.items():
        for runtime in runtimes:
            start = time.perf_counter()
            outputs[runtime][image_name] = runners[runtime](image)
            warmup_s[runtime][image_name] = round(time.perf_counter() - start, 3)
    report["warmup_s"] = warmup_s

    times: dict[str, dict[str, list[float]]] = {name: {image: [] for image in images} for name in runtimes}
    ratios: dict[str, list[float]] = {name: [] for name in runtimes}
    loads = []
    for round_index in range(args.repeats):
        order = runtimes[round_index % len(runtimes):] + runtimes[: round_index % len(runtimes)]
        for image_name, image in images.items():
            this_call = {}
            for runtime in order:
                start = clock()
                runners[runtime](image)
                this_call[runtime] = clock() - start
                times[runtime][image_name].append(round(this_call[runtime], 4))
            for runtime in runtimes:
                ratios[runtime].append(this_call[runtime] / this_call["predictor_fp32"])
        loads.append(load_average())
        print(f"round {round_index + 1}/{args.repeats} done, load {loads[-1]}", file=sys.stderr, flush=True)
    report["load_average_per_round"] = loads

    report["speed"] = {
        runtime: {
            "per_image": {
                image: {"fastest_s": min(values), "median_s": round(statistics.median(values), 4), "runs": values}
                for image, values in times[runtime].items()
            },
            "fastest_s_all_images": min(min(v) for v in times[runtime].values()),
            "median_s_all_images": round(statistics.median([t for v in times[runtime].values() for t in v]), 4),
            "time_ratio_to_predictor_fp32": ratio_summary(ratios[runtime]),
        }
        for runtime in runtimes
    }
    report["clock"] = args.clock
    report["parity_with_predictor_fp32"] = {
        runtime: {
            image: (lambda r: {"passes": r.passes, **r._asdict(), "summary": r.summary()})(
                compare_detections(as_detection_set(outputs["predictor_fp32"][image]), as_detection_set(outputs[runtime][image]))
            )
            for image in images
        }
        for runtime in ("onnxruntime_fp32", "openvino_fp32", DIRECT)
        if runtime in runtimes
    }
    report["bf16_agreement_ap"] = {}
    for bf16, fp32 in (("predictor_bf16", "predictor_fp32"), ("openvino_bf16", "openvino_fp32")):
        if bf16 not in runtimes or fp32 not in runtimes:
            continue
        reference = [outputs[fp32][image] for image in images]
        candidate = [outputs[bf16][image] for image in images]
        report["bf16_agreement_ap"][f"{bf16}_vs_{fp32}"] = {
            f"reference_score_at_least_{threshold}": {
                "reference_detections": int(sum((r["scores"] >= threshold).sum() for r in reference)),
                **{k: round(v, 4) for k, v in agreement_ap(reference, candidate, threshold).items()
                   if k.endswith(("_AP", "_AP50", "_AP75"))},
            }
            for threshold in (0.0, 0.5)
        }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
