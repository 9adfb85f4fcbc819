"""`maskrcnn serve` under load and hostile clients, measured with locust (headless), as JSON.

    python benchmarks/serve_load.py --weights runs/demo/model_final.pt --seconds 60 --clients 8
        [--json FILE] [--threads 1] [--max-queue 4] [--read-timeout 30] [--bad-share 0.2]
        [--tricklers 1] [--megapixels 1,2,3,4]

1. Generates real-size images (--megapixels: textured backgrounds with shapes, PNG and JPEG)
   and bad requests (a truncated PNG, text as text/plain, bytes that are no image, a
   42-megapixel PNG, a body declared over --max-upload-mb, a client leaving half-way).
2. Runs the `Predictor` on each good image in this process, decoded as the server decodes
   it: the expected answers (and the model call's own peak memory, from VmHWM).
3. Starts `maskrcnn serve` as a subprocess on a free port and samples its RSS (psutil).
4. Runs locust (benchmarks/serve_load_locustfile.py): --clients clients posting images (a
   --bad-share of them bad; a good request refused with 503 is sent again after
   Retry-After), one client polling /health, --tricklers clients trickling a body.
5. Stops the server with Ctrl+C and writes: `status_counts` (HTTP status -> count, every
   /predict answer), `wrong_answers` (200 answers to good requests that differ from the
   Predictor's), `lost_answers` (good requests that never got a 200), `health_p99_ms`,
   `peak_rss_mib`, `requests_per_second`, `latency_ms` (good requests, 200 answers),
   the server log's tracebacks, and `config` (relative paths).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))

import psutil
import torch
from bench_utils import REPO_ROOT, machine_info
from PIL import Image
from serve_helpers import request, shapes_image

LOCUSTFILE = Path(__file__).resolve().parent / "serve_load_locustfile.py"
TOLERANCE = {"box_px": 0.5, "score": 1e-3}  # answers are rounded to 3 decimals (box) and 5 (score)


def relative(path: str | Path) -> str:
    """A path as the report shows it: relative to the repository, else from its `runs/`
    folder (a model trained in another checkout), else just its name."""
    resolved = Path(path).resolve()
    for root in (Path.cwd(), REPO_ROOT):
        try:
            return str(resolved.relative_to(root))
        except ValueError:
            continue
    parts = resolved.parts
    if "runs" in parts:
        return str(Path(*parts[len(parts) - 1 - parts[::-1].index("runs"):]))
    return resolved.name


def vm_status(pid: int | str, key: str) -> int | None:
    """VmRSS / VmHWM of a process in bytes (Linux), else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_payloads(folder: Path, megapixels: list[float], seed: int) -> tuple[list[dict], list[dict]]:
    good = []
    for i, mp in enumerate(megapixels):
        width = round((mp * 1_000_000 * 4 / 3) ** 0.5)
        height = round(mp * 1_000_000 / width)
        fmt = "PNG" if i % 2 == 0 else "JPEG"
        data = encode(shapes_image(height, width, seed=seed + i), fmt)
        name = f"load_{i}_{width}x{height}.{fmt.lower().replace('jpeg', 'jpg')}"
        path = folder / name
        path.write_bytes(data)
        good.append({"name": name, "path": str(path), "content_type": f"image/{fmt.lower()}",
                     "width": width, "height": height, "bytes": len(data)})
    png = Path(good[0]["path"]).read_bytes()
    huge = encode(np.zeros((6000, 7000, 3), np.uint8), "PNG")  # 42 megapixels, a small file
    bad_bytes = {
        "truncated": (png[: len(png) // 2], "image/png", 400),
        "wrong_type": (b"this is a text, not an image\n" * 100, "text/plain", 415),
        "not_image": (np.random.default_rng(seed).bytes(200_000), "image/png", 400),
        "oversize_pixels": (huge, "image/png", 413),
        "oversize_body": (b"", "image/png", 413),  # only declared: 40 MiB
        "disconnect": (png, "image/png", None),
    }
    bad = []
    for kind, (data, content_type, status) in bad_bytes.items():
        path = folder / f"bad_{kind}.bin"
        path.write_bytes(data)
        bad.append({"kind": kind, "path": str(path), "content_type": content_type, "expected_status": status,
                    "declared_bytes": 40 * 1024 * 1024})
    return good, bad


def expected_answers(args: argparse.Namespace, good: list[dict]) -> dict[str, Any]:
    """The Predictor's answer for each good image, decoded as the server decodes it, and the
    peak memory of one model call (VmHWM over RSS before it, for the largest image)."""
    from maskrcnn.inference.predictor import Predictor
    from maskrcnn.serve.results import prediction_payload
    from maskrcnn.serve.uploads import Upload, decode_image

    torch.set_num_threads(args.threads)  # as the server runs (--threads): the same arithmetic
    predictor = Predictor.from_checkpoint(args.weights, config=args.config, device="cpu", score_threshold=0.0)
    model_peak = 0
    for item in sorted(good, key=lambda g: g["width"] * g["height"]):
        upload = Upload(Path(item["path"]).read_bytes(), item["name"])
        image = decode_image(upload, 10**9)
        del upload
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        before = vm_status("self", "VmRSS")
        start = time.perf_counter()
        result = predictor(image)
        item["model_seconds_alone"] = round(time.perf_counter() - start, 3)
        peak = vm_status("self", "VmHWM")
        if before is not None and peak is not None:
            model_peak = max(model_peak, peak - before)
        payload = prediction_payload(result, predictor, file_name=item["name"], width=image.shape[1],
                                     height=image.shape[0], score_threshold=0.0)
        item["expected"] = {"width": payload["width"], "height": payload["height"], "results": payload["results"]}
        item["detections"] = len(payload["results"])
    return {"model_call_peak_bytes": model_peak}


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self.samples: list[tuple[float, int]] = []  # (seconds since start, RSS bytes)
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.monotonic() - start, rss))
            time.sleep(self.every_s)

    def peaks_per_window(self, window_s: float = 10.0) -> list[float]:
        """The highest RSS (MiB) in each window: a plateau, not a climb, when memory is bounded."""
        peaks: dict[int, int] = {}
        for t, rss in self.samples:
            peaks[int(t // window_s)] = max(peaks.get(int(t // window_s), 0), rss)
        return [round(peaks[k] / 1024 / 1024, 1) for k in sorted(peaks)]


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "maskrcnn.cli", "serve", "--weights", args.weights, "--port", "0",
               "--threads", str(args.threads), "--max-queue", str(args.max_queue),
               "--read-timeout", str(args.read_timeout)]
    if args.config:
        command += ["--config", args.config]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    line = process.stdout.readline()
    match = re.search(r"open (http://[^ ]+)/ ", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}; see {log}")
    return process, match.group(1)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarize(records: list[dict], started: float) -> dict[str, Any]:
    """`started`: wall time the clients started; rates are over the time to the last answer
    to an upload (clients finish their request in hand after --seconds)."""
    predict = [r for r in records if r["kind"] != "health" and r["status"] is not None]
    uploads = [r for r in predict if r["kind"] != "trickle"]
    seconds = max((r["t"] for r in uploads), default=started + 1) - started
    good_final = [r for r in records if r["kind"] == "good" and (r["status"] != 503 or r.get("gave_up"))]
    good_ok = [r for r in good_final if r["status"] == 200]
    health = [r for r in records if r["kind"] == "health"]
    bad = [r for r in records if r["kind"].startswith("bad:") and r.get("expected") is not None]
    trickles = [r for r in records if r["kind"] == "trickle"]
    return {
        "status_counts": dict(sorted(Counter(str(r["status"]) for r in predict).items())),
        "status_counts_by_client": {
            client: dict(sorted(Counter(str(r["status"]) for r in predict if r["kind"].split(":")[0] == client).items()))
            for client in ("good", "bad", "trickle")
        },
        "server_errors_5xx": sum(1 for r in records if r["status"] is not None and r["status"] >= 500
                                 and r["status"] != 503),
        "good_requests": len(good_final),
        "good_answers": len(good_ok),
        "wrong_answers": sum(1 for r in good_ok if r.get("wrong")),
        "wrong_answer_reasons": dict(Counter(r["wrong"] for r in good_ok if r.get("wrong"))),
        "lost_answers": len(good_final) - len(good_ok),
        "refused_503_then_retried": sum(1 for r in records if r["kind"] == "good" and r["status"] == 503),
        "bad_requests": dict(sorted(Counter(r["kind"][4:] for r in records if r["kind"].startswith("bad:")).items())),
        "bad_unexpected_status": sum(1 for r in bad if r["status"] not in (r["expected"], 503)),
        "trickle_statuses": dict(Counter(str(r["status"]) for r in trickles)),
        "load_seconds": round(seconds, 1),
        "requests_per_second": round(len(predict) / seconds, 2),
        "good_answers_per_second": round(len(good_ok) / seconds, 3),
        "latency_ms": {f"p{q}": percentile([r["ms"] for r in good_ok], q) for q in (50, 95, 99)},
        "latency_with_retries_ms": {f"p{q}": percentile([r["ms_with_retries"] for r in good_ok], q) for q in (50, 95, 99)},
        "model_seconds_p50": percentile([r["model_seconds"] for r in good_ok if r.get("model_seconds")], 50),
        "health_requests": len(health),
        "health_non_200": sum(1 for r in health if r["status"] != 200),
        "health_p50_ms": percentile([r["ms"] for r in health], 50),
        "health_p99_ms": percentile([r["ms"] for r in health], 99),
        "health_max_ms": percentile([r["ms"] for r in health], 100),
        "queue_length_max_seen": max((r["queue_length"] or 0 for r in health), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads of the server (and the reference)")
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--read-timeout", type=float, default=30.0)
    parser.add_argument("--bad-share", type=float, default=0.2)
    parser.add_argument("--tricklers", type=int, default=1)
    parser.add_argument("--health-interval", type=float, default=0.25, help="seconds between /health polls")
    parser.add_argument("--megapixels", default="1,2,3,4", help="sizes of the good images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        folder = Path(tmp)
        good, bad = make_payloads(folder, [float(v) for v in args.megapixels.split(",")], args.seed)
        reference = expected_answers(args, good)
        plan = {"good": good, "bad": bad, "seed": args.seed, "bad_share": args.bad_share,
                "tricklers": args.tricklers, "health_interval_s": args.health_interval, "tolerance": TOLERANCE}
        (folder / "plan.json").write_text(json.dumps(plan))
        records_path = folder / "records.jsonl"
        log = folder / "server.log"

        server, url = start_server(args, log)
        try:
            health = request(url + "/health").body
            idle_rss = psutil.Process(server.pid).memory_info().rss
            sampler = RssSampler(server.pid)
            sampler.start()
            users = ["UploadUser", "HealthUser"] + (["TrickleUser"] if args.tricklers else [])
            total = args.clients + 1 + args.tricklers
            env = dict(os.environ, SERVE_LOAD_PLAN=str(folder / "plan.json"), SERVE_LOAD_RECORDS=str(records_path))
            start = time.monotonic()
            started_wall = time.time()
            subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
                 "-u", str(total), "-r", str(total), "-t", f"{int(args.seconds)}s", "--stop-timeout", "120",
                 "--only-summary", "--loglevel", "WARNING", *users],
                env=env, check=False, stdout=subprocess.DEVNULL, stderr=(folder / "locust.log").open("w"),
            )
            elapsed = time.monotonic() - start
            sampler.stop.set()
            sampler.join()
            peak_hwm = vm_status(server.pid, "VmHWM")
            after = request(url + "/health").body
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        server_log = log.read_text()
        records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
        locust_log = (folder / "locust.log").read_text()

    bound = health["memory_bound_bytes"]
    mib = 1024 * 1024
    peak = max(sampler.peak, peak_hwm or 0)
    report = {
        "machine": machine_info(),
        "command": "python benchmarks/serve_load.py " + " ".join(
            a if not os.path.isabs(a) else relative(a) for a in sys.argv[1:]),
        **summarize(records, started_wall),
        "peak_rss_mib": round(peak / mib, 1),
        "peak_rss_sampled_mib": round(sampler.peak / mib, 1),
        "idle_rss_mib": round(idle_rss / mib, 1),
        "rss_peak_mib_per_10s": sampler.peaks_per_window(),
        "memory_bound_mib": {key: round(value / mib, 1) for key, value in bound.items()},
        "model_call_peak_mib": round(reference["model_call_peak_bytes"] / mib, 1),
        "rss_within_bound": peak <= idle_rss + bound["total"] + reference["model_call_peak_bytes"],
        "server_log_tracebacks": server_log.count("Traceback"),
        "server_log_errors": server_log.count("ERROR"),
        "locust_log_errors": [line for line in locust_log.splitlines() if "Error" in line][:5],
        "model_calls": after["model_calls"],
        "refused_busy_by_server": after["refused_busy"],
        "elapsed_s": round(elapsed, 1),
        "config": {
            "weights": relative(args.weights), "seconds": args.seconds, "clients": args.clients,
            "threads": args.threads, "max_queue": args.max_queue, "read_timeout_s": args.read_timeout,
            "bad_share": args.bad_share, "tricklers": args.tricklers, "health_interval_s": args.health_interval,
            "max_upload_mb": health["max_upload_mb"], "max_image_pixels": health["max_image_pixels"],
            "good_images": [{k: g[k] for k in ("name", "width", "height", "bytes", "detections",
                                                "model_seconds_alone")} for g in good],
            "bad_kinds": {b["kind"]: b["expected_status"] for b in bad},
            "answer_tolerance": TOLERANCE,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
