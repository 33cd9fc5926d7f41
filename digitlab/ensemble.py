"""Ensembles: several trained models averaged into one model file that works wherever a model does."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelFileError, UsageError
from .model import Ensemble, count_parameters, multiply_adds
from .modelfile import DigitModel, load_model, save_model


def combine(models: Sequence[DigitModel | str | os.PathLike]) -> DigitModel:
    """One model whose probabilities are the mean of the members'; members that are ensembles are unpacked."""
    loaded = [model if isinstance(model, DigitModel) else load_model(model) for model in models]
    if len(loaded) < 2:
        raise UsageError(f"an ensemble needs at least 2 models, got {len(loaded)}")
    first = loaded[0]
    for model, source in zip(loaded[1:], models[1:]):
        for attribute in ("class_names", "dataset", "preprocessing"):
            if getattr(model, attribute) != getattr(first, attribute):
                raise ModelFileError(
                    f"{source}: its {attribute} ({getattr(model, attribute)}) differs from the first model's "
                    f"({getattr(first, attribute)}); ensemble only models trained for the same task"
                )
    specs, networks = [], []
    for model in loaded:
        if isinstance(model.network, Ensemble):
            specs += model.network.specs
            networks += list(model.network.children())
        else:
            specs.append(model.spec)
            networks.append(model.network)
    network = Ensemble(tuple(specs), networks).eval()
    return DigitModel(
        network=network,
        spec=specs[0],
        class_names=first.class_names,
        dataset=first.dataset,
        preprocessing=first.preprocessing,
        metrics={
            "members": len(specs),
            "parameters": count_parameters(network),
            "multiply_adds": sum(multiply_adds(spec) for spec in specs),
            "member_test_accuracy": [model.metrics.get("test_accuracy") for model in loaded],
        },
    )


def build_ensemble_file(
    models: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    check: bool = True,
    data_dir: str | os.PathLike | None = None,
) -> dict:
    """Combine model files into `out`; with `check`, score each member and the ensemble on the test split."""
    from .evaluate import evaluate

    ensemble = combine(models)
    report = {"path": str(out), "member_files": [str(path) for path in models], **ensemble.metrics}
    if check:
        report["member_test_accuracy"] = [
            evaluate(path, split="test", data_dir=data_dir)["accuracy"] for path in models
        ]
        report["test_accuracy"] = evaluate(ensemble, split="test", data_dir=data_dir)["accuracy"]
        ensemble.metrics.update(
            test_accuracy=report["test_accuracy"], member_test_accuracy=report["member_test_accuracy"]
        )
    save_model(ensemble, Path(out))
    return report
