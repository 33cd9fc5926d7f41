"""Training speed: digitlab against the tutorial's own TensorFlow program, whole process against whole process.

Runs the peer, digitlab's seed recipe and its `fast` recipe interleaved (peer, seed, fast, peer, ...), and
reports medians, ratios to the peer, test accuracies and the seed loop's GFLOP/s against this machine's
sgemm rate measured in the same run. The fast recipe's seeds are spread over the rounds.
Usage: .venv/bin/python bench/train_speed.py [--repeats 3] [--fast-seeds 5] [--float32]
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--fast-seeds", type=int, default=5, help="seeds of the fast recipe (its bar is on 5)")
    parser.add_argument("--float32", action="store_true", help="also time the seed recipe with --precision float32")
    args = parser.parse_args()

    source = data.DATASETS["mnist"]
    idx_files = [str(data.fetch(source, file)) for file in (*source.train, *source.test)]
    peer = [str(peer_python()), str(ROOT / "bench" / "peer" / "tutorial_keras.py"), *idx_files]
    digitlab = [str(Path(sys.executable).parent / "digitlab"), "train", "--json"]
    programs = {"digitlab": [*digitlab, "--preset", "seed", "--epochs", "2"]}  # precision auto: bfloat16 where native
    if args.float32:
        programs["digitlab-float32"] = [*programs["digitlab"], "--precision", "float32"]
    fast = [*digitlab, "--preset", "fast"]
    load_before = os.getloadavg()
    gflops_machine = sgemm_gflops()
    runs: dict[str, list[dict]] = {"peer": [], **{name: [] for name in programs}, "fast": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            seconds, result = timed(peer)
            runs["peer"].append({"seconds": seconds, **result})
            for name, command in programs.items():
                seconds, result = timed([*command, "--seed", str(repeat), "--out", f"{scratch}/{name}-{repeat}"])
                runs[name].append({"seconds": seconds, **result})
            for seed in range(repeat, args.fast_seeds, args.repeats):
                seconds, result = timed([*fast, "--seed", str(seed), "--out", f"{scratch}/fast-{seed}"])
                runs["fast"].append({"seconds": seconds, **result})

    # Training costs three forward passes per image; each epoch also validates once on the 10,000 test images.
    flop = 2 * multiply_adds(get_preset("seed")) * (3 * 60_000 * 2 + 10_000 * 2)
    median = {name: statistics.median(run["seconds"] for run in values) for name, values in runs.items() if values}
    accuracy = {
        name: statistics.median(run["test_accuracy"] for run in values) for name, values in runs.items() if values
    }
    train_seconds = statistics.median(run["train_seconds"] for run in runs["digitlab"])
    achieved = flop / train_seconds / 1e9
    summary = {
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "sgemm_gflops": gflops_machine,
        "median_seconds": median,
        "speedup": {name: median["peer"] / seconds for name, seconds in median.items() if name != "peer"},
        "median_test_accuracy": accuracy,
        "fast_lowest_test_accuracy": min((run["test_accuracy"] for run in runs["fast"]), default=None),
        "digitlab_precision": runs["digitlab"][0]["precision"],
        "digitlab_train_seconds": train_seconds,
        "digitlab_gflops": achieved,
        "fraction_of_sgemm": achieved / gflops_machine,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")

    labels = {
        "peer": "tutorial (TensorFlow/Keras)",
        "digitlab": f"digitlab train --preset seed --epochs 2 ({summary['digitlab_precision']})",
        "digitlab-float32": "digitlab ... --precision float32",
        "fast": "digitlab train --preset fast",
    }
    table = Table(title=f"whole process, medians, interleaved ({args.repeats} rounds, {args.fast_seeds} fast seeds)")
    for column in ("program", "runs", "seconds", "vs peer", "test accuracy"):
        table.add_column(column, justify="right")
    for name in median:
        speedup = f"{median['peer'] / median[name]:.2f}x"
        table.add_row(labels[name], str(len(runs[name])), f"{median[name]:.1f}", speedup, f"{accuracy[name]:.4f}")
    console = Console()
    console.print(table)
    console.print(
        f"seed training loop {train_seconds:.1f} s = {achieved:.0f} GFLOP/s, {summary['fraction_of_sgemm']:.0%} of this "
        f"machine's float32 sgemm ({gflops_machine:.0f} GFLOP/s); fast recipe lowest accuracy "
        f"{summary['fast_lowest_test_accuracy']}; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    console.print(summary["machine"])


if __name__ == "__main__":
    main()
