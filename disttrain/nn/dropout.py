"""Dropout (elements) and Dropout2d (whole channels): zero with probability p while training, identity in eval mode."""
from . import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zeroes whole channels of (N, C, H, W) inputs with probability p while training."""

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)
