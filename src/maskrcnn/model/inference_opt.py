"""Make a model in eval mode faster for inference, without changing what it computes.

Shape glossary: N images (or RoIs); C_in, C_out conv channels; H, W feature size.

`prepare_for_inference(model)` rewrites the model in place; outputs change only by float
rounding:

1. Folds every normalization with fixed statistics that directly follows a convolution
   (FrozenBatchNorm2d, or BatchNorm2d in eval mode) into that convolution:
       norm(conv(x)) = conv(x) * s + t   with s = gamma / sqrt(var + eps), t = beta - mean * s
                     = conv_{W * s, b * s + t}(x)
2. Fuses the ReLU after a conv (conv -> [norm] -> ReLU in an nn.Sequential, the ResNet
   stem) and the residual add + ReLU that ends a ResNet block into the convolution
   (oneDNN post-ops on the CPU): one pass over the output instead of three.
3. Stores 4-D weights channels-last (NHWC), so oneDNN's convolutions run without
   converting layouts between layers (feature maps then flow channels-last too).
4. Runs the wide 3x3 convolutions (stride 1, >= 128 channels in and out: FPN outputs, RPN
   head, mask head, the v2 box head, ResNet res3-res5) by Winograd F(4x4, 3x3)
   (`ops.winograd`) on the CPU: 4x fewer multiplies, 1.2-2.1x faster measured
   (benchmarks/winograd.py). Off with `prepare_for_inference(model, winograd=False)`.

The convs become `InferenceConv2d` and the norms `FoldedNorm` (pass-through); both keep
the original parameters and buffers under their original names, so `state_dict()`,
parameter counts and saved checkpoints are exactly those of the unprepared model (the
folded weights are extra non-persistent buffers). A prepared model refuses to run in
training mode and refuses to load new weights: load them first, then prepare.

Pairs are rewritten only where the order of application is certain: consecutive
children of an `nn.Sequential`, the ResNet stem, and the ResNet residual blocks.
GroupNorm (statistics of the input itself) cannot be folded and is left alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.norm import FrozenBatchNorm2d
from maskrcnn.model.resnet import BasicBlock, Bottleneck, ResNet
from maskrcnn.ops.winograd import winograd_conv3x3, winograd_weight

TRAINING_ERROR = (
    "this model was prepared for inference (maskrcnn.model.inference_opt.prepare_for_inference: "
    "norms folded into the convolutions) and cannot be trained; build or load it again without "
    "preparing it (load_model(..., for_inference=False)) to train"
)
# Winograd pays from 128 channels and about 64 output tiles of 4x4 (benchmarks/winograd.py):
# below that the transforms' memory traffic costs more than the multiplies saved.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_TILES = 64
LOAD_ERROR = (
    "cannot load weights into a model prepared for inference (its folded weights would be stale); "
    "load the weights first, then call prepare_for_inference"
)


def norm_scale_and_shift(norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(C,) s and t with norm(x) = x * s + t per channel, or None if the norm cannot be folded."""
    if isinstance(norm, FrozenBatchNorm2d):
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # FrozenBatchNorm2d's arithmetic
        return scale, norm.bias - norm.running_mean * scale
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_mean is not None:
        assert norm.running_var is not None
        scale = (norm.running_var + norm.eps).rsqrt()
        if norm.weight is not None:
            scale = norm.weight * scale
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        return scale, shift
    return None


def folded_conv_weights(conv: nn.Conv2d, scale: Tensor | None, shift: Tensor | None) -> tuple[Tensor, Tensor]:
    """Weight (C_out, C_in/groups, kh, kw) and bias (C_out,) of conv followed by x * scale + shift."""
    weight = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if scale is not None and shift is not None:
        weight = weight * scale.detach().reshape(-1, 1, 1, 1)
        bias = bias * scale.detach() + shift.detach()
    return weight, bias


class _InferenceOnly(nn.Module):
    """Refuses training-mode forwards and state-dict loading (see the module docstring)."""

    def _check_eval(self) -> None:
        if self.training:
            raise RuntimeError(TRAINING_ERROR)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(LOAD_ERROR)


class InferenceConv2d(nn.Conv2d, _InferenceOnly):
    """A Conv2d with the following norm folded in, and optionally a fused ReLU / residual add.

    forward(x, residual=None) = relu?(conv_{folded}(x) + residual?). Its parameters
    (`weight`, `bias`) are the original conv's, untouched; it computes with the
    non-persistent buffers `folded_weight`, `folded_bias`.
    """

    folded_weight: Tensor
    folded_bias: Tensor

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, norm: nn.Module | None = None) -> "InferenceConv2d":
        scale, shift = norm_scale_and_shift(norm) if norm is not None else (None, None)  # type: ignore[misc]
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device="meta",  # no allocation, no random init: the parameters come from `conv`
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.training = conv.training
        new.relu = False
        new.folded_norm = norm is not None
        new.packed_weight = None
        new.winograd = False
        new.winograd_u = None
        new.packed_weight_bf16 = None
        new.folded_bias_bf16 = None
        weight, bias = folded_conv_weights(conv, scale, shift)
        new.register_buffer("folded_weight", weight, persistent=False)
        new.register_buffer("folded_bias", bias, persistent=False)
        return new

    def _use_onednn(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.folded_weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and x.requires_grad)
        )

    def _onednn_weight(self, x: Tensor) -> Tensor:
        """The folded weight reordered once into oneDNN's blocked layout (cached; not state)."""
        if self.packed_weight is None:
            try:
                self.packed_weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    self.folded_weight.to_mkldnn(),
                    list(self.padding), list(self.stride), list(self.dilation), self.groups, list(x.shape),
                )
            except (RuntimeError, AttributeError):  # no such private op: use the plain weight
                self.packed_weight = self.folded_weight
        return self.packed_weight

    def _use_onednn_bf16(self, x: Tensor) -> bool:
        """Under CPU autocast to bfloat16: oneDNN's bf16 convolution (AMX / AVX512_BF16)."""
        return (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and x.dtype in (torch.float32, torch.bfloat16)
            and self.folded_weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and not (torch.is_grad_enabled() and x.requires_grad)
        )

    def _onednn_bf16_weight(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The folded weight in bfloat16, reordered once for oneDNN, and the bias (cached)."""
        if self.packed_weight_bf16 is None:
            weight = self.folded_weight.to(torch.bfloat16)
            try:
                self.packed_weight_bf16 = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    weight.to_mkldnn(), list(self.padding), list(self.stride), list(self.dilation), self.groups,
                    list(x.shape),
                )
            except (RuntimeError, AttributeError):
                self.packed_weight_bf16 = weight
            self.folded_bias_bf16 = self.folded_bias.to(torch.bfloat16)
        return self.packed_weight_bf16, self.folded_bias_bf16

    def supports_winograd(self) -> bool:
        """A 3x3, stride-1, padding-1 conv, wide enough for Winograd to pay."""
        return (
            tuple(self.kernel_size) == (3, 3)
            and tuple(self.stride) == (1, 1)
            and tuple(self.dilation) == (1, 1)
            and self.padding == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and min(self.in_channels, self.out_channels) >= WINOGRAD_MIN_CHANNELS
        )

    def runs_winograd(self, x: Tensor) -> bool:
        """Whether forward(x) takes the Winograd path (CPU float32 inference, enough tiles)."""
        tiles = x.shape[0] * -(-x.shape[-2] // 4) * -(-x.shape[-1] // 4)
        return self.winograd and tiles >= WINOGRAD_MIN_TILES and self._use_onednn(x)

    def _winograd_weight(self) -> Tensor:
        """The folded weight transformed for F(4x4, 3x3), (36, C_in, C_out) (cached; not state)."""
        if self.winograd_u is None:
            self.winograd_u = winograd_weight(self.folded_weight)
        return self.winograd_u

    def _apply(self, fn: Any, recurse: bool = True) -> "InferenceConv2d":
        self.packed_weight = None  # device / dtype / layout changes: pack again when next used
        self.winograd_u = None
        self.packed_weight_bf16 = None
        self.folded_bias_bf16 = None
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["packed_weight"] = None  # an opaque oneDNN tensor cannot be copied or pickled
        state["packed_weight_bf16"] = None
        return state

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        self._check_eval()
        if self.runs_winograd(x):
            return winograd_conv3x3(x, self._winograd_weight(), self.folded_bias, relu=self.relu, residual=residual)
        if self._use_onednn(x):
            weight = self._onednn_weight(x)
            args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, weight, self.folded_bias, *args, "relu" if self.relu else "none", [], ""
                )
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, self.folded_bias, *args, "add", None, "relu" if self.relu else None, [], None
            )
        if self._use_onednn_bf16(x):
            return self._forward_bf16(x, residual)
        out = self._conv_forward(x, self.folded_weight, self.folded_bias)
        if residual is not None:
            out = out + residual
        return F.relu(out) if self.relu else out

    def _forward_bf16(self, x: Tensor, residual: Tensor | None) -> Tensor:
        """bfloat16 in and out, same fused ReLU / residual add (see inference.precision)."""
        weight, bias = self._onednn_bf16_weight(x)
        x = x.to(torch.bfloat16)
        args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *args, "relu" if self.relu else "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual.to(torch.bfloat16), weight, bias, *args, "add", None, "relu" if self.relu else None, [], None
        )

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(LOAD_ERROR)

    def extra_repr(self) -> str:
        fused = [
            name
            for name, on in (("norm folded", self.folded_norm), ("relu", self.relu), ("winograd", self.winograd))
            if on
        ]
        return super().extra_repr() + (f", {', '.join(fused)}" if fused else "")


class FoldedNorm(_InferenceOnly):
    """A norm (or ReLU) already fused into the conv before it: passes its input through.

    Holds the original module's parameters and buffers under the same names, so the state
    dict does not change.
    """

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.folded_kind = type(original).__name__
        for name, param in original.named_parameters(recurse=False):
            self.register_parameter(name, param)
        non_persistent = getattr(original, "_non_persistent_buffers_set", set())
        for name, buffer in original.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=name not in non_persistent)
        self.training = original.training

    def forward(self, x: Tensor) -> Tensor:
        self._check_eval()
        return x

    def extra_repr(self) -> str:
        return f"fused {self.folded_kind}"


class InferenceResidualBlock(_InferenceOnly):
    """A ResNet BasicBlock / Bottleneck with every norm folded: convs with fused ReLUs, the
    last conv with the fused residual add + ReLU. Same children, same names."""

    def __init__(self, block: BasicBlock | Bottleneck) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        if block.downsample is None:
            self.downsample = None
        self.convs = [name for name in ("conv1", "conv2", "conv3") if hasattr(block, name)]
        self.training = block.training

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, H, W) -> (N, C_out, H/s, W/s)
        self._check_eval()
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for name in self.convs[:-1]:
            out = getattr(self, name)(out)  # conv + folded norm + ReLU
        return getattr(self, self.convs[-1])(out, residual=identity)  # relu(conv + norm + identity)


def _is_foldable(norm: nn.Module) -> bool:
    return norm_scale_and_shift(norm) is not None


def _fuse_block(block: BasicBlock | Bottleneck) -> nn.Module:
    convs = [name for name in ("conv1", "conv2", "conv3") if hasattr(block, name)]
    norms = [getattr(block, name.replace("conv", "bn")) for name in convs]
    if not all(type(getattr(block, c)) is nn.Conv2d for c in convs):
        return block
    if not all(_is_foldable(n) or isinstance(n, nn.Identity) for n in norms):
        return block  # e.g. GroupNorm: left as it is
    for conv_name, norm in zip(convs, norms):
        conv = InferenceConv2d.from_conv(getattr(block, conv_name), norm if _is_foldable(norm) else None)
        conv.relu = True  # after the add, for the last conv
        setattr(block, conv_name, conv)
        setattr(block, conv_name.replace("conv", "bn"), FoldedNorm(norm))
    return InferenceResidualBlock(block)


def _fuse_sequential(seq: nn.Sequential) -> None:
    """conv [-> foldable norm] [-> ReLU] runs inside the Sequential -> one InferenceConv2d."""
    names = [name for name, _ in seq.named_children()]
    i = 0
    while i < len(names):
        conv = getattr(seq, names[i])
        if type(conv) is not nn.Conv2d:
            i += 1
            continue
        j = i + 1
        norm = getattr(seq, names[j]) if j < len(names) else None
        if norm is not None and _is_foldable(norm):
            new = InferenceConv2d.from_conv(conv, norm)
            setattr(seq, names[j], FoldedNorm(norm))
            j += 1
        else:
            new = InferenceConv2d.from_conv(conv)
        after = getattr(seq, names[j]) if j < len(names) else None
        if isinstance(after, nn.ReLU):
            new.relu = True
            setattr(seq, names[j], FoldedNorm(after))
            j += 1
        setattr(seq, names[i], new)
        i = j


def _fuse_resnet_stem(resnet: ResNet) -> None:
    """ResNet.forward applies conv1 -> bn1 -> relu (used only there) -> maxpool."""
    if type(resnet.conv1) is not nn.Conv2d or not _is_foldable(resnet.bn1):
        return
    conv = InferenceConv2d.from_conv(resnet.conv1, resnet.bn1)
    conv.relu = True
    resnet.conv1, resnet.bn1, resnet.relu = conv, FoldedNorm(resnet.bn1), FoldedNorm(resnet.relu)  # type: ignore[assignment]


def fuse_for_inference(model: nn.Module) -> None:
    """Fold norms and fuse ReLUs / residual adds into the convs of `model`, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (BasicBlock, Bottleneck):
                setattr(parent, name, _fuse_block(child))
    for module in list(model.modules()):
        if isinstance(module, ResNet):
            _fuse_resnet_stem(module)
        elif type(module) is nn.Sequential or (
            isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
        ):
            _fuse_sequential(module)


def is_prepared_for_inference(model: nn.Module) -> bool:
    return bool(getattr(model, "prepared_for_inference", False)) or any(
        isinstance(m, _InferenceOnly) for m in model.modules()
    )


@torch.no_grad()
def prepare_for_inference(
    model: nn.Module, *, fuse: bool = True, channels_last: bool = True, winograd: bool = True
) -> nn.Module:
    """Fold norms, fuse activations, store weights channels-last, use Winograd for the wide
    3x3 convs: the same model, in place.

    The model must be in eval mode (it stays there); its outputs do not change beyond
    float rounding. Calling it again changes nothing but the Winograd choice.
    """
    if model.training:
        raise ValueError(
            "prepare_for_inference: the model is in training mode; call model.eval() first "
            "(a prepared model can only run inference)"
        )
    if fuse:
        fuse_for_inference(model)
    for module in model.modules():
        if isinstance(module, InferenceConv2d):
            module.winograd = winograd and module.supports_winograd()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.prepared_for_inference = True  # type: ignore[assignment]
    return model
