"""maskrcnn: Mask R-CNN instance segmentation you can read."""

__version__ = "0.1.0"
