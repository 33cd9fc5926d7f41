"""The optimizers step by step: Keras' RMSprop against its formula, AdamW and SGD against torch.optim."""

import pytest
import torch
from torch import nn

from digitlab.errors import UsageError
from digitlab.optimizers import AdamW, KerasRMSprop, NesterovSGD, make_optimizer


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


@pytest.mark.parametrize("name, kind", [("rmsprop", KerasRMSprop), ("adamw", AdamW), ("sgd", NesterovSGD)])
def test_recipe_names_map_to_optimizers(name, kind):
    assert isinstance(make_optimizer(nn.Linear(2, 2), name, 1e-3, 0.0), kind)


def train_a_few_steps(make, learning_rates=(0.01, 0.03, 0.02, 0.005)) -> list[torch.Tensor]:
    """A small network trained a few steps with a changing rate, as the one-cycle schedule changes it."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    optimizer = make(network.parameters())
    inputs, targets = torch.randn(16, 6), torch.randint(3, (16,))
    for rate in learning_rates:
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(inputs), targets).backward()
        optimizer.step()
    return [param.detach().clone() for param in network.parameters()]


@pytest.mark.parametrize(
    "ours, torchs",
    [
        (lambda params: AdamW(params, lr=0.01, weight_decay=5e-4), lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=5e-4)),
        (
            lambda params: NesterovSGD(params, lr=0.01, weight_decay=5e-4),
            lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
        ),
    ],
    ids=["adamw", "sgd"],
)
def test_updates_match_torch_optim(ours, torchs):
    for mine, reference in zip(train_a_few_steps(ours), train_a_few_steps(torchs)):
        assert torch.allclose(mine, reference, atol=1e-6)


def test_state_dict_round_trip_continues_the_same_run():
    network = nn.Linear(3, 2)
    optimizer = AdamW(network.parameters(), lr=0.1)
    network(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    again = AdamW(network.parameters(), lr=0.1)
    again.load_state_dict(optimizer.state_dict())
    for param in network.parameters():
        assert again.state[param]["step"] == 1
        assert torch.equal(again.state[param]["exp_avg_sq"], optimizer.state[param]["exp_avg_sq"])


def test_state_missing_a_slot_is_refused():
    optimizer = AdamW(nn.Linear(3, 2).parameters())
    with pytest.raises(ValueError, match="exp_avg_sq"):
        optimizer.load_state_dict({"state": {0: {"exp_avg": torch.zeros(2, 3)}}})


def test_unknown_optimizer_and_keras_rmsprop_with_weight_decay_are_refused():
    with pytest.raises(UsageError, match="adagrad"):
        make_optimizer(nn.Linear(2, 2), "adagrad", 1e-3, 0.0)
    with pytest.raises(UsageError, match="weight_decay"):
        make_optimizer(nn.Linear(2, 2), "rmsprop", 1e-3, 0.1)
