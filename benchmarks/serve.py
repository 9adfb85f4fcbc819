"""What `maskrcnn serve` adds to a model call, and what concurrent clients get, as JSON.

    python benchmarks/serve.py --weights runs/demo/model_final.pt [--size 512] [--requests 16]
        [--clients 4] [--threads 1] [--json PATH]

In one process: the Predictor called directly on a generated image (median of --requests),
then the same image sent to POST /predict on a loopback server (multipart PNG) one request
at a time: round trip, the model time the server reports, and the rest (upload, PNG decode,
RLE encoding, JSON, HTTP). Then --clients clients send --requests requests at once:
requests/s against 1 / (median direct call), since the server runs one model call at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))

import torch  # noqa: E402
from bench_utils import finish_report, machine_info  # noqa: E402
from serve_helpers import png_bytes, post_file, shapes_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--size", type=int, default=512, help="side of the generated square image")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from maskrcnn.inference.predictor import Predictor
    from maskrcnn.serve.app import ServeInfo, create_app
    from maskrcnn.serve.server import BackgroundServer

    predictor = Predictor.from_checkpoint(args.weights, config=args.config, device="cpu", score_threshold=0.0)
    image = shapes_image(args.size, args.size, seed=0)
    body = png_bytes(image)
    direct = []
    predictor(image)  # warm-up
    for _ in range(args.requests):
        start = time.perf_counter()
        result = predictor(image)
        direct.append(time.perf_counter() - start)

    from maskrcnn.serve.limits import UploadLimits

    # Room for every client at once: this measures the model's share, not the 503s (serve_load.py does).
    limits = UploadLimits(max_queue=max(args.clients, 1))
    app = create_app(predictor, ServeInfo(model=Path(args.weights).name, device="cpu"), limits)
    with BackgroundServer(app) as server:
        url = server.url + "/predict"
        post_file(url, "warm.png", body)
        round_trips, model_times = [], []
        for _ in range(args.requests):
            start = time.perf_counter()
            answer = post_file(url, "bench.png", body)
            round_trips.append(time.perf_counter() - start)
            assert answer.status == 200, answer.body
            model_times.append(answer.body["model_seconds"])
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            answers = list(pool.map(lambda i: post_file(url, f"c{i}.png", body), range(args.requests)))
        concurrent_s = time.perf_counter() - start
        assert all(a.status == 200 for a in answers)

    median_direct = statistics.median(direct)
    median_trip = statistics.median(round_trips)
    median_model = statistics.median(model_times)
    report = {
        "machine": machine_info(),
        "weights": args.weights,
        "image": f"{args.size}x{args.size} generated shapes, PNG of {len(body)} bytes",
        "detections": int(len(result["scores"])),
        "direct_predictor_median_s": round(median_direct, 4),
        "http_round_trip_median_s": round(median_trip, 4),
        "server_model_median_s": round(median_model, 4),
        "http_overhead_median_s": round(median_trip - median_model, 4),
        "overhead_fraction_of_round_trip": round((median_trip - median_model) / median_trip, 3),
        "concurrent_clients": args.clients,
        "concurrent_requests_per_s": round(args.requests / concurrent_s, 3),
        "one_at_a_time_bound_requests_per_s": round(1 / median_direct, 3),
    }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
