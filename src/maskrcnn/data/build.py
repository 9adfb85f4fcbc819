"""Data sets from the config.

kind "coco": `annotations` is a COCO JSON file, `images` the folder its file_name values
are relative to.

kind "shapes": `annotations` is where the generated JSON lives (e.g. data/shapes/train.json);
the images go to `images/` beside it (so `images` may be left empty; if given it must be
that folder). When the JSON is missing, or was generated with another num_images,
image_size or seed, `num_images` images of `image_size` pixels are generated with `seed`
first. Train and val sets can share one folder: image names start with the JSON's stem.

kind "nuclei": the same, with generated microscopy-like nuclei (`maskrcnn.data.nuclei`);
`image_size` is the largest image side (1024: all DSB-like sizes, 256: 256 x 256 only).
"""

from __future__ import annotations

import json
from pathlib import Path

from maskrcnn.config import AugmentConfig, ConfigError, DatasetConfig
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.nuclei import generate_nuclei
from maskrcnn.data.shapes import generate_shapes
from maskrcnn.data.transforms import build_transforms


def _generator_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()).get("info", {}).get("generator")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


GENERATED_KINDS = ("shapes", "nuclei")


def ensure_shapes(ds: DatasetConfig, where: str) -> tuple[Path, Path]:
    """Generate the set described by `ds` (kind shapes or nuclei) unless an identical one
    exists; returns (json, images folder)."""
    kind = ds.kind if ds.kind in GENERATED_KINDS else "shapes"
    if not ds.annotations:
        raise ConfigError(f"{where}.annotations: kind {kind!r} needs the JSON path to write, e.g. data/{kind}/train.json")
    if ds.num_images <= 0:
        raise ConfigError(f"{where}.num_images: kind {kind!r} needs a positive number of images, got {ds.num_images}")
    json_path = Path(ds.annotations)
    images_dir = json_path.parent / "images"
    if ds.images and Path(ds.images).resolve() != images_dir.resolve():
        raise ConfigError(
            f"{where}.images: for kind {kind!r} the images live in {images_dir} (beside the JSON); "
            f"leave it empty or set it to that folder, got {ds.images!r}"
        )
    wanted = {"num_images": ds.num_images, "image_size": ds.image_size, "seed": ds.seed}
    record = _generator_record(json_path) if json_path.is_file() else None
    generator = "maskrcnn.data.nuclei" if kind == "nuclei" else "maskrcnn.data.shapes"
    if record is None or record.get("name") != generator or any(record.get(k) != v for k, v in wanted.items()):
        if kind == "nuclei":
            generate_nuclei(json_path.parent, ds.num_images, max_side=ds.image_size, seed=ds.seed, annotations_file=json_path.name)
        else:
            generate_shapes(
                json_path.parent, ds.num_images, image_size=ds.image_size, seed=ds.seed, annotations_file=json_path.name
            )
    return json_path, images_dir


def build_dataset(ds: DatasetConfig, augment: AugmentConfig | None, *, train: bool) -> CocoDataset:
    """The data set `ds` names, with training augmentations when `train` (none otherwise).

    Training sets leave out images without annotations; evaluation sets keep them.
    """
    where = "data.train" if train else "data.val"
    transforms = build_transforms(augment, train)
    if ds.kind in GENERATED_KINDS:
        json_path, images_dir = ensure_shapes(ds, where)
        return CocoDataset(json_path, images_dir, transforms=transforms, skip_empty=train)
    if ds.kind == "coco":
        if not ds.annotations:
            raise ConfigError(f"{where}.annotations: kind 'coco' needs the path of a COCO JSON file")
        if not ds.images:
            raise ConfigError(f"{where}.images: kind 'coco' needs the folder the JSON's file_name values are in")
        return CocoDataset(ds.annotations, ds.images, transforms=transforms, skip_empty=train)
    raise ConfigError(f"{where}.kind: expected 'coco', 'shapes' or 'nuclei', got {ds.kind!r}")
