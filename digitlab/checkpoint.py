"""Training checkpoints as .safetensors plus JSON metadata: resumable to the same bits, and no pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .errors import ModelFileError
from .modelfile import write_safetensors
from .optimizers import ListOptimizer


@dataclass
class TrainingState:
    """Everything a resumed run needs besides the data: where it stopped and what it had learned so far."""

    epoch: int
    history: list[dict]
    train_seconds: float
    config: dict


def save_checkpoint(
    path: Path,
    network: nn.Module,
    optimizer: ListOptimizer,
    shuffle_rng: torch.Generator,
    state: TrainingState,
) -> None:
    """Write atomically, so a kill mid-write leaves the previous checkpoint intact."""
    tensors = {f"model.{name}": tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    for index, slots in optimizer.state_dict()["state"].items():
        for slot, value in slots.items():
            tensors[f"optimizer.{index}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.shuffle"] = shuffle_rng.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "epoch": str(state.epoch),
        "history": json.dumps(state.history),
        "train_seconds": repr(state.train_seconds),
        "config": json.dumps(state.config, sort_keys=True),
    }
    write_safetensors(path, tensors, metadata)


def load_checkpoint(
    path: Path,
    network: nn.Module,
    optimizer: ListOptimizer,
    shuffle_rng: torch.Generator,
    config: dict,
) -> TrainingState:
    """Restore weights, optimizer slots and RNG states in place; refuse a checkpoint of a different run."""
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        state = TrainingState(
            epoch=int(metadata["epoch"]),
            history=json.loads(metadata["history"]),
            train_seconds=float(metadata["train_seconds"]),
            config=json.loads(metadata["config"]),
        )
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable digitlab checkpoint ({error})") from None
    if state.config != json.loads(json.dumps(config, sort_keys=True)):
        raise ModelFileError(
            f"{path}: the checkpoint was made with different settings; resume with the same preset, recipe and seed"
        )
    try:
        network.load_state_dict({name[6:]: value for name, value in tensors.items() if name.startswith("model.")})
        slots: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer."):
                _, index, slot = name.split(".", 2)
                slots.setdefault(int(index), {})[slot] = value
        optimizer.load_state_dict({"state": slots, "param_groups": optimizer.state_dict()["param_groups"]})
        shuffle_rng.set_state(tensors["rng.shuffle"])
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"{path}: the checkpoint does not fit this network ({error})") from None
    return state
