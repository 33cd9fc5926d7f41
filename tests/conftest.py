"""Shared fixtures: one real model trained once per session, MNIST test digits (one of them as dark ink on paper),
and the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab.data import load_dataset
from digitlab.train import TrainResult, train

# The fault suite's tally: the `fault(kind)` marker and the table `pytest -m fault` ends with.
pytest_plugins = ["fault_tally"]

CLI = Path(sys.executable).parent / "digitlab"
# A hang guard for subprocesses on a shared machine, not a speed requirement.
CLI_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The seed preset trained for one epoch on 3,000 MNIST digits through the real API, with its run folder."""
    out = tmp_path_factory.mktemp("runs") / "seed"
    return train("seed", epochs=1, train_limit=3000, out=out, seed=0)


@pytest.fixture(scope="session")
def model_path(seed_run: TrainResult) -> Path:
    """The real model file the seed run wrote (read it, never modify it: copy first)."""
    return seed_run.run_dir / "model.safetensors"


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 real MNIST test digits (uint8, light ink on black) and their labels."""
    return load_dataset("mnist", "test")


@pytest.fixture
def cli(tmp_path: Path):
    """Run the installed `digitlab` executable with args (in tmp_path unless cwd is given)."""

    def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(CLI), *map(str, args)],
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    return run


@pytest.fixture(scope="session")
def digit(mnist_test) -> np.ndarray:
    """A real MNIST test digit (a 7): light ink on black, as the model sees it."""
    return mnist_test[0][0]


@pytest.fixture(scope="session")
def paper(digit) -> np.ndarray:
    """The same digit as dark ink on white paper, the way people photograph or draw digits."""
    return 255 - digit

