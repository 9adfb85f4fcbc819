"""A random fixed-size training window: bounded cost per iteration whatever the image size.

`data.augment.crop_size: N` cuts a random window of at most N x N pixels out of each
training image at its own scale (a side shorter than N is kept whole), before any other
augmentation. With `model.transform.fixed_scale` the network then sees every object at
the same pixel scale in training (windows) and at test time (whole images), and an
iteration costs about the same for a 256 px image as for a 1024 px one.
"""

from __future__ import annotations

from torch import Tensor

from maskrcnn.data.geometric import ZoomWindow, randint, zoom
from maskrcnn.structures import Targets


class RandomWindow:
    """A random window of at most `size` x `size` pixels (boxes recomputed from the masks;
    instances left with fewer than `min_area` pixels dropped). A window with no instance
    of an image that has some is drawn again, up to `tries` times (then the last is kept)."""

    tries = 10

    def __init__(self, size: int, min_area: int = 1) -> None:
        if size < 1:
            raise ValueError(f"RandomWindow: size must be a positive number of pixels, got {size}")
        self.size = int(size)
        self.min_area = int(min_area)

    def __call__(self, image: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        height, width = image.shape[-2:]
        out_h, out_w = min(height, self.size), min(width, self.size)
        if (out_h, out_w) == (height, width):
            return image, targets
        result = (image, targets)
        for _ in range(self.tries):
            window = ZoomWindow(height, width, randint(0, height - out_h), randint(0, width - out_w), out_h, out_w)
            result = zoom(image, targets, window, min_area=self.min_area)
            if len(result[1]) > 0 or len(targets) == 0:
                break
        return result

    def __repr__(self) -> str:
        return f"RandomWindow(size={self.size}, min_area={self.min_area})"
