"""Inference speed of the tutorial's network: batch throughput and one image from file bytes to answer.

digitlab's Predictor in this process against Keras `model.predict` (the tutorial's way) in its own
environment, measured in the same run. Usage: .venv/bin/python bench/infer_speed.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from digitlab import Predictor
from digitlab.data import load_dataset
from digitlab.model import build_model, get_preset
from digitlab.modelfile import DigitModel
from digitlab.vision import decode_image, prepare_digit

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402
from train_speed import peer_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed" / "3.png"
RESULTS = ROOT / "bench" / "results" / "infer_speed.json"


def digitlab_figures(repeats: int) -> dict:
    """The seed network with fresh weights (speed does not depend on them), through the public Predictor."""
    torch.manual_seed(0)
    spec = get_preset("seed")
    predictor = Predictor(DigitModel(network=build_model(spec).eval(), spec=spec))
    png = EXAMPLE.read_bytes()

    def answer_one() -> int:
        return int(predictor.predict([decode_image(png)])[0])  # predict prepares it, as for any image

    for _ in range(20):
        answer_one()
    single = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer_one()
        single.append(time.perf_counter() - started)
    digits = load_dataset("mnist", "test")[0]
    predictor.predict_proba_prepared(digits[:1000])
    batch = []
    for _ in range(3):
        started = time.perf_counter()
        predictor.predict_proba_prepared(digits)
        batch.append(time.perf_counter() - started)
    started = time.perf_counter()
    for digit in digits[:2000]:
        prepare_digit(digit)
    preparing = 2000 / (time.perf_counter() - started)
    return {
        "single_p50_ms": statistics.median(single) * 1000,
        "batch_images_per_s": len(digits) / statistics.median(batch),
        "prepare_images_per_s_one_core": preparing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    peer = subprocess.run(
        [str(peer_python()), str(ROOT / "bench" / "peer" / "keras_predict.py"), str(EXAMPLE), str(args.repeats)],
        capture_output=True, text=True, check=True,
    )
    keras = json.loads(peer.stdout[peer.stdout.index("{") :])
    ours = digitlab_figures(args.repeats)
    summary = {
        "machine": machine_info(),
        "keras": keras,
        "digitlab": ours,
        "single_speedup": keras["single_p50_ms"] / ours["single_p50_ms"],
        "batch_speedup": ours["batch_images_per_s"] / keras["batch_images_per_s"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    table = Table(title="seed network inference (single: PNG bytes to answer, p50; batch: 10,000 prepared digits)")
    for column in ("program", "single image p50", "batch images/s"):
        table.add_column(column, justify="right")
    table.add_row("Keras model.predict", f"{keras['single_p50_ms']:.2f} ms", f"{keras['batch_images_per_s']:,.0f}")
    table.add_row("digitlab Predictor", f"{ours['single_p50_ms']:.2f} ms", f"{ours['batch_images_per_s']:,.0f}")
    console = Console()
    console.print(table)
    console.print(f"single {summary['single_speedup']:.1f}x, batch {summary['batch_speedup']:.1f}x faster than Keras; "
                  f"preparing raw images: {ours['prepare_images_per_s_one_core']:,.0f}/s on one core")
    console.print(summary["machine"])


if __name__ == "__main__":
    main()
