"""The spec, the presets and the builder: the seed preset is the tutorial's network, layer for layer."""

import numpy as np
import pytest
import torch

from digitlab.errors import UsageError
from digitlab.model import (
    PRESETS,
    ModelSpec,
    batched_logits,
    build_model,
    count_parameters,
    get_preset,
    multiply_adds,
    to_model_input,
    torch_device,
)


def test_seed_preset_is_the_tutorial_network():
    network = build_model(get_preset("seed"))
    assert count_parameters(network) == 215_370
    kinds = [type(layer).__name__ for layer in network]
    # Pooling before ReLU: the same function as the tutorial's ReLU-then-pool, with a quarter of the ReLU work.
    assert kinds == [
        "Conv2d", "MaxPool2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear", "ReLU", "Dropout", "Linear"
    ]
    first, second = network[0], network[3]
    assert (first.out_channels, first.kernel_size, first.padding) == (16, (5, 5), (2, 2))
    assert (second.out_channels, second.kernel_size) == (32, (5, 5))
    assert network[7].in_features == 1568 and network[7].out_features == 128
    assert network[9].p == pytest.approx(0.4)


def test_seed_cost_matches_the_benchmark_guide():
    assert multiply_adds(get_preset("seed")) == 313_600 + 2_508_800 + 200_704 + 1_280


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pooling_before_relu_computes_the_relu_then_pool_network(preset):
    torch.manual_seed(2)
    network = build_model(PRESETS[preset]).eval()
    order = list(network)  # the same modules in the textbook order: ReLU, then pool
    for index, layer in enumerate(order[:-1]):
        if isinstance(layer, torch.nn.MaxPool2d) and isinstance(order[index + 1], torch.nn.ReLU):
            order[index], order[index + 1] = order[index + 1], order[index]
    reference = torch.nn.Sequential(*order).eval()
    inputs = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(network(inputs), reference(inputs), atol=1e-6)


def test_keras_initialisation_glorot_uniform_and_zero_bias():
    torch.manual_seed(0)
    network = build_model(get_preset("seed"))
    dense = network[7]
    limit = (6 / (1568 + 128)) ** 0.5
    assert dense.weight.abs().max() <= limit
    assert dense.weight.abs().max() > 0.9 * limit
    assert torch.count_nonzero(dense.bias) == 0
    conv = network[3]
    conv_limit = (6 / (16 * 25 + 32 * 25)) ** 0.5
    assert conv.weight.abs().max() <= conv_limit


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_maps_a_batch_to_logits(name):
    spec = PRESETS[name]
    network = build_model(spec)
    logits = network(torch.zeros(3, 1, 28, 28))
    assert logits.shape == (3, spec.num_classes)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_multiply_adds_count_what_the_network_computes(name):
    network = build_model(PRESETS[name])
    counted = []

    def count(layer, inputs, output):
        counted.append(output[0].numel() * layer.weight[0].numel())  # outputs x weights per output

    for layer in network:
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.register_forward_hook(count)
    network(torch.zeros(1, 1, 28, 28))
    assert sum(counted) == multiply_adds(PRESETS[name])


def test_a_strided_stem_replaces_the_first_pool_and_keeps_the_map_sizes():
    spec = ModelSpec(conv_channels=(8, 8, 8), kernel_size=3, dense_units=(), strided_stem=True)
    network = build_model(spec)
    kinds = [type(layer).__name__ for layer in network]
    assert kinds[:5] == ["Conv2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU"]
    assert network[0](torch.zeros(1, 1, 27, 27)).shape == (1, 8, 14, 14)  # ceil(27 / 2), as the pool gives
    assert network(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert multiply_adds(spec) == 14 * 14 * 8 * 9 + 14 * 14 * 8 * 8 * 9 + 7 * 7 * 8 * 8 * 9 + 8 * 4 * 4 * 10


def test_odd_feature_maps_pool_like_keras_same_padding():
    spec = ModelSpec(conv_channels=(4, 4, 4), dense_units=())
    assert spec.feature_size == 4  # 28 -> 14 -> 7 -> 4
    assert build_model(spec)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize(
    "values",
    [
        {"conv_channels": ()},
        {"conv_channels": (0, 8)},
        {"kernel_size": 4},
        {"dropout": 1.0},
        {"dense_units": (-1,)},
        {"num_classes": 1},
        {"convs_per_block": 0},
    ],
)
def test_impossible_specs_are_refused(values):
    with pytest.raises(UsageError):
        ModelSpec(**values)


def test_spec_round_trips_through_a_dict_and_rejects_unknown_keys():
    spec = PRESETS["default"]
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(UsageError, match="unknown model spec keys"):
        ModelSpec.from_dict({**spec.to_dict(), "colour": "blue"})


def test_unknown_preset_and_device_name_the_choices():
    with pytest.raises(UsageError, match="seed"):
        get_preset("enormous")
    with pytest.raises(UsageError, match="auto, cpu or cuda"):
        torch_device("tpu")
    assert torch_device("cpu") == torch.device("cpu")


def test_model_input_is_the_tutorials_division_by_255():
    digits = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    tensor = to_model_input(digits)
    assert tensor.shape == (1, 1, 2, 2)
    assert torch.allclose(tensor[0, 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))


def test_batched_logits_equal_one_big_batch_and_restore_training_mode():
    torch.manual_seed(1)
    network = build_model(get_preset("seed"))
    network.train()
    digits = torch.randint(0, 256, (25, 28, 28), dtype=torch.uint8)
    batched = batched_logits(network, digits, torch.device("cpu"), batch_size=7)
    assert network.training
    network.eval()
    with torch.no_grad():
        whole = network(to_model_input(digits))
    assert torch.allclose(batched, whole, atol=1e-5)
