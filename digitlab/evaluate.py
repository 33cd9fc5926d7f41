"""Measure a model on a labelled data set: accuracy, per-class precision and recall, and the pictures that explain them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .errors import DataError
from .model import batched_logits
from .calibrate import expected_calibration_error, reliability_table
from .modelfile import DigitModel
from .predict import Predictor
from .vision import load_digit, prepare_digit

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
    outliers: Sequence[str] = (),
) -> dict:
    """Score a model: accuracy, calibration and rejection; `outliers` names data sets of non-digits whose
    rejection rate to report. With `out`, also write confusion.png, mistakes.png and reliability.png there."""
    predictor = Predictor(model)
    model = predictor.model_
    images, labels, class_names = load_labelled(dataset or model.dataset, split, data_dir)
    if len(class_names) != model.spec.num_classes:
        raise DataError(
            f"{dataset}: has {len(class_names)} classes but the model predicts {model.spec.num_classes}"
        )
    logits = batched_logits(model.network, torch.from_numpy(images), torch.device("cpu"))
    targets = torch.from_numpy(labels)
    raw_probabilities = torch.softmax(logits, dim=1).numpy()
    probabilities = torch.softmax(logits / predictor.temperature_, dim=1).numpy()
    predicted = probabilities.argmax(axis=1)
    accepted = np.array([reason is None for reason in predictor.rejections(images, probabilities)])
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
        "temperature": predictor.temperature_,
        "ece": expected_calibration_error(probabilities, labels),
        "ece_uncalibrated": expected_calibration_error(raw_probabilities, labels),
        "reject_threshold": predictor.reject_threshold_,
        "accepted": float(accepted.mean()),
        "accepted_accuracy": float((predicted == labels)[accepted].mean()) if accepted.any() else 0.0,
        "outliers_rejected": {name: _rejected_share(predictor, name, data_dir) for name in outliers},
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if out is not None:
        from .plots import plot_confusion, plot_gallery, plot_reliability

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
        plot_reliability(
            reliability_table(raw_probabilities, labels), reliability_table(probabilities, labels),
            out / "reliability.png",
        )
        report["figures"] = [str(out / name) for name in ("confusion.png", "mistakes.png", "reliability.png")]
    return report


def _rejected_share(predictor: Predictor, dataset: str, data_dir: str | os.PathLike | None) -> float:
    """How many images of a data set of non-digits (its test split) the model refuses to call a digit."""
    images = load_labelled(dataset, "test", data_dir)[0]
    prepared = np.stack([prepare_digit(image) for image in images])
    reasons = predictor.rejections(prepared, predictor.predict_proba_prepared(prepared))
    return float(np.mean([reason is not None for reason in reasons]))


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0
