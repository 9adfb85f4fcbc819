"""Record torchvision's Mask R-CNN answers as the small fixtures of tests/model/parity/.

Run where torchvision runs (a CPU build of PyTorch with torchvision; this project's own
machines cannot run torchvision's compiled ops):

    python scripts/parity_fixtures.py record --out tests/model/parity

For each model (maskrcnn_resnet50_fpn, _v2) it builds torchvision's model with
`weights=None, weights_backbone=None`, fills it with the deterministic weights of
tests/model/parity/make_weights.py (from the key list it writes to `<model>/spec.json`),
runs the three images of tests/model/parity/images/ in float32 on the CPU, and writes
`<model>/expected.pt`: per image the input and resized sizes, FPN feature statistics and
corners, the top 100 RPN proposals, the 100 final detections (boxes, labels, scores) and
their masks thresholded at 0.5 as COCO RLE strings (pycocotools), small enough to keep in
the repository. `compact SRC_DIR` converts recordings with full packed masks (`masks_packed`)
into that form instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "model" / "parity"
MODELS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
IMAGES = ("astronaut.png", "chelsea.png", "coffee.png")


def masks_to_rle(masks: np.ndarray) -> list[str]:
    """(N, H, W) bool -> COCO compressed RLE strings (pycocotools)."""
    encoded = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    return [e["counts"].decode("ascii") for e in encoded]


def rle_to_masks(counts: list[str], height: int, width: int) -> np.ndarray:
    """COCO compressed RLE strings -> (N, H, W) bool."""
    if not counts:
        return np.zeros((0, height, width), bool)
    decoded = mask_utils.decode([{"size": [height, width], "counts": c.encode("ascii")} for c in counts])
    return decoded.transpose(2, 0, 1).astype(bool)


def compact(record: dict) -> dict:
    """A recording with `masks_packed` (numpy.packbits rows) -> the same with `masks_rle`."""
    out = {key: value for key, value in record.items() if key not in ("masks_packed",)}
    n, h, w = record["masks_shape"]
    masks = np.unpackbits(record["masks_packed"].numpy(), axis=-1, count=w).astype(bool).reshape(n, h, w)
    out["masks_rle"] = masks_to_rle(masks)
    return out


def load_make_weights():
    spec = importlib.util.spec_from_file_location("parity_make_weights", FIXTURES / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(out: Path) -> None:
    import torchvision
    from torchvision.models import detection

    weights_module = load_make_weights()
    for name in MODELS:
        model = getattr(detection, name)(weights=None, weights_backbone=None).eval()
        keys = [[key, list(value.shape)] for key, value in model.state_dict().items()]
        state_dict = weights_module.make_weights([(k, s) for k, s in keys], seed=0)
        model.load_state_dict(state_dict)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"builder": f"torchvision.models.detection.{name}", "torchvision": torchvision.__version__, "seed": 0,
                "checksum": weights_module.checksum(state_dict), "keys": keys}
        (folder / "spec.json").write_text(json.dumps(spec))
        captured: dict = {}
        model.transform.register_forward_hook(lambda m, i, o, c=captured: c.__setitem__("batch", o[0]))
        model.backbone.register_forward_hook(lambda m, i, o, c=captured: c.__setitem__("features", o))
        model.rpn.register_forward_hook(lambda m, i, o, c=captured: c.__setitem__("proposals", o[0]))
        expected = {}
        for image_name in IMAGES:
            array = np.asarray(Image.open(FIXTURES / "images" / image_name).convert("RGB"), np.float32) / 255.0
            image = torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
            with torch.inference_mode():
                (det,) = model([image])
            masks = (det["masks"][:, 0] > 0.5).numpy()  # (N, 1, H, W) -> (N, H, W)
            expected[image_name] = {
                "image_hw": list(image.shape[1:]),
                "resized_hw": list(captured["batch"].image_sizes[0]),
                "features": {level: {"shape": list(f.shape), "mean": float(f.mean()), "std": float(f.std()),
                                     "corner": f[0, :4, :4, :4].clone()} for level, f in captured["features"].items()},
                "proposals_top100": captured["proposals"][0][:100].clone(),
                "boxes": det["boxes"], "labels": det["labels"], "scores": det["scores"],
                "mask_probs_sum": det["masks"].sum(dim=(1, 2, 3)),
                "masks_shape": list(masks.shape), "masks_rle": masks_to_rle(masks),
            }
        torch.save(expected, folder / "expected.pt")
        print(f"{folder}: {len(expected)} images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="run torchvision and write the fixtures")
    p.add_argument("--out", type=Path, default=FIXTURES)
    p = sub.add_parser("compact", help="convert recordings with packed masks")
    p.add_argument("source", type=Path, help="a folder with <model>/expected.pt and <model>/spec.json")
    p.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.out)
        return 0
    for name in MODELS:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        expected = torch.load(args.source / name / "expected.pt", weights_only=False)
        torch.save({image: compact(value) for image, value in expected.items()}, folder / "expected.pt")
        spec = json.loads((args.source / name / "spec.json").read_text())
        (folder / "spec.json").write_text(json.dumps(spec))
        print(f"{folder}: {(folder / 'expected.pt').stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
