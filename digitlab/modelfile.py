"""One .safetensors file per model: weights plus everything needed to rebuild and trust them. No pickle."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from . import __version__
from .errors import DigitlabError, ModelFileError
from .model import Ensemble, ModelSpec, build_ensemble, build_model

FORMAT = "digitlab-model"
FORMAT_VERSION = 1


@dataclass
class DigitModel:
    """A network with what it was trained for: spec, class names, preprocessing, data set and metrics."""

    network: nn.Module
    spec: ModelSpec
    class_names: tuple[str, ...] = tuple("0123456789")
    dataset: str = "mnist"
    preprocessing: dict = field(default_factory=lambda: {"polarity": "auto", "side": 28, "scale": 255})
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    # Temperature and rejection threshold fitted on validation data (empty: raw softmax, no model-based rejection).
    calibration: dict = field(default_factory=dict)
    version: str = __version__


def default_model_path() -> Path:
    """The model that ships inside the package, so predict works right after install."""
    return Path(str(resources.files("digitlab") / "models" / "default.safetensors"))


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A sha256 over every tensor's name and bytes, so a flipped bit in the weights is caught at load."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(model: DigitModel, path: str | os.PathLike) -> Path:
    """Write the model file (atomically) with the metadata that rebuilds and verifies it."""
    path = Path(path)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.network.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "digitlab_version": model.version,
        "spec": json.dumps(model.spec.to_dict()),
        "class_names": json.dumps(list(model.class_names)),
        "dataset": model.dataset,
        "preprocessing": json.dumps(model.preprocessing),
        "metrics": json.dumps(model.metrics),
        "recipe": json.dumps(model.recipe),
        "calibration": json.dumps(model.calibration),
        "weights_sha256": weights_digest(tensors),
    }
    if isinstance(model.network, Ensemble):  # the members' specs rebuild it; `spec` stays the first one's
        metadata["members"] = json.dumps([spec.to_dict() for spec in model.network.specs])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, metadata)
    return path


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write beside the target and rename, so a crash mid-write leaves the previous file, never half a file."""
    partial = path.with_name(path.name + ".partial")
    # Our own write, not safetensors' save_file: that one writes a randomly named hidden .tmp file first,
    # which a killed run leaves behind for good, while .partial is overwritten by the next save. It also
    # creates files readable by their owner only; a model file is meant to be shared.
    partial.write_bytes(save(tensors, metadata=metadata))
    os.replace(partial, path)


def load_model(path: str | os.PathLike | None = None) -> DigitModel:
    """Load and verify a model file (the shipped default when path is None); any defect is a ModelFileError."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            _check_format(path, metadata)
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: not a readable .safetensors model file ({_first_line(error)})") from None
    try:
        model = DigitModel(
            network=_build_network(metadata),
            spec=ModelSpec.from_dict(json.loads(metadata["spec"])),
            class_names=tuple(json.loads(metadata["class_names"])),
            dataset=metadata["dataset"],
            preprocessing=json.loads(metadata["preprocessing"]),
            metrics=json.loads(metadata["metrics"]),
            recipe=json.loads(metadata["recipe"]),
            calibration=json.loads(metadata.get("calibration", "{}")),
            version=metadata["digitlab_version"],
        )
        digest = metadata["weights_sha256"]
        _check_calibration(model.calibration)
    except (KeyError, ValueError, TypeError, DigitlabError) as error:
        raise ModelFileError(f"{path}: the model's metadata is missing or malformed ({_first_line(error)})") from None
    _check_tensors(path, model.network, tensors, digest)
    model.network.load_state_dict(tensors)
    model.network.eval()
    return model


def _check_calibration(calibration: dict) -> None:
    temperature = calibration.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(f"calibration temperature {temperature!r} is not a positive number")
    threshold = calibration.get("reject_threshold", 0.0)
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"calibration reject_threshold {threshold!r} is not between 0 and 1")


def _build_network(metadata: dict) -> nn.Module:
    if "members" in metadata:
        return build_ensemble(tuple(ModelSpec.from_dict(spec) for spec in json.loads(metadata["members"])))
    return build_model(ModelSpec.from_dict(json.loads(metadata["spec"])))


def _check_format(path: Path, metadata: dict) -> None:
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: a .safetensors file, but not a digitlab model (no '{FORMAT}' metadata)")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version!r} is newer than this digitlab reads ({FORMAT_VERSION}); "
            "upgrade digitlab"
        )


def _check_tensors(path: Path, network: nn.Module, tensors: dict[str, torch.Tensor], digest: str) -> None:
    expected = network.state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{path}: tensors do not match the spec (missing {missing}, unexpected {extra})")
    for name, tensor in tensors.items():
        want = expected[name]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise ModelFileError(
                f"{path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"the spec needs {tuple(want.shape)} {want.dtype}"
            )
    if weights_digest(tensors) != digest:
        raise ModelFileError(f"{path}: the weights do not match their recorded checksum; the file is corrupt")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
