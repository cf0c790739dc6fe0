"""A torchvision-shaped door to disttrain's image data: ``from disttrain.vision import datasets, transforms``.

Only what the ported examples need: ``datasets.FashionMNIST``/``datasets.MNIST`` over local IDX files
(never downloaded; seeded synthetic images, announced on stderr, when the files are absent) and the
``transforms`` ``Compose``/``ToTensor``/``Normalize``, applied to the whole array at once.
"""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]
