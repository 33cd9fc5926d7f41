"""The `digitlab` command: parses arguments, calls the Python API, prints tables or JSON. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import DigitlabError, TrainingInterrupted, UsageError

app = typer.Typer(
    name="digitlab",
    help="Train, evaluate and use convolutional networks that read handwritten digits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console()

ModelOption = Annotated[
    Optional[Path], typer.Option("--model", "-m", help="Model file (.safetensors); default: the shipped model.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
DataDirOption = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Data cache folder (default: DIGITLAB_DATA_DIR or the user cache).")
]


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="Architecture preset (see `digitlab presets`).")] = "seed",
    recipe: Annotated[Optional[str], typer.Option(help="Training recipe; default: the preset's own.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs; default: the recipe's.")] = None,
    train_limit: Annotated[
        Optional[int], typer.Option(help="Train on only the first N examples (quick trials).")
    ] = None,
    dataset: Annotated[Optional[str], typer.Option(help="mnist or fashion-mnist; default: the recipe's.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder; default: runs/PRESET.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for initialisation, shuffling and augmentation.")] = 0,
    deterministic: Annotated[bool, typer.Option(help="Use only deterministic algorithms (bit-exact resume).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="float32, or bfloat16 mixed precision (faster on CPUs with AVX-512 BF16 or AMX).")
    ] = "float32",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished or interrupted run in --out.")] = False,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a network on MNIST and write a run folder (model, metrics, history, plot, checkpoint)."""
    from .train import train as run_training

    result = run_training(
        preset,
        recipe=recipe,
        epochs=epochs,
        train_limit=train_limit,
        dataset=dataset,
        out=out or Path("runs") / preset,
        seed=seed,
        deterministic=deterministic,
        device=device,
        precision=precision,
        resume=resume,
        overwrite=overwrite,
        data_dir=data_dir,
        show_progress=not as_json,
    )
    if as_json:
        print(json.dumps({**result.metrics, "run_dir": str(result.run_dir)}, indent=2))
        return
    table = Table(title=f"{preset} trained in {result.metrics['train_seconds']:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("test_accuracy", "val_accuracy", "epochs", "parameters", "train_seconds"):
        value = result.metrics[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    stdout.print(table)
    stdout.print(f"run folder: {result.run_dir}")


@app.command()
def evaluate(
    model: Annotated[Optional[Path], typer.Argument(help="Model file; default: the shipped model.")] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="mnist, fashion-mnist, or a folder root/<label>/*; default: the model's.")
    ] = None,
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    out: Annotated[Path, typer.Option(help="Folder for confusion.png and mistakes.png.")] = Path("evaluation"),
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model: accuracy, per-class precision and recall, confusion matrix and worst mistakes."""
    from .evaluate import evaluate as run_evaluation

    report = run_evaluation(model, dataset=dataset, split=split, out=out, data_dir=data_dir)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{report['dataset']} {report['split']}: accuracy {report['accuracy']:.2%} "
                  f"({report['errors']} wrong of {report['examples']})")
    for column in ("class", "precision", "recall", "support"):
        table.add_column(column, justify="right")
    for row in report["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    stdout.print(table)
    stdout.print(f"figures: {', '.join(report['figures'])}")


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read the digit in each image; files that cannot be read are reported and the rest still answered."""
    from .predict import predict as run_prediction

    answers = run_prediction(paths, model)
    if as_json:
        print(json.dumps(answers, indent=2))
    else:
        table = Table()
        for column in ("file", "digit", "confidence", "runner-up"):
            table.add_column(column, justify="left" if column == "file" else "right")
        for answer in answers:
            if answer["error"]:
                table.add_row(answer["path"], "[red]error[/red]", "", answer["error"])
            else:
                table.add_row(
                    answer["path"],
                    answer["label"],
                    f"{answer['confidence']:.1%}",
                    f"{answer['runner_up']} ({answer['runner_up_confidence']:.1%})",
                )
        stdout.print(table)
    failed = sum(1 for answer in answers if answer["error"])
    if failed:
        print(f"digitlab: {failed} of {len(answers)} files could not be read", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def export(
    model: Annotated[Optional[Path], typer.Argument(help="Model file; default: the shipped model.")] = None,
    export_format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[Path, typer.Option(help="File to write.")] = Path("model.onnx"),
    check: Annotated[bool, typer.Option(help="Compare with PyTorch on the MNIST test set.")] = True,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export a model for runtimes without PyTorch (ONNX), checked against PyTorch on MNIST test digits."""
    from .data import load_dataset
    from .export import FORMATS, export_onnx

    if export_format not in FORMATS:
        raise UsageError(f"unknown export format {export_format!r}; choose {', '.join(FORMATS)}")
    digits = load_dataset("mnist", "test", data_dir)[0] if check else None
    report = export_onnx(model, out, check_digits=digits)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        checked = (
            f", largest logit difference from PyTorch {report['max_logit_difference']:.1e} "
            f"over {report['checked_digits']:,} digits" if check else ""
        )
        stdout.print(f"wrote {report['path']} ({report['bytes']:,} bytes){checked}")


@app.command()
def presets() -> None:
    """List the architecture presets and training recipes."""
    from .model import PRESETS, build_model, count_parameters, multiply_adds
    from .train import RECIPES

    table = Table(title="architecture presets")
    for column in ("preset", "parameters", "multiply-adds", "spec"):
        table.add_column(column)
    for name, spec in PRESETS.items():
        table.add_row(name, f"{count_parameters(build_model(spec)):,}", f"{multiply_adds(spec):,}", str(spec))
    stdout.print(table)
    recipes = Table(title="training recipes")
    recipes.add_column("recipe")
    recipes.add_column("settings")
    for name, recipe in RECIPES.items():
        recipes.add_row(name, str(recipe))
    stdout.print(recipes)


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        status = app(standalone_mode=False)
    except typer.Abort:
        print("digitlab: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as error:
        print(f"digitlab: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except TrainingInterrupted as error:
        print(f"digitlab: {error}", file=sys.stderr)
        sys.exit(130)
    except DigitlabError as error:
        print(f"digitlab: {error}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
