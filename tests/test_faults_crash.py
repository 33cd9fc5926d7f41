"""Crashes: `digitlab train` killed with SIGKILL inside its file writes and at a random moment, then resumed.
Every finished file in the run folder is whole at every point, leftovers of a killed write are cleared by the
resumed run, and it ends with the same weights, bit for bit, as a run that was never interrupted.

A kill lands inside a write for certain, not by luck: every run-folder file is written as `<name>.partial`
and renamed, so the test puts a named pipe (FIFO) at that `.partial` name. The trainer's write then blocks
until the test reads from the pipe; the test takes a random number of bytes, kills the trainer while it is
stuck in the write, and puts what the trainer wrote so far back as a plain `.partial` file: exactly the
half-written file a real kill leaves behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from digitlab.modelfile import load_model

DIGITLAB = str(Path(sys.executable).parent / "digitlab")
RUN = ["--preset", "seed", "--epochs", "3", "--train-limit", "600", "--seed", "5", "--deterministic", "--json"]
# One thread in every run: bit-equal weights need the same thread count in the runs compared.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A hang guard for a trainer that never reaches its write, not a speed requirement.
HANG_S = 300


def start(run: Path) -> subprocess.Popen:
    """Start the run in run, or resume it when a checkpoint is there (as a user would after a crash)."""
    resume = ["--resume"] if (run / "checkpoint.safetensors").exists() else []
    return subprocess.Popen([DIGITLAB, "train", *RUN, "--out", str(run), *resume], env=ONE_THREAD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def leftovers(run: Path) -> list[str]:
    """Files of unfinished writes: .partial files, and the hidden temporary files some writers use."""
    return sorted(name for name in os.listdir(run) if name.endswith(".partial") or name.startswith("."))


def checkpoint_epoch(run: Path) -> int:
    path = run / "checkpoint.safetensors"
    if not path.exists():
        return 0
    with safe_open(str(path), framework="pt") as file:
        return int(file.metadata()["epoch"])


def kill_inside_write(process: subprocess.Popen, pipe: Path, take: int) -> int:
    """Read take bytes of the trainer's write through pipe, SIGKILL it while it is blocked in that write,
    and leave what it wrote as a plain file at pipe's name; the number of bytes it wrote."""
    written = bytearray()
    # open() of a pipe blocks until the trainer opens it for its write; a thread lets the test notice a
    # trainer that dies first instead of waiting forever.
    opened: list = []
    opener = threading.Thread(target=lambda: opened.append(open(pipe, "rb", buffering=0)), daemon=True)
    opener.start()
    while opener.is_alive() and process.poll() is None:
        opener.join(0.1)
    if not opened:  # the opener stays blocked in a daemon thread, which ends with the test process
        pytest.fail(f"the trainer ended (status {process.returncode}) without writing {pipe.name}")
    with opened[0] as reader:
        while len(written) < take and (chunk := reader.read(min(1 << 16, take - len(written)))):
            written += chunk
        assert len(written) == take, f"{pipe.name} was only {len(written)} bytes, fewer than the {take} to read"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
        written += reader.read()  # what was already in the pipe when the kill came
    pipe.unlink()
    pipe.write_bytes(bytes(written))
    return len(written)


def check_every_file_is_whole(run: Path) -> None:
    """Every finished file in the run folder reads completely; only .partial files may be cut short."""
    for path in run.iterdir():
        if path.name.endswith(".partial"):
            continue
        if path.name == "checkpoint.safetensors":
            assert 1 <= checkpoint_epoch(run) <= 3
            load_file(path)
        elif path.name == "model.safetensors":
            load_model(path)
            assert checkpoint_epoch(run) == 3, "a model file before the last epoch's checkpoint"
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    run = tmp_path_factory.mktemp("whole") / "run"
    result = subprocess.run([DIGITLAB, "train", *RUN, "--out", str(run)], env=ONE_THREAD,
                            capture_output=True, text=True, timeout=HANG_S)
    assert result.returncode == 0, result.stderr
    return load_file(run / "model.safetensors")


@pytest.mark.fault("crashes")
def test_training_killed_inside_its_writes_resumes_to_the_same_weights(tmp_path, uninterrupted, record_property):
    rng = random.Random(2026)
    run = tmp_path / "run"
    run.mkdir()
    # Which file's write to kill, and whether to wait for a newer checkpoint than the one on disk before the
    # pipe goes in (so the kill lands in a later epoch's checkpoint). The JSON files are too small to block
    # in a pipe (the kernel buffers 64 kB), so the moment kill below stands for them.
    kills = [("checkpoint.safetensors", False), ("checkpoint.safetensors", True), ("model.safetensors", False)]
    sizes = []
    for name, later in kills:
        before = checkpoint_epoch(run)
        process = start(run)
        if later:
            while checkpoint_epoch(run) == before:  # the epoch takes seconds; this reacts in microseconds
                assert process.poll() is None, process.stderr.read()
            before = checkpoint_epoch(run)
        pipe = run / f"{name}.partial"
        os.mkfifo(pipe)
        sizes.append((name, kill_inside_write(process, pipe, take=rng.randrange(0, 1 << 15))))
        check_every_file_is_whole(run)
        assert leftovers(run) == [pipe.name], "a killed write leaves only its own .partial"
        if name == "model.safetensors":  # written once the last epoch's checkpoint is
            assert checkpoint_epoch(run) == 3 and not (run / "model.safetensors").exists()
        else:
            assert checkpoint_epoch(run) == before, "a killed checkpoint write replaced the last good one"
        if before == 0:
            # Killed inside the first checkpoint: nothing to resume, and the CLI says so in one line.
            resumed = subprocess.run([DIGITLAB, "train", *RUN, "--out", str(run), "--resume"], env=ONE_THREAD,
                                     capture_output=True, text=True, timeout=HANG_S)
            assert resumed.returncode == 1 and resumed.stderr.count("\n") == 1
            assert "nothing to resume" in resumed.stderr

    # And once at a random moment, whatever the trainer is doing then.
    process = start(run)
    try:
        process.wait(timeout=rng.uniform(0.5, 5.0))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    check_every_file_is_whole(run)

    final = start(run)
    assert final.wait(timeout=HANG_S) == 0, final.stderr.read()
    check_every_file_is_whole(run)
    assert leftovers(run) == [], "leftovers of a killed write outlive the resumed run"
    weights = load_file(run / "model.safetensors")
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[name], uninterrupted[name]) for name in weights)
    assert [record["epoch"] for record in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    for name, written in sizes:
        assert written < (run / name).stat().st_size, f"the kill in {name} came after its write had finished"
    record_property("fault_cases", len(kills) + 1)
