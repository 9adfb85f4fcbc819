"""The backbone contract the RPN and RoI heads rely on, and its builder.

Shape glossary: B images; Hp, Wp the padded batch size (a multiple of 32); D the
channels every output level has (`out_channels`).

    Backbone.forward(x (B, 3, Hp, Wp)) -> {name: (B, D, Hp/stride, Wp/stride)}, finest first
    Backbone.feature_names  e.g. ["p2", "p3", "p4", "p5", "p6"]
    Backbone.strides        e.g. [4, 8, 16, 32, 64]
    Backbone.out_channels   e.g. 256

Layouts (`BackboneConfig.layout`):
    "fpn": trunk C2..C5 + FPN -> P2..P6 (strides 4..64, D = fpn_channels)
    "c4":  trunk up to C4 -> {"c4"} (stride 16, D = 1024 for ResNet-50); res5 becomes the
           RoI head (`build_res5_head`)
    "dc5": trunk with dilated C5 -> {"c5"} (stride 16, D = 2048 for ResNet-50)

Submodules are `body` (the trunk) and `fpn` (absent without FPN), so the state-dict keys
read `body.conv1.weight`, `fpn.inner_blocks.0.0.weight`, as under torchvision's
`backbone.` prefix.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskrcnn.config import BackboneConfig, ConfigError
from maskrcnn.model.fpn import FPN
from maskrcnn.model.plain import PlainCNN
from maskrcnn.model.resnet import RESNET_SPECS, Res5Head, ResNet

LAYOUTS = ("fpn", "c4", "dc5")
PLAIN_NAME = "plain"


class Backbone(nn.Module):
    """A trunk, optionally followed by an FPN; outputs named feature maps, finest first."""

    def __init__(
        self,
        *,
        body: nn.Module,
        fpn: FPN | None,
        feature_names: list[str],
        strides: list[int],
        out_channels: int,
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.feature_names = list(feature_names)
        self.strides = list(strides)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # (B, 3, Hp, Wp) -> {name: (B, D, Hp/s, Wp/s)}
        features = self.body(x)
        if self.fpn is not None:
            features = self.fpn(features)
        return {name: features[name] for name in self.feature_names}


def allowed_backbone_names() -> list[str]:
    return [*RESNET_SPECS, PLAIN_NAME]


def _check(cfg: BackboneConfig) -> None:
    if cfg.name not in allowed_backbone_names():
        raise ConfigError(
            f"backbone.name: unknown backbone {cfg.name!r}; expected one of {', '.join(allowed_backbone_names())}"
        )
    if cfg.layout not in LAYOUTS:
        raise ConfigError(f"backbone.layout: unknown layout {cfg.layout!r}; expected one of {', '.join(LAYOUTS)}")
    if cfg.name == PLAIN_NAME:
        problems = []
        if cfg.layout != "fpn":
            problems.append(f"backbone.layout={cfg.layout!r} (only 'fpn')")
        if cfg.norm == "frozen_bn":
            problems.append("backbone.norm='frozen_bn' (use bn, gn or none)")
        if cfg.freeze_at != 0:
            problems.append(f"backbone.freeze_at={cfg.freeze_at} (use 0: its weights start random)")
        if problems:
            raise ConfigError(
                "backbone.name='plain' is a small CNN trained from scratch; it does not support "
                + "; ".join(problems)
            )
    if cfg.fpn_channels <= 0:
        raise ConfigError(f"backbone.fpn_channels: expected a positive integer, got {cfg.fpn_channels}")


def build_trunk(cfg: BackboneConfig) -> ResNet | PlainCNN:
    """The trunk alone (what the layout puts under `body`)."""
    _check(cfg)
    if cfg.name == PLAIN_NAME:
        return PlainCNN(channels=list(cfg.plain_channels), norm=cfg.norm, freeze_at=cfg.freeze_at)
    if cfg.layout == "c4":
        stages: tuple[str, ...] = ("c4",)
    elif cfg.layout == "dc5":
        stages = ("c5",)
    else:
        stages = ("c2", "c3", "c4", "c5")
    return ResNet(
        name=cfg.name,
        norm=cfg.norm,
        freeze_at=cfg.freeze_at,
        dilate_c5=cfg.layout == "dc5",
        return_stages=stages,
    )


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """The backbone of `cfg.layout` over the trunk `cfg.name`."""
    body = build_trunk(cfg)
    if cfg.layout == "fpn":
        in_names = body.return_stages
        fpn = FPN(
            in_channels=[body.stage_channels[s] for s in in_names],
            out_channels=cfg.fpn_channels,
            norm=cfg.fpn_norm,
            out_names=["p2", "p3", "p4", "p5", "p6"],
        )
        strides = [body.stage_strides[s] for s in in_names]
        return Backbone(
            body=body,
            fpn=fpn,
            feature_names=fpn.out_names,
            strides=[*strides, strides[-1] * 2],
            out_channels=cfg.fpn_channels,
        )
    (stage,) = body.return_stages
    return Backbone(
        body=body,
        fpn=None,
        feature_names=[stage],
        strides=[body.stage_strides[stage]],
        out_channels=body.stage_channels[stage],
    )


def build_res5_head(cfg: BackboneConfig) -> Res5Head:
    """res5 of the trunk `cfg.name`, run on 14x14 RoI features for the C4 layout: -> (R, C5, 7, 7)."""
    _check(cfg)
    if cfg.name == PLAIN_NAME:
        raise ConfigError("backbone.name='plain' has no res5 head; the c4 layout needs a ResNet")
    return Res5Head(name=cfg.name, norm=cfg.norm, frozen=cfg.freeze_at >= 5)
