"""Start a new training run from weights (`train.init_weights`, `maskrcnn train --init-weights FILE`).

Accepted files:
- a native maskrcnn checkpoint (`model_final.pt`, `best.pt`, `last.pt` of an earlier run):
  its weights only; the new run starts at iteration 0 with a fresh optimizer;
- a torchvision Mask R-CNN state dict (`maskrcnn_resnet50_fpn` or `_v2`, current or old
  key names, as `maskrcnn.checkpoints.load_model` reads it);
- the name of weights shipped in the package (`nuclei_synthetic`; `maskrcnn.shipped_weights`);
- a torchvision ImageNet classification state dict of a ResNet/ResNeXt (`conv1.weight`,
  `layer1.0.conv1.weight`, ..., `fc.weight`): the backbone trunk only, `fc` dropped; the
  FPN, RPN and RoI heads keep their random initialisation.

The rules: the layers whose shapes depend on the number of classes (`cls_score`,
`bbox_pred` of the box predictor, `mask_fcn_logits` / `mask_fc_logits` of the mask
predictor) keep their new random initialisation when the file was trained for another
number of classes. Every other tensor must load: a missing key, an unexpected key or a
shape that differs stops with one line naming the first such keys. (`num_batches_tracked`
counters are optional both ways.) `load_init_weights` returns an `InitReport`, which
`format_init_report` prints as a short table: loaded / newly initialised / not in the file.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from maskrcnn.checkpoints import (
    FORMAT,
    CheckpointError,
    convert_torchvision_keys,
    read_checkpoint_file,
    verify_checksum,
)
from maskrcnn.shipped_weights import resolve_weights, shipped_weight_names

# Layers whose first dimension is the number of classes (or 4 x classes).
CLASS_DEPENDENT = re.compile(
    r"^roi_heads\.(box_predictor\.(cls_score|bbox_pred)|mask_predictor\.(mask_fcn_logits|mask_fc_logits))\."
)
OPTIONAL_SUFFIX = ".num_batches_tracked"  # BatchNorm counters: absent from old files, dropped by frozen BN
IMAGENET_HEAD = "fc."  # the classifier of an ImageNet state dict
TRUNK_PREFIXES = ("backbone.body.", "roi_heads.shared_head.")  # where ImageNet weights go
MAX_LISTED = 5

KIND_NATIVE = "maskrcnn checkpoint"
KIND_TORCHVISION = "torchvision Mask R-CNN state dict"
KIND_IMAGENET = "ImageNet classification state dict (backbone only)"


class InitWeightsError(CheckpointError):
    """An init-weights file that cannot be read or does not fit the model."""


@dataclass
class InitReport:
    """What `load_init_weights` did with each tensor (model key names)."""

    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)  # class-count layers of another size
    not_in_file: list[str] = field(default_factory=list)  # model tensors the file does not hold
    dropped: list[str] = field(default_factory=list)  # file tensors with no place in a detector (fc.*)
    file_num_classes: int | None = None


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:MAX_LISTED]) + (", ..." if len(keys) > MAX_LISTED else "")


def _unwrap_state_dict(data: Any, path: Path) -> tuple[str, dict[str, Tensor]]:
    """(kind, state dict with the file's own key names) of a loaded file."""
    if not isinstance(data, dict):
        raise InitWeightsError(f"train.init_weights: {path}: not a weights file (holds a {type(data).__name__}, expected a dict)")
    if data.get("format") == FORMAT:
        verify_checksum(data, path)
        state_dict = data.get("model")
        kind = KIND_NATIVE
    else:
        state_dict = data
        for wrapper in ("model", "state_dict"):  # e.g. torchvision's reference scripts save {"model": ...}
            if isinstance(data.get(wrapper), dict):
                state_dict = data[wrapper]
                break
        kind = KIND_TORCHVISION
    if not isinstance(state_dict, dict) or not state_dict or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise InitWeightsError(
            f"train.init_weights: {path}: neither a maskrcnn checkpoint nor a state dict of tensors (expected a torchvision "
            "Mask R-CNN or ImageNet ResNet state dict)"
        )
    state_dict = convert_torchvision_keys(state_dict)  # old names; a DDP "module." prefix
    if kind == KIND_TORCHVISION and _looks_like_imagenet(state_dict):
        kind = KIND_IMAGENET
    return kind, state_dict


def _looks_like_imagenet(state_dict: dict[str, Tensor]) -> bool:
    """torchvision's ResNet/ResNeXt classifiers: `conv1.weight`, `layer1.*`, `fc.*`, no detector parts."""
    keys = list(state_dict)
    return "conv1.weight" in state_dict and any(k.startswith("layer1.") for k in keys) and not any(
        k.startswith(("backbone.", "rpn.", "roi_heads.")) for k in keys
    )


def _imagenet_to_model_keys(
    state_dict: dict[str, Tensor], model_keys: set[str]
) -> tuple[dict[str, Tensor], list[str]]:
    """Place an ImageNet trunk under the detector's names: `backbone.body.<key>`, or (C4
    layout) `roi_heads.shared_head.layer4.*` for res5. Returns (mapped, dropped keys)."""
    mapped: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        if key.startswith(IMAGENET_HEAD):
            dropped.append(key)
            continue
        target = next((p + key for p in TRUNK_PREFIXES if p + key in model_keys), None)
        mapped[target or f"backbone.body.{key}"] = value  # an unknown key is reported as unexpected
    return mapped, dropped


def _file_num_classes(state_dict: dict[str, Tensor]) -> int | None:
    weight = state_dict.get("roi_heads.box_predictor.cls_score.weight")
    return int(weight.shape[0]) if isinstance(weight, Tensor) and weight.dim() >= 1 else None


def _raise_mismatch(path: Path, kind: str, wrong_shape: list[str], missing: list[str], unexpected: list[str]) -> None:
    problems = []
    for title, items in (("shape mismatch", wrong_shape), ("missing from the file", missing), ("not in the model", unexpected)):
        if items:
            problems.append(f"{len(items)} {title}: {_listed(items)}")
    if problems:
        raise InitWeightsError(
            f"train.init_weights: {path} ({kind}) does not fit the model: " + "; ".join(problems)
            + " (--set train.init_weights= trains from random weights instead)"
        )


def load_init_weights(model: nn.Module, path: str | Path) -> InitReport:
    """Load the weights in `path` into `model` by the rules in the module docstring."""
    path = resolve_weights(path)
    try:
        data = read_checkpoint_file(path)
    except CheckpointError as exc:
        names = ", ".join(shipped_weight_names()) or "none"
        raise InitWeightsError(f"train.init_weights: {exc} (or the name of shipped weights: {names})") from None
    kind, state_dict = _unwrap_state_dict(data, path)
    expected = model.state_dict()
    report = InitReport(path=str(path), kind=kind, file_num_classes=_file_num_classes(state_dict))
    if kind == KIND_IMAGENET:
        state_dict, report.dropped = _imagenet_to_model_keys(state_dict, set(expected))

    usable: dict[str, Tensor] = {}
    wrong_shape: list[str] = []
    unexpected: list[str] = []
    for key, value in state_dict.items():
        if key not in expected:
            if not key.endswith(OPTIONAL_SUFFIX):
                unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(expected[key].shape):
            if CLASS_DEPENDENT.match(key):
                report.newly_initialised.append(key)
            else:
                wrong_shape.append(f"{key}: file {tuple(value.shape)} vs model {tuple(expected[key].shape)}")
            continue
        usable[key] = value
    absent = [k for k in expected if k not in state_dict and not k.endswith(OPTIONAL_SUFFIX)]
    if kind == KIND_IMAGENET:  # the trunk must be complete; heads and FPN are not in such files
        missing = [k for k in absent if k.startswith(TRUNK_PREFIXES)]
        report.not_in_file = [k for k in absent if not k.startswith(TRUNK_PREFIXES)]
    else:
        missing = absent
    _raise_mismatch(path, kind, wrong_shape, missing, unexpected)

    merged = dict(expected)  # tensors not loaded keep the model's own (random) values
    merged.update(usable)
    model.load_state_dict(merged, strict=True)
    report.loaded = [k for k in expected if k in usable]
    return report


def _groups(keys: list[str], depth: int) -> str:
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    return ", ".join(f"{name} ({n})" for name, n in counts.items())


def format_init_report(report: InitReport, model_num_classes: int | None = None) -> str:
    """A few lines: loaded / newly initialised / not in the file (counts; names by module)."""
    lines = [f"init weights: {report.path} ({report.kind})"]
    rows = [
        ("loaded", report.loaded, 2),
        ("newly initialised", report.newly_initialised, 3),
        ("not in the file", report.not_in_file, 2),
    ]
    if report.dropped:
        rows.append(("in the file, unused", report.dropped, 1))
    for title, keys, depth in rows:
        lines.append(f"  {title:<20} {len(keys):>5} tensors  {_groups(keys, depth)}".rstrip())
    if report.newly_initialised and report.file_num_classes is not None and model_num_classes is not None:
        lines.append(
            f"  (the file's class layers have {report.file_num_classes} classes, the model {model_num_classes}: "
            "those layers start random)"
        )
    return "\n".join(lines)
