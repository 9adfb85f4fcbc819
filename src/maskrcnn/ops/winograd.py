"""3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(4x4, 3x3).

Shape glossary: N images (or RoIs); C input, K output channels; H, W the feature size;
Th = ceil(H / 4), Tw = ceil(W / 4) output tiles; P = N * Th * Tw tiles in all.

A direct 3x3 convolution spends 9 multiply-accumulates per output pixel and channel pair.
Winograd (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015) computes
each 4x4 output tile from a 6x6 input tile with 36: 4x fewer. The work becomes

    V = B^T d B     input tiles d (6x6, stride 4) -> (36, P, C)        two thin products
    M[i] = V[i] @ U[i]   for the 36 tile positions, U = G g G^T        36 matrix products
    Y = A^T M A     (36, P, K) -> 4x4 output tiles                     two thin products

so most of the time is 36 well-shaped matrix products instead of 9 smaller ones. The
transforms run along one axis at a time, each as a (6 x 6) or (4 x 6) matrix times a
gathered copy of the tile rows or columns: memory-bound, so one pass each matters. The
result equals the direct convolution up to float rounding (relative error ~1e-5 of the
output's largest value in float32; the transforms' constants 4, 5, 8 amplify rounding).
Used for inference only, by `model.inference_opt` on the CPU, where oneDNN has no
Winograd path for float32.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# G: the kernel transform for F(4x4, 3x3) (6x3).
_KERNEL_TRANSFORM = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)
TILE = 4  # output pixels per tile side
TILE_IN = 6  # input pixels per tile side (TILE + 3 - 1)
# Tiles transformed and multiplied together: 256 was 3-5 % faster than 512 or 1024 on the
# 2-core AVX-512 Xeon (2 MB L2 per core); 512 beat the whole map at once on a 2-core EPYC.
TILES_PER_BAND = 256


def winograd_weight(weight: Tensor) -> Tensor:
    """Transformed kernel U = G g G^T: (K, C, 3, 3) -> (36, C, K), tile position w-major.

    Computed in float64 then cast back, so the transform adds no rounding of its own.
    """
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"winograd_weight: expected a (K, C, 3, 3) kernel, got {tuple(weight.shape)}")
    g = torch.tensor(_KERNEL_TRANSFORM, dtype=torch.float64, device=weight.device)  # (6, 3)
    u = torch.einsum("ik,ockl,jl->jico", g, weight.detach().double(), g)  # (6w, 6h, C, K)
    return u.reshape(TILE_IN * TILE_IN, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


# B^T (6x6) and A^T (4x6): the input and output transforms of F(4x4, 3x3).
_INPUT_TRANSFORM = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_OUTPUT_TRANSFORM = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)


@functools.lru_cache(maxsize=8)
def _transform_matrices(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """B^T (6, 6) and A^T (4, 6) as tensors, built once per dtype and device (not per band)."""
    return (
        torch.tensor(_INPUT_TRANSFORM, dtype=dtype, device=device),
        torch.tensor(_OUTPUT_TRANSFORM, dtype=dtype, device=device),
    )


def _transform_windows(matrix: Tensor, windows: Tensor) -> Tensor:
    """matrix @ windows along their leading axis of 6: (a, 6) x (6, ...) -> (a, ...).

    `windows` is a strided view of overlapping tile rows or columns; gathering it once into
    a contiguous copy turns the transform into one thin matrix product (a single pass over
    memory, where a chain of adds made ten).
    """
    gathered = windows.contiguous()
    return torch.mm(matrix, gathered.view(TILE_IN, -1)).view(matrix.shape[0], *windows.shape[1:])


def _winograd_tiles(band: Tensor, weight_u: Tensor, out: Tensor) -> None:
    """One band of tile rows: zero-padded input (N, 4r + 2, 4Tw + 2, C) -> out (N, 4r, 4Tw, K)."""
    n, rows_in, cols_in, c = band.shape
    r, tw, k = (rows_in - 2) // TILE, (cols_in - 2) // TILE, weight_u.shape[2]
    input_t, output_t = _transform_matrices(band.dtype, band.device)  # (6, 6), (4, 6)
    s_n, s_h, s_w, s_c = band.stride()
    # tile_rows[j, :, t] is input row 4t + j: (6j, N, r, Wp, C).
    tile_rows = band.as_strided((TILE_IN, n, r, cols_in, c), (s_h, s_n, TILE * s_h, s_w, s_c))
    along_h = _transform_windows(input_t, tile_rows)  # (6h, N, r, Wp, C)
    s = along_h.stride()
    # tile_cols[j, h, :, :, t] is column 4t + j: (6j, 6h, N, r, Tw, C).
    tile_cols = along_h.as_strided((TILE_IN, TILE_IN, n, r, tw, c), (s[3], s[0], s[1], s[2], TILE * s[3], s[4]))
    v = _transform_windows(input_t, tile_cols)  # (6w, 6h, N, r, Tw, C)
    del along_h, tile_cols
    # The 36 products in one bmm: 726 against 750 ms for a loop of mm over a chelsea call's
    # 3x3 convs (2 threads, AVX-512 Xeon; docs/performance.md, "Winograd's transforms ...").
    m = torch.bmm(v.view(TILE_IN * TILE_IN, n * r * tw, c), weight_u)  # (36, P_band, K)
    del v
    along_w = torch.mm(output_t, m.view(TILE_IN, -1)).view(TILE, TILE_IN, -1)  # (4w, 6h, P_band * K)
    del m
    tiles = torch.matmul(output_t, along_w)  # (4w, 4h, P_band * K)
    del along_w
    # Each 4x4 tile to its place in `out`.
    out.view(n, r, TILE, tw, TILE, k).permute(4, 2, 0, 1, 3, 5).copy_(tiles.view(TILE, TILE, n, r, tw, k))


def winograd_conv3x3(
    x: Tensor,
    weight_u: Tensor,
    bias: Tensor | None = None,
    *,
    relu: bool = False,
    residual: Tensor | None = None,
) -> Tensor:
    """relu?(conv3x3(x) + bias + residual?) with stride 1, padding 1, by F(4x4, 3x3).

    x: (N, C, H, W), any memory format (channels-last is fastest); weight_u from
    `winograd_weight`: (36, C, K). Returns (N, K, H, W) in channels-last memory format.
    """
    n, c, h, w = x.shape
    k = weight_u.shape[2]
    if weight_u.shape != (TILE_IN * TILE_IN, c, k):
        raise ValueError(f"winograd_conv3x3: weight_u {tuple(weight_u.shape)} does not fit input with {c} channels")
    th, tw = -(-h // TILE), -(-w // TILE)
    # (N, H, W, C) -> zero-padded (N, 4Th + 2, 4Tw + 2, C): one pixel before, the rest after.
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    full = x.new_empty(n, TILE * th, TILE * tw, k)  # (N, 4Th, 4Tw, K)
    # Bands of about TILES_PER_BAND tiles: their transformed copies (36 x tiles x C floats)
    # stay small enough for the caches, and peak memory stays near the input's.
    rows = max(1, TILES_PER_BAND // (n * tw))
    for t0 in range(0, th, rows):
        t1 = min(th, t0 + rows)
        _winograd_tiles(padded[:, TILE * t0 : TILE * t1 + 2], weight_u, full[:, TILE * t0 : TILE * t1])
    del padded
    if (TILE * th, TILE * tw) == (h, w):
        out = full
        if bias is not None:
            out.add_(bias)
    else:
        out = x.new_empty(n, h, w, k)
        if bias is not None:
            torch.add(full[:, :h, :w], bias, out=out)
        else:
            out.copy_(full[:, :h, :w])
    if residual is not None:
        out.add_(residual.permute(0, 2, 3, 1))
    if relu:
        out.clamp_min_(0)
    return out.permute(0, 3, 1, 2)  # (N, K, H, W), channels-last memory
