"""The training loop on a real slice of MNIST: results, run folders, resume after a kill, and failures that lose nothing."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from digitlab.errors import TrainingError, UsageError
from digitlab.model import batched_logits
from digitlab.modelfile import load_model
from digitlab.model import to_model_input
from digitlab.outliers import outlier_images
from digitlab.train import (
    RECIPES, Recipe, augments_epoch, learning_rate_at, resolve_precision, train, training_inputs,
)

DIGITLAB = str(Path(sys.executable).parent / "digitlab")
# Small enough to be quick, large enough that the second epoch outlasts a poll of the first checkpoint.
QUICK = ["--preset", "seed", "--epochs", "2", "--train-limit", "3000", "--seed", "7", "--deterministic", "--json"]


def checkpoint_epoch(path: Path) -> int:
    with safe_open(str(path), framework="pt") as file:
        return int(file.metadata()["epoch"])


def start_and_signal_after_first_epoch(out: Path, signal_number: int) -> subprocess.Popen:
    """Start a CLI training run and send it a signal as soon as the epoch-1 checkpoint exists."""
    process = subprocess.Popen([DIGITLAB, "train", *QUICK, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.005)
    process.send_signal(signal_number)
    process.wait(timeout=60)
    return process


def test_seed_recipe_is_the_tutorials():
    recipe = RECIPES["seed"]
    assert (recipe.epochs, recipe.batch_size, recipe.optimizer, recipe.learning_rate) == (2, 128, "rmsprop", 1e-3)
    assert recipe.validation == "test" and not recipe.augment and recipe.label_smoothing == 0


def test_training_learns_and_writes_a_complete_run_folder(tmp_path):
    result = train("seed", epochs=2, train_limit=2000, out=tmp_path / "run", seed=1)
    assert result.metrics["test_accuracy"] > 0.85
    assert result.history[1]["loss"] < result.history[0]["loss"]
    for name in ("model.safetensors", "metrics.json", "history.json", "history.png", "config.json", "checkpoint.safetensors"):
        assert (tmp_path / "run" / name).is_file(), name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test_accuracy", "train_seconds", "epochs"} <= metrics.keys()
    assert load_model(tmp_path / "run" / "model.safetensors").metrics["test_accuracy"] == metrics["test_accuracy"]
    assert not list((tmp_path / "run").glob("*.partial"))


def test_same_seed_gives_the_same_weights_and_another_seed_does_not():
    first = train("seed", epochs=1, train_limit=500, seed=3, deterministic=True).model.network.state_dict()
    again = train("seed", epochs=1, train_limit=500, seed=3, deterministic=True).model.network.state_dict()
    other = train("seed", epochs=1, train_limit=500, seed=4, deterministic=True).model.network.state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["0.weight"], other["0.weight"])


@pytest.mark.fault("crashes")
def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    killed = start_and_signal_after_first_epoch(tmp_path / "killed", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert checkpoint_epoch(tmp_path / "killed" / "checkpoint.safetensors") == 1
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    resumed = subprocess.run([DIGITLAB, "train", *QUICK, "--out", str(tmp_path / "killed"), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([DIGITLAB, "train", *QUICK, "--out", str(tmp_path / "whole")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    resumed_weights = load_file(tmp_path / "killed" / "model.safetensors")
    whole_weights = load_file(tmp_path / "whole" / "model.safetensors")
    assert resumed_weights.keys() == whole_weights.keys()
    assert all(torch.equal(resumed_weights[name], whole_weights[name]) for name in whole_weights)
    history = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]


@pytest.mark.fault("crashes")
def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path):
    process = start_and_signal_after_first_epoch(tmp_path / "run", signal.SIGINT)
    assert process.returncode == 130
    message = process.stderr.read().strip()
    assert "Traceback" not in message and "--resume" in message
    assert checkpoint_epoch(tmp_path / "run" / "checkpoint.safetensors") == 1


def test_a_diverging_loss_stops_with_a_clear_message(tmp_path):
    recipe = Recipe(optimizer="sgd", learning_rate=1e9, epochs=2, train_limit=1000)
    with pytest.raises(TrainingError, match="lower the learning rate"):
        train("seed", recipe=recipe, out=tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    if checkpoint.exists():  # the loss may blow up in epoch 1 or 2; any checkpoint kept must be a finite one
        weights = load_file(checkpoint)
        assert all(torch.isfinite(t).all() for name, t in weights.items() if name.startswith("model."))


def test_an_existing_run_is_never_overwritten_by_accident(tmp_path):
    run = tmp_path / "run"
    train("seed", epochs=1, train_limit=300, out=run)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    with pytest.raises(UsageError, match="already holds a run"):
        train("seed", epochs=1, train_limit=300, out=run)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


def test_resume_refuses_other_settings_and_missing_checkpoints(tmp_path):
    run = tmp_path / "run"
    train("seed", epochs=1, train_limit=300, out=run, seed=1)
    with pytest.raises(Exception, match="different settings"):
        train("seed", epochs=1, train_limit=300, out=run, seed=2, resume=True)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train("seed", epochs=1, train_limit=300, out=tmp_path / "empty", resume=True)


@pytest.mark.parametrize(
    "settings",
    [{"epochs": 0}, {"batch_size": 0}, {"learning_rate": -1.0}, {"optimizer": "adagrad"}, {"validation": "train"}],
)
def test_bad_recipes_are_refused(settings):
    with pytest.raises(UsageError):
        Recipe(**settings)


def test_one_cycle_warms_up_then_decays_to_zero():
    recipe = Recipe(schedule="onecycle", warmup_fraction=0.25, learning_rate=1.0)
    rates = [learning_rate_at(recipe, step, 100) for step in range(100)]
    assert rates[24] == pytest.approx(1.0) and rates[0] < 0.1
    assert rates[-1] < 0.02 and all(a >= b for a, b in zip(rates[25:], rates[26:]))
    assert learning_rate_at(Recipe(), 57, 100) == 1e-3


def test_bfloat16_mixed_precision_trains_and_is_recorded(mnist_test):
    result = train("seed", epochs=2, train_limit=2000, precision="bfloat16", seed=1)
    assert result.metrics["precision"] == "bfloat16" and result.metrics["test_accuracy"] > 0.5  # chance is 0.1
    assert all(p.dtype == torch.float32 for p in result.model.network.parameters())
    # The first epoch is validated in bfloat16; the last measures the model in float32, as it is used.
    images, labels = mnist_test
    logits = batched_logits(result.model.network, torch.from_numpy(images), torch.device("cpu"))
    assert result.metrics["test_accuracy"] == (logits.argmax(1) == torch.from_numpy(labels)).float().mean().item()
    with pytest.raises(UsageError, match="precision"):
        train("seed", epochs=1, train_limit=100, precision="float8")


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it_and_is_recorded():
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto", torch.device("cpu")) == ("bfloat16" if native else "float32")
    assert resolve_precision("auto", torch.device("cuda")) == "float32"
    assert resolve_precision("float32", torch.device("cpu")) == "float32"
    result = train("seed", epochs=1, train_limit=500, seed=1)
    assert result.metrics["precision"] == resolve_precision("auto", torch.device("cpu"))


def test_outlier_exposure_and_calibration_end_in_the_model_file(tmp_path):
    from digitlab.predict import Predictor

    recipe = Recipe(
        epochs=1, train_limit=8000, validation="holdout", validation_size=2000, optimizer="adamw",
        learning_rate=3e-3, schedule="onecycle", warmup_fraction=0.2, augment=True, outlier_exposure=0.5,
    )
    result = train("seed", recipe=recipe, out=tmp_path / "run", seed=0)
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.calibration["temperature"] == result.metrics["temperature"] > 0
    assert 0 < model.calibration["reject_threshold"] < 1
    # One epoch of 8,000 digits, all distorted with their outliers, reads about 91% (seed 0); drowned in
    # outliers it would read far less.
    assert result.metrics["test_accuracy"] > 0.85
    # The threshold was set on validation digits; unseen test digits are accepted at about the same rate.
    assert 0.97 <= result.metrics["test_accepted"] <= 1.0
    (blank,) = Predictor(model).answer([("blank", np.full((40, 40), 255, dtype=np.uint8))])
    assert blank["digit"] is None and "blank" in blank["reason"]


def test_stroke_gaps_without_augmentation_is_refused_rather_than_ignored():
    with pytest.raises(UsageError, match="augment"):
        Recipe(stroke_gaps=0.25)
    with pytest.raises(UsageError, match="between 0 and 1"):
        Recipe(augment=True, stroke_gaps=1.5)


def test_a_plain_finish_trains_the_last_epochs_on_the_digits_as_they_are(mnist_test):
    recipe = Recipe(epochs=20, augment=True, plain_finish=0.1)
    assert [augments_epoch(recipe, epoch) for epoch in range(1, 21)] == [True] * 18 + [False] * 2
    assert all(augments_epoch(Recipe(epochs=20, augment=True), epoch) for epoch in range(1, 21))
    digits = torch.from_numpy(mnist_test[0][:64])
    plain = training_inputs(digits, None, recipe, torch.Generator().manual_seed(0), augments_epoch(recipe, 20))
    assert torch.equal(plain, to_model_input(digits))
    assert not torch.equal(training_inputs(digits, None, recipe, torch.Generator().manual_seed(0)), plain)
    with pytest.raises(UsageError, match="augment"):
        Recipe(plain_finish=0.1)
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        Recipe(augment=True, plain_finish=1.0)


def test_outliers_join_each_batch_and_are_distorted_like_the_digits(mnist_test):
    digits, outliers = torch.from_numpy(mnist_test[0][:64]), torch.from_numpy(outlier_images(40, seed=3))
    clean = to_model_input(outliers)

    def nearest_clean_distance(rows: torch.Tensor) -> torch.Tensor:
        return torch.stack([(clean - row).abs().amax(dim=(1, 2, 3)).min() for row in rows])

    augmented = training_inputs(digits, outliers, RECIPES["default"], torch.Generator().manual_seed(0))
    assert augmented.shape == (64 + 16, 1, 28, 28)
    # Distorted: no drawn outlier is left as it was; most are changed by far more than rounding. (Noise that
    # prepares to a blank image stays blank, whatever distorts it.)
    drawn = augmented[64:][augmented[64:].amax(dim=(1, 2, 3)) > 0]
    assert len(drawn) >= 12
    assert (nearest_clean_distance(drawn) > 0).all()
    assert (nearest_clean_distance(drawn) > 0.2).float().mean() > 0.5
    plain = training_inputs(digits, outliers, Recipe(outlier_exposure=0.1), torch.Generator().manual_seed(0))
    assert torch.equal(plain[:64], to_model_input(digits))
    assert (nearest_clean_distance(plain[64:]) == 0).all()
