"""Weighted gathers from a feature map, as one sparse-dense matrix product.

Shape glossary: B images; C channels; H, W map size; P = B*H*W pixels of the map in
channels-last order (pixel p = b*H*W + y*W + x); n output rows; T taps (pixels) per row.

RoIAlign (and anything else that is "each output = a fixed weighted sum of a few
pixels") is out = S @ F with F the (P, C) channels-last map and S a sparse (n, P) matrix.
Large products go through a CSR matrix (MKL on the CPU, cuSPARSE on CUDA) with an explicit
backward (S transposed, again as CSR); small ones through index_select + bmm, where the
sparse product's fixed cost would dominate.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Below this many multiply-adds (nonzeros x channels) the gather + bmm path is used.
SPARSE_MIN_WORK = 1 << 20
# Gradient transpose (P, C) -> (C, P) in blocks of pixels: cache-sized (2x faster than one
# copy) and under PyTorch's parallel grain (32768 elements), so no 2-thread region per block.
_TRANSPOSE_ELEMENTS = 32767


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _sparse_times_dense(matrix: Tensor, dense: Tensor) -> Tensor:
    """CSR (n, m) @ dense (m, C) -> (n, C), written straight into a fresh buffer."""
    out = dense.new_empty((matrix.shape[0], dense.shape[1]))
    return torch.addmm(out, matrix, dense, beta=0, out=out)


def _channels_last_rows(input: Tensor) -> Tensor:
    """(B, C, H, W) -> (B*H*W, C); a view when the map is already channels-last."""
    batch, channels, height, width = input.shape
    return input.permute(0, 2, 3, 1).reshape(batch * height * width, channels)


def _rows_to_nchw(rows: Tensor, shape: torch.Size) -> Tensor:
    """(B*H*W, C) -> contiguous (B, C, H, W); on the CPU in cache-sized blocks (2x faster)."""
    batch, channels, height, width = shape
    per_image = rows.view(batch, height * width, channels)
    if rows.device.type != "cpu":
        return per_image.transpose(1, 2).reshape(shape).contiguous()
    out = rows.new_empty((batch, channels, height * width))
    block = max(1, _TRANSPOSE_ELEMENTS // channels)
    for b in range(batch):
        for start in range(0, height * width, block):
            stop = min(start + block, height * width)
            out[b, :, start:stop] = per_image[b, start:stop].t()
    return out.view(shape)


class _SparseSample(torch.autograd.Function):
    """out (n, C) = S @ channels_last(input) for S given as CSR parts (crow, col, values)."""

    @staticmethod
    def forward(ctx, input: Tensor, crow: Tensor, col: Tensor, values: Tensor) -> Tensor:  # type: ignore[override]
        features = _channels_last_rows(input)  # (P, C)
        num_rows = crow.shape[0] - 1
        matrix = _csr(crow, col, values, (num_rows, features.shape[0]))
        ctx.save_for_backward(crow, col, values)
        ctx.input_shape = input.shape
        ctx.channels_last = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
        return _sparse_times_dense(matrix, features)  # (n, C)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        crow, col, values = ctx.saved_tensors
        num_rows = crow.shape[0] - 1
        num_pixels = ctx.input_shape[0] * ctx.input_shape[2] * ctx.input_shape[3]
        # S transposed as CSR: entries sorted by pixel (stable, so rows stay ascending)
        sorted_col, order = torch.sort(col.to(torch.int64), stable=True)
        row_lengths = crow[1:].to(torch.int64) - crow[:-1].to(torch.int64)  # (n,)
        entry_rows = torch.repeat_interleave(
            torch.arange(num_rows, device=col.device), row_lengths, output_size=col.shape[0]
        )  # (nnz,); output_size: no read-back of the total
        counts = torch.bincount(sorted_col, minlength=num_pixels)  # (P,)
        crow_t = torch.zeros(num_pixels + 1, dtype=torch.int64, device=col.device)
        torch.cumsum(counts, 0, out=crow_t[1:])
        transposed = _csr(
            crow_t.to(crow.dtype), entry_rows[order].to(crow.dtype), values[order], (num_pixels, num_rows)
        )
        grad_rows = _sparse_times_dense(transposed, grad_out.contiguous())  # (P, C)
        if ctx.channels_last:  # the gradient takes the input's layout, no transpose needed
            batch, channels, height, width = ctx.input_shape
            return grad_rows.view(batch, height, width, channels).permute(0, 3, 1, 2), None, None, None
        return _rows_to_nchw(grad_rows, ctx.input_shape), None, None, None


def weighted_gather(input: Tensor, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """sum_t weights[r, t] * pixel(flat_index[r, t]) for every row r of every part -> (n, C).

    input (B, C, H, W) float32/float64; parts: (flat_index (n_i, T_i) int32/int64 into the
    channels-last pixels P, weights (n_i, T_i)); rows come out in part order, n = sum n_i.
    Repeated pixels in a row add up. Differentiable w.r.t. input.
    """
    channels = input.shape[1]
    parts = [(index, weight.to(input.dtype)) for index, weight in parts]
    nnz = sum(index.numel() for index, _ in parts)
    if nnz * channels < SPARSE_MIN_WORK:
        features = _channels_last_rows(input)  # (P, C)
        rows = []
        for index, weight in parts:
            num_rows, taps = index.shape
            gathered = features.index_select(0, index.reshape(-1)).view(num_rows, taps, channels)  # (n_i, T_i, C)
            rows.append(torch.bmm(weight.reshape(num_rows, 1, taps), gathered).view(num_rows, channels))
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)

    num_pixels = input.shape[0] * input.shape[2] * input.shape[3]
    index_dtype = torch.int32 if max(nnz, num_pixels) < 2**31 - 1 else torch.int64
    crows, offset = [], 0
    for index, _ in parts:
        num_rows, taps = index.shape
        crows.append(torch.arange(offset, offset + num_rows * taps, taps, device=input.device, dtype=index_dtype))
        offset += num_rows * taps
    crows.append(torch.full((1,), offset, device=input.device, dtype=index_dtype))
    crow = torch.cat(crows)  # (n + 1,)
    col = torch.cat([index.reshape(-1) for index, _ in parts]).to(index_dtype)  # (nnz,)
    values = torch.cat([weight.reshape(-1) for _, weight in parts])  # (nnz,)
    return _SparseSample.apply(input, crow, col, values)
