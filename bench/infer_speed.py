"""Inference speed of the tutorial's network: batch throughput and one image from file bytes to answer.

digitlab's Predictor (onnxruntime and PyTorch backends) in this process against Keras `model.predict`
(the tutorial's way) in its own environment, measured in the same run. Usage: .venv/bin/python bench/infer_speed.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from digitlab import Predictor
from digitlab.data import load_dataset
from digitlab.decode import decode_image
from digitlab.model import build_model, get_preset
from digitlab.modelfile import DigitModel
from digitlab.vision import prepare_digit

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402
from train_speed import peer_python  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed" / "3.png"
RESULTS = ROOT / "bench" / "results" / "infer_speed.json"


def p50_ms(call, repeats: int) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def digitlab_figures(repeats: int) -> dict:
    """The seed network with fresh weights (speed does not depend on them), through the public Predictor, with
    each backend; one image goes from PNG bytes to answer, batches are 10,000 digits already in MNIST form."""
    torch.manual_seed(0)
    spec = get_preset("seed")
    model = DigitModel(network=build_model(spec).eval(), spec=spec)
    png = EXAMPLE.read_bytes()
    digits = load_dataset("mnist", "test")[0]
    figures = {}
    for backend in ("onnxruntime", "torch"):
        predictor = Predictor(model, backend=backend)
        predictor.predict_proba_prepared(digits[:1000])
        batch = []
        for _ in range(3):
            started = time.perf_counter()
            predictor.predict_proba_prepared(digits)
            batch.append(time.perf_counter() - started)
        figures[backend] = {
            # What `digitlab predict` and the service run: decoding, finding the digit (or several), preparing,
            # classifying, rejecting, and the JSON-shaped answer.
            "answer_p50_ms": p50_ms(lambda: predictor.answer([("3.png", png)]), repeats),
            # Decoding, MNIST-style preparation and classification alone.
            "predict_p50_ms": p50_ms(lambda: predictor.predict([decode_image(png)]), repeats),
            "model_only_p50_ms": p50_ms(lambda: predictor.predict_proba_prepared(digits[:1]), repeats),
            "batch_images_per_s": len(digits) / statistics.median(batch),
        }
    started = time.perf_counter()
    for digit in digits[:2000]:
        prepare_digit(digit)
    figures["prepare_images_per_s_one_core"] = 2000 / (time.perf_counter() - started)
    figures["photo_12mp"] = photo_figures(max(5, repeats // 15))
    return figures


def photo_figures(repeats: int) -> dict:
    """A 12-megapixel phone photo (the example 3, enlarged, as JPEG bytes) to answer with the shipped model:
    decoded small for analysis, as `answer` does, against decoding it whole first, side by side."""
    buffer = io.BytesIO()
    Image.open(EXAMPLE).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    predictor = Predictor()
    return {
        "answer_p50_ms": p50_ms(lambda: predictor.answer([("photo.jpg", jpeg)]), repeats),
        "whole_decode_answer_p50_ms": p50_ms(lambda: predictor.answer([("photo.jpg", decode_image(jpeg))]), repeats),
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
    load_before = os.getloadavg()
    ours = digitlab_figures(args.repeats)
    fastest = ours["onnxruntime"]
    summary = {
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "keras": keras,
        "digitlab": ours,
        "answer_speedup": keras["single_p50_ms"] / fastest["answer_p50_ms"],
        "predict_speedup": keras["single_p50_ms"] / fastest["predict_p50_ms"],
        "batch_speedup": fastest["batch_images_per_s"] / keras["batch_images_per_s"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    table = Table(title="seed network inference: one PNG's bytes to answer (p50), and 10,000 prepared digits")
    for column in ("program", "answer (p50)", "predict (p50)", "model only (p50)", "batch images/s"):
        table.add_column(column, justify="right")
    table.add_row("Keras model.predict", f"{keras['single_p50_ms']:.2f} ms", "", "", f"{keras['batch_images_per_s']:,.0f}")
    for backend in ("onnxruntime", "torch"):
        row = ours[backend]
        table.add_row(
            f"digitlab Predictor ({backend})", f"{row['answer_p50_ms']:.2f} ms", f"{row['predict_p50_ms']:.2f} ms",
            f"{row['model_only_p50_ms']:.3f} ms", f"{row['batch_images_per_s']:,.0f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"against Keras: answer {summary['answer_speedup']:.0f}x, predict {summary['predict_speedup']:.0f}x, batch "
        f"{summary['batch_speedup']:.1f}x; preparing raw images: {ours['prepare_images_per_s_one_core']:,.0f}/s on one "
        f"core; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    photo = ours["photo_12mp"]
    console.print(
        f"a 12 MP JPEG photo to answer: {photo['answer_p50_ms']:.0f} ms decoded small for analysis, "
        f"{photo['whole_decode_answer_p50_ms']:.0f} ms decoded whole first (p50)"
    )
    console.print(summary["machine"])


if __name__ == "__main__":
    main()
