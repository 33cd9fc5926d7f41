"""The optimizers recipes name, written with torch's fused list ops rather than taken from torch.optim.

torch.optim's first call imports the compiler (torch._dynamo), 1.1-1.7 s on 2 cores: a sixth of a
whole fast-recipe run. These compute the same updates as torch's foreach implementations (tests compare
them step by step) and keep torch's state_dict layout, so checkpoints read the same.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import UsageError


class ListOptimizer:
    """One parameter group updated as lists: `param_groups`, `zero_grad`, `state_dict` as torch has them."""

    slots: tuple[str, ...] = ()

    def __init__(self, params, **hyper: float) -> None:
        self.param_groups = [{"params": list(params), **hyper}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Gradients are dropped, never zeroed in place: backward then writes them without a read."""
        for param in self.param_groups[0]["params"]:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [param for param in group["params"] if param.grad is not None]
        if params:
            states = [self._state_of(param) for param in params]
            for state in states:
                state["step"] += 1
            self._update(group, params, [param.grad for param in params], states)

    def _state_of(self, param: nn.Parameter) -> dict[str, torch.Tensor]:
        if param not in self.state:
            self.state[param] = {slot: torch.zeros_like(param) for slot in self.slots}
            self.state[param]["step"] = torch.tensor(0.0)  # updates taken, as torch counts them
        return self.state[param]

    def _update(self, group: dict, params: list, grads: list, states: list[dict]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        params = self.param_groups[0]["params"]
        hyper = {key: value for key, value in self.param_groups[0].items() if key != "params"}
        return {
            "state": {index: dict(self.state[param]) for index, param in enumerate(params) if param in self.state},
            "param_groups": [{**hyper, "params": list(range(len(params)))}],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        params = self.param_groups[0]["params"]
        for index, slots in state_dict["state"].items():
            param = params[int(index)]
            missing = set(self.slots) - set(slots)
            if missing:
                raise ValueError(f"optimizer state of parameter {index} lacks {sorted(missing)}")
            self.state[param] = {name: slots[name].to(param.device, param.dtype) for name in self.slots}
            self.state[param]["step"] = torch.as_tensor(slots.get("step", 0.0), dtype=torch.float32)


class KerasRMSprop(ListOptimizer):
    """RMSprop as Keras updates: lr * g / sqrt(v + eps). torch's RMSprop adds eps outside the root,
    which with Keras' eps of 1e-7 lets weights with tiny gradients take much larger steps."""

    slots = ("square_avg",)

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, lr=lr, rho=rho, eps=eps)

    def _update(self, group, params, grads, states) -> None:
        squares = [state["square_avg"] for state in states]
        torch._foreach_mul_(squares, group["rho"])
        torch._foreach_addcmul_(squares, grads, grads, value=1 - group["rho"])
        roots = torch._foreach_add(squares, group["eps"])
        torch._foreach_sqrt_(roots)
        torch._foreach_addcdiv_(params, grads, roots, value=-group["lr"])


class AdamW(ListOptimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, group, params, grads, states) -> None:
        (beta1, beta2), lr = group["betas"], group["lr"]
        steps = [float(state["step"]) for state in states]
        averages, squares = [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states]
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_lerp_(averages, grads, 1 - beta1)
        torch._foreach_mul_(squares, beta2)
        torch._foreach_addcmul_(squares, grads, grads, value=1 - beta2)
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_div_(denominators, [(1 - beta2**step) ** 0.5 for step in steps])
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_addcdiv_(params, averages, denominators, [-lr / (1 - beta1**step) for step in steps])


class NesterovSGD(ListOptimizer):
    """SGD with Nesterov momentum and L2 weight decay, as torch.optim.SGD(nesterov=True) computes it."""

    slots = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, group, params, grads, states) -> None:
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        # A zero buffer makes the first step's momentum the gradient itself, as torch starts it.
        buffers = [state["momentum_buffer"] for state in states]
        torch._foreach_mul_(buffers, group["momentum"])
        torch._foreach_add_(buffers, grads)
        steps = torch._foreach_add(grads, buffers, alpha=group["momentum"])
        torch._foreach_add_(params, steps, alpha=-group["lr"])


def make_optimizer(network: nn.Module, name: str, learning_rate: float, weight_decay: float) -> ListOptimizer:
    if name == "rmsprop":
        if weight_decay:
            raise UsageError("the rmsprop recipe (Keras' optimizer) takes no weight_decay; use adamw or sgd")
        return KerasRMSprop(network.parameters(), lr=learning_rate)
    if name == "adamw":
        return AdamW(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return NesterovSGD(network.parameters(), lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer {name!r}; choose rmsprop, adamw or sgd")
