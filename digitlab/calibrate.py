"""Confidence that means what it says: temperature scaling, calibration error, and the "not a digit" threshold."""

from __future__ import annotations

import numpy as np
import torch

# Guo et al. (2017) measure expected calibration error over 15 equal-width confidence bins; so do we.
CALIBRATION_BINS = 15
# The share of real digits (of the validation split) the rejection threshold must still accept.
ACCEPTED_DIGITS = 0.99


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The single temperature T that minimises the negative log-likelihood of softmax(logits / T)
    on held-out data; it rescales confidence without changing any answer.

    The likelihood is convex in 1/T (its second derivative is the variance of the logits under the
    softmax), so Newton's method on 1/T, halving any step that does not lower it, finds the minimum in a
    few steps. torch.optim.LBFGS would import the compiler, a second or more for one number.
    """
    logits = logits.detach().double().numpy()
    true_logits = logits[np.arange(len(logits)), labels.numpy()]

    def loss_and_steps(inverse: float) -> tuple[float, float, float]:
        scaled = inverse * logits
        top = scaled.max(axis=1, keepdims=True)
        weights = np.exp(scaled - top)
        total = weights.sum(axis=1, keepdims=True)
        probabilities = weights / total
        mean = (probabilities * logits).sum(axis=1)
        variance = (probabilities * logits**2).sum(axis=1) - mean**2
        loss = float(np.mean(np.log(total[:, 0]) + top[:, 0] - inverse * true_logits))
        return loss, float(np.mean(mean - true_logits)), float(np.mean(variance))

    inverse = 1.0
    for _ in range(50):
        loss, slope, curvature = loss_and_steps(inverse)
        step = slope / max(curvature, 1e-12)
        while inverse - step <= 0 or loss_and_steps(inverse - step)[0] > loss:
            step /= 2
            if abs(step) < 1e-12 * inverse:
                return 1.0 / inverse
        inverse -= step
        if abs(step) < 1e-9 * inverse:
            break
    return 1.0 / inverse


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean gap between confidence and accuracy, weighted by how many answers fall in each confidence bin."""
    table = reliability_table(probabilities, labels, bins)
    total = sum(row["count"] for row in table)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / max(total, 1))


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per confidence bin: its range, how many answers fell in it, their mean confidence and their accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (low, high]; a confidence of exactly 0 cannot happen with softmax over 10 classes.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table = []
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        table.append({
            "low": float(edges[index]),
            "high": float(edges[index + 1]),
            "count": count,
            "confidence": float(confidence[members].mean()) if count else 0.0,
            "accuracy": float(correct[members].mean()) if count else 0.0,
        })
    return table


def acceptance_threshold(confidence: np.ndarray, accepted: float = ACCEPTED_DIGITS) -> float:
    """The confidence below which an answer is "not a digit", set so that `accepted` of real digits pass."""
    if confidence.size == 0:
        raise ValueError("no validation digits to set the rejection threshold on")
    return float(np.quantile(confidence, 1.0 - accepted, method="lower"))


def calibrate(logits: torch.Tensor, labels: torch.Tensor, distorted: torch.Tensor | None = None) -> dict:
    """Fit the temperature and the rejection threshold on validation digits: what the model file stores.
    With `distorted` (logits of the same digits as training distorts them), the threshold accepts
    ACCEPTED_DIGITS of those instead, a lower bar that still accepts more of the clean digits."""
    temperature = fit_temperature(logits, labels)
    probabilities = torch.softmax(logits.float() / temperature, dim=1).numpy()
    bar_on = probabilities if distorted is None else torch.softmax(distorted.float() / temperature, dim=1).numpy()
    return {
        "temperature": temperature,
        "reject_threshold": acceptance_threshold(bar_on.max(axis=1)),
        "fitted_on": f"{len(labels)} validation digits" + ("" if distorted is None else ", the bar on them distorted"),
        "validation_ece": expected_calibration_error(probabilities, labels.numpy()),
    }


def calibration_report(calibration: dict, logits: torch.Tensor, labels: np.ndarray) -> dict:
    """How a fitted calibration does on data it never saw: calibration error before and after, and the
    share of real digits the rejection threshold accepts."""
    raw = torch.softmax(logits.float(), dim=1).numpy()
    scaled = torch.softmax(logits.float() / calibration["temperature"], dim=1).numpy()
    return {
        "temperature": calibration["temperature"],
        "reject_threshold": calibration["reject_threshold"],
        "test_ece_uncalibrated": expected_calibration_error(raw, labels),
        "test_ece": expected_calibration_error(scaled, labels),
        "test_accepted": float((scaled.max(axis=1) >= calibration["reject_threshold"]).mean()),
    }
