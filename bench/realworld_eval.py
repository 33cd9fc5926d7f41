"""Real-world evaluation: how a model reads printed, handwritten-font, photographed and multi-digit images,
how often it rejects things that are not digits, and how many MNIST test digits it still accepts.

Builds the sets in bench/realworld/data/ when they are missing (see bench/realworld/README.md), answers
every image through digitlab's Predictor, prints a table, writes bench/results/realworld.json and the
"Real-world digits" section of bench/RESULTS.md.
Usage: .venv/bin/python bench/realworld_eval.py [--model PATH] [--sets NAME ...] [--limit N] [--build] [--mistakes DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from rich.console import Console
from rich.table import Table

from digitlab import Predictor
from digitlab.data import load_dataset
from digitlab.errors import ImageError
from digitlab.decode import read_image

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402
from realworld.build_sets import DATA_DIR, NOT_A_DIGIT, SETS, build_set, find_sources, read_labels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "realworld.json"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
SECTION = "## Real-world digits"
SEED_EXAMPLES = ROOT / "examples" / "seed"
ALL_SETS = SETS + ("seed-examples", "mnist-test")
# The goals of issue 5 beside each set; ours stand in for the held-out sets of the same kind.
GOALS = {
    "printed": "accuracy >= 99%",
    "handwriting-fonts": "accuracy >= 99%",
    "photographed": "accuracy >= 95%",
    "multi-digit": "accuracy >= 95%",
    "not-digits": "rejected >= 95%",
    "scanned": "accuracy >= 97.5%",
    "on-a-desk": "accuracy >= 95% (photographs)",
    "postal-box": "accuracy >= 97.5% (scanned)",
    "seed-examples": "all 10 right",
    "mnist-test": "accepted >= 99%",
}
# Answered in chunks, so a set of large photographs never holds all its decoded images at once.
CHUNK = 64
SHEET_ITEMS = 40


def code_version() -> str:
    """The commit measured, marked dirty when the working tree differs from it (preprocessing often does)."""
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return described.stdout.strip() or "unknown"


def seed_examples() -> list[tuple[str, Path, str, str]]:
    """The tutorial's ten images: 1.png .. 9.png are their digits, the dog is not a digit."""
    return [(path.name, path, NOT_A_DIGIT if path.stem == "dog" else path.stem, "tutorial")
            for path in sorted(SEED_EXAMPLES.glob("*.png"))]


def mnist_test_items() -> list[tuple[str, np.ndarray, str, str]]:
    """All 10,000 MNIST test digits as arrays, the form they have in the data set (light ink on black)."""
    images, labels = load_dataset("mnist", "test")
    return [(f"mnist-test/{index:05d}", image, str(label), "mnist") for index, (image, label)
            in enumerate(zip(images, labels))]


def set_items(name: str, data_dir: Path) -> list[tuple[str, Path, str, str]]:
    if name == "seed-examples":
        return seed_examples()
    if name == "mnist-test":
        return mnist_test_items()
    return [(str(path.relative_to(data_dir)), path, label, kind) for path, label, kind in read_labels(data_dir / name)]


def read_as(answer: dict) -> str | None:
    """What the model read: the whole `number` when it gives one, else its single digit, None when rejected.
    The same rule for every set: an image of one digit read as several is wrong, and a not-digit read as a
    number is accepted, whatever the whole-image `digit` says."""
    if answer.get("number") is not None:
        return str(answer["number"])
    return None if answer.get("digit") is None else str(answer["digit"])


def score(items: list, answers: list[dict]) -> dict:
    """Accuracy (a not-digit is right when rejected), rejection, accuracy on accepted digits, per kind."""
    reads = [read_as(answer) for answer in answers]
    labels = [label for _, _, label, _ in items]
    right = [read == (None if label == NOT_A_DIGIT else label) for read, label in zip(reads, labels)]
    rejected = [read is None for read in reads]
    accepted_digits = [ok for ok, label, no in zip(right, labels, rejected) if label != NOT_A_DIGIT and not no]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for (_, _, _, kind), ok in zip(items, right):
        by_kind[kind.split(":")[0]].append(ok)
    return {
        "images": len(items),
        "accuracy": float(np.mean(right)) if right else None,
        "rejected": float(np.mean(rejected)) if rejected else None,
        "accepted_accuracy": float(np.mean(accepted_digits)) if accepted_digits else None,
        "unreadable": sum(answer.get("error") is not None for answer in answers),
        "by_kind": {
            kind: {"images": len(oks), "accuracy": float(np.mean(oks))} for kind, oks in sorted(by_kind.items())
        },
    }


def answer_all(predictor: Predictor, items: list, with_prepared: bool) -> list[dict]:
    answers = []
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        answers += predictor.answer([(name, source) for name, source, _, _ in chunk], include_prepared=with_prepared)
    return answers


def mistakes_sheet(name: str, items: list, answers: list[dict], out: Path) -> Path | None:
    """A contact sheet of the set's worst mistakes, most confident first: the image as given, the 28x28 the
    model saw (when the answer carries it), and label -> answer with confidence and kind."""
    wrong = [(answer.get("confidence") or 0.0, item, answer) for item, answer in zip(items, answers)
             if read_as(answer) != (None if item[2] == NOT_A_DIGIT else item[2])]
    if not wrong:
        return None
    wrong.sort(key=lambda entry: -entry[0])
    cell, columns = 120, 8
    rows = (min(len(wrong), SHEET_ITEMS) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * 2 * cell, rows * (cell + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    for position, (confidence, (_, source, label, kind), answer) in enumerate(wrong[:SHEET_ITEMS]):
        x, y = (position % columns) * 2 * cell, (position // columns) * (cell + 28)
        try:
            picture = Image.fromarray(source if isinstance(source, np.ndarray) else read_image(source))
        except ImageError:  # an unreadable file still gets its caption
            picture = Image.new("L", (cell, cell), 128)
        sheet.paste(ImageOps.contain(picture, (cell - 4, cell - 4)).convert("RGB"), (x + 2, y + 2))
        if answer.get("prepared") is not None:
            prepared = Image.fromarray(np.asarray(answer["prepared"], dtype=np.uint8))
            enlarged = prepared.resize((cell - 4, cell - 4), Image.Resampling.NEAREST)
            sheet.paste(enlarged.convert("RGB"), (x + cell + 2, y + 2))
        read = read_as(answer)
        caption = f"{label} -> {'rejected' if read is None else read} {confidence:.2f}"
        draw.text((x + 2, y + cell), caption, fill=(200, 0, 0))
        draw.text((x + 2, y + cell + 13), kind[:36], fill=(60, 60, 60))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    sheet.save(path)
    return path


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def results_section(summary: dict) -> str:
    """The markdown section of bench/RESULTS.md, written from the JSON summary."""
    lines = [
        SECTION, "",
        f"`.venv/bin/python bench/realworld_eval.py` ({summary['date']}, model `{summary['model']}`, code "
        f"`{summary['code']}`; the sets are "
        "described in `bench/realworld/README.md`). An image is read as the answer's `number` when it gives one, "
        "else as its `digit`: one digit read as several is wrong, a not-digit read as a number is accepted. "
        "Accuracy counts a rejection as wrong for digits and as right for not-digits; accepted accuracy is over "
        "the digits the model did not reject. Answering took "
        f"{sum(f['answer_seconds'] for f in summary['sets'].values()) / 60:.0f} minutes on "
        f"{summary['machine']['cores']} shared cores.", "",
        "| set | images | accuracy | rejected | accepted accuracy | goal (issue 5) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in summary["sets"].items():
        lines.append(f"| {name} | {figures['images']:,} | {percent(figures['accuracy'])} | "
                     f"{percent(figures['rejected'])} | {percent(figures['accepted_accuracy'])} | {GOALS[name]} |")
    lines += ["", "Weakest kinds (at least 10 images) per set:", ""]
    for name, figures in summary["sets"].items():
        kinds = [(kind, f) for kind, f in figures["by_kind"].items() if f["images"] >= 10]
        kinds.sort(key=lambda entry: entry[1]["accuracy"])
        if len(kinds) > 1:
            listed = ", ".join(f"{kind} {percent(f['accuracy'])}" for kind, f in kinds[:4])
            lines.append(f"- {name}: {listed}")
    return "\n".join(lines) + "\n"


def update_results_md(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it), leaving every other section as it is."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    RESULTS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--sets", nargs="+", choices=ALL_SETS, default=list(ALL_SETS), metavar="NAME",
                        help=f"sets to answer, of: {', '.join(ALL_SETS)}")
    parser.add_argument("--build", action="store_true", help="rebuild the generated sets even if present")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the generated sets live")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="answer only the first N images of each set (a quick look; the record is left as it is)")
    parser.add_argument("--mistakes", type=Path, metavar="DIR",
                        help="write a contact sheet of each set's worst mistakes into DIR")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    console = Console()

    generated = [name for name in args.sets if name in SETS]
    to_build = [name for name in generated if args.build or not (args.data_dir / name / "labels.csv").is_file()]
    if to_build:
        sources = find_sources()
        for name in to_build:
            started = time.perf_counter()
            build_set(name, args.data_dir, sources)
            console.print(f"built {name} in {time.perf_counter() - started:.1f} s")

    predictor = Predictor(args.model)
    summary = {
        "date": datetime.date.today().isoformat(),
        "model": args.model or "shipped default",
        "code": code_version(),
        "machine": machine_info(),
        "sets": {},
    }
    for name in args.sets:
        items = set_items(name, args.data_dir)[: args.limit]
        started = time.perf_counter()
        answers = answer_all(predictor, items, with_prepared=args.mistakes is not None)
        figures = score(items, answers)
        figures["answer_seconds"] = time.perf_counter() - started
        summary["sets"][name] = figures
        if args.mistakes is not None and (sheet := mistakes_sheet(name, items, answers, args.mistakes)):
            console.print(f"mistakes of {name}: {sheet}")

    table = Table(title=f"real-world digits, model: {summary['model']}")
    for column in ("set", "images", "accuracy", "rejected", "accepted accuracy", "unreadable", "goal"):
        table.add_column(column, justify="left" if column in ("set", "goal") else "right")
    for name, figures in summary["sets"].items():
        table.add_row(name, f"{figures['images']:,}", percent(figures["accuracy"]), percent(figures["rejected"]),
                      percent(figures["accepted_accuracy"]), str(figures["unreadable"]), GOALS[name])
    console.print(table)
    # Only a run over every set, of the sets as built by default, stands for the model in the record.
    if set(args.sets) != set(ALL_SETS) or args.data_dir != DATA_DIR or args.limit is not None:
        console.print("a partial run: bench/results and bench/RESULTS.md are left as they were")
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    update_results_md(results_section(summary))
    console.print(f"wrote {RESULTS.relative_to(ROOT)} and the '{SECTION[3:]}' section of "
                  f"{RESULTS_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
