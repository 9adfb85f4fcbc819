"""A NaN or infinite loss stops training with a message naming the iteration and the
loss, and the last good checkpoint is kept (the bad state is never saved)."""

import pytest
import torch
from torch import nn

from maskrcnn.config import Config, apply_override
from maskrcnn.engine.metrics import read_metrics
from maskrcnn.engine.resume_state import load_training_checkpoint
from maskrcnn.engine.train import NonFiniteLossError, train
from maskrcnn.structures import Targets


class OneBoxDataset(torch.utils.data.Dataset):
    num_classes = 2

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        targets = Targets(boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]), labels=torch.ones(1, dtype=torch.int64))
        return torch.full((3, 4, 4), 0.1 * i), targets, {"image_id": i}


class PoisonedModel(nn.Module):
    """A linear fit whose `loss_mask` turns to `poison` at training call `bad_call`."""

    def __init__(self, bad_call: int, poison: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.bad_call, self.poison, self.calls = bad_call, poison, 0

    def forward(self, images, targets):
        self.calls += 1
        pred = torch.stack([(im.mean(dim=(1, 2)) * self.weight).sum() for im in images])
        loss = (pred - 1.0).pow(2).mean()
        mask = loss * 0 + (self.poison if self.calls == self.bad_call else 0.0)
        return {"loss_classifier": loss, "loss_mask": mask}


def cfg_for(out) -> Config:
    cfg = Config()
    for item in (f"train.output_dir={out}", "train.device=cpu", "train.checkpoint_period=2", "train.log_period=1",
                 "solver.max_iter=10", "solver.warmup_iters=0", "data.batch_size=2", "model.num_classes=2"):
        cfg = apply_override(cfg, item)
    return cfg


@pytest.mark.parametrize("poison, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_non_finite_loss_stops_with_iteration_and_loss_named(tmp_path, poison, shown):
    model = PoisonedModel(bad_call=6, poison=poison)  # the 6th update is iteration 5 (0-based)
    with pytest.raises(NonFiniteLossError, match=rf"iteration 5: non-finite loss \(loss_mask={shown}\)"):
        train(cfg_for(tmp_path), model=model, train_set=OneBoxDataset())
    last = load_training_checkpoint(tmp_path / "last.pt")
    assert last["iteration"] == 4  # the checkpoint before the bad step is kept
    assert torch.isfinite(last["model"]["weight"]).all()
    assert torch.isfinite(model.weight).all()  # the bad loss never reached the weights
    assert not (tmp_path / "model_final.pt").exists()
    errors = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["type"] == "error"]
    assert len(errors) == 1 and errors[0]["iteration"] == 5 and "loss_mask" in errors[0]["message"]


def test_huge_learning_rate_diverges_into_a_clear_error(tmp_path):
    cfg = apply_override(cfg_for(tmp_path), "solver.lr=1e30")
    with pytest.raises(NonFiniteLossError, match=r"iteration \d+: non-finite loss \(loss_classifier="):
        train(cfg, model=PoisonedModel(bad_call=-1, poison=0.0), train_set=OneBoxDataset())


def test_train_step_runs_the_forward_in_the_amp_dtype():
    from maskrcnn.engine.train import train_step

    seen = []

    class Probe(PoisonedModel):
        def forward(self, images, targets):
            seen.append(torch.mm(images[0][0], images[0][0]).dtype)  # autocast picks the matmul's dtype
            return super().forward(images, targets)

    model = Probe(bad_call=0, poison=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    images, targets = [torch.rand((3, 4, 4))], [OneBoxDataset()[0][1]]
    losses = train_step(model, images, targets, optimizer=optimizer, scaler=scaler, iteration=0, amp=True,
                        amp_dtype=torch.bfloat16)
    assert seen == [torch.bfloat16] and set(losses) == {"loss_classifier", "loss_mask", "loss_total"}
