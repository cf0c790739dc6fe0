"""PyTorch's dtype names (``dt.float32``, ``dt.long``, ...) as the numpy types they are here.

``t.dtype == dt.float32`` compares a numpy dtype with a numpy type, which numpy
answers as PyTorch users expect. numpy has no bfloat16, so neither does disttrain.
"""
import numpy as np

float32 = float = np.float32
float64 = double = np.float64
float16 = half = np.float16
int64 = long = np.int64
int32 = int = np.int32
int16 = short = np.int16
int8 = np.int8
uint8 = np.uint8
bool = np.bool_
complex64 = np.complex64
complex128 = cdouble = np.complex128

_DEFAULT = np.dtype(np.float32)


def get_default_dtype():
    """The dtype Python floats become (float32, as in PyTorch)."""
    return _DEFAULT.type


def is_floating_point(t):
    return np.issubdtype(np.dtype(t.dtype), np.floating)


__all__ = ["float32", "float", "float64", "double", "float16", "half", "int64", "long", "int32", "int",
           "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "cdouble",
           "get_default_dtype", "is_floating_point"]
