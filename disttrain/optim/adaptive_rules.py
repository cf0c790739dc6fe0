"""RMSprop and Adadelta update rules (torch.optim's documented algorithms).

Like the built-in rules, each has a fused Numba kernel (`update`) and a numpy
`reference` in the same arithmetic order, the oracle of the kernel tests.
"""
import numpy as np

from .rules import UpdateRule, check_number, _flat, _flat_inplace, _kernels


class RMSpropRule(UpdateRule):
    """torch.optim.RMSprop (``centered``, ``momentum`` and L2 ``weight_decay`` supported)."""

    name = "rmsprop"
    defaults = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)
    state_like_param = ("square_avg", "grad_avg", "momentum_buffer")

    def validate(self, hp):
        check_number("RMSprop", hp, "lr", low=0.0)
        check_number("RMSprop", hp, "alpha", low=0.0)
        check_number("RMSprop", hp, "eps", low=0.0)
        check_number("RMSprop", hp, "weight_decay", low=0.0)
        check_number("RMSprop", hp, "momentum", low=0.0)

    def init_state(self, theta, hp):
        # Always all three arrays (zeros when unused): one kernel signature, and a state dict
        # whose layout does not depend on the hyperparameters.
        return {"step": 0, "square_avg": np.zeros(theta.shape, theta.dtype),
                "grad_avg": np.zeros(theta.shape, theta.dtype),
                "momentum_buffer": np.zeros(theta.shape, theta.dtype)}

    def reference(self, theta, grad, state, hp):
        state["step"] = int(state["step"]) + 1
        alpha, eps, mu = hp["alpha"], hp["eps"], hp["momentum"]
        g = grad if hp["weight_decay"] == 0 else grad + hp["weight_decay"] * theta
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * (g * g)
        if hp["centered"]:
            m = state["grad_avg"]
            m += (1 - alpha) * (g - m)
            avg = np.sqrt(v - m * m) + eps
        else:
            avg = np.sqrt(v) + eps
        if mu > 0:
            buf = state["momentum_buffer"]
            buf *= mu
            buf += g / avg
            theta -= hp["lr"] * buf
        else:
            theta -= hp["lr"] * (g / avg)

    def update(self, theta, grad, state, hp):
        state["step"] = int(state["step"]) + 1
        cast = theta.dtype.type
        _kernels.rmsprop_update(
            _flat_inplace(theta, "parameter"), _flat(grad), _flat_inplace(state["square_avg"], "square_avg"),
            _flat_inplace(state["grad_avg"], "grad_avg"), _flat_inplace(state["momentum_buffer"], "momentum_buffer"),
            cast(hp["lr"]), cast(hp["alpha"]), cast(1 - hp["alpha"]), cast(hp["eps"]), cast(hp["weight_decay"]),
            cast(hp["momentum"]), bool(hp["centered"]))


class AdadeltaRule(UpdateRule):
    """torch.optim.Adadelta."""

    name = "adadelta"
    defaults = dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0)
    state_like_param = ("square_avg", "acc_delta")

    def validate(self, hp):
        check_number("Adadelta", hp, "lr", low=0.0)
        check_number("Adadelta", hp, "rho", low=0.0, high=1.0)
        check_number("Adadelta", hp, "eps", low=0.0)
        check_number("Adadelta", hp, "weight_decay", low=0.0)

    def init_state(self, theta, hp):
        return {"step": 0, "square_avg": np.zeros(theta.shape, theta.dtype),
                "acc_delta": np.zeros(theta.shape, theta.dtype)}

    def reference(self, theta, grad, state, hp):
        state["step"] = int(state["step"]) + 1
        rho, eps = hp["rho"], hp["eps"]
        g = grad if hp["weight_decay"] == 0 else grad + hp["weight_decay"] * theta
        v, acc = state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * (g * g)
        delta = np.sqrt(acc + eps) / np.sqrt(v + eps) * g
        acc *= rho
        acc += (1 - rho) * (delta * delta)
        theta -= hp["lr"] * delta

    def update(self, theta, grad, state, hp):
        state["step"] = int(state["step"]) + 1
        cast = theta.dtype.type
        _kernels.adadelta_update(
            _flat_inplace(theta, "parameter"), _flat(grad), _flat_inplace(state["square_avg"], "square_avg"),
            _flat_inplace(state["acc_delta"], "acc_delta"), cast(hp["lr"]), cast(hp["rho"]), cast(1 - hp["rho"]),
            cast(hp["eps"]), cast(hp["weight_decay"]))
