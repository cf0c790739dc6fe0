"""The local autograd engine: Tensor, Function, backward, hooks, gradcheck."""
from .tensor import Tensor, tensor, from_numpy
from .function import Function, Context
from .engine import backward, queue_callback, in_backward
from .grad_mode import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode
from .grad import grad
from .custom import custom_vjp, custom_gradient
from .gradcheck import gradcheck, jacobian, numerical_jacobian, GradcheckError
from .hooks import RemovableHandle

__all__ = [
    "Tensor", "tensor", "from_numpy", "Function", "Context", "backward", "queue_callback",
    "in_backward", "grad", "inference_mode", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "custom_vjp", "custom_gradient", "gradcheck", "jacobian", "numerical_jacobian",
    "GradcheckError", "RemovableHandle",
]
