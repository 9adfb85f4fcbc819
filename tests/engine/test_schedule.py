import math

import pytest
import torch

from maskrcnn.config import ConfigError, SolverConfig
from maskrcnn.engine.schedule import build_lr_scheduler, build_optimizer, lr_factor


def factor(i, **kw):
    base = dict(max_iter=100, warmup_iters=10, warmup_factor=0.1, schedule="multistep", steps=[50, 80], gamma=0.1)
    base.update(kw)
    return lr_factor(i, **base)


def test_warmup_is_linear_from_warmup_factor_to_one():
    assert factor(0) == pytest.approx(0.1)
    assert factor(5) == pytest.approx(0.1 * 0.5 + 0.5)  # 0.55
    assert factor(9) == pytest.approx(0.1 * 0.1 + 0.9)  # 0.91
    assert factor(10) == pytest.approx(1.0)


def test_multistep_decays_at_each_milestone():
    assert factor(49) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.1)
    assert factor(79) == pytest.approx(0.1)
    assert factor(80) == pytest.approx(0.01)
    assert factor(99) == pytest.approx(0.01)


def test_cosine_hand_values():
    kw = dict(schedule="cosine", warmup_iters=0)
    assert factor(0, **kw) == pytest.approx(1.0)
    assert factor(50, **kw) == pytest.approx(0.5)
    assert factor(25, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.8536
    assert factor(100, **kw) == pytest.approx(0.0)


def test_cosine_with_warmup_multiplies_both():
    assert factor(5, schedule="cosine") == pytest.approx(0.55 * 0.5 * (1 + math.cos(math.pi * 0.05)))


def test_unknown_schedule_names_the_field():
    with pytest.raises(ConfigError, match="solver.schedule"):
        factor(0, schedule="poly")


def test_scheduler_sets_optimizer_lr_per_iteration():
    model = torch.nn.Linear(2, 1)
    solver = SolverConfig(lr=0.2, max_iter=20, warmup_iters=4, warmup_factor=0.5, steps=[10], gamma=0.5)
    optimizer = build_optimizer(model, solver)
    scheduler = build_lr_scheduler(optimizer, solver)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1, 0.125, 0.15, 0.175] + [0.2] * 6 + [0.1, 0.1]
    assert seen == pytest.approx(expected)


def test_optimizer_leaves_out_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    for p in model[0].parameters():
        p.requires_grad_(False)
    optimizer = build_optimizer(model, SolverConfig(lr=0.1, momentum=0.8, weight_decay=1e-3))
    params = optimizer.param_groups[0]["params"]
    assert len(params) == 2 and all(p.requires_grad for p in params)
    assert optimizer.param_groups[0]["momentum"] == 0.8
    assert optimizer.param_groups[0]["weight_decay"] == 1e-3


def test_bad_solver_values_raise_config_errors():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ConfigError, match="solver.steps"):
        build_optimizer(model, SolverConfig(steps=[900, 700]))
    with pytest.raises(ConfigError, match="solver.lr"):
        build_optimizer(model, SolverConfig(lr=0.0))
    frozen = torch.nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(frozen, SolverConfig())


def test_amp_dtype_names_the_field():
    from maskrcnn.engine.schedule import check_solver

    check_solver(SolverConfig(amp_dtype="bfloat16"))
    with pytest.raises(ConfigError, match=r"solver.amp_dtype: expected one of \['float16', 'bfloat16'\], got 'half'"):
        check_solver(SolverConfig(amp_dtype="half"))
