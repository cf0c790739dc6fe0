"""Fused optimizer updates: one pass over memory, in place, on flat 1-D arrays.

Each kernel reads the gradient once and updates the parameter (and its
state) in the same loop, instead of the 4-8 temporaries numpy needs. The
arithmetic is written in the same order as torch.optim's documented
algorithms (and the numpy references in disttrain.optim.rules). Scalars and
constants such as 1 - beta1 come in already cast to the parameter dtype, so
float32 parameters are updated in float32 arithmetic, like the references.

``grad_scale`` multiplies the gradient as it is read: a sharded optimizer folds
the 1/world_size average in here instead of a separate pass over the gradient
(1 elsewhere; ``g * 1`` is exact, so unscaled updates are unchanged bit for bit).
"""
import math

from ._jit import kernel


@kernel
def sgd_update(theta, grad, lr, weight_decay, grad_scale):
    """theta -= lr * (grad_scale * grad + weight_decay * theta)"""
    for i in range(theta.size):
        g = grad[i] * grad_scale
        if weight_decay != 0:
            g = g + weight_decay * theta[i]
        theta[i] = theta[i] - lr * g


@kernel
def sgd_momentum_update(theta, grad, buf, lr, weight_decay, momentum, one_minus_dampening, nesterov, first,
                        grad_scale):
    """SGD with a momentum buffer; on the first step buf = grad (torch: no dampening then)."""
    for i in range(theta.size):
        g = grad[i] * grad_scale
        if weight_decay != 0:
            g = g + weight_decay * theta[i]
        if first:
            b = g
        else:
            b = momentum * buf[i] + one_minus_dampening * g
        buf[i] = b
        if nesterov:
            g = g + momentum * b
        else:
            g = b
        theta[i] = theta[i] - lr * g


@kernel
def adam_update(theta, grad, exp_avg, exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2, step_size,
                bias_correction2_sqrt, eps, weight_decay, decoupled_decay, decoupled, grad_scale):
    """Adam (L2 weight decay added to the gradient) or AdamW (decoupled: theta *= 1 - lr*wd,
    passed in as ``decoupled_decay``); bias corrections are precomputed by the caller."""
    for i in range(theta.size):
        t = theta[i]
        if decoupled:
            t = t * decoupled_decay
        g = grad[i] * grad_scale
        if weight_decay != 0:
            g = g + weight_decay * t
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])      # torch: exp_avg.lerp_(grad, 1 - beta1)
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v) / bias_correction2_sqrt + eps
        theta[i] = t - step_size * (m / denom)


@kernel
def rmsprop_update(theta, grad, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps, weight_decay,
                   momentum, centered):
    """torch.optim.RMSprop: v = alpha*v + (1-alpha)*g^2; optional centring by the mean gradient
    and a momentum buffer (buf = momentum*buf + g/avg)."""
    for i in range(theta.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * theta[i]
        v = alpha * square_avg[i] + one_minus_alpha * (g * g)
        square_avg[i] = v
        if centered:
            m = grad_avg[i] + one_minus_alpha * (g - grad_avg[i])      # torch: grad_avg.lerp_(grad, 1 - alpha)
            grad_avg[i] = m
            avg = math.sqrt(v - m * m) + eps
        else:
            avg = math.sqrt(v) + eps
        if momentum > 0:
            b = momentum * buf[i] + g / avg
            buf[i] = b
            theta[i] = theta[i] - lr * b
        else:
            theta[i] = theta[i] - lr * (g / avg)


@kernel
def adadelta_update(theta, grad, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay):
    """torch.optim.Adadelta: delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g."""
    for i in range(theta.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * theta[i]
        v = rho * square_avg[i] + one_minus_rho * (g * g)
        square_avg[i] = v
        delta = math.sqrt(acc_delta[i] + eps) / math.sqrt(v + eps) * g
        acc_delta[i] = rho * acc_delta[i] + one_minus_rho * (delta * delta)
        theta[i] = theta[i] - lr * delta
