"""train.channels_last: the model trains in NHWC layout with the same maths (other float
rounding), its checkpoints load into a plain model, and every op of the shapes_demo model
(RoIAlign's sparse product and its backward included) gives the contiguous model's
losses and, up to float-level noise, its gradients."""

import copy
import json

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.config import Config, apply_override, load_config
from maskrcnn.data.shapes import render_shapes_image
from maskrcnn.engine.train import train
from maskrcnn.model.build import build_model
from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets


class CountingDataset(torch.utils.data.Dataset):
    """Image i holds (i % 3) + 1 boxes and is brighter with more of them."""

    num_classes = 2
    class_names = ["background", "thing"]

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        n = i % 3 + 1
        image = torch.full((3, 12, 12), 0.2 * n) + 0.05 * torch.rand(3, 12, 12)
        targets = Targets(
            boxes=torch.tensor([[1.0, 1.0, 5.0, 5.0]] * n), labels=torch.ones(n, dtype=torch.int64),
            masks=torch.zeros(n, 12, 12, dtype=torch.uint8),
        )
        return image, targets, {"image_id": i, "file_name": f"{i}.png", "height": 12, "width": 12}


class CountingModel(nn.Module):
    """Counts the boxes from the image through a conv and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 1)

    def forward(self, images, targets):
        x = torch.stack(images)  # (B, 3, 12, 12)
        pred = self.head(F.relu(self.norm(self.conv(x))).mean(dim=(2, 3))).squeeze(1)  # (B,)
        count = torch.tensor([float(len(t)) for t in targets])
        return {"loss_count": F.mse_loss(pred, count)}


def tiny_cfg(out, **overrides) -> Config:
    cfg = Config()
    values = {
        "train.output_dir": str(out), "train.device": "cpu", "train.log_period": 2, "solver.max_iter": 8,
        "solver.lr": 0.01, "solver.warmup_iters": 2, "data.batch_size": 2, "model.num_classes": 2, **overrides,
    }
    for key, value in values.items():
        cfg = apply_override(cfg, f"{key}={json.dumps(value)}")
    return cfg


def test_channels_last_training_keeps_nhwc_weights_and_loads_into_a_plain_model(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    plain = CountingModel()
    train(tiny_cfg(tmp_path / "plain"), model=plain, train_set=CountingDataset())
    torch.manual_seed(0)
    nhwc = CountingModel()
    train(tiny_cfg(tmp_path / "nhwc", **{"train.channels_last": True}), model=nhwc, train_set=CountingDataset())

    weight = nhwc.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert plain.conv.weight.is_contiguous()
    for (name, a), (_, b) in zip(plain.state_dict().items(), nhwc.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)
    final = torch.load(tmp_path / "nhwc" / "model_final.pt", weights_only=True)
    fresh = CountingModel()
    fresh.load_state_dict(final["model"])
    for (name, a), (_, b) in zip(nhwc.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


def _shapes_batch(count: int, size: int) -> tuple[list[torch.Tensor], list[Targets]]:
    images, targets = [], []
    for index in range(count):
        pixels, instances = render_shapes_image(3, index, size, min_shapes=2, max_shapes=4)
        masks = torch.stack([torch.from_numpy(m.astype("uint8")) for _, m in instances])  # (N, S, S)
        labels = torch.tensor([kind + 1 for kind, _ in instances], dtype=torch.int64)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
        targets.append(Targets(boxes=masks_to_boxes(masks), labels=labels, masks=masks))
    return images, targets


def test_shapes_demo_model_gives_the_same_losses_and_gradients_in_nhwc():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(load_config("shapes_demo").model).train()
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    images, targets = _shapes_batch(2, 96)
    results = []
    for net in (model, nhwc):
        torch.manual_seed(1)  # the same proposal and RoI sampling
        losses = net(images, targets)
        sum(losses.values()).backward()
        results.append((losses, {n: p.grad for n, p in net.named_parameters() if p.grad is not None}))
    (losses_a, grads_a), (losses_b, grads_b) = results
    assert set(losses_a) == set(losses_b)
    for name in losses_a:
        torch.testing.assert_close(losses_b[name], losses_a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert set(grads_a) == set(grads_b) and len(grads_a) > 50
    # Gradients are not compared element by element: a ReLU or max-pool input near its
    # switch point flips with any float-level change (moving the input pixels by 1e-6
    # changes the contiguous model's gradients by ~0.3 % in norm too). A layout mistake
    # would change them by far more than the 2 % allowed here.
    for name in grads_a:
        error = float((grads_b[name] - grads_a[name]).norm() / grads_a[name].norm().clamp(min=1e-12))
        assert error < 0.02, (name, error)
    assert nhwc.backbone.fpn.layer_blocks[0][0].weight.grad.is_contiguous(memory_format=torch.channels_last)
