"""Synthetic, seeded datasets for benchmarks and tests (learnable, not just noise)."""
import numpy as np


def make_classification(n_samples=1024, n_features=784, n_classes=10, seed=0, noise=1.0):
    """Gaussian clusters: X float32 (n_samples, n_features), y int64 uniform over the classes.

    Each class has a random centre on a sphere of radius 2; samples add N(0, noise^2)
    per feature, so a linear model separates them well but not trivially.
    """
    _check(n_samples=n_samples, n_features=n_features, n_classes=n_classes)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features))
    centres *= 2.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(0, n_classes, size=n_samples)
    X = centres[y] * np.sqrt(n_features) / 4 + noise * rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32), y.astype(np.int64)


def make_images(n_samples=1024, n_classes=10, shape=(1, 28, 28), seed=0, noise=0.3):
    """Images X float32 (n_samples, *shape) in [0, 1], y int64: each class is a fixed random
    blob pattern plus per-sample noise and a random shift of up to 2 pixels."""
    _check(n_samples=n_samples, n_classes=n_classes)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"make_images: shape must be (channels, height, width), got {shape!r}")
    rng = np.random.default_rng(seed)
    templates = (rng.random((n_classes,) + shape) > 0.7).astype(np.float32)
    y = rng.integers(0, n_classes, size=n_samples)
    X = templates[y]
    shifts = rng.integers(-2, 3, size=(n_samples, 2))
    for dy in range(-2, 3):     # 25 vectorised rolls, not a per-sample loop
        for dx in range(-2, 3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            if sel.any():
                X[sel] = np.roll(X[sel], (dy, dx), axis=(2, 3))
    X = X + noise * rng.standard_normal(X.shape).astype(np.float32)
    return np.clip(X, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


def _check(**sizes):
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
