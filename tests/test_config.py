import pytest
import yaml

from maskrcnn.config import (
    Config,
    ConfigError,
    builtin_config_names,
    config_from_dict,
    dump_config,
    load_config,
)


def test_builtin_names_include_torchvision_models():
    names = builtin_config_names()
    assert "maskrcnn_resnet50_fpn" in names and "maskrcnn_resnet50_fpn_v2" in names


def test_named_config_overrides_defaults():
    cfg = load_config("maskrcnn_resnet50_fpn_v2")
    assert cfg.model.rpn.num_convs == 2
    assert cfg.model.backbone.fpn_norm == "bn"
    assert cfg.model.rpn.nms_thresh == 0.7  # untouched default


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["solver.lr=0.5", "model.transform.min_size=[600,700]", "solver.amp=true"])
    assert cfg.solver.lr == 0.5
    assert cfg.model.transform.min_size == [600, 700]
    assert cfg.solver.amp is True


def test_empty_override_empties_a_string_and_is_refused_for_a_number():
    cfg = load_config(None, ["train.init_weights=weights.pt"])
    assert load_config(None, ["train.init_weights=weights.pt", "train.init_weights="]).train.init_weights == ""
    with pytest.raises(ConfigError, match="solver.lr: expected a number"):
        load_config(None, ["solver.lr="])
    assert cfg.train.init_weights == "weights.pt"


@pytest.mark.parametrize(
    "item, fragment",
    [("solver.lrr=1", "solver.lrr"), ("solver.lr=abc", "solver.lr"), ("nokey", "key=value"), ("solver.max_iter=1.5", "integer")],
)
def test_bad_overrides_name_the_key(item, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(None, [item])


def test_unknown_name_lists_builtins():
    with pytest.raises(ConfigError, match="maskrcnn_resnet50_fpn"):
        load_config("no_such_config")


def test_round_trip_through_yaml():
    cfg = load_config("maskrcnn_resnet50_fpn", ["solver.steps=[3,4]"])
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    assert isinstance(again, Config)
