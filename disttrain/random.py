"""The seedable generator behind parameter initialisation and dropout."""
import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed):
    """Reseed disttrain's global generator (initialisation, dropout, shuffling defaults)."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator():
    return _generator


def get_state():
    """The generator state as a JSON-able dict (for checkpoints)."""
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state
