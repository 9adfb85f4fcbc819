"""Write a model's whole inference path to one ONNX file.

    export_onnx(model, "model.onnx", class_names=[...])

The file takes `image`: (H, W, 3) uint8 RGB of any size, and gives `boxes` (D, 4) float32
x1 y1 x2 y2 in image pixels, `labels` (D,) int64, `scores` (D,) float32 (highest first,
every detection above the model's score threshold, at most detections_per_img) and
`masks`: (D, H, W) float32 probabilities (threshold at 0.5), or with paste_masks=False
(D, M, M) probabilities inside each box. Masks are pasted as the model pastes them
(`model.roi_heads.mask_paste`), and with test_augment "flips" (or "dihedral") the graph
runs the model's test-time augmentation, so the file gives the Predictor's answer. Class
names, the label -> category id map, the paste and the test-time mode go into the file's
metadata (`maskrcnn.class_names`, `maskrcnn.label_to_category_id` (JSON),
`maskrcnn.mask_paste`, `maskrcnn.test_augment`).

It uses the TorchScript-based exporter (`dynamo=False`): the graph is traced once on a
generated image, and every size that depends on the image is computed in the graph
(see export.graph), so the file runs on any image size.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from maskrcnn.checkpoints import load_checkpoint
from maskrcnn.export.graph import ExportableMaskRCNN, ExportError
from maskrcnn.export.onnx_ops import MIN_OPSET, register_onnx_symbolics
from maskrcnn.io_utils import atomic_write_bytes
from maskrcnn.model.mask_rcnn import MaskRCNN

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")
FORMAT_KEY = "maskrcnn.format"  # metadata that marks a file this module wrote (so it may be replaced)
EXAMPLE_IMAGE_SIZE = (240, 320)  # traced once; the graph computes every size itself


def example_image(size: tuple[int, int] = EXAMPLE_IMAGE_SIZE, seed: int = 0) -> torch.Tensor:
    """A seeded (H, W, 3) uint8 image with some structure, to trace the graph with."""
    generator = np.random.default_rng(seed)
    height, width = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = generator.integers(0, 64, size=(height, width, 3)).astype(np.float32)
    return torch.from_numpy(np.clip(ramp + noise, 0, 255).astype(np.uint8))


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: expected {MIN_OPSET} or later (RoiAlign's half_pixel mode)")


def check_output_path(path: Path) -> None:
    """Refuse to replace a file that this module did not write."""
    if path.is_dir():
        raise ExportError(f"--output {path}: is a folder; expected a file name such as model.onnx")
    if not path.exists():
        return
    import onnx

    try:
        written_here = any(p.key == FORMAT_KEY for p in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # noqa: BLE001 - anything that is not an ONNX file: not ours
        written_here = False
    if not written_here:
        raise ExportError(
            f"--output {path}: the file exists and was not written by maskrcnn export; remove it or choose another name"
        )


def export_onnx(
    model: MaskRCNN,
    output: str | Path,
    *,
    paste_masks: bool = True,
    opset: int = DEFAULT_OPSET,
    class_names: Sequence[str] | None = None,
    label_to_category_id: dict[int, int] | None = None,
    config_name: str | None = None,
    test_augment: str = "none",
) -> Path:
    """Export `model` (eval mode, not prepared for inference) to `output`, atomically;
    `test_augment` ("none", "flips", "dihedral") puts the model's test-time passes in the graph."""
    import onnx

    output = Path(output)
    check_opset(opset)
    check_output_path(output)
    graph = ExportableMaskRCNN(model.cpu().eval(), paste_masks=paste_masks, test_augment=test_augment).eval()
    register_onnx_symbolics(opset)
    buffer = io.BytesIO()
    dynamic = {INPUT_NAME: {0: "height", 1: "width"}}
    dynamic.update({name: {0: "detections"} for name in OUTPUT_NAMES})
    if paste_masks:
        dynamic["masks"] = {0: "detections", 1: "height", 2: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that traced Python
        # values are constants; the graph keeps every image-dependent size a tensor.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example_image(),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        FORMAT_KEY: "1",
        "maskrcnn.masks": "pasted (D, H, W) probabilities" if paste_masks else "(D, M, M) probabilities in each box",
        "maskrcnn.class_names": json.dumps(list(class_names) if class_names is not None else None),
        "maskrcnn.label_to_category_id": json.dumps(
            {str(k): int(v) for k, v in label_to_category_id.items()} if label_to_category_id else None
        ),
        "maskrcnn.config": config_name or "",
        # the graph gives probabilities; `maskrcnn predict` binarises above this
        "maskrcnn.mask_threshold": repr(float(model.mask_threshold)),
        "maskrcnn.mask_paste": model.mask_paste,  # torchvision or exact (model.roi_heads.mask_paste)
        "maskrcnn.test_augment": test_augment,  # none, flips or dihedral (model.test_augment)
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write_bytes(output, proto.SerializeToString())
    return output


def export_checkpoint(
    weights: str | Path,
    output: str | Path,
    *,
    config: str | None = None,
    paste_masks: bool = True,
    opset: int = DEFAULT_OPSET,
    test_augment: str | None = None,
    mask_paste: str | None = None,
) -> ExportedFile:
    """Load a checkpoint (native, or torchvision with `config`) and export it. `test_augment`
    and `mask_paste` (None: the checkpoint's model.test_augment, model.roi_heads.mask_paste)
    are what `maskrcnn predict` takes for the same options."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(2, "checkpoint file not found", str(weights))
    check_opset(opset)  # before the slow part
    check_output_path(Path(output))
    overrides = [f"{key}={value}" for key, value in (
        ("model.test_augment", test_augment), ("model.roi_heads.mask_paste", mask_paste)) if value is not None]
    loaded = load_checkpoint(weights, config=config, device="cpu", for_inference=False, overrides=overrides)
    model, test_augment = loaded.model, loaded.config.model.test_augment
    path = export_onnx(
        model,
        output,
        paste_masks=paste_masks,
        opset=opset,
        class_names=loaded.class_names,
        label_to_category_id=loaded.label_to_category_id,
        config_name=config,
        test_augment=test_augment,
    )
    return ExportedFile(path, model.mask_paste, test_augment)


class ExportedFile(NamedTuple):
    path: Path
    mask_paste: str  # torchvision or exact
    test_augment: str  # none, flips or dihedral
