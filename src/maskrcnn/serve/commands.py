"""`maskrcnn serve --weights CKPT`: the page and the JSON API on http://127.0.0.1:8000."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maskrcnn.errors import UserError
from maskrcnn.serve.limits import (
    MAX_IMAGE_PIXELS,
    MAX_QUEUE,
    MAX_UPLOAD_BYTES,
    READ_TIMEOUT_SECONDS,
)


class ServeDependencyError(UserError):
    """FastAPI / uvicorn / python-multipart are not installed."""


class ServeOptionError(UserError):
    """A serve option out of its range."""


def _check_dependencies() -> None:
    missing = []
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("python_multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ServeDependencyError(
            f"maskrcnn serve needs {', '.join(missing)}: pip install 'maskrcnn[serve]'"
        )


def run_serve(args: argparse.Namespace) -> int:
    _check_dependencies()
    if args.threads < 0:
        raise ServeOptionError(f"--threads: expected 0 (PyTorch's default) or a positive number, got {args.threads}")
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise ServeOptionError("--max-upload-mb and --max-megapixels: expected positive numbers")
    if args.max_queue < 1:
        raise ServeOptionError(f"--max-queue: expected 1 or more, got {args.max_queue}")
    if not args.read_timeout > 0:
        raise ServeOptionError(f"--read-timeout: expected a positive number of seconds, got {args.read_timeout}")
    from maskrcnn.serve.server import bind_socket, is_loopback, make_server, socket_url

    sock = bind_socket(args.host, args.port)  # before loading the model: a busy port fails fast
    try:
        import torch

        from maskrcnn.inference.predictor import Predictor
        from maskrcnn.serve.app import ServeInfo, create_app
        from maskrcnn.serve.limits import UploadLimits

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        # Score threshold 0: every detection the model gives (its own floor, roi_heads.score_thresh);
        # the page filters with its slider, API callers with ?score_threshold=.
        predictor = Predictor.from_checkpoint(args.weights, config=args.config, device=args.device, score_threshold=0.0)
        limits = UploadLimits(
            max_bytes=int(args.max_upload_mb * 1024 * 1024),
            max_pixels=int(args.max_megapixels * 1_000_000),
            max_queue=args.max_queue,
            read_timeout_seconds=args.read_timeout,
        )
        app = create_app(predictor, ServeInfo(model=Path(args.weights).name, device=str(predictor.device)), limits)
        url = socket_url(sock)
        print(f"maskrcnn serve: {args.weights} on {predictor.device}; open {url}/  (Ctrl+C stops)", flush=True)
        if not is_loopback(args.host):
            print(f"maskrcnn serve: warning: listening on {args.host}, reachable from other machines", file=sys.stderr)
        try:
            make_server(app, log_level="warning", access_log=args.access_log).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn has shut down cleanly, then passes Ctrl+C on
            pass
        print("maskrcnn serve: stopped", flush=True)
    finally:
        sock.close()
    return 0


def register(subparsers: Any) -> None:
    """Add the `serve` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve",
        help="a local web page and JSON API: drop images, see the instances",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Serve a model: open the printed URL, drop images, move the score slider, download "
            "COCO JSON or PNG. API: POST /predict (multipart file or image/* body) -> COCO results; "
            "GET /health. One model call at a time; up to --max-queue requests are held, more get 503."
        ),
    )
    p.add_argument("--weights", required=True, help="native checkpoint, or a torchvision state dict with --config")
    p.add_argument("--config", default=None, help="built-in config name or YAML file (for plain torchvision state dicts)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (0: PyTorch's default)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 1024 / 1024,
                   help="largest request body accepted (413 above)")
    p.add_argument("--max-megapixels", type=float, default=MAX_IMAGE_PIXELS / 1_000_000,
                   help="largest image accepted, width x height (413 above)")
    p.add_argument("--max-queue", type=int, default=MAX_QUEUE,
                   help="most /predict requests held at once (read, decoded, waiting or at the model); 503 above")
    p.add_argument("--read-timeout", type=float, default=READ_TIMEOUT_SECONDS,
                   help="seconds a request body may take to arrive (408 after)")
    p.add_argument("--access-log", action="store_true", help="print one line per request")
    p.set_defaults(func=run_serve)
