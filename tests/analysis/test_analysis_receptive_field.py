"""analyze receptive-field: the recurrence, layer strings, and the real backbones."""

from __future__ import annotations

import pytest

from maskrcnn.analysis.receptive_field import (
    LayerSpecError,
    backbone_receptive_fields,
    parse_layers,
    receptive_fields,
)
from maskrcnn.config import load_config


def test_issue_layer_list() -> None:
    rows = receptive_fields(parse_layers("conv5,pool2,conv5,pool2,conv5,pool2,conv5,pool2,conv5,conv3"))
    assert [r.receptive_field for r in rows] == [5, 6, 14, 16, 32, 36, 68, 76, 140, 172]
    assert [r.effective_stride for r in rows] == [1, 2, 2, 4, 4, 8, 8, 16, 16, 16]


def test_strides_and_dilations_by_hand() -> None:
    layers = parse_layers("conv3s2, pool3, conv3d2, conv3s2d2")
    assert [(l.kernel, l.stride, l.dilation) for l in layers] == [(3, 2, 1), (3, 3, 1), (3, 1, 2), (3, 2, 2)]
    rows = receptive_fields(layers)
    # R: 1+2=3 (ES 2); 3+2*2=7 (ES 6); 7+2*6*2=31 (ES 6); 31+2*6*2=55 (ES 12)
    assert [r.receptive_field for r in rows] == [3, 7, 31, 55]
    assert [r.effective_stride for r in rows] == [2, 6, 6, 12]


@pytest.mark.parametrize("text,token", [("conv3,cnv3", "cnv3"), ("conv3,,pool2", "''"), ("pool2s", "pool2s")])
def test_bad_layer_token_is_named(text: str, token: str) -> None:
    with pytest.raises(LayerSpecError, match=f"{token}"):
        parse_layers(text)


def test_resnet50_fpn_fields() -> None:
    result = backbone_receptive_fields(load_config("maskrcnn_resnet50_fpn").model)
    stages = {s["stage"]: (s["effective_stride"], s["receptive_field"]) for s in result["stages"]}
    # stem: conv7/2 -> 7, maxpool3/2 at ES 2 -> 11; each 3x3 adds 2*ES; res2 3 blocks at ES 4 -> 35, ...
    assert stages == {"stem": (4, 11), "c2": (4, 35), "c3": (8, 91), "c4": (16, 267), "c5": (32, 427)}
    levels = {lv["level"]: (lv["stride"], lv["own_stage"], lv["with_top_down"]) for lv in result["levels"]}
    assert levels["p2"] == (4, 35 + 8, 427 + 8)
    assert levels["p6"] == (64, 427 + 64, 427 + 64)
    fits = {a["level"]: a["fits_own_stage"] for a in result["anchors"]}
    assert fits == {"p2": True, "p3": True, "p4": True, "p5": True, "p6": False}  # 512 > 491


def test_dilated_c5_keeps_the_field_at_stride_16() -> None:
    cfg = load_config("maskrcnn_resnet50_fpn", ["model.backbone.name=resnet18", "model.backbone.layout=dc5"])
    result = backbone_receptive_fields(cfg.model)
    c5 = [s for s in result["stages"] if s["stage"] == "c5"][0]
    # resnet18: stem 11; res2 4 convs at ES 4; res3 strided conv at ES 4 then 3 at ES 8; res4 likewise.
    # res5 dilated: the first block's two 3x3 convs keep dilation 1 at ES 16 (+32 each), the second
    # block's two use dilation 2 (+64 each)
    c4 = [s for s in result["stages"] if s["stage"] == "c4"][0]
    assert c4["receptive_field"] == 11 + 4 * 8 + (8 + 3 * 16) + (16 + 3 * 32) == 211
    assert (c5["effective_stride"], c5["receptive_field"]) == (16, 211 + 2 * 32 + 2 * 64)
    assert "note" in result["anchors"][0]  # 5 anchor levels for one feature level
