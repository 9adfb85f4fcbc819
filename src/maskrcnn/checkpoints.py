"""Model checkpoints: the native format (config inside) and torchvision state dicts.

Native checkpoint (what `save_model` and the trainer write):
    {"format": "maskrcnn", "version": 1, "config": config_to_dict(cfg), "model": state_dict,
     "weights_sha256": state_dict_sha256(state_dict),
     ...optional training fields (optimizer, scheduler, iteration, ...)}
so a checkpoint alone rebuilds its model, and a damaged file is refused on load instead
of predicting garbage (checkpoints written before the checksum existed still load).

torchvision checkpoint: a plain state dict (`torch.load` of a downloaded
`maskrcnn_resnet50_fpn_coco-*.pth`), optionally under a "model" key; its config is not
inside, so `load_model(path, config="maskrcnn_resnet50_fpn")` names the built-in config it
fits. Key names of older torchvision releases (`rpn.head.conv.weight`,
`backbone.fpn.inner_blocks.0.weight`, `roi_heads.mask_head.mask_fcn1.weight`, ...) are
mapped to the current ones.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from maskrcnn.config import (
    Config,
    ConfigError,
    apply_override,
    builtin_config_names,
    config_from_dict,
    config_to_dict,
    load_config,
)
from maskrcnn.data.coco_names import COCO_CATEGORY_NAMES
from maskrcnn.errors import UserError
from maskrcnn.io_utils import atomic_torch_save
from maskrcnn.model.build import build_model
from maskrcnn.model.inference_opt import prepare_for_inference
from maskrcnn.model.mask_rcnn import MaskRCNN

FORMAT = "maskrcnn"
VERSION = 1
MAX_LISTED = 5  # keys named per kind of mismatch in error messages
CHECKSUM_KEY = "weights_sha256"

# Old torchvision key names -> current ones (torchvision renamed them when the blocks
# became Conv2dNormActivation sequences).
OLD_KEY_PATTERNS = [
    (re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$"), r"\1.0.\2"),
    (re.compile(r"^(rpn\.head\.conv)\.(weight|bias)$"), r"\1.0.0.\2"),
]
OLD_MASK_FCN = re.compile(r"^(roi_heads\.mask_head)\.mask_fcn(\d+)\.(weight|bias)$")


class CheckpointError(UserError):
    """A file that is not a usable checkpoint, or weights that do not fit the model."""


def state_dict_sha256(state_dict: dict[str, Any]) -> str:
    """SHA-256 over a state dict's tensors: names (sorted), dtypes, shapes and exact bytes."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, Tensor):
            continue
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        if data.numel():
            digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_checksum(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse a native checkpoint whose weights differ from the checksum stored with them."""
    stored = checkpoint.get(CHECKSUM_KEY)
    if stored is None:  # written before checksums existed
        return
    weights = checkpoint.get("model")
    if not isinstance(weights, dict) or state_dict_sha256(weights) != stored:
        raise CheckpointError(
            f"{path}: the weights do not match the checksum stored in the file (the file is damaged; "
            "use another copy)"
        )


def native_checkpoint(state_dict: dict[str, Tensor], cfg: Config, **extra: Any) -> dict[str, Any]:
    """The native checkpoint dict: format tag, config, weights and their checksum, then `extra`."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config_to_dict(cfg),
        "model": state_dict,
        CHECKSUM_KEY: state_dict_sha256(state_dict),
        **extra,
    }


def save_model(path: str | Path, model: nn.Module, cfg: Config, **extra: Any) -> None:
    """Write a native checkpoint atomically; `extra` adds training fields (optimizer, ...)."""
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    atomic_torch_save(native_checkpoint(module.state_dict(), cfg, **extra), path)


def convert_torchvision_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename old torchvision keys (and drop a DDP `module.` prefix); other keys pass unchanged."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in OLD_KEY_PATTERNS:
            new_key = pattern.sub(replacement, new_key)
        match = OLD_MASK_FCN.match(new_key)
        if match:
            new_key = f"{match.group(1)}.{int(match.group(2)) - 1}.0.{match.group(3)}"
        converted[new_key] = value
    return converted


def _describe_mismatch(state_dict: dict[str, Tensor], expected: dict[str, Tensor]) -> str | None:
    optional = ".num_batches_tracked"  # BatchNorm counters: absent from old files, dropped by frozen BN
    missing = [k for k in expected if k not in state_dict and not k.endswith(optional)]
    unexpected = [k for k in state_dict if k not in expected and not k.endswith(optional)]
    wrong_shape = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    for title, items in (("shape mismatch", wrong_shape), ("missing", missing), ("unexpected", unexpected)):
        if items:
            listed = ", ".join(items[:MAX_LISTED]) + (", ..." if len(items) > MAX_LISTED else "")
            problems.append(f"{len(items)} {title} key(s): {listed}")
    return "; ".join(problems) if problems else None


def load_state_dict_into(model: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Load native or torchvision (old or new key names) weights; one clear error if they do not fit."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointError("expected a state dict (a mapping of parameter names to tensors)")
    state_dict = convert_torchvision_keys(state_dict)
    expected = model.state_dict()
    problem = _describe_mismatch(state_dict, expected)
    if problem:
        raise CheckpointError(f"the weights do not fit the model: {problem}")
    usable = {k: v for k, v in state_dict.items() if k in expected}
    for key, value in expected.items():  # counters the file lacks keep the model's values
        usable.setdefault(key, value)
    model.load_state_dict(usable, strict=True)


def read_checkpoint_file(path: Path) -> Any:
    """`torch.load` a file on the CPU (tensors only first); one CheckpointError if it is not one."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # maybe a training checkpoint with non-tensor state (e.g. numpy RNG state)
    except Exception as exc:  # noqa: BLE001 - any other failure means "not a checkpoint"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    try:  # full unpickling: only open such files from sources you trust
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None


def _resolve_config(config: str | Config | None, path: Path) -> Config:
    if isinstance(config, Config):
        return config
    if config is None:
        raise CheckpointError(
            f"{path}: a plain state dict (torchvision format) holds no config; pass the built-in config "
            f"it fits, e.g. config='maskrcnn_resnet50_fpn' (built-in: {', '.join(builtin_config_names())})"
        )
    try:
        return load_config(config)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint file, with what the file says about its classes."""

    model: MaskRCNN
    config: Config
    class_names: list[str] | None  # index = model label; None: not stored (label == category id)
    label_to_category_id: dict[int, int] | None  # None: label == category id


def load_checkpoint(
    path: str | Path,
    config: str | Config | None = None,
    device: torch.device | str | None = None,
    *,
    for_inference: bool = False,
    winograd: bool = True,
    overrides: Sequence[str] = (),
) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint file (read once), in eval mode on `device` (CPU by default).

    Native checkpoints carry their config (`config`, if given, replaces it); torchvision
    state dicts need `config` (a built-in name, a YAML path or a Config). `overrides`
    (`key=value`, e.g. `model.roi_heads.mask_paste=exact`) change the config before the
    model is built, and are checked as any config value is. `for_inference=True` (what the
    Predictor uses) also applies `model.inference_opt.prepare_for_inference`: norms folded
    into convs, fused ReLUs, channels-last weights, Winograd for the wide 3x3 convs on the
    CPU (`winograd=False`: direct convs only); faster, same outputs up to float rounding.
    """
    path = Path(path)
    data = read_checkpoint_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(data).__name__}, expected a dict)")
    native = data.get("format") == FORMAT
    if native:
        if data.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r}; this code reads {VERSION}")
        verify_checksum(data, path)
        if config is None:
            try:
                cfg = config_from_dict(data["config"])
            except (ConfigError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{path}: the config stored inside is not valid ({exc})") from None
        else:
            cfg = _resolve_config(config, path)
        state_dict = data.get("model")
    else:
        state_dict = data.get("model", data) if isinstance(data.get("model"), dict) else data
        if not state_dict or not all(isinstance(v, Tensor) for v in state_dict.values()):
            raise CheckpointError(
                f"{path}: neither a maskrcnn checkpoint (no 'format': 'maskrcnn') nor a state dict of tensors"
            )
        cfg = _resolve_config(config, path)
    for item in overrides:
        cfg = apply_override(cfg, item)
    model = build_model(cfg.model)
    try:
        load_state_dict_into(model, state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{path} with config {cfg.name!r}: {exc}") from None
    model.eval()
    if device is not None:
        model.to(device)
    if for_inference:
        prepare_for_inference(model, winograd=winograd)
    class_names, label_to_category_id = checkpoint_labels(data if native else {}, cfg)
    return LoadedCheckpoint(model, cfg, class_names, label_to_category_id)


def load_model(
    path: str | Path,
    config: str | Config | None = None,
    device: torch.device | str | None = None,
    *,
    for_inference: bool = False,
    winograd: bool = True,
) -> tuple[MaskRCNN, Config]:
    """(model, config) of `load_checkpoint`, for callers that need no class names."""
    loaded = load_checkpoint(path, config, device, for_inference=for_inference, winograd=winograd)
    return loaded.model, loaded.config


def checkpoint_labels(checkpoint: dict[str, Any], cfg: Config) -> tuple[list[str] | None, dict[int, int] | None]:
    """Class names and label -> category id stored in a native checkpoint's dict, if any.

    A torchvision COCO checkpoint (91 classes) uses label == COCO category id, so its names
    are COCO's; anything else without stored names gets (None, None): label == category id.
    """
    class_names = checkpoint.get("class_names")
    mapping = checkpoint.get("label_to_category_id")
    if mapping:
        mapping = {int(k): int(v) for k, v in mapping.items()}
    if class_names is None and cfg.model.num_classes == 91:
        class_names = list(COCO_CATEGORY_NAMES)
    return (list(class_names) if class_names is not None else None), (mapping or None)


def convert_checkpoint(source: str | Path, destination: str | Path, config: str | Config) -> Config:
    """Turn a torchvision state dict into a native checkpoint (config inside); returns that config."""
    model, cfg = load_model(source, config=config)
    save_model(destination, model, cfg, converted_from=str(source))
    return cfg
