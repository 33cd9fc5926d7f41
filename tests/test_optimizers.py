"""Keras' RMSprop, step by step against its formula, and the optimizer names recipes use."""

import pytest
import torch
from torch import nn

from digitlab.errors import UsageError
from digitlab.optimizers import KerasRMSprop, make_optimizer


def test_keras_rmsprop_puts_epsilon_inside_the_root():
    weight = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    optimizer = KerasRMSprop([weight], lr=0.1, rho=0.9, eps=1e-3)
    expected, velocity = weight.detach().clone(), torch.zeros(3)
    for gradient in (torch.tensor([0.02, -0.5, 0.0]), torch.tensor([0.01, 0.3, 1e-4])):
        weight.grad = gradient.clone()
        optimizer.step()
        velocity = 0.9 * velocity + 0.1 * gradient**2
        expected -= 0.1 * gradient / torch.sqrt(velocity + 1e-3)
    assert torch.allclose(weight.detach(), expected, atol=1e-7)


def test_parameters_without_gradients_are_left_alone():
    used, unused = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    optimizer = KerasRMSprop([used, unused])
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2)) and not torch.equal(used.detach(), torch.ones(2))


@pytest.mark.parametrize("name, kind", [("rmsprop", KerasRMSprop), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_recipe_names_map_to_optimizers(name, kind):
    assert isinstance(make_optimizer(nn.Linear(2, 2), name, 1e-3, 0.0), kind)


def test_unknown_optimizer_and_keras_rmsprop_with_weight_decay_are_refused():
    with pytest.raises(UsageError, match="adagrad"):
        make_optimizer(nn.Linear(2, 2), "adagrad", 1e-3, 0.0)
    with pytest.raises(UsageError, match="weight_decay"):
        make_optimizer(nn.Linear(2, 2), "rmsprop", 1e-3, 0.1)
