"""Configuration: nested dataclasses, the only home of defaults.

A `Config` is built from defaults, then a named YAML (built-in, in `maskrcnn/configs/`,
or a file path) that overrides some fields, then dotted command-line overrides
(`solver.lr=0.01`). Every checkpoint stores `config_to_dict(cfg)`, so a checkpoint alone
rebuilds its model.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maskrcnn.errors import UserError

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(UserError):
    """A config file, name, key or value that is not what was expected."""


# The inference settings a trained model can change without new weights. Each is checked
# here, once, whenever a config is built (from YAML, a checkpoint or a --set override).
MASK_PASTES = ("torchvision", "exact")  # model.roi_heads.mask_paste
TEST_AUGMENT_MODES = ("none", "flips", "dihedral")  # model.test_augment


def check_mask_paste(value: str, where: str = "model.roi_heads.mask_paste") -> None:
    if value not in MASK_PASTES:
        raise ConfigError(f"{where}: unknown value {value!r}; expected one of {', '.join(MASK_PASTES)}")


def check_mask_threshold(value: float, where: str = "model.roi_heads.mask_threshold") -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{where}: expected a probability in [0, 1), got {value}")


def check_test_augment(value: str, where: str = "model.test_augment") -> None:
    if value not in TEST_AUGMENT_MODES:
        raise ConfigError(f"{where}: expected one of {', '.join(TEST_AUGMENT_MODES)}, got {value!r}")


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    # resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x4d, or "plain" (small CNN)
    name: str = "resnet50"
    # "fpn" (P2-P6), "c4" (RPN on C4, res5 as RoI head), "dc5" (C5 dilated, stride 16)
    layout: str = "fpn"
    norm: str = "frozen_bn"  # frozen_bn | bn | gn
    freeze_at: int = 2  # 0: train all; 1: freeze stem; k: freeze stem and res2..res(k)
    fpn_channels: int = 256  # channels of every FPN output map (P2..P6)
    fpn_norm: str = "none"  # none | bn | gn (torchvision's v2 uses bn)
    # for name "plain": channels of its five stages (strides 2..32)
    plain_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128, 128])


@dataclass
class AnchorConfig:
    # anchor sides in input pixels, one list per feature level (P2..P6 for FPN)
    sizes: list[list[float]] = field(default_factory=lambda: [[32], [64], [128], [256], [512]])
    # anchor height / width ratios, one list per level
    aspect_ratios: list[list[float]] = field(default_factory=lambda: [[0.5, 1.0, 2.0]] * 5)


@dataclass
class RPNConfig:
    num_convs: int = 1  # 1: torchvision v1 / detectron2; 2: torchvision v2
    conv_norm: str = "none"  # norm after the RPN head convs: none | bn | gn
    fg_iou_thresh: float = 0.7  # anchors with IoU >= this to a ground-truth box are positive
    bg_iou_thresh: float = 0.3  # anchors with IoU < this to every box are negative (between: ignored)
    allow_low_quality_matches: bool = True  # each box's best anchors are positive even below fg_iou_thresh
    batch_size_per_image: int = 256  # anchors sampled per image for the RPN losses
    positive_fraction: float = 0.5  # at most this share of the sampled anchors are positive
    pre_nms_top_n_train: int = 2000  # proposals kept per level before NMS, in training
    pre_nms_top_n_test: int = 1000  # proposals kept per level before NMS, at inference
    post_nms_top_n_train: int = 2000  # proposals kept per image after NMS, in training
    # proposals kept per image after NMS, at inference (raise for dense images)
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7  # IoU above which a lower-scoring proposal is suppressed
    score_thresh: float = 0.0  # proposals with objectness probability below this are dropped
    min_size: float = 1e-3  # proposals narrower or lower than this (pixels) are dropped
    # weights (wx, wy, ww, wh) that scale the anchor-to-box deltas
    box_coder_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])


@dataclass
class RoIHeadsConfig:
    box_head: str = "2fc"  # 2fc | 4conv1fc | res5 (only with layout c4)
    box_head_dim: int = 1024  # width of the box head fc layers
    box_head_norm: str = "none"  # for 4conv1fc: none | bn | gn
    pooler: str = "roi_align"  # roi_align | roi_pool
    box_pool_size: int = 7  # RoIAlign output side for the box head
    mask_pool_size: int = 14  # RoIAlign output side for the mask head (masks are twice this)
    sampling_ratio: int = 2  # RoIAlign samples per bin and axis (<= 0: adaptive, ceil(bin size))
    aligned: bool = False  # RoIAlign half-pixel offset (true: detectron2 / torchvision v2)
    canonical_scale: int = 224  # box side that pools from canonical_level (FPN level choice)
    canonical_level: int = 4  # FPN level of a canonical_scale box (4: P4)
    fg_iou_thresh: float = 0.5  # RoIs with IoU >= this to a ground-truth box are foreground
    bg_iou_thresh: float = 0.5  # RoIs with IoU < this are background
    batch_size_per_image: int = 512  # RoIs sampled per image for the box and mask losses
    positive_fraction: float = 0.25  # at most this share of the sampled RoIs are foreground
    # > 0: the mask loss uses at most this many foreground RoIs per image (a random subset);
    # the mask head is the largest training cost on dense images. 0: all of them.
    mask_positives_per_image: int = 0
    # weights (wx, wy, ww, wh) that scale the proposal-to-box deltas
    box_coder_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    score_thresh: float = 0.05  # detections scoring below this are dropped before NMS
    nms_thresh: float = 0.5  # per-class NMS IoU of the final detections
    detections_per_img: int = 100  # most detections kept per image (raise for dense scenes, up to 1000s)
    # a pixel is in an instance where its mask probability is above this (predict, evaluate,
    # serve, tiles); torchvision and detectron2 use 0.5. Higher: thinner masks, touching
    # objects better apart. Changes no weights: set it on a trained model with --set.
    mask_threshold: float = 0.5
    # how mask grids become image masks: torchvision (its paste: boxes truncated to integers,
    # masks one pixel wider and taller, half a pixel off; needed to reproduce its outputs) |
    # exact (each pixel's centre read from the grid where training put it: ops/exact_paste.py;
    # +0.06 segm AP on 10-30 px nuclei). Changes no weights.
    mask_paste: str = "torchvision"
    mask_on: bool = True  # false: Faster R-CNN (boxes only, no mask branch)
    mask_head: str = "conv"  # conv (4 conv + deconv) | mlp (paper's ablation)
    mask_head_norm: str = "none"  # norm after the mask head convs: none | bn | gn
    mask_head_channels: int = 256  # channels of the mask head convs
    mask_loss: str = "sigmoid"  # sigmoid (per-class BCE) | softmax (multinomial ablation)

    def __post_init__(self) -> None:
        check_mask_paste(self.mask_paste)
        check_mask_threshold(self.mask_threshold)


@dataclass
class TransformConfig:
    # the shorter side is resized to this; several: one drawn per image in training
    min_size: list[int] = field(default_factory=lambda: [800])
    max_size: int = 1333  # ... unless the longer side would pass this
    # RGB mean and std of the [0, 1] input that normalisation removes (ImageNet's)
    image_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    image_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])  # see image_mean
    size_divisible: int = 32  # the padded batch's sides are multiples of this (the largest stride)
    # > 0: scale every image by this factor instead (long side still capped at max_size;
    # min_size unused). Keeps the pixel scale of objects whatever the image size, e.g. 2.0
    # for small nuclei, and lets training use fixed-size crops (data.augment.scale_target_size).
    fixed_scale: float = 0.0


@dataclass
class ModelConfig:
    num_classes: int = 91  # including background (label 0)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: RoIHeadsConfig = field(default_factory=RoIHeadsConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    # inference on mirrored copies of each image, merged: none | flips (4 passes) |
    # dihedral (8: flips and transposes); masks averaged (maskrcnn.model.test_augment)
    test_augment: str = "none"

    def __post_init__(self) -> None:
        check_test_augment(self.test_augment)


# ---------------------------------------------------------------------------------------
# Data, solver, training
# ---------------------------------------------------------------------------------------


@dataclass
class DatasetConfig:
    kind: str = "coco"  # coco | shapes | nuclei (generated)
    annotations: str = ""  # COCO JSON path
    images: str = ""  # image folder the JSON's file_name values are relative to
    # for kind "shapes": generated into `images` with `annotations` written beside them
    num_images: int = 0
    image_size: int = 128  # for generated kinds: image side in pixels
    seed: int = 0  # for generated kinds: the seed (same seed, same files)


@dataclass
class AugmentConfig:
    """Training augmentations (docs/augmentation.md). Probabilities are per image; 0 is off."""

    # geometry: masks move with the image, boxes are recomputed from the masks
    horizontal_flip: float = 0.5  # probability
    vertical_flip: float = 0.0  # probability
    rotate90: float = 0.0  # probability of a rotation by 90, 180 or 270 degrees (equally likely)
    # probability of swapping rows and columns (flips 0.5 + transpose 0.5: all 8 orientations)
    transpose: float = 0.0
    # N > 0: first cut a random window of at most N x N pixels at the image's own scale
    # (bounded cost per iteration on large images; see model.transform.fixed_scale)
    crop_size: int = 0
    random_crop: float = 0.0  # probability of a random crop
    crop_min_fraction: float = 0.6  # smallest crop side as a fraction of the image side
    scale_jitter: float = 0.0  # probability of a random zoom in or out, then crop / pad
    # zoom factor drawn uniformly in [min, max]
    scale_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    scale_target_size: int = 0  # 0: crop / pad back to the image's own size; N: to N x N (large-scale jitter)
    pad_value: float = 0.0  # intensity in [0, 1] of the border that zooming out adds
    min_area: int = 1  # instances with fewer mask pixels after a crop or zoom are dropped
    # intensity (the same factor for all three channels: grey images stay grey)
    photometric: bool = False  # brightness / contrast / saturation jitter, each +-0.2
    brightness: float = 0.0  # multiply by a factor in [1 - x, 1 + x]
    contrast: float = 0.0  # stretch around the mean by a factor in [1 - x, 1 + x]
    gamma: float = 0.0  # raise to a power in [1 / (1 + x), 1 + x], drawn log-uniformly
    blur: float = 0.0  # probability of a Gaussian blur
    # pixels, drawn uniformly in [min, max]
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 1.5])
    noise: float = 0.0  # probability of additive Gaussian noise
    noise_sigma: list[float] = field(default_factory=lambda: [0.01, 0.05])  # in [0, 1] intensity units
    # how noise treats channels: auto (grey images, all channels equal, get one noise plane
    # for all three, so they stay grey) | gray (always one plane) | color (one per channel)
    noise_channels: str = "auto"


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 2  # images per process
    num_workers: int = 0  # data-loading worker processes (0: in the training process; bit-for-bit resume)
    group_by_aspect_ratio: bool = True  # batch portrait and landscape images apart (less padding)


@dataclass
class SolverConfig:
    lr: float = 0.02  # base learning rate of SGD, for reference_batch_size images per update
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 weight decay of the trainable parameters
    max_iter: int = 1000  # training iterations (one batch per process each)
    warmup_iters: int = 100  # iterations of linear warm-up from warmup_factor x lr to lr
    warmup_factor: float = 0.001  # lr multiplier at iteration 0 of the warm-up
    schedule: str = "multistep"  # multistep | cosine
    # multistep: iterations where lr is multiplied by gamma
    steps: list[int] = field(default_factory=lambda: [700, 900])
    gamma: float = 0.1  # multistep: lr factor at each step
    clip_grad_norm: float = 0.0  # 0: no clipping
    amp: bool = False  # mixed precision (CUDA only)
    # amp's half type: float16 (with loss scaling) | bfloat16 (float32's range: no scaling)
    amp_dtype: str = "float16"
    # images per update (data.batch_size x processes) that `lr` is stated for: 0.02 is
    # detectron2's rate for 16 images
    reference_batch_size: int = 16
    # none: use `lr` as given | linear: lr x (batch_size x processes) / reference_batch_size
    scale_lr: str = "none"
    # > 0: training-loop seconds the run must fit in, whatever the CPU's speed or load:
    # after 10 timed iterations (and at every tenth of the run) max_iter is shortened to what
    # fits and the lr schedule rebuilt over it; a hard stop before the budget still saves
    # last.pt / model_final.pt and evaluates (not counted). 0: off
    max_time_s: float = 0.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"  # folder of checkpoints, logs, plots and summary.json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # seed of weights init, sampling and augmentation
    checkpoint_period: int = 500  # iterations between checkpoints (last.pt); one is always written at the end
    eval_period: int = 0  # 0: evaluate only at the end
    log_period: int = 20  # iterations between lines of metrics.jsonl and loss-curve points
    # weights to start a new run from: a maskrcnn checkpoint, a torchvision Mask R-CNN state
    # dict, or a torchvision ImageNet ResNet/ResNeXt state dict (backbone only); "": random
    init_weights: str = ""
    # train with the weights and activations in channels-last (NHWC) memory layout: the same
    # maths with other float rounding; about 11 % less CPU time per iteration for the small
    # shapes_demo model (oneDNN convolutions; docs/recipes.md)
    channels_last: bool = False
    # also write TensorBoard event files into output_dir (losses, lr, iteration time, the
    # evaluation metrics, validation pictures at each evaluation): `tensorboard --logdir runs/`;
    # needs the optional extra maskrcnn[tensorboard] (docs/training.md)
    tensorboard: bool = False


@dataclass(frozen=True)
class ReportConfig:
    """`maskrcnn evaluate --report DIR` (not stored in checkpoints: an evaluation setting)."""

    error_iou: float = 0.5  # TIDE's foreground threshold t_f: a detection is correct at IoU >= this
    background_iou: float = 0.1  # TIDE's background threshold t_b
    max_detections: int = 100  # per image, highest scores first (COCO's maxDets)
    score_thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    image_pages: int = 200  # pictures and pages for this many images, those with the most errors first
    images_per_page: int = 50  # thumbnails per gallery page
    index_thumbnails: int = 12  # the worst images shown on index.html
    panel_size: int = 384  # longest side of each half of a side-by-side picture, in pixels
    thumbnail_width: int = 360  # pixels


@dataclass
class EvaluationConfig:
    # detections scoring at least this count for the Data Science Bowl score (`maskrcnn
    # evaluate --dsb-score-threshold` overrides it). COCO AP uses every detection, and
    # model.roi_heads.detections_per_img as maxDets when above COCO's standard 100.
    dsb_score_threshold: float = 0.5


@dataclass
class Config:
    name: str = "custom"  # the config's name (a built-in's or the YAML file's stem), stored in checkpoints
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


# Settings of reading and predicting on images (not stored in checkpoints).


@dataclass
class ImageConfig:
    """How image files become 8-bit RGB (maskrcnn.data.images, maskrcnn.data.intensity)."""

    intensity: str = "auto"  # auto | dtype | range | percentile
    max_image_pixels: int = 89_478_485  # Pillow's own limit; larger images: predict --tile


@dataclass
class TilingConfig:
    """Tiled prediction of large images (maskrcnn.inference.tiling)."""

    tile_size: int = 1024  # pixels of the image (before `scale`)
    overlap: int = 128  # pixels shared by neighbouring tiles; make it larger than the objects
    scale: float = 1.0  # resize factor of every tile before the model (1.0: the image's own pixels)
    merge_threshold: float = 0.5  # mask IoU of two pieces inside the area their tiles share
    overlay_max_side: int = 2048  # the overlay of a large image is downscaled to this

# ---------------------------------------------------------------------------------------
# Loading, dumping, overrides
# ---------------------------------------------------------------------------------------


def builtin_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check/convert one value to a dataclass field's declared type."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(typ, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(typ) or (Any,)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if as_float != int(as_float):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {unknown}; expected some of {sorted(types_)}"
        )
    kwargs = {k: _coerce(v, types_[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def merge_dict(cfg: Config, overrides: dict[str, Any], where: str = "") -> Config:
    """Return a copy of `cfg` with the nested mapping `overrides` applied."""
    base = config_to_dict(cfg)

    def deep_update(dst: dict[str, Any], src: dict[str, Any], path: str) -> None:
        for key, value in src.items():
            if isinstance(value, dict) and isinstance(dst.get(key), dict):
                deep_update(dst[key], value, f"{path}.{key}" if path else key)
            else:
                dst[key] = value

    deep_update(base, overrides, where)
    return _from_dict(Config, base, where)


def config_from_dict(data: dict[str, Any]) -> Config:
    return merge_dict(Config(), data)


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- built-in name or YAML file <- dotted `key=value` overrides."""
    cfg = Config()
    if name_or_path:
        path = Path(name_or_path)
        if not path.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
            path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"config {str(name_or_path)!r}: no such file and not a built-in name; "
                f"built-in configs: {', '.join(builtin_config_names())}"
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data.setdefault("name", path.stem)
        try:
            cfg = merge_dict(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for item in overrides or []:
        cfg = apply_override(cfg, item)
    return cfg


def apply_override(cfg: Config, item: str) -> Config:
    """Apply one `a.b.c=value` override; the value is parsed as YAML (`[1,2]`, `true`, `0.1`)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. solver.lr=0.01")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            known = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
            raise ConfigError(f"override {item!r}: unknown key {'.'.join(parts[: i + 1])!r}; expected one of {known}")
        if i < len(parts) - 1:
            node = getattr(node, part)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""  # `key=` empties a string (train.init_weights=)
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return merge_dict(cfg, nested)


def dump_config(cfg: Config, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def clone(cfg: Config) -> Config:
    return copy.deepcopy(cfg)
