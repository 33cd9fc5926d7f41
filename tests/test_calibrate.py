"""Tests for digitlab.calibrate: temperature scaling, calibration error and the rejection threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from digitlab.calibrate import (
    acceptance_threshold,
    calibrate,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
)


def sampled_logits(temperature: float, count: int = 20_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose labels are drawn from softmax(logits / temperature): a model off by exactly that temperature."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, 10, generator=generator) * 4
    labels = torch.multinomial(torch.softmax(logits / temperature, dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_true_temperature(temperature):
    logits, labels = sampled_logits(temperature)
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=0.05)


def test_scaling_by_the_fitted_temperature_removes_most_calibration_error():
    logits, labels = sampled_logits(2.5)
    raw = torch.softmax(logits, dim=1).numpy()
    scaled = torch.softmax(logits / fit_temperature(logits, labels), dim=1).numpy()
    assert expected_calibration_error(raw, labels.numpy()) > 0.1
    assert expected_calibration_error(scaled, labels.numpy()) < 0.02


def test_calibration_error_of_a_known_table():
    # Four answers at 0.9 confidence, three right: a gap of 0.15 on every answer.
    probabilities = np.full((4, 10), 0.1 / 9)
    probabilities[:, 0] = 0.9
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.15)
    table = reliability_table(probabilities, labels)
    assert len(table) == 15 and sum(row["count"] for row in table) == 4
    (filled,) = [row for row in table if row["count"]]
    assert filled["low"] < 0.9 <= filled["high"] and filled["accuracy"] == 0.75


def test_acceptance_threshold_accepts_the_asked_share():
    confidence = np.random.default_rng(0).uniform(0.2, 1.0, 10_000)
    threshold = acceptance_threshold(confidence, accepted=0.99)
    assert (confidence >= threshold).mean() >= 0.99
    assert (confidence >= threshold).mean() < 0.9915
    with pytest.raises(ValueError):
        acceptance_threshold(np.array([]))


def test_calibrate_and_its_report_on_unseen_data():
    logits, labels = sampled_logits(2.0, seed=1)
    fitted = calibrate(logits[:10_000], labels[:10_000])
    assert fitted["temperature"] == pytest.approx(2.0, rel=0.08)
    report = calibration_report(fitted, logits[10_000:], labels[10_000:].numpy())
    assert report["test_ece"] < report["test_ece_uncalibrated"]
    assert 0.98 <= report["test_accepted"] <= 1.0


def test_the_bar_set_on_distorted_digits_accepts_that_share_of_them_and_more_of_the_clean():
    logits, labels = sampled_logits(2.0, seed=2)
    distorted = logits * 0.5  # the same digits read less surely, as distortion does
    fitted = calibrate(logits, labels, distorted)
    assert fitted["temperature"] == calibrate(logits, labels)["temperature"]  # fitted on the clean digits
    confidence = torch.softmax(distorted / fitted["temperature"], dim=1).max(dim=1).values.numpy()
    assert 0.99 <= (confidence >= fitted["reject_threshold"]).mean() < 0.9915
    assert fitted["reject_threshold"] < calibrate(logits, labels)["reject_threshold"]


def test_the_fitted_temperature_is_the_likelihood_minimum():
    logits, labels = sampled_logits(1.7, seed=3)
    fitted = fit_temperature(logits, labels)
    loss = [F.cross_entropy(logits / (fitted * factor), labels).item() for factor in (0.99, 1.0, 1.01)]
    assert loss[1] < loss[0] and loss[1] < loss[2]


def test_digits_all_read_right_make_the_model_surer_and_the_fit_ends():
    logits = torch.eye(10).repeat(20, 1) * 5
    assert 0 < fit_temperature(logits, torch.arange(10).repeat(20)) < 0.2
