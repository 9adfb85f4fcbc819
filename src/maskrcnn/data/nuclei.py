"""A seeded synthetic data set of cell nuclei, written as PNG images + COCO JSON.

Built to train and check the `nuclei` recipe without real microscopy data (the Data
Science Bowl 2018 images are not to be trained on here). Each image imitates one of the
DSB-2018 looks:

- "fluorescence": bright nuclei on a dark background, gray (DAPI/Hoechst shown in gray),
  sometimes tinted (blue, green);
- "brightfield": dark purple-blue nuclei on a light background (hematoxylin-like stain);
- "histology": the same nuclei on pink textured tissue (H&E-like).

Nuclei are blobby ellipses (an ellipse radius modulated by a few low harmonics), 8-32 px
across in 256 px images and up to ~48 px in 1024 px ones, with internal texture, brighter spots, dimmer rims, per-nucleus
brightness, clustered so that many touch or overlap (a later nucleus covers an earlier
one; masks hold only visible pixels, like the DSB's non-overlapping annotations). The
whole image then gets uneven illumination, blur, shot and read noise, and a few
unannotated specks of debris. 5 to 300 nuclei per image; image sizes follow the DSB's
(256x256 most often, up to 1024x1024).

Image i depends only on (seed, i): the same seed gives identical files and a larger
`num_images` extends a smaller set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from maskrcnn.data.generated_files import png_bytes, tight_bbox
from maskrcnn.io_utils import atomic_write_bytes, atomic_write_json
from maskrcnn.ops.masks import mask_to_rle

# (height, width) of DSB-2018 stage-1 images, with roughly how often each occurs there.
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (256, 320), (360, 360), (520, 696), (512, 640), (1024, 1024))
IMAGE_SIZE_WEIGHTS: tuple[float, ...] = (0.45, 0.15, 0.12, 0.14, 0.07, 0.07)
STYLES: tuple[str, ...] = ("fluorescence", "brightfield", "histology")
STYLE_WEIGHTS: tuple[float, ...] = (0.65, 0.2, 0.15)

MIN_DIAMETER = 8.0  # typical nucleus diameter range (pixels) in 256 px images, grows with the image
MAX_DIAMETER = 32.0
MIN_NUCLEI = 5
MAX_NUCLEI = 300
MAX_COVERAGE = 0.45  # nuclei cover at most this fraction of an image (before overlap)
MIN_VISIBLE_FRACTION = 0.45  # a covered nucleus keeps at least this share of its area
MIN_VISIBLE_PIXELS = 15

HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])  # optical density per unit stain (R, G, B)
EOSIN_OD = np.array([0.07, 0.99, 0.11])


class Nucleus(NamedTuple):
    """One drawn nucleus: where it is in the image and its (h, w) masks/intensity there."""

    y0: int
    x0: int
    mask: np.ndarray  # (h, w) bool, the full (unoccluded) shape
    intensity: np.ndarray  # (h, w) float, stain amount / brightness inside the mask


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """(H, W) smooth noise of zero mean and unit-ish std, with features about `cell` px wide."""
    gh, gw = max(2, int(math.ceil(height / cell)) + 1), max(2, int(math.ceil(width / cell)) + 1)
    coarse = rng.normal(0.0, 1.0, size=(gh, gw)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur an (H, W) or (H, W, C) float image with a separable Gaussian (reflect padding)."""
    if sigma < 0.3:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    planes = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    planes = planes[None, None] if planes.ndim == 2 else planes.permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    out = planes[:, 0].numpy()
    return out[0] if image.ndim == 2 else out.transpose(1, 2, 0)


def _nucleus_shape(rng: np.random.Generator, diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """A blobby ellipse around its box centre: (h, w) bool mask and (h, w) intensity."""
    elongation = float(rng.uniform(0.55, 1.0)) if rng.random() < 0.8 else float(rng.uniform(0.35, 0.6))
    semi_major = diameter / 2 / math.sqrt(elongation)
    semi_minor = semi_major * elongation
    angle = float(rng.uniform(0, math.pi))
    harmonics = [(k, float(rng.uniform(0.0, 0.09 / (k - 1))), float(rng.uniform(0, 2 * math.pi))) for k in range(2, 6)]
    half = int(math.ceil(semi_major * 1.3)) + 1
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    ys += float(rng.uniform(-0.5, 0.5))
    xs += float(rng.uniform(-0.5, 0.5))
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    theta = np.arctan2(v, u)
    wobble = 1.0 + sum(a * np.cos(k * theta + phase) for k, a, phase in harmonics)
    rho = np.sqrt((u / semi_major) ** 2 + (v / semi_minor) ** 2) / wobble  # < 1 inside
    mask = rho < 1.0
    # Dome profile (dimmer rim), chromatin texture, a few brighter spots.
    texture = _smooth_noise(rng, mask.shape[0], mask.shape[1], cell=max(2.0, diameter / float(rng.uniform(3, 7))))
    intensity = (0.65 + 0.35 * np.sqrt(np.clip(1 - rho**2, 0, 1))) * (1 + float(rng.uniform(0.05, 0.3)) * texture)
    for _ in range(int(rng.integers(0, 4))):
        sy, sx = rng.normal(0, semi_minor * 0.4, size=2)
        spot_sigma = max(0.8, diameter * float(rng.uniform(0.04, 0.1)))
        intensity += float(rng.uniform(0.1, 0.5)) * np.exp(-((ys - sy) ** 2 + (xs - sx) ** 2) / (2 * spot_sigma**2))
    return mask, np.clip(intensity, 0.05, None).astype(np.float32)


def _place_nuclei(rng: np.random.Generator, height: int, width: int) -> list[Nucleus]:
    """Nucleus shapes at clustered positions (many touching), sized and counted per image."""
    # Larger images tend to be taken at higher magnification: typical nuclei grow with the
    # image side (8-32 px at 256 px, 11-46 px at 520 px, 16-48 px at 1024 px).
    grow = math.sqrt(min(height, width) / 256)
    low, high = MIN_DIAMETER * grow, min(MAX_DIAMETER * grow, MAX_DIAMETER * 1.5)
    diameter = math.exp(rng.uniform(math.log(low), math.log(high)))
    capacity = MAX_COVERAGE * height * width / (math.pi / 4 * diameter**2)
    count = int(round(math.exp(rng.uniform(math.log(MIN_NUCLEI), math.log(MAX_NUCLEI)))))
    count = max(MIN_NUCLEI, min(count, int(capacity)))
    size_spread = float(rng.uniform(0.1, 0.3))
    clustered = float(rng.uniform(0.2, 0.9))  # share of nuclei placed next to another one
    centres: list[tuple[float, float, float]] = []  # (y, x, diameter)
    nuclei: list[Nucleus] = []
    for _ in range(count):
        d = float(np.clip(diameter * math.exp(rng.normal(0, size_spread)), MIN_DIAMETER * 0.75, MAX_DIAMETER * 2))
        for _try in range(10):
            if centres and rng.random() < clustered:
                py, px, pd = centres[int(rng.integers(0, len(centres)))]
                direction = float(rng.uniform(0, 2 * math.pi))
                gap = (pd + d) / 2 * float(rng.uniform(0.75, 1.1))  # touching, slightly overlapping or apart
                y, x = py + gap * math.sin(direction), px + gap * math.cos(direction)
            else:
                y, x = float(rng.uniform(-d / 4, height + d / 4)), float(rng.uniform(-d / 4, width + d / 4))
            # keep most of the area of the nuclei already there
            if all((y - cy) ** 2 + (x - cx) ** 2 >= (0.6 * (cd + d) / 2) ** 2 for cy, cx, cd in centres):
                break
        else:
            continue
        mask, intensity = _nucleus_shape(rng, d)
        half = mask.shape[0] // 2
        centres.append((y, x, d))
        nuclei.append(Nucleus(int(round(y)) - half, int(round(x)) - half, mask, intensity))
    return nuclei


def _paint(nuclei: list[Nucleus], height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stain/brightness map (H, W) float and the visible mask of each kept nucleus, in order."""
    amount = np.zeros((height, width), dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.int32)  # 0 background, i + 1 nucleus i on top
    full_area = []
    for i, nucleus in enumerate(nuclei):
        y0, x0 = max(nucleus.y0, 0), max(nucleus.x0, 0)
        y1 = min(nucleus.y0 + nucleus.mask.shape[0], height)
        x1 = min(nucleus.x0 + nucleus.mask.shape[1], width)
        if y1 <= y0 or x1 <= x0:
            full_area.append(0)
            continue
        local = (slice(y0 - nucleus.y0, y1 - nucleus.y0), slice(x0 - nucleus.x0, x1 - nucleus.x0))
        mask = nucleus.mask[local]
        brightness = float(np.clip(rng.normal(1.0, 0.25), 0.35, 1.8))
        amount[y0:y1, x0:x1][mask] = brightness * nucleus.intensity[local][mask]
        labels[y0:y1, x0:x1][mask] = i + 1
        full_area.append(int(mask.sum()))  # the part inside the image
    visible = []
    counts = np.bincount(labels.ravel(), minlength=len(nuclei) + 1)
    for i in range(len(nuclei)):
        # an instance cut by the image border keeps what is inside; one mostly covered is dropped
        if counts[i + 1] >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * full_area[i]):
            visible.append(labels == i + 1)
    return amount, visible


def _debris(rng: np.random.Generator, height: int, width: int, diameter: float) -> np.ndarray:
    """(H, W) unannotated specks: small bright/dark dots that are not nuclei."""
    specks = np.zeros((height, width), dtype=np.float32)
    for _ in range(int(rng.integers(0, 12))):
        y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
        r = max(1, int(diameter * float(rng.uniform(0.05, 0.15))))
        ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
        dot = (ys**2 + xs**2 <= r * r) * float(rng.uniform(0.2, 0.8))
        window = specks[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        oy, ox = max(0, r - y), max(0, r - x)
        window[...] = np.maximum(window, dot[oy : oy + window.shape[0], ox : ox + window.shape[1]])
    return specks


def _fluorescence(rng: np.random.Generator, amount: np.ndarray, specks: np.ndarray) -> np.ndarray:
    height, width = amount.shape
    peak = float(rng.uniform(0.25, 1.0))  # many real images are dim
    background = float(rng.uniform(0.0, 0.12))
    illumination = 1 + float(rng.uniform(0.0, 0.35)) * _smooth_noise(rng, height, width, cell=max(height, width) / 2)
    signal = (amount + specks) * peak * np.clip(illumination, 0.3, None)
    signal = _gaussian_blur(signal, float(rng.uniform(0.4, 2.0)))
    glow = _gaussian_blur(amount, 6.0) * float(rng.uniform(0.0, 0.15)) * peak  # out-of-focus haze
    photons = float(rng.uniform(30, 400))  # shot noise: fewer photons, noisier
    value = rng.poisson(np.clip(signal + glow + background, 0, None) * photons) / photons
    value = value + rng.normal(0, float(rng.uniform(0.003, 0.03)), size=value.shape)
    if rng.random() < 0.25:  # tinted: DAPI blue or a green/red channel
        tint = np.array([[0.25, 0.45, 1.0], [0.1, 1.0, 0.2], [1.0, 0.3, 0.1]][int(rng.integers(0, 3))])
    else:
        tint = np.ones(3)
    return np.clip(value, 0, 1)[:, :, None] * tint[None, None, :]


def _brightfield(rng: np.random.Generator, amount: np.ndarray, specks: np.ndarray, tissue: bool) -> np.ndarray:
    height, width = amount.shape
    light = np.array([0.92, 0.9, 0.93]) + rng.uniform(-0.06, 0.05, size=3)
    hematoxylin = HEMATOXYLIN_OD * rng.uniform(0.8, 1.2, size=3)
    density = float(rng.uniform(0.5, 1.4))
    optical = _gaussian_blur(amount + 0.5 * specks, float(rng.uniform(0.5, 1.5)))[:, :, None] * density * hematoxylin
    if tissue:
        texture = np.clip(0.5 + 0.35 * _smooth_noise(rng, height, width, cell=float(rng.uniform(6, 30))), 0, None)
        optical = optical + texture[:, :, None] * float(rng.uniform(0.2, 0.6)) * EOSIN_OD
        optical = optical + 0.05 * _smooth_noise(rng, height, width, cell=3.0)[:, :, None] * HEMATOXYLIN_OD
    else:
        optical = optical + 0.04 * np.clip(_smooth_noise(rng, height, width, cell=20.0), 0, None)[:, :, None]
    illumination = 1 + 0.08 * _smooth_noise(rng, height, width, cell=max(height, width) / 2)
    value = light[None, None, :] * illumination[:, :, None] * np.exp(-optical)
    value = value + rng.normal(0, float(rng.uniform(0.005, 0.03)), size=value.shape)
    return np.clip(value, 0, 1)


def render_nuclei_image(
    seed: int, index: int, sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES
) -> tuple[np.ndarray, list[np.ndarray], str]:
    """Render image `index` of the set `seed`: (H, W, 3) uint8, visible masks (H, W) bool, style."""
    rng = np.random.default_rng([seed, index])
    weights = np.array([IMAGE_SIZE_WEIGHTS[IMAGE_SIZES.index(s)] if s in IMAGE_SIZES else 1.0 for s in sizes])
    height, width = sizes[int(rng.choice(len(sizes), p=weights / weights.sum()))]
    if rng.random() < 0.5:
        height, width = width, height
    style = STYLES[int(rng.choice(len(STYLES), p=np.array(STYLE_WEIGHTS)))]
    nuclei = _place_nuclei(rng, height, width)
    amount, visible = _paint(nuclei, height, width, rng)
    mean_diameter = float(np.mean([n.mask.shape[0] for n in nuclei])) if nuclei else 16.0
    specks = _debris(rng, height, width, mean_diameter)
    if style == "fluorescence":
        pixels = _fluorescence(rng, amount, specks)
    else:
        pixels = _brightfield(rng, amount, specks, tissue=style == "histology")
    return np.round(pixels * 255).astype(np.uint8), visible, style


def nuclei_sizes(max_side: int) -> tuple[tuple[int, int], ...]:
    """The DSB-like image sizes whose longer side is at most `max_side` (at least the smallest)."""
    kept = tuple(s for s in IMAGE_SIZES if max(s) <= max_side)
    return kept or (IMAGE_SIZES[0],)


def generate_nuclei(
    out_dir: str | Path,
    num_images: int,
    max_side: int = 1024,
    seed: int = 0,
    *,
    annotations_file: str = "annotations.json",
) -> Path:
    """Write `num_images` images to `out_dir/images/` and COCO JSON (one class, "nucleus").

    Image sizes are the DSB-like ones no larger than `max_side`. Segmentations are
    compressed RLE of the visible masks. Returns the JSON path. Image names start with the
    JSON's stem, so train and val sets can share one folder.
    """
    if num_images < 0:
        raise ValueError(f"generate_nuclei: num_images must be >= 0, got {num_images}")
    if max_side < min(IMAGE_SIZES[0]):
        raise ValueError(f"generate_nuclei: max_side must be >= {min(IMAGE_SIZES[0])} pixels, got {max_side}")
    out_dir = Path(out_dir)
    json_path = out_dir / annotations_file
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(annotations_file).stem
    sizes = nuclei_sizes(max_side)
    images, annotations = [], []
    for index in range(num_images):
        pixels, masks, style = render_nuclei_image(seed, index, sizes)
        file_name = f"{stem}_{index:06d}.png"
        atomic_write_bytes(images_dir / file_name, png_bytes(pixels))
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": file_name, "height": pixels.shape[0], "width": pixels.shape[1], "style": style}
        )
        for mask in masks:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": mask_to_rle(mask.astype(np.uint8)),
                    "bbox": tight_bbox(mask),
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                }
            )
    generator = {"name": "maskrcnn.data.nuclei", "num_images": num_images, "image_size": max_side, "seed": seed}
    coco = {
        "info": {"description": "maskrcnn synthetic nuclei", "generator": generator},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "nucleus", "supercategory": "cell"}],
    }
    atomic_write_json(json_path, coco, indent=None)
    return json_path
