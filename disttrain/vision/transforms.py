"""torchvision.transforms' ``Compose``, ``ToTensor`` and ``Normalize`` over numpy image arrays.

Images here are already float32 in [0, 1] with a channel axis (what ``ToTensor``
makes of a PIL image), so the transforms work on one image ``(C, H, W)`` or on
a whole dataset ``(N, C, H, W)`` at once.
"""
import numpy as np


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor:
    """uint8 images (H, W) / (N, H, W) / (..., C, H, W) become float32 in [0, 1] with a channel axis."""

    def __call__(self, x):
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255)
            if x.ndim in (2, 3):
                x = x[..., None, :, :]
        return x.astype(np.float32, copy=False)


class Normalize:
    """(x - mean) / std per channel."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        if (self.std == 0).any():
            raise ValueError(f"Normalize: std must be non-zero, got {std!r}")

    def __call__(self, x):
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)
