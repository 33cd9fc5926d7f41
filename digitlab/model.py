"""Architectures as data: a frozen spec, named presets, and the one builder that turns a spec into a network."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import UsageError


@dataclass(frozen=True)
class ModelSpec:
    """A small CNN: blocks of same-padded convolutions each ending in a 2x2 max-pool, then dense layers.

    The network returns logits; softmax is applied by whoever reads probabilities, which is
    numerically the same as Keras' softmax output with its cross-entropy.
    With strided_stem the first convolution steps by 2 in place of the first block's pool: the same
    map sizes for a quarter of that convolution's work, and no pool over its full-size output.
    """

    conv_channels: tuple[int, ...] = (16, 32)
    convs_per_block: int = 1
    kernel_size: int = 5
    batch_norm: bool = False
    dense_units: tuple[int, ...] = (128,)
    dropout: float = 0.4
    strided_stem: bool = False
    num_classes: int = 10
    image_size: int = 28

    def __post_init__(self) -> None:
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise UsageError(f"conv_channels must be positive integers, got {self.conv_channels}")
        if self.convs_per_block < 1:
            raise UsageError(f"convs_per_block must be at least 1, got {self.convs_per_block}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise UsageError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if any(units < 1 for units in self.dense_units):
            raise UsageError(f"dense_units must be positive integers, got {self.dense_units}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_classes < 2:
            raise UsageError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.image_size < 2 ** (len(self.conv_channels) - 1) + 1:
            raise UsageError(
                f"{len(self.conv_channels)} pooling blocks shrink a {self.image_size}x{self.image_size} image "
                "to a single pixel before the last block; use fewer conv_channels"
            )

    @property
    def feature_size(self) -> int:
        """Side of the feature map after all pools (ceil, like Keras' padding='same')."""
        side = self.image_size
        for _ in self.conv_channels:
            side = math.ceil(side / 2)
        return side

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelSpec:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UsageError(f"unknown model spec keys: {sorted(unknown)}; known: {sorted(known)}")
        tuples = {key: tuple(value) for key, value in values.items() if isinstance(value, list)}
        return cls(**{**values, **tuples})


PRESETS: dict[str, ModelSpec] = {
    # The tutorial's network exactly: 215,370 parameters.
    "seed": ModelSpec(),
    # Two 3x3 convolutions per block with batch norm: about 6x the seed's compute, 99.5%+ with augmentation.
    "default": ModelSpec(
        conv_channels=(32, 64), convs_per_block=2, kernel_size=3, batch_norm=True, dense_units=(128,), dropout=0.3
    ),
    # 9% of the seed's parameters and half its compute, yet past its accuracy in the same 2 epochs
    # (99.12-99.20% test over seeds 0-2 with the `tiny` recipe): batch norm, 3x3 convolutions, and a
    # third pool that shrinks the map to 4x4 so the classifier needs no hidden dense layer.
    "tiny": ModelSpec(conv_channels=(16, 32, 32), kernel_size=3, batch_norm=True, dense_units=(), dropout=0.0),
    # For seconds to 99% (with the `fast` recipe): tiny with a strided first convolution and a wider last
    # block, 1.84M multiply-adds against tiny's 1.47M, accurate enough after one epoch where tiny needs two.
    "fast": ModelSpec(
        conv_channels=(16, 32, 64), kernel_size=3, batch_norm=True, dense_units=(), dropout=0.0, strided_stem=True
    ),
    # The seed twice as wide with a wider dense layer: 4x the parameters, for the "bigger" exercise.
    "wide": ModelSpec(conv_channels=(32, 64), kernel_size=5, dense_units=(256,)),
    # Three blocks of two 3x3 convolutions with batch norm: 1.5x the default's compute.
    "deep": ModelSpec(
        conv_channels=(32, 64, 128), convs_per_block=2, kernel_size=3, batch_norm=True, dense_units=(128,), dropout=0.3
    ),
    # For MNIST accuracy (with the `best` recipe, its namesake): deep at half its width, 39% of the default's
    # compute, read MNIST better than the default after 40 epochs of that recipe (99.76% against 99.72-99.73%).
    "best": ModelSpec(
        conv_channels=(16, 32, 64), convs_per_block=2, kernel_size=3, batch_norm=True, dense_units=(128,), dropout=0.3
    ),
}


def get_preset(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def build_model(spec: ModelSpec) -> nn.Sequential:
    """Build the network for a spec, initialised as Keras does (Glorot-uniform weights, zero biases)."""
    layers: list[nn.Module] = []
    in_channels = 1
    for block, out_channels in enumerate(spec.conv_channels):
        stem = spec.strided_stem and block == 0  # this block halves the map at its first convolution, not its end
        for index in range(spec.convs_per_block):
            layers.append(
                nn.Conv2d(
                    in_channels,
                    out_channels,
                    spec.kernel_size,
                    stride=2 if stem and index == 0 else 1,
                    padding=spec.kernel_size // 2,
                    bias=not spec.batch_norm,
                )
            )
            if spec.batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            if index == spec.convs_per_block - 1 and not stem:
                # max(relu(x)) == relu(max(x)): pooling first gives the same network with a
                # quarter of the ReLU work, forward and backward.
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
    layers.append(nn.Flatten())
    in_features = in_channels * spec.feature_size**2
    for units in spec.dense_units:
        layers += [nn.Linear(in_features, units), nn.ReLU(inplace=True), nn.Dropout(spec.dropout)]
        in_features = units
    layers.append(nn.Linear(in_features, spec.num_classes))
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    # Channels-last lets oneDNN run the convolutions without reordering memory on every call.
    return model.to(memory_format=torch.channels_last)


class Ensemble(nn.Module):
    """Several networks answering as one: the mean of their probabilities, returned as log-probabilities so
    that the softmax every reader applies gives exactly that mean."""

    def __init__(self, specs: tuple[ModelSpec, ...], networks: list[nn.Module]) -> None:
        super().__init__()
        self.specs = tuple(specs)
        for index, network in enumerate(networks):
            self.add_module(f"member{index}", network)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        members = self.children()
        log_probabilities = torch.stack([torch.log_softmax(member(inputs).float(), dim=1) for member in members])
        # log(mean(p)) through logsumexp: exact, and finite where a single member is certain.
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.specs))


def build_ensemble(specs: tuple[ModelSpec, ...]) -> Ensemble:
    return Ensemble(specs, [build_model(spec) for spec in specs])


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def multiply_adds(spec: ModelSpec) -> int:
    """Forward multiply-adds per image, the cost figure the lab and benchmarks quote."""
    total, side, in_channels = 0, spec.image_size, 1
    for block, out_channels in enumerate(spec.conv_channels):
        stem = spec.strided_stem and block == 0
        for index in range(spec.convs_per_block):
            if stem and index == 0:
                side = math.ceil(side / 2)
            total += side * side * out_channels * in_channels * spec.kernel_size**2
            in_channels = out_channels
        if not stem:
            side = math.ceil(side / 2)
    in_features = in_channels * side * side
    for units in (*spec.dense_units, spec.num_classes):
        total += in_features * units
        in_features = units
    return total


def torch_device(name: str) -> torch.device:
    """Resolve --device auto|cpu|cuda; auto takes a GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        return torch.device("cuda")
    raise UsageError(f"unknown device {name!r}; choose auto, cpu or cuda")


def to_model_input(digits: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Scale uint8 digits (N, 28, 28) to the float (N, 1, 28, 28) in 0..1 the networks take: the tutorial's /255."""
    if isinstance(digits, np.ndarray):
        digits = torch.from_numpy(np.ascontiguousarray(digits))
    return digits.unsqueeze(1).float().div_(255.0)


@torch.inference_mode()
def batched_logits(network: nn.Module, digits: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits for uint8 digits (N, 28, 28), in batches, in eval mode: the one inference loop everything shares.
    Batches of 256 stay in cache: on 2 cores they ran 10% (seed) to 40% (default) faster than batches of 1000."""
    was_training = network.training
    network.eval()
    # At least one (possibly empty) batch, so no input still gives a (0, classes) answer for any network.
    outputs = [
        network(to_model_input(digits[start : start + batch_size].to(device))).float().cpu()
        for start in range(0, max(len(digits), 1), batch_size)
    ]
    network.train(was_training)
    return torch.cat(outputs)
