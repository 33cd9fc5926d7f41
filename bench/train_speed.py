"""Seed recipe speed: digitlab against the tutorial's own TensorFlow program, whole process against whole process.

Runs peer and digitlab interleaved (peer, ours, peer, ours, ...), reports medians, their ratio, both test
accuracies and digitlab's achieved GFLOP/s against this machine's sgemm rate measured in the same run.
Usage: .venv/bin/python bench/train_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from digitlab import data
from digitlab.model import get_preset, multiply_adds

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info, sgemm_gflops  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".bench-venv"
# Pillow decodes the example images as the tutorial's skimage.io.imread does.
PEER_REQUIREMENTS = ["tensorflow-cpu==2.21.0", "pillow>=12.2"]
RESULTS = ROOT / "bench" / "results" / "train_speed.json"


def peer_python() -> Path:
    """The peer's own virtual environment, made on first use so TensorFlow stays out of digitlab's dependencies."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return python


def timed(command: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{finished.stderr[-2000:]}")
    return seconds, json.loads(finished.stdout[finished.stdout.index("{") :])  # both print one JSON document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    source = data.DATASETS["mnist"]
    idx_files = [str(data.fetch(source, file)) for file in (*source.train, *source.test)]
    peer = [str(peer_python()), str(ROOT / "bench" / "peer" / "tutorial_keras.py"), *idx_files]
    ours = [str(Path(sys.executable).parent / "digitlab"), "train", "--preset", "seed", "--epochs", "2", "--json"]
    gflops_machine = sgemm_gflops()
    runs: dict[str, list[dict]] = {"peer": [], "digitlab": [], "digitlab-bf16": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            seconds, result = timed(peer)
            runs["peer"].append({"seconds": seconds, **result})
            for name, precision in (("digitlab", "float32"), ("digitlab-bf16", "bfloat16")):
                out = f"{scratch}/{name}-{repeat}"
                seconds, result = timed([*ours, "--seed", str(repeat), "--precision", precision, "--out", out])
                runs[name].append({"seconds": seconds, **result})

    # Training costs three forward passes per image; each epoch also validates once on the 10,000 test images.
    flop = 2 * multiply_adds(get_preset("seed")) * (3 * 60_000 * 2 + 10_000 * 2)
    median = {name: statistics.median(run["seconds"] for run in values) for name, values in runs.items()}
    accuracy = {name: statistics.median(run["test_accuracy"] for run in values) for name, values in runs.items()}
    train_seconds = statistics.median(run["train_seconds"] for run in runs["digitlab"])
    achieved = flop / train_seconds / 1e9
    summary = {
        "machine": machine_info(),
        "sgemm_gflops": gflops_machine,
        "median_seconds": median,
        "speedup": median["peer"] / median["digitlab"],
        "speedup_bf16": median["peer"] / median["digitlab-bf16"],
        "median_test_accuracy": accuracy,
        "digitlab_train_seconds": train_seconds,
        "digitlab_gflops": achieved,
        "fraction_of_sgemm": achieved / gflops_machine,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")

    table = Table(title=f"seed recipe, 2 epochs, whole process, median of {args.repeats} (interleaved)")
    for column in ("program", "seconds", "test accuracy"):
        table.add_column(column, justify="right")
    table.add_row("tutorial (TensorFlow/Keras)", f"{median['peer']:.1f}", f"{accuracy['peer']:.4f}")
    table.add_row("digitlab", f"{median['digitlab']:.1f}", f"{accuracy['digitlab']:.4f}")
    table.add_row("digitlab --precision bfloat16", f"{median['digitlab-bf16']:.1f}", f"{accuracy['digitlab-bf16']:.4f}")
    console = Console()
    console.print(table)
    console.print(
        f"speed-up {summary['speedup']:.2f}x (bfloat16: {summary['speedup_bf16']:.2f}x); digitlab training {train_seconds:.1f} s = {achieved:.0f} GFLOP/s, "
        f"{summary['fraction_of_sgemm']:.0%} of this machine's sgemm ({gflops_machine:.0f} GFLOP/s)"
    )
    console.print(summary["machine"])


if __name__ == "__main__":
    main()
