"""Mask conversions: polygons / RLE <-> binary masks, mask targets, pasting into images.

Shape glossary: N instances; H, W image height and width; M mask side (e.g. 28).

RLE work is done by pycocotools. `crop_and_resize_masks` and `paste_masks_in_image`
follow torchvision's Mask R-CNN (project_masks_on_boxes and paste_masks_in_image);
`ops/masks_reference.py` is the plain one-interpolate-per-mask paste the fast one is tested
against. `paste_masks` picks it or the pixel-exact one (ops/exact_paste.py).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as coco_mask
from torch import Tensor

from maskrcnn.config import MASK_PASTES
from maskrcnn.ops.exact_paste import blank_pasted_masks, paste_masks_exact
from maskrcnn.ops.roi_align import roi_align


def _decode(rle: dict) -> np.ndarray:
    """pycocotools decode without its NumPy 2 DeprecationWarning about `copy=`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(rle)


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterize COCO polygons ([x1, y1, x2, y2, ...] each) into one (H, W) uint8 {0, 1} mask."""
    polygons = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=np.uint8)
    rles = coco_mask.frPyObjects(polygons, height, width)
    mask = _decode(coco_mask.merge(rles))  # (H, W)
    return np.ascontiguousarray(mask, dtype=np.uint8)


def rle_to_mask(rle: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Decode a COCO RLE (compressed: counts str/bytes; uncompressed: counts list of ints).

    Returns an (H, W) uint8 {0, 1} mask. `height`/`width`, when given, must agree with the
    RLE's "size" ([h, w]).
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError(f"RLE must be a dict with 'size' [h, w] and 'counts', got {rle!r:.200}")
    rle_height, rle_width = (int(v) for v in rle["size"])
    if (height is not None and height != rle_height) or (width is not None and width != rle_width):
        raise ValueError(
            f"RLE size {[rle_height, rle_width]} does not match the image size {[height, width]}"
        )
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(counts) != rle_height * rle_width:
            raise ValueError(
                f"uncompressed RLE counts sum to {sum(counts)}, expected h*w = {rle_height * rle_width}"
            )
        compressed = coco_mask.frPyObjects(rle, rle_height, rle_width)
    else:
        compressed = {"size": [rle_height, rle_width], "counts": counts}
    mask = _decode(compressed)
    return np.ascontiguousarray(mask, dtype=np.uint8)


def mask_to_rle(mask: np.ndarray | Tensor) -> dict:
    """Encode an (H, W) mask (nonzero = foreground) as JSON-ready compressed RLE."""
    if isinstance(mask, Tensor):
        mask = mask.detach().cpu().numpy()
    if mask.ndim != 2:
        raise ValueError(f"mask_to_rle expects an (H, W) mask, got shape {mask.shape}")
    encoded = coco_mask.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    counts = encoded["counts"]
    return {
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def masks_to_rles(masks: np.ndarray | Tensor) -> list[dict]:
    """Encode (N, H, W) masks as a list of N JSON-ready compressed RLEs."""
    if isinstance(masks, Tensor):
        masks = masks.detach().cpu().numpy()
    if masks.ndim != 3:
        raise ValueError(f"masks_to_rles expects (N, H, W) masks, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    encoded = coco_mask.encode(np.asfortranarray((masks != 0).transpose(1, 2, 0), dtype=np.uint8))
    return [
        {
            "size": [int(masks.shape[1]), int(masks.shape[2])],
            "counts": e["counts"].decode("ascii") if isinstance(e["counts"], bytes) else e["counts"],
        }
        for e in encoded
    ]


def crop_and_resize_masks(
    gt_masks: Tensor, boxes: Tensor, mask_size: int, *, mask_indices: Tensor | None = None
) -> Tensor:
    """Mask-head targets: each (H, W) mask cropped to its box and resized -> (N, M, M) float.

    Exactly torchvision's project_masks_on_boxes: RoIAlign of the float masks with rois
    (i, box_i), output M x M, spatial_scale 1, adaptive sampling (-1), aligned=False.
    gt_masks is (N, H, W), one per box; or, with mask_indices (N,) int64, (G, H, W) with
    box i using gt_masks[mask_indices[i]] (saves copying a full mask per box).
    """
    num = boxes.shape[0]
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
    if mask_indices is None:
        if gt_masks.shape[0] != num:
            raise ValueError(f"crop_and_resize_masks: {gt_masks.shape[0]} masks but {num} boxes")
        mask_indices = torch.arange(num, device=boxes.device)
    elif mask_indices.shape != (num,):
        raise ValueError(
            f"crop_and_resize_masks: mask_indices must have shape ({num},), got {tuple(mask_indices.shape)}"
        )
    if num == 0:
        return torch.zeros((0, mask_size, mask_size), dtype=dtype, device=boxes.device)
    boxes = boxes.to(dtype)
    height, width = gt_masks.shape[-2:]
    # Boxes whose samples stay inside the image (RoIAlign grows boxes under 1 pixel to 1
    # pixel; samples past the image's edge read 0, which a crop cannot reproduce).
    reach = boxes[:, :2] + (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)  # (N, 2) far edge sampled
    inside = bool((boxes[:, :2] >= 0).all() and (reach[:, 0] <= width).all() and (reach[:, 1] <= height).all())
    if inside:  # read only the part of each mask its boxes reach, not a float copy of every full mask
        crops, mask_indices, boxes = _crop_masks_to_boxes(gt_masks, boxes, mask_indices.to(boxes.device), dtype)
    else:
        crops = gt_masks.to(device=boxes.device, dtype=dtype)
    rois = torch.cat([mask_indices.to(device=boxes.device, dtype=dtype)[:, None], boxes], dim=1)  # (N, 5)
    return roi_align(crops[:, None], rois, (mask_size, mask_size), 1.0, sampling_ratio=-1, aligned=False)[:, 0]


_CROP_MARGIN = 3  # pixels past a box's far edge that RoIAlign's samples may read (boxes < 1 px grow to 1 px)


def _crop_masks_to_boxes(
    gt_masks: Tensor, boxes: Tensor, mask_indices: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut each used mask down to the region its boxes (inside the image) can sample.

    (G, H, W) masks, (N, 4) boxes, (N,) indices -> (U, Hc, Wc) float crops of the U masks
    used, each box's crop index (N,), and the boxes moved into their crop's pixels. The
    values RoIAlign reads are unchanged: a crop holds every pixel a sample's bilinear
    neighbours can touch, and where it ends at the image's edge, the edge row / column is
    repeated once, which is what RoIAlign's clamp at the map's last pixel reads.
    """
    height, width = gt_masks.shape[-2:]
    used, crop_index = torch.unique(mask_indices, return_inverse=True)  # (U,), (N,)
    by_crop = crop_index[:, None].expand(-1, 2)
    low = boxes.new_full((used.numel(), 2), float("inf")).scatter_reduce(0, by_crop, boxes[:, :2], "amin")
    high = boxes.new_full((used.numel(), 2), -float("inf")).scatter_reduce(0, by_crop, boxes[:, 2:], "amax")
    starts = low.floor().to(torch.int64)  # (U, 2) x0, y0
    limits = torch.tensor([width, height], device=boxes.device)
    ends = torch.minimum(high.ceil().to(torch.int64) + _CROP_MARGIN, limits)  # (U, 2) exclusive x1, y1
    sizes = ends - starts  # (U, 2) w, h
    crops = torch.zeros(
        (used.numel(), int(sizes[:, 1].max()) + 1, int(sizes[:, 0].max()) + 1), dtype=dtype, device=boxes.device
    )
    for i, (g, (x0, y0), (x1, y1)) in enumerate(zip(used.tolist(), starts.tolist(), ends.tolist())):
        h, w = y1 - y0, x1 - x0
        crops[i, :h, :w] = gt_masks[g, y0:y1, x0:x1]
        if y1 == height:  # the image's last row, repeated: RoIAlign clamps samples past it to it
            crops[i, h, :w] = crops[i, h - 1, :w]
        if x1 == width:
            crops[i, : h + 1, w] = crops[i, : h + 1, w - 1]
    shift = starts[crop_index].to(dtype).repeat(1, 2)  # (N, 4) x0 y0 x0 y0
    return crops, crop_index, boxes - shift


def _expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Scale (N, 4) boxes about their centres (torchvision's expand_boxes)."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    return torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1)


def _resize_weights(in_size: int, out_sizes: Tensor, max_out: int, dtype: torch.dtype) -> Tensor:
    """Bilinear resize matrices (align_corners=False), one per output size: (N, max_out, in_size).

    Row o of matrix n holds the weights F.interpolate gives the input pixels for output
    pixel o when resizing in_size -> out_sizes[n]; rows o >= out_sizes[n] are zero.
    """
    device = out_sizes.device
    out_index = torch.arange(max_out, device=device, dtype=dtype)  # (O,)
    scale = in_size / out_sizes.to(dtype)  # (N,)
    source = ((out_index[None, :] + 0.5) * scale[:, None] - 0.5).clamp(min=0)  # (N, O)
    low = source.to(torch.int64).clamp(max=in_size - 1)  # floor; rows past the size are unused
    high = torch.where(low < in_size - 1, low + 1, low)
    frac_high = source - low.to(dtype)
    frac_low = 1.0 - frac_high
    valid = (out_index[None, :] < out_sizes[:, None].to(dtype)).to(dtype)  # (N, O)
    weights = torch.zeros((out_sizes.shape[0], max_out, in_size), dtype=dtype, device=device)
    weights.scatter_add_(2, low[..., None], (frac_low * valid)[..., None])
    weights.scatter_add_(2, high[..., None], (frac_high * valid)[..., None])
    return weights


def paste_masks_in_image(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1
) -> Tensor:
    """Paste (N, M, M) mask probabilities into an image of size (h, w) -> (N, h, w) float.

    torchvision's semantics: each mask gets `padding` zero pixels per side, its box is
    scaled about the centre by (M + 2p) / M and truncated to integers, the mask is resized
    bilinearly (align_corners=False) to (y2 - y1 + 1, x2 - x1 + 1) pixels and written at
    (x1, y1), clipped to the image. Work is done only inside each box: the resize is two
    small matrix products per mask (bilinear weights built for all masks at once).
    """
    out = blank_pasted_masks(masks, image_size)  # (N, H, W)
    if out.numel() == 0:
        return out
    im_h, im_w, dtype = out.shape[1], out.shape[2], out.dtype
    side = masks.shape[-1]
    padded = F.pad(masks.to(dtype), (padding,) * 4)  # (N, M + 2p, M + 2p)
    scale = float(side + 2 * padding) / side
    int_boxes = _expand_boxes(boxes.to(masks.device), scale).to(torch.int64)  # (N, 4) truncated
    widths = (int_boxes[:, 2] - int_boxes[:, 0] + 1).clamp(min=1)  # (N,)
    heights = (int_boxes[:, 3] - int_boxes[:, 1] + 1).clamp(min=1)

    # Parts of each resized mask that land inside the image (in resized-mask coordinates).
    x0 = int_boxes[:, 0].clamp(min=0)
    x1 = torch.minimum(int_boxes[:, 2] + 1, torch.tensor(im_w, device=masks.device))
    y0 = int_boxes[:, 1].clamp(min=0)
    y1 = torch.minimum(int_boxes[:, 3] + 1, torch.tensor(im_h, device=masks.device))
    bounds = torch.stack((x0, x1, y0, y1, int_boxes[:, 0], int_boxes[:, 1]), dim=1).tolist()

    max_h = int(heights.max())
    max_w = int(widths.max())
    row_weights = _resize_weights(padded.shape[-2], heights, max_h, dtype)  # (N, max_h, M')
    col_weights = _resize_weights(padded.shape[-1], widths, max_w, dtype)  # (N, max_w, M')
    # Each mask: only its in-image rows and columns, (h', M') @ (M', M') @ (M', w').
    for n, (px0, px1, py0, py1, bx, by) in enumerate(bounds):
        if px1 <= px0 or py1 <= py0:
            continue
        rows = row_weights[n, py0 - by : py1 - by]  # (h', M')
        cols = col_weights[n, px0 - bx : px1 - bx]  # (w', M')
        out[n, py0:py1, px0:px1] = rows @ padded[n] @ cols.t()
    return out


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], how: str = "torchvision") -> Tensor:
    """(N, M, M) mask probabilities -> (N, H, W): torchvision's paste, or "exact" (the
    grids must then come from a model with mask_paste exact, which aligns them)."""
    if how == "exact":
        return paste_masks_exact(masks, boxes, image_size)
    if how != "torchvision":
        raise ValueError(f"paste_masks: how must be one of {', '.join(MASK_PASTES)}, got {how!r}")
    return paste_masks_in_image(masks, boxes, image_size, padding=1)


def paste_masks_to_rles(
    masks: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    threshold: float = 0.5,
    chunk_size: int = 32,
    how: str = "torchvision",
) -> list[dict]:
    """(N, M, M) mask probabilities and their (N, 4) boxes -> N RLEs of (h, w) masks (> threshold).

    The same masks as `paste_masks_in_image` thresholded, but pasted `chunk_size` at a time,
    so memory holds chunk_size full-size masks, not N: 600 detections of a 1000 x 1400
    image would otherwise need 3.4 GB of float masks at once.
    """
    rles: list[dict] = []
    for start in range(0, masks.shape[0], chunk_size):
        pasted = paste_masks(masks[start : start + chunk_size], boxes[start : start + chunk_size], image_size, how)
        rles.extend(masks_to_rles((pasted > threshold).to(torch.uint8)))  # (n, h, w) chunk
    return rles
