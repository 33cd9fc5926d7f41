"""The optimizers recipes name, including RMSprop exactly as Keras computes it."""

from __future__ import annotations

import torch
from torch import nn

from .errors import UsageError


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as Keras updates: lr * g / sqrt(v + eps). torch's RMSprop adds eps outside the root,
    which with Keras' eps of 1e-7 lets weights with tiny gradients take much larger steps."""

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            grads = [param.grad for param in params]
            squares = [self.state[param].setdefault("square_avg", torch.zeros_like(param)) for param in params]
            torch._foreach_mul_(squares, group["rho"])
            torch._foreach_addcmul_(squares, grads, grads, value=1 - group["rho"])
            roots = torch._foreach_add(squares, group["eps"])
            torch._foreach_sqrt_(roots)
            torch._foreach_addcdiv_(params, grads, roots, value=-group["lr"])


def make_optimizer(network: nn.Module, name: str, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "rmsprop":
        if weight_decay:
            raise UsageError("the rmsprop recipe (Keras' optimizer) takes no weight_decay; use adamw or sgd")
        return KerasRMSprop(network.parameters(), lr=learning_rate)
    if name == "adamw":
        return torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            network.parameters(), lr=learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    raise UsageError(f"unknown optimizer {name!r}; choose rmsprop, adamw or sgd")
