"""Fit the shipped model's temperature and rejection threshold on the validation digits it was trained
without (the recipe's seeded holdout, recomputed exactly), and store them in the model file."""

from __future__ import annotations

import sys

import torch

from digitlab.calibrate import calibrate, calibration_report
from digitlab.model import batched_logits
from digitlab.modelfile import default_model_path, load_model, save_model
from digitlab.train import Recipe, load_splits

path = sys.argv[1] if len(sys.argv) > 1 else default_model_path()
model = load_model(path)
recipe = Recipe(**model.recipe)
if recipe.validation != "holdout":
    sys.exit(f"{path}: trained without a validation holdout; nothing unseen to calibrate on")
_, (val_images, val_labels), (test_images, test_labels) = load_splits(recipe, model.metrics["seed"], None)
cpu = torch.device("cpu")
model.calibration = calibrate(batched_logits(model.network, torch.from_numpy(val_images), cpu), torch.from_numpy(val_labels))
model.metrics.update(calibration_report(model.calibration, batched_logits(model.network, torch.from_numpy(test_images), cpu), test_labels))
save_model(model, path)
print({key: model.metrics[key] for key in ("temperature", "reject_threshold", "test_ece_uncalibrated", "test_ece", "test_accepted")})
