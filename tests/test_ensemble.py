"""Ensembles: one model file whose probabilities are the members' mean, accepted wherever a model is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitlab.ensemble import build_ensemble_file, combine
from digitlab.errors import ModelFileError, UsageError
from digitlab.model import Ensemble
from digitlab.modelfile import default_model_path, load_model, save_model
from digitlab.predict import Predictor


@pytest.fixture(scope="module")
def members(model_path):
    """Two real models of different architectures: the session's seed run and the shipped default."""
    return [model_path, default_model_path()]


def test_probabilities_are_the_members_mean(members, mnist_test, tmp_path):
    digits = mnist_test[0][:200]
    # Members are averaged on their calibrated probabilities, as each answers alone: with a temperature far
    # from 1 on one of them, the raw mean differs.
    sharpened = load_model(members[1])
    sharpened.calibration = {**sharpened.calibration, "temperature": 0.5}
    members = [members[0], save_model(sharpened, tmp_path / "sharpened.safetensors")]
    ensemble = Predictor(combine(members)).predict_proba_prepared(digits)
    loaded = [load_model(path) for path in members]
    mean = np.mean([Predictor(member).predict_proba_prepared(digits) for member in loaded], axis=0)
    np.testing.assert_allclose(ensemble, mean, atol=1e-5)
    for member in loaded:
        member.calibration = {}
    raw_mean = np.mean([Predictor(member).predict_proba_prepared(digits) for member in loaded], axis=0)
    assert np.abs(ensemble - raw_mean).max() > 1e-3
    assert ensemble.shape == (200, 10)


def test_the_file_round_trips_and_keeps_its_members(members, tmp_path, mnist_test):
    ensemble = combine(members)
    path = save_model(ensemble, tmp_path / "ensemble.safetensors")
    loaded = load_model(path)
    assert isinstance(loaded.network, Ensemble)
    assert loaded.network.specs == tuple(load_model(member).spec for member in members)
    digits = mnist_test[0][:50]
    np.testing.assert_array_equal(
        Predictor(loaded).predict_proba_prepared(digits), Predictor(ensemble).predict_proba_prepared(digits)
    )
    assert Predictor(loaded).predict_proba_prepared(digits[:0]).shape == (0, 10)


def test_an_ensemble_says_not_a_digit_at_the_mean_of_its_members_bars(members, tmp_path):
    shipped = load_model(members[1])
    lower = load_model(members[1])
    lower.calibration = {**lower.calibration, "reject_threshold": 0.2}
    pair = combine([shipped, save_model(lower, tmp_path / "lower.safetensors")])
    bar = shipped.calibration["reject_threshold"]
    assert pair.calibration["reject_threshold"] == pytest.approx((bar + 0.2) / 2)
    nested = combine([pair, members[1]])
    assert nested.calibration["reject_threshold"] == pytest.approx((bar + 0.2 + bar) / 3)
    # The tutorial's dog, which the shipped model rejects, is rejected by its ensemble with itself, saved and loaded.
    twice = load_model(save_model(combine([members[1], members[1]]), tmp_path / "twice.safetensors"))
    dog = Path(__file__).parent.parent / "examples" / "seed" / "dog.png"
    answer = Predictor(twice).answer([("dog.png", dog)])[0]
    assert answer["digit"] is None and answer["reason"].endswith(f"below the {bar:.0%} its members' bars average")
    # A member without a bar (the tutorial's recipe validates on the test split and fits none): no bar.
    assert "reject_threshold" not in combine(members).calibration


def test_an_ensemble_of_ensembles_is_flat(members):
    nested = combine([combine(members), members[0]])
    assert len(nested.network.specs) == 3
    assert nested.metrics["members"] == 3


def test_one_model_is_not_an_ensemble(members):
    with pytest.raises(UsageError, match="at least 2 models"):
        combine(members[:1])


def test_models_for_different_tasks_are_refused(members, tmp_path):
    other = load_model(members[0])
    other.class_names = tuple("abcdefghij")
    foreign = save_model(other, tmp_path / "letters.safetensors")
    with pytest.raises(ModelFileError, match="class_names"):
        combine([members[1], foreign])


def test_a_corrupt_ensemble_file_is_caught(members, tmp_path):
    path = save_model(combine(members), tmp_path / "ensemble.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the last member's weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)


def test_build_ensemble_file_scores_members_and_ensemble(members, tmp_path):
    report = build_ensemble_file(members, tmp_path / "e.safetensors")
    assert len(report["member_test_accuracy"]) == 2
    # Averaging with the much stronger shipped model lifts the weak one-epoch seed run.
    assert report["test_accuracy"] > min(report["member_test_accuracy"])
    assert load_model(tmp_path / "e.safetensors").metrics["test_accuracy"] == report["test_accuracy"]


def test_cli_ensemble_then_predict_and_evaluate_with_it(cli, members, tmp_path):
    for index, member in enumerate(members):
        shutil.copy(member, tmp_path / f"m{index}.safetensors")
    made = cli("ensemble", "m0.safetensors", "m1.safetensors", "--out", "e.safetensors", "--no-check", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["members"] == 2
    seven = Path(__file__).parents[1] / "examples" / "seed" / "7.png"
    predicted = cli("predict", "--model", "e.safetensors", seven, "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)[0]["digit"] == 7
    evaluated = cli("evaluate", "e.safetensors", "--out", "evaluation", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] > 0.9


def test_cli_ensemble_of_one_model_is_a_one_line_error(cli, members):
    result = cli("ensemble", members[0], "--out", "e.safetensors")
    assert result.returncode == 1
    assert result.stderr.strip() == "digitlab: an ensemble needs at least 2 models, got 1"


def test_an_ensemble_exports_to_onnx_matching_pytorch(members, tmp_path, mnist_test):
    from digitlab.export import export_onnx

    path = save_model(combine(members), tmp_path / "ensemble.safetensors")
    report = export_onnx(path, tmp_path / "ensemble.onnx", check_digits=mnist_test[0][:200])
    assert report["max_logit_difference"] < 1e-4
