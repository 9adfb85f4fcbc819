"""RoIAlign and RoIPool in plain PyTorch, with torchvision's exact semantics.

The fast path here gives the values of the one-sample-at-a-time loops in
`ops/roi_align_reference.py`, but builds every bin's pixel weights at once and reads the
feature map with one sparse-dense product instead of a Python loop per bin and sample.

Shape glossary: B images; C channels; H, W feature height and width; K RoIs;
oh, ow output height and width; G sample points per bin along one axis;
E "taps" per bin along one axis (feature rows or columns a bin reads, with a weight).

How RoIAlign is computed. torchvision's bilinear sample at (y, x), zeroed outside
[-1, H] x [-1, W], factorizes into a y part and an x part, and a bin's value is the mean
of a fixed grid of samples. So each output bin is sum_ij wy[i] * wx[j] * F[:, y_i, x_j]
over a few rows y_i and columns x_j. For every (RoI, bin) we list those rows and columns
with their weights ("taps", built per axis); the E_y * E_x pixels per bin and their
weights form one row of a sparse matrix S, and out = S @ (channels-last map) is a single
sparse-dense product (ops/sparse_sampling.py, with an explicit backward). Taps are either
two per sample (the sample's low and high pixel) or one contiguous band of pixels
(cheaper when samples are dense, as with adaptive sampling); the cheaper one is used.

Every tap count is known on the host before the taps are built, so that on a GPU the host
never waits for a size: with the config's sampling ratio (> 0) the counts follow from it
(two taps per sample); with adaptive sampling the grid and band bounds of each group of
RoIs come back in one read per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from maskrcnn.ops.compiled import torchvision_ops
from maskrcnn.ops.sparse_sampling import weighted_gather

_NNZ_BUDGET = 1 << 22  # RoIAlign: taps built at once (per chunk of RoIs with similar grids)
# True: take the GPU's path (tap counts from host-known bounds only) on the CPU as well.
HOST_BOUNDS_EVERYWHERE = False
_KEY_SIDE = 32  # adaptive sampling: grids grouped by ceil(log2(grid)) per axis, 0..31


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _check_inputs(name: str, input: Tensor, rois: Tensor) -> None:
    if input.dim() != 4:
        raise ValueError(f"{name}: input must be (B, C, H, W), got shape {tuple(input.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"{name}: rois must be (K, 5) [batch_index, x1, y1, x2, y2], got shape {tuple(rois.shape)}"
        )


def _sample_taps(
    start: Tensor, bin_size: Tensor, grid: Tensor, out_size: int, max_grid: int, length: int
) -> tuple[Tensor, Tensor]:
    """Two taps per sample along one axis: indices (K, out, 2G) int64 and weights (K, out, 2G).

    Follows torchvision's CPU kernel: sample i of bin p sits at
    start + p * bin + (i + 0.5) * bin / grid; outside [-1, length] it counts 0; below 0 it is
    moved to 0; at or past length - 1 it snaps to the last pixel. Weights include 1 / grid.
    """
    dtype = start.dtype
    device = start.device
    bins = torch.arange(out_size, device=device, dtype=dtype)  # (out,)
    samples = torch.arange(max_grid, device=device, dtype=dtype) + 0.5  # (G,)
    grid_f = grid.clamp(min=1).to(dtype)  # (K,)
    coord = (start[:, None] + bins[None, :] * bin_size[:, None])[:, :, None] + (
        samples[None, None, :] * bin_size[:, None, None]
    ) / grid_f[:, None, None]  # (K, out, G)
    used = (torch.arange(max_grid, device=device)[None, :] < grid[:, None])[:, None, :]  # (K, 1, G)
    inside = (coord >= -1.0) & (coord <= length) & used  # (K, out, G)
    coord = coord.clamp(min=0)
    low = coord.to(torch.int64)  # floor, coord >= 0
    at_edge = low >= length - 1
    low = torch.where(at_edge, torch.full_like(low, length - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(dtype), coord)
    frac_high = coord - low.to(dtype)
    frac_low = 1.0 - frac_high
    scale = inside.to(dtype) / grid_f[:, None, None]  # (K, out, G)
    index = torch.stack((low, high), dim=-1).flatten(2)  # (K, out, 2G)
    weight = torch.stack((frac_low * scale, frac_high * scale), dim=-1).flatten(2)
    return index, weight


def _band_taps(index: Tensor, weight: Tensor, length: int, band_len: int) -> tuple[Tensor, Tensor]:
    """Same taps merged into one contiguous band of `band_len` pixels per bin: (K, out, E) each.

    `band_len` is a bound known on the host (`_band_bound`): at least the span of a bin's
    used samples; samples past a RoI's grid carry weight 0 and are folded into the band's
    last pixel."""
    band_start = index.amin(dim=2, keepdim=True)  # (K, out, 1)
    offset = (index - band_start).clamp(max=band_len - 1)  # (K, out, 2G)
    band_weight = torch.zeros(index.shape[:2] + (band_len,), dtype=weight.dtype, device=weight.device)
    band_weight.scatter_add_(2, offset, weight)
    band_index = (band_start + torch.arange(band_len, device=index.device)).clamp(max=length - 1)
    return band_index, band_weight


def _band_bound(bin_size: Tensor) -> Tensor:
    """Pixels a bin's samples can touch along one axis, per RoI: the samples span less
    than a bin, so their low pixels cover at most ceil(bin) + 1 values and the high
    neighbours one more."""
    return torch.ceil(bin_size).to(torch.int64) + 2


@dataclass(frozen=True)
class _Chunk:
    """RoIs whose taps are built at once, with tap counts known on the host."""

    members: Tensor | slice  # RoI indices (adaptive sampling: grouped by grid) or a range
    grid: tuple[int, int]  # samples per bin along y, x (the chunk's largest)
    band: tuple[int, int]  # band length along y, x; 0: two taps per sample instead


def _fixed_grid_chunks(num: int, grid: int, bins_per_roi: int) -> list[_Chunk]:
    """A sampling ratio from the config: every size is known on the host, no read."""
    step = max(1, _NNZ_BUDGET // (4 * grid * grid * bins_per_roi))
    return [_Chunk(slice(i, min(i + step, num)), (grid, grid), (0, 0)) for i in range(0, num, step)]


def _adaptive_chunks(grid_h: Tensor, grid_w: Tensor, bin_h: Tensor, bin_w: Tensor, bins_per_roi: int) -> list[_Chunk]:
    """Adaptive sampling (a grid per RoI): RoIs grouped by their grids' powers of two, in
    chunks that fit the nonzero budget; the sizes of every group come to the host in one read."""
    num = grid_h.shape[0]
    key_h = torch.ceil(torch.log2(grid_h.clamp(min=1).double())).long().clamp(max=_KEY_SIDE - 1)  # buckets by powers of 2
    key_w = torch.ceil(torch.log2(grid_w.clamp(min=1).double())).long().clamp(max=_KEY_SIDE - 1)
    key = key_h * _KEY_SIDE + key_w  # (K,)
    order = torch.sort(key, stable=True).indices  # (K,) RoIs grouped by bucket
    per_roi = torch.stack([grid_h.clamp(min=1), grid_w.clamp(min=1), _band_bound(bin_h), _band_bound(bin_w)])  # (4, K)
    table = torch.zeros((5, _KEY_SIDE * _KEY_SIDE), dtype=torch.int64, device=key.device)
    table[0].scatter_add_(0, key, torch.ones_like(key))
    table[1:].scatter_reduce_(1, key.expand(4, -1), per_roi, "amax")
    counts, max_gh, max_gw, band_h, band_w = table.tolist()  # the one read: sizes of every bucket
    chunks, offset = [], 0
    for bucket, count in enumerate(counts):
        if count == 0:
            continue
        grid = (max_gh[bucket], max_gw[bucket])
        band = tuple(b if b < 2 * g else 0 for b, g in zip((band_h[bucket], band_w[bucket]), grid))
        taps = (band[0] or 2 * grid[0]) * (band[1] or 2 * grid[1])
        step = max(1, _NNZ_BUDGET // (taps * bins_per_roi))
        for i in range(offset, offset + count, step):
            chunks.append(_Chunk(order[i : min(i + step, offset + count)], grid, band))  # type: ignore[arg-type]
        offset += count
    if len(chunks) == 1:
        return [_Chunk(slice(0, num), chunks[0].grid, chunks[0].band)]
    return chunks


def _axis_taps(
    start: Tensor, bin_size: Tensor, grid: Tensor, out_size: int, length: int, max_grid: int, band_len: int | None
) -> tuple[Tensor, Tensor]:
    """Taps of one axis for a chunk of RoIs: two per sample, or one band (band_len > 0).
    band_len None: the band's exact length is read from the taps and the form with fewer
    taps is used (on the CPU, where reading a value costs no wait)."""
    index, weight = _sample_taps(start, bin_size, grid, out_size, max_grid, length)
    if band_len is None:
        exact = int((index - index.amin(dim=2, keepdim=True)).max()) + 1
        band_len = exact if exact < index.shape[2] else 0
    if band_len > 0:
        return _band_taps(index, weight, length, band_len)
    return index, weight


def reads_exact_bands(device: torch.device) -> bool:
    """Whether RoIAlign reads exact band lengths back (fewer taps) instead of host bounds:
    on the CPU, unless HOST_BOUNDS_EVERYWHERE (benchmarks/host_syncs.py sets it to count
    a GPU's path on the CPU)."""
    return device.type == "cpu" and not HOST_BOUNDS_EVERYWHERE


def roi_align(
    input: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (torchvision semantics): (B, C, H, W), (K, 5) rois -> (K, C, oh, ow).

    rois rows are [batch_index, x1, y1, x2, y2] in input-image pixels; spatial_scale maps
    them to the feature map. sampling_ratio > 0 takes that many samples per bin and axis,
    <= 0 takes ceil(roi_size / output_size) per RoI. aligned=True shifts boxes by -0.5 px;
    aligned=False makes RoIs at least 1 px wide and high. Differentiable w.r.t. input.
    A channels-last input (torch.channels_last) skips a copy of the map and gives a
    channels-last output; otherwise the output is contiguous.
    """
    _check_inputs("roi_align", input, rois)
    out_h, out_w = _pair(output_size)
    batch, channels, height, width = input.shape
    num = rois.shape[0]
    if num == 0 or channels == 0:
        return input.new_zeros((num, channels, out_h, out_w))
    compiled = torchvision_ops(input.device)
    if compiled is not None:  # torchvision's CUDA kernel (ops/compiled.py)
        rois = rois.detach().to(device=input.device, dtype=input.dtype)
        return compiled.roi_align(input, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
    # half / bfloat16 maps are sampled in float32 (sparse products need float32/64) and cast back
    dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    rois = rois.detach().to(device=input.device, dtype=dtype)
    offset = 0.5 if aligned else 0.0
    batch_index = rois[:, 0].to(torch.int64)  # (K,)
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / out_w  # (K,)
    bin_h = roi_h / out_h
    if sampling_ratio > 0:
        grid_h = torch.full((num,), sampling_ratio, dtype=torch.int64, device=input.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(bin_h).to(torch.int64)
        grid_w = torch.ceil(bin_w).to(torch.int64)

    parts = []
    index_dtype = torch.int32 if batch * height * width < 2**31 - 1 else torch.int64  # halves tap memory
    if sampling_ratio > 0:
        chunks = _fixed_grid_chunks(num, sampling_ratio, out_h * out_w)
    else:
        chunks = _adaptive_chunks(grid_h, grid_w, bin_h, bin_w, out_h * out_w)
    exact_bands = reads_exact_bands(input.device)
    for chunk in chunks:
        members = chunk.members
        (max_grid_h, max_grid_w), bands = chunk.grid, chunk.band
        band_h, band_w = (None, None) if exact_bands else bands
        index_y, weight_y = _axis_taps(start_y[members], bin_h[members], grid_h[members], out_h, height, max_grid_h, band_h)
        index_x, weight_x = _axis_taps(start_x[members], bin_w[members], grid_w[members], out_w, width, max_grid_w, band_w)
        base = batch_index[members] * (height * width)  # (k,)
        flat_index = (
            base[:, None, None, None, None]
            + index_y[:, :, None, :, None] * width
            + index_x[:, None, :, None, :]
        )  # (k, oh, ow, Ey, Ex): channels-last pixel of each tap
        weights = weight_y[:, :, None, :, None] * weight_x[:, None, :, None, :]  # (k, oh, ow, Ey, Ex)
        num_bins = base.shape[0] * out_h * out_w
        parts.append((flat_index.reshape(num_bins, -1).to(index_dtype), weights.reshape(num_bins, -1)))
    pooled = weighted_gather(input.to(dtype), parts)  # (K*oh*ow, C) in chunk order
    out = pooled.view(num, out_h, out_w, channels)
    if any(isinstance(chunk.members, Tensor) for chunk in chunks):  # grouped by grid: back to input order
        order = torch.cat([chunk.members for chunk in chunks])  # type: ignore[misc]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(num, device=order.device)
        out = out[inverse]
    out = out.permute(0, 3, 1, 2)  # (K, C, oh, ow), channels-last strides
    if input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous():
        return out.to(input.dtype)  # memory format follows the input, as for convolutions
    return out.contiguous().to(input.dtype)


def _round_half_away(values: Tensor) -> Tensor:
    """C's round(): halves go away from zero (torch.round sends them to even)."""
    truncated = torch.trunc(values)
    is_half = (values - truncated).abs() == 0.5
    return torch.where(is_half, truncated + torch.sign(values), torch.round(values))


def _roi_pool_windowed(input: Tensor, box: list[int], output_size: tuple[int, int]) -> Tensor:
    """RoIPool of one large RoI: its window, -inf outside the map, adaptive max pooling.

    box = [batch index, x1, y1, roi_w, roi_h] in whole pixels. adaptive_max_pool2d's bins
    (floor(i * n / out), ceil((i + 1) * n / out)) are RoIPool's. -> (C, oh, ow).
    """
    b, x1, y1, roi_w, roi_h = box
    height, width = input.shape[-2:]
    top, bottom = max(y1, 0), min(y1 + roi_h, height)
    left, right = max(x1, 0), min(x1 + roi_w, width)
    if top >= bottom or left >= right:
        return input.new_zeros((input.shape[1],) + output_size)
    window = input[b, :, top:bottom, left:right]  # (C, h', w')
    padding = (left - x1, x1 + roi_w - right, top - y1, y1 + roi_h - bottom)
    if any(padding):
        window = F.pad(window, padding, value=-math.inf)  # (C, roi_h, roi_w)
    pooled = F.adaptive_max_pool2d(window[None], output_size)[0]  # (C, oh, ow)
    return pooled.masked_fill(pooled == -math.inf, 0.0)  # bins wholly outside the map


def roi_pool(
    input: Tensor, rois: Tensor, output_size: int | tuple[int, int], spatial_scale: float
) -> Tensor:
    """RoIPool (torchvision semantics): (B, C, H, W), (K, 5) rois -> (K, C, oh, ow).

    RoI corners are scaled and rounded to whole pixels, the RoI (at least 1 x 1 pixel,
    corners inclusive) is cut into oh x ow bins with floor/ceil edges, and each bin takes
    the max over its pixels; a bin with no pixel inside the map gives 0. Each RoI is pooled
    with adaptive_max_pool2d on its own window (measured 2-3x faster than gathering all
    bins at once, which needs a channels-last copy of the map); RoIs are expected to lie
    roughly inside the image, as proposals do (the window is padded to the full RoI).
    """
    _check_inputs("roi_pool", input, rois)
    out_h, out_w = _pair(output_size)
    batch, channels, height, width = input.shape
    num = rois.shape[0]
    if num == 0 or channels == 0:
        return input.new_zeros((num, channels, out_h, out_w))
    device = input.device
    rois = rois.detach().to(device=device, dtype=input.dtype)
    batch_index = rois[:, 0].to(torch.int64)
    corners = _round_half_away(rois[:, 1:] * spatial_scale).to(torch.int64)  # (K, 4)
    roi_w = (corners[:, 2] - corners[:, 0] + 1).clamp(min=1)
    roi_h = (corners[:, 3] - corners[:, 1] + 1).clamp(min=1)

    boxes = torch.stack([batch_index, corners[:, 0], corners[:, 1], roi_w, roi_h], dim=1).tolist()
    return torch.stack([_roi_pool_windowed(input, box, (out_h, out_w)) for box in boxes])  # (K, C, oh, ow)
