import pytest
import torch

from maskrcnn.ops import roi_align as roi_align_module
from maskrcnn.ops import sparse_sampling
from maskrcnn.ops.roi_align import roi_align, roi_pool
from maskrcnn.ops.roi_align_reference import roi_align_reference, roi_pool_reference


def test_roi_align_hand_value():
    feature = torch.arange(16.0).view(1, 1, 4, 4)  # value = 4 * y + x
    rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]])
    out = roi_align(feature, rois, 1, 1.0, sampling_ratio=1, aligned=False)
    # one sample at (1, 1) -> 5
    assert out.shape == (1, 1, 1, 1) and out.item() == 5.0
    out = roi_align(feature, rois, 2, 1.0, sampling_ratio=2, aligned=True)
    # aligned: box [-0.5, 1.5]; samples at -0.25, 0.25 (bin 0) and 0.75, 1.25 (bin 1);
    # a linear map's mean is its value at the mean point (-0.25 clamps to 0 first)
    expected = torch.tensor([[4 * 0.125 + 0.125, 4 * 0.125 + 1.0], [4 * 1.0 + 0.125, 4 * 1.0 + 1.0]])
    torch.testing.assert_close(out[0, 0], expected)


def test_roi_align_outside_map_is_zero_and_empty_inputs():
    feature = torch.ones((2, 3, 5, 5))
    far = torch.tensor([[1.0, 100.0, 100.0, 120.0, 120.0]])
    assert roi_align(feature, far, 2, 1.0, 2, False).abs().sum() == 0
    assert roi_align(feature, torch.zeros((0, 5)), (3, 4), 1.0).shape == (0, 3, 3, 4)
    assert roi_pool(feature, torch.zeros((0, 5)), 2, 1.0).shape == (0, 3, 2, 2)
    with pytest.raises(ValueError, match="rois must be"):
        roi_align(feature, torch.zeros((3, 4)), 2, 1.0)


@pytest.mark.parametrize("host_bounds", [False, True])  # True: a GPU's path, tap counts from host bounds
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_roi_align_matches_plain_loop_with_mixed_grids(aligned, sampling_ratio, host_bounds, monkeypatch):
    monkeypatch.setattr(roi_align_module, "_NNZ_BUDGET", 2000)  # force several chunks
    monkeypatch.setattr(roi_align_module, "HOST_BOUNDS_EVERYWHERE", host_bounds)
    generator = torch.Generator().manual_seed(1)
    feature = torch.rand((2, 2, 12, 15), generator=generator, dtype=torch.float64)
    corner = torch.rand((9, 2), generator=generator, dtype=torch.float64) * 50 - 6
    size = torch.rand((9, 2), generator=generator, dtype=torch.float64) * torch.tensor([60.0, 4.0], dtype=torch.float64)
    batch = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.float64)[:, None]
    rois = torch.cat([batch, corner, corner + size], dim=1)
    zero_size = torch.tensor([[1.0, 10.0, 10.0, 10.0, 10.0]], dtype=torch.float64)  # adaptive+aligned: no samples
    rois = torch.cat([rois, zero_size], dim=0)
    out = roi_align(feature, rois, 3, 0.25, sampling_ratio, aligned)
    expected = roi_align_reference(feature, rois, 3, 0.25, sampling_ratio, aligned)
    if aligned and sampling_ratio <= 0:
        assert out[-1].abs().sum() == 0
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_gradcheck(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(0)
    feature = torch.rand((2, 2, 6, 7), generator=generator, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0.0, 1.0, 1.5, 9.0, 10.0], [1.0, -2.0, 0.5, 4.0, 20.0], [0.0, 3.3, 2.2, 3.9, 2.8]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(
        lambda f: roi_align(f, rois, (2, 3), 0.5, sampling_ratio, aligned), (feature,), fast_mode=True
    )


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_sparse_product_path_matches_gather_path_with_gradients(sampling_ratio, monkeypatch):
    generator = torch.Generator().manual_seed(2)
    feature = torch.rand((2, 3, 20, 24), generator=generator, dtype=torch.float64)
    corner = torch.rand((7, 2), generator=generator, dtype=torch.float64) * 80 - 5
    size = torch.rand((7, 2), generator=generator, dtype=torch.float64) * 60
    batch = torch.tensor([0, 1, 1, 0, 1, 0, 0], dtype=torch.float64)[:, None]
    rois = torch.cat([batch, corner, corner + size], dim=1)
    grad_out = torch.rand((7, 3, 4, 5), generator=generator, dtype=torch.float64)

    def run():
        leaf = feature.clone().requires_grad_(True)
        out = roi_align(leaf, rois, (4, 5), 0.25, sampling_ratio, False)
        out.backward(grad_out)
        return out.detach(), leaf.grad

    monkeypatch.setattr(sparse_sampling, "SPARSE_MIN_WORK", 0)
    sparse_out, sparse_grad = run()
    leaf = feature.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    roi_align(leaf, rois, (4, 5), 0.25, sampling_ratio, False).backward(grad_out)
    torch.testing.assert_close(leaf.grad, sparse_grad, atol=1e-12, rtol=0)
    monkeypatch.setattr(sparse_sampling, "SPARSE_MIN_WORK", 1 << 60)
    gather_out, gather_grad = run()
    torch.testing.assert_close(sparse_out, gather_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(sparse_grad, gather_grad, atol=1e-12, rtol=0)
    assert sparse_grad.abs().sum() > 0


def test_roi_align_channels_last_input_same_values_and_layout():
    generator = torch.Generator().manual_seed(5)
    feature = torch.rand((2, 6, 10, 12), generator=generator)
    rois = torch.tensor([[1.0, 1.0, 2.0, 30.0, 25.0], [0.0, 0.0, 0.0, 47.0, 39.0]])
    channels_last = feature.contiguous(memory_format=torch.channels_last)
    out = roi_align(channels_last, rois, 3, 0.25, 2, False)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, roi_align(feature, rois, 3, 0.25, 2, False), atol=0, rtol=0)
    assert roi_align(feature, rois, 3, 0.25, 2, False).is_contiguous()


def test_roi_align_bfloat16_input_follows_float32():
    generator = torch.Generator().manual_seed(3)
    feature = torch.rand((1, 4, 10, 12), generator=generator)
    rois = torch.tensor([[0.0, 1.0, 2.0, 30.0, 25.0], [0.0, 0.0, 0.0, 47.0, 39.0]])
    out = roi_align(feature.bfloat16(), rois, 3, 0.25, 2, True)
    assert out.dtype == torch.bfloat16
    expected = roi_align(feature.bfloat16().float(), rois, 3, 0.25, 2, True)
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=1e-2)


def test_roi_pool_hand_value_and_gradcheck():
    feature = torch.arange(20.0).view(1, 1, 4, 5)
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 1.0], [0.0, 9.0, 9.0, 12.0, 12.0]])
    out = roi_pool(feature, rois, (1, 2), 1.0)
    # roi 0: columns 0..3, rows 0..1 -> bins cols [0, 2) and [2, 4) -> max 6 and 8
    assert out[0, 0].tolist() == [[6.0, 8.0]]
    assert out[1].abs().sum() == 0  # fully outside the map -> empty bins -> 0
    generator = torch.Generator().manual_seed(0)
    feature = torch.rand((1, 2, 6, 6), generator=generator, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0.0, 0.4, 1.0, 8.0, 9.0], [0.0, 2.0, 2.0, 3.0, 5.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_pool(f, rois, 2, 0.5), (feature,), fast_mode=True)


def test_roi_align_and_pool_parity_with_torchvision(parity_ops):
    feature, rois = parity_ops["feature"], parity_ops["rois"]
    assert len(parity_ops["roi_align"]) == 24
    for case in parity_ops["roi_align"]:
        out = roi_align(
            feature, rois, case["output_size"], case["spatial_scale"], case["sampling_ratio"], case["aligned"]
        )
        error = (out - case["out"]).abs().max().item()
        assert error <= 1e-4, {k: v for k, v in case.items() if k != "out"}
    for case in parity_ops["roi_pool"]:
        out = roi_pool(feature, rois, case["output_size"], case["spatial_scale"])
        assert (out - case["out"]).abs().max().item() <= 1e-4


def test_roi_pool_partly_outside_matches_plain_loop():
    generator = torch.Generator().manual_seed(4)
    feature = torch.rand((2, 3, 9, 11), generator=generator, dtype=torch.float64)
    rois = torch.tensor(
        [[1.0, -6.0, -3.0, 5.0, 7.0], [0.0, 4.0, 2.0, 30.0, 20.0], [1.0, 40.0, 40.0, 60.0, 50.0], [0.0, 1, 1, 2, 2]],
        dtype=torch.float64,
    )
    out = roi_pool(feature, rois, (3, 4), 0.5)
    torch.testing.assert_close(out, roi_pool_reference(feature, rois, 3, 4, 0.5), atol=0, rtol=0)
    assert out[2].abs().sum() == 0  # wholly outside -> 0


def test_compiled_ops_are_never_used_off_cuda(monkeypatch):
    from maskrcnn.ops.compiled import OWN_OPS_ENV, torchvision_ops

    assert torchvision_ops(torch.device("cpu")) is None
    monkeypatch.setenv(OWN_OPS_ENV, "1")
    assert torchvision_ops(torch.device("cuda")) is None  # forced: this project's ops
