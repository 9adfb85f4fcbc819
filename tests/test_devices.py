"""One resolve_device for the trainer, the Predictor and the demo."""

import pytest
import torch

from maskrcnn.devices import DeviceError, resolve_device


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match=r"^device: expected auto, cpu, cuda or cuda:N, got 'tpu-ish'$"):
        resolve_device("tpu-ish")
    with pytest.raises(DeviceError, match=r"^train.device: expected auto, cpu, cuda or cuda:N, got 'cuda:x'$"):
        resolve_device("cuda:x", where="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_names_the_setting() -> None:
    with pytest.raises(DeviceError, match=r"^device: 'cuda' requested but this PyTorch build sees no CUDA device"):
        resolve_device("cuda")
