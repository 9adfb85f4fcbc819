"""3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(4x4, 3x3).

Shape glossary: N images (or RoIs); C input, K output channels; H, W the feature size;
Th = ceil(H / 4), Tw = ceil(W / 4) output tiles; P = N * Th * Tw tiles in all.

A direct 3x3 convolution spends 9 multiply-accumulates per output pixel and channel pair.
Winograd (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015) computes
each 4x4 output tile from a 6x6 input tile with 36: 4x fewer. The work becomes

    V = B^T d B     input tiles d (6x6, stride 4) -> (36, P, C)        cheap adds
    M[i] = V[i] @ U[i]   for the 36 tile positions, U = G g G^T        36 matrix products
    Y = A^T M A     (36, P, K) -> 4x4 output tiles                     cheap adds

so most of the time is 36 well-shaped matrix products instead of 9 smaller ones. The
result equals the direct convolution up to float rounding (relative error ~1e-5 of the
output's largest value in float32; the transforms' constants 4, 5, 8 amplify rounding).
Used for inference only, by `model.inference_opt` on the CPU, where oneDNN has no
Winograd path for float32.
"""

from __future__ import annotations

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
# Tiles transformed and multiplied together: 512 was 6-7 % faster than the whole map at
# once for the P2 map and the mask head, and no slower elsewhere (2-core EPYC, 32 MB L3).
TILES_PER_BAND = 512


def winograd_weight(weight: Tensor) -> Tensor:
    """Transformed kernel U = G g G^T: (K, C, 3, 3) -> (36, C, K), tile position w-major.

    Computed in float64 then cast back, so the transform adds no rounding of its own.
    """
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"winograd_weight: expected a (K, C, 3, 3) kernel, got {tuple(weight.shape)}")
    g = torch.tensor(_KERNEL_TRANSFORM, dtype=torch.float64, device=weight.device)  # (6, 3)
    u = torch.einsum("ik,ockl,jl->jico", g, weight.detach().double(), g)  # (6w, 6h, C, K)
    return u.reshape(TILE_IN * TILE_IN, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _input_transform(x: Tensor, dim: int, tiles: int, out: Tensor) -> Tensor:
    """out[i] = sum_j B^T[i, j] * x[..., 4t + j, ...] along `dim`, for the tiles t: (6, ...)."""
    span = TILE * (tiles - 1) + 1

    def rows(j: int) -> Tensor:  # x at positions 4t + j, t = 0..tiles-1
        return x.narrow(dim, j, span)[(slice(None),) * dim + (slice(None, None, TILE),)]

    d0, d1, d2, d3, d4, d5 = (rows(j) for j in range(TILE_IN))
    # B^T rows: (4,0,-5,0,1,0) (0,-4,-4,1,1,0) (0,4,-4,-1,1,0) (0,-2,-1,2,1,0) (0,2,-1,-2,1,0) (0,4,0,-5,0,1)
    torch.add(d4, d2, alpha=-4, out=out[1])
    odd = torch.add(d3, d1, alpha=-4)
    torch.sub(out[1], odd, out=out[2])
    out[1].add_(odd)
    even = torch.sub(d4, d2)
    torch.sub(d1, d3, out=odd)
    torch.add(even, odd, alpha=-2, out=out[3])
    torch.add(even, odd, alpha=2, out=out[4])
    torch.add(d4, d2, alpha=-5, out=out[0]).add_(d0, alpha=4)
    torch.add(d5, d3, alpha=-5, out=out[5]).add_(d1, alpha=4)
    return out


def _output_transform(m: Tensor, out: Tensor) -> Tensor:
    """out[i] = sum_j A^T[i, j] * m[j]: (6, ...) -> (4, ...)."""
    # A^T rows: (1,1,1,1,1,0) (0,1,-1,2,-2,0) (0,1,1,4,4,0) (0,1,-1,8,-8,1)
    sum12, diff12 = m[1] + m[2], m[1] - m[2]
    sum34, diff34 = m[3] + m[4], m[3] - m[4]
    torch.add(sum12, sum34, out=out[0]).add_(m[0])
    torch.add(diff12, diff34, alpha=2, out=out[1])
    torch.add(sum12, sum34, alpha=4, out=out[2])
    torch.add(diff12, diff34, alpha=8, out=out[3]).add_(m[5])
    return out


def _winograd_tiles(band: Tensor, weight_u: Tensor, out: Tensor) -> None:
    """One band of tile rows: zero-padded input (N, 4r + 2, 4Tw + 2, C) -> out (N, 4r, 4Tw, K)."""
    n, _, _, c = band.shape
    r, tw, k = (band.shape[1] - 2) // TILE, (band.shape[2] - 2) // TILE, weight_u.shape[2]
    along_h = _input_transform(band, 1, r, band.new_empty(TILE_IN, n, r, TILE * tw + 2, c))  # (6h, N, r, Wp, C)
    v = _input_transform(along_h, 3, tw, band.new_empty(TILE_IN, TILE_IN, n, r, tw, c))  # (6w, 6h, N, r, Tw, C)
    del along_h
    m = band.new_empty(TILE_IN * TILE_IN, n * r * tw, k)  # (36, P_band, K)
    v_rows = v.view(TILE_IN * TILE_IN, n * r * tw, c)
    for i in range(TILE_IN * TILE_IN):  # 36 products: a loop of mm beats one bmm on the CPU
        torch.mm(v_rows[i], weight_u[i], out=m[i])
    del v, v_rows
    along_w = _output_transform(m.view(TILE_IN, TILE_IN, n, r, tw, k), band.new_empty(TILE, TILE_IN, n, r, tw, k))
    del m
    # The second transform writes the 4x4 tiles straight into their places in `out`.
    tiles_view = out.view(n, r, TILE, tw, TILE, k).permute(2, 4, 0, 1, 3, 5)  # (4h, 4w, N, r, Tw, K)
    _output_transform(along_w.transpose(0, 1), tiles_view)


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
