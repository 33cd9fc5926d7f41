"""Tests for digitlab.evaluate: a real trained model scored on all of MNIST test and on a folder of PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.errors import DataError
from digitlab.evaluate import evaluate
from digitlab.predict import Predictor


@pytest.fixture(scope="module")
def mnist_report(model_path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("evaluation")
    return evaluate(model_path, "mnist", out=out), out


def test_accuracy_matches_the_run_metrics(mnist_report, seed_run):
    report, _ = mnist_report
    assert report["examples"] == 10_000
    assert report["accuracy"] == pytest.approx(seed_run.metrics["test_accuracy"], abs=1e-6)
    assert report["errors"] == round((1 - report["accuracy"]) * 10_000)
    assert np.isfinite(report["loss"]) and report["loss"] > 0


def test_per_class_and_confusion_account_for_every_example(mnist_report, mnist_test):
    report, _ = mnist_report
    per_class = report["per_class"]
    assert [row["class"] for row in per_class] == [str(digit) for digit in range(10)]
    assert [row["support"] for row in per_class] == np.bincount(mnist_test[1], minlength=10).tolist()
    assert sum(row["support"] for row in per_class) == 10_000
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    assert np.trace(confusion) == 10_000 - report["errors"]
    for index, row in enumerate(per_class):
        assert row["recall"] == pytest.approx(confusion[index, index] / confusion[index].sum())
        assert row["precision"] == pytest.approx(confusion[index, index] / confusion[:, index].sum())


def test_writes_confusion_and_mistakes_pictures(mnist_report):
    report, out = mnist_report
    for name in ("confusion.png", "mistakes.png"):
        path = out / name
        assert str(path) in report["figures"]
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] > 100 and image.size[1] > 100


@pytest.fixture
def digit_folder(tmp_path, mnist_test) -> tuple[Path, np.ndarray, np.ndarray]:
    """root/<digit>/*.png holding five real MNIST test images of each digit."""
    images, labels = mnist_test
    chosen = np.concatenate([np.flatnonzero(labels == digit)[:5] for digit in range(10)])
    root = tmp_path / "my-digits"
    for index in chosen:
        folder = root / str(labels[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(folder / f"{index}.png")
    return root, images[chosen], labels[chosen]


def test_image_folder_evaluates(digit_folder, model_path):
    root, images, labels = digit_folder
    report = evaluate(model_path, str(root))
    assert report["examples"] == 50
    assert [row["support"] for row in report["per_class"]] == [5] * 10
    expected = (Predictor(model_path).predict(images) == labels).mean()
    assert report["accuracy"] == pytest.approx(expected)
    assert "figures" not in report


def test_folder_with_the_wrong_number_of_classes(tmp_path, digit_folder, model_path):
    root, _, _ = digit_folder
    for digit in range(3, 10):
        for path in (root / str(digit)).iterdir():
            path.unlink()
        (root / str(digit)).rmdir()
    with pytest.raises(DataError, match="3 classes"):
        evaluate(model_path, str(root))


def test_unknown_dataset_name(model_path, tmp_path):
    with pytest.raises(DataError, match="kmnist"):
        evaluate(model_path, "kmnist", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()
