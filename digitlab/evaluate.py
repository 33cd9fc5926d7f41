"""Measure a model on a labelled data set: accuracy, per-class precision and recall, and the pictures that explain them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .errors import DataError
from .model import batched_logits
from .modelfile import DigitModel, load_model
from .vision import load_digit

MISTAKES_SHOWN = 32


def load_labelled(dataset: str, split: str = "test", data_dir: str | os.PathLike | None = None):
    """A named data set's split, or a folder of the user's own images laid out as root/<label>/*."""
    if dataset in data.DATASETS:
        images, labels = data.load_dataset(dataset, split, data_dir)
        return images, labels, data.DATASETS[dataset].class_names
    if Path(dataset).is_dir():
        return data.load_image_folder(dataset, load_digit)
    known = ", ".join(data.DATASETS)
    raise DataError(f"{dataset}: not a known data set ({known}) nor a folder of root/<label>/ images")


def evaluate(
    model: DigitModel | str | os.PathLike | None = None,
    dataset: str | None = None,
    split: str = "test",
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
) -> dict:
    """Score a model; with `out`, also write confusion.png and mistakes.png there."""
    model = model if isinstance(model, DigitModel) else load_model(model)
    images, labels, class_names = load_labelled(dataset or model.dataset, split, data_dir)
    if len(class_names) != model.spec.num_classes:
        raise DataError(
            f"{dataset}: has {len(class_names)} classes but the model predicts {model.spec.num_classes}"
        )
    logits = batched_logits(model.network, torch.from_numpy(images), torch.device("cpu"))
    targets = torch.from_numpy(labels)
    probabilities = torch.softmax(logits, dim=1).numpy()
    predicted = probabilities.argmax(axis=1)
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = [
        {
            "class": name,
            "precision": _ratio(confusion[index, index], confusion[:, index].sum()),
            "recall": _ratio(confusion[index, index], confusion[index].sum()),
            "support": int(confusion[index].sum()),
        }
        for index, name in enumerate(class_names)
    ]
    report = {
        "dataset": dataset or model.dataset,
        "split": split,
        "examples": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "loss": F.cross_entropy(logits, targets).item(),
        "errors": int((predicted != labels).sum()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if out is not None:
        from .plots import plot_confusion, plot_gallery

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(confusion, class_names, out / "confusion.png")
        wrong = np.flatnonzero(predicted != labels)
        worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:MISTAKES_SHOWN]
        captions = [
            f"true {class_names[labels[i]]}, said {class_names[predicted[i]]} {probabilities[i, predicted[i]]:.0%}"
            for i in worst
        ]
        plot_gallery(images[worst], captions, out / "mistakes.png")
        report["figures"] = [str(out / "confusion.png"), str(out / "mistakes.png")]
    return report


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0
