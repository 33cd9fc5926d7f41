#!/usr/bin/env bash
# Rebuild the model that ships inside the package: the `default` preset and recipe, seed 0.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/digitlab train --preset default --seed 0 --out runs/default-model --overwrite
.venv/bin/digitlab evaluate runs/default-model/model.safetensors --out runs/default-model/evaluation
mkdir -p digitlab/models
cp runs/default-model/model.safetensors digitlab/models/default.safetensors
