"""Read digits from images: a Predictor that prepares, classifies and answers in the shape every interface shares."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DigitlabError, ImageError, UsageError
from .model import batched_logits
from .modelfile import DigitModel, load_model
from .vision import decode_image, load_digit, prepare_digit

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())


class Predictor:
    """Load a model once and answer many images (sklearn-style `predict` / `predict_proba`)."""

    def __init__(self, model: DigitModel | str | os.PathLike | None = None, device: str = "cpu") -> None:
        self.model_ = model if isinstance(model, DigitModel) else load_model(model)
        self.device_ = torch.device(device)
        self.network_ = self.model_.network.to(self.device_).eval()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model_.class_names

    def predict_proba(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, classes) for grayscale images of any size, prepared as the model was trained."""
        return self.predict_proba_prepared(self._prepare(images))

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The most likely class index for each image."""
        return self.predict_proba(images).argmax(axis=1)

    def predict_files(self, paths: Iterable[str | os.PathLike]) -> list[dict]:
        """One answer per file; a file that cannot be read gets its own error and the others are still answered."""
        return self.answer([(str(path), Path(path)) for path in paths])

    def answer(
        self, images: Sequence[tuple[str, bytes | np.ndarray | Path]], include_prepared: bool = False
    ) -> list[dict]:
        """Answer named images given as encoded bytes, grayscale arrays or file paths, in the JSON shape that
        `digitlab predict --json` and the service share; a bad image gets its own error and the rest are answered.
        `include_prepared` adds the 28x28 digit the model saw (rows of 0..255), for people checking preprocessing."""
        answers: list[dict] = [{} for _ in images]
        readable, digits = [], []
        for index, (name, source) in enumerate(images):
            try:
                digits.append(self._prepare_source(name, source))
                readable.append(index)
            except (ImageError, UsageError) as error:
                answers[index] = {
                    "path": name, "digit": None, "confidence": None, "probabilities": None, "error": str(error)
                }
        if digits:
            for index, probabilities in zip(readable, self.predict_proba_prepared(np.stack(digits))):
                answers[index] = self._answer(images[index][0], probabilities)
        if include_prepared:
            for index, digit in zip(readable, digits):
                answers[index]["prepared"] = digit.tolist()
        return answers

    def _prepare_source(self, name: str, source: bytes | np.ndarray | Path) -> np.ndarray:
        if isinstance(source, Path):
            return load_digit(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return prepare_digit(decode_image(bytes(source), name))
        source = np.asarray(source)
        if source.ndim != 2:
            raise UsageError(f"{name}: expected a 2-D grayscale image, got an array of shape {source.shape}")
        return self._prepare(source)[0]

    def predict_proba_prepared(self, digits: np.ndarray) -> np.ndarray:
        """Probabilities for digits already in MNIST form (N, 28, 28) uint8, such as MNIST itself or
        the output of `vision.prepare_digit`: no preprocessing, since preparing twice would shift them."""
        logits = batched_logits(self.network_, torch.from_numpy(digits), self.device_)
        return torch.softmax(logits, dim=1).numpy()

    def _prepare(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = images[np.newaxis]
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] in (3, 4):
            raise UsageError(
                f"an array of shape {images.shape} looks like one colour image; convert it to grayscale, "
                "or pass a list of 2-D images"
            )
        if len(images) == 0:
            return np.zeros((0, 28, 28), dtype=np.uint8)
        prepared = []
        for image in images:
            image = np.asarray(image)
            if image.ndim != 2:
                raise UsageError(f"each image must be a 2-D grayscale array, got shape {image.shape}")
            if image.dtype != np.uint8:
                image = _to_uint8(image)
            prepared.append(prepare_digit(image))
        return np.stack(prepared)

    def _answer(self, path: str, probabilities: np.ndarray) -> dict:
        ranked = np.argsort(probabilities)[::-1]
        best, runner_up = int(ranked[0]), int(ranked[1])
        return {
            "path": path,
            "digit": best,
            "label": self.class_names[best],
            "confidence": float(probabilities[best]),
            "runner_up": runner_up,
            "runner_up_confidence": float(probabilities[runner_up]),
            "probabilities": [float(p) for p in probabilities],
            "error": None,
        }


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in 0..1 (as the tutorial feeds them) or any integer range, as 8-bit gray."""
    if not np.isfinite(image).all():
        raise UsageError("the image holds NaN or infinite values")
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
        return np.round(image * 255).astype(np.uint8)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as the image files inside them (recursively, sorted); a missing path is an error."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                file for file in path.rglob("*")
                if file.is_file()
                and file.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return found


def predict(paths: Iterable[str | os.PathLike], model: DigitModel | str | os.PathLike | None = None) -> list[dict]:
    """Answer image files and folders with a model file (the shipped default when none is given)."""
    files = expand_paths(paths)
    if not files:
        raise UsageError("no image files found in the given paths")
    return Predictor(model).predict_files(files)


__all__ = ["Predictor", "predict", "expand_paths", "DigitlabError"]
