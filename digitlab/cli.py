"""The `digitlab` command: parses arguments, calls the Python API, prints tables or JSON. No logic lives here."""

from __future__ import annotations

import gc
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
    preset: Annotated[
        str, typer.Option(help="Architecture preset (see `digitlab presets`) or a spec .toml file.")
    ] = "seed",
    recipe: Annotated[
        Optional[str], typer.Option(help="Training recipe or a recipe .toml file; default: the preset's own.")
    ] = None,
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
        str, typer.Option(help="auto (bfloat16 mixed precision on CPUs with AVX-512 BF16 or AMX, else float32), "
                          "float32 or bfloat16.")
    ] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished or interrupted run in --out.")] = False,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a network on MNIST and write a run folder (model, metrics, history, plot, checkpoint)."""
    from .specfile import load_recipe, load_spec
    from .train import train as run_training

    result = run_training(
        preset,
        spec=load_spec(preset),
        recipe=load_recipe(recipe) if recipe else None,
        epochs=epochs,
        train_limit=train_limit,
        dataset=dataset,
        out=out or Path("runs") / Path(preset).stem,
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
    out: Annotated[
        Path, typer.Option(help="Folder for confusion.png, mistakes.png and reliability.png.")
    ] = Path("evaluation"),
    outliers: Annotated[
        Optional[list[str]], typer.Option("--outliers", help="A data set of non-digits (e.g. fashion-mnist) whose "
                                          "rejection rate to report; repeatable.")
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model: accuracy, calibration error, rejection rates, per-class precision and recall, and figures."""
    from .evaluate import evaluate as run_evaluation

    report = run_evaluation(model, dataset=dataset, split=split, out=out, data_dir=data_dir, outliers=outliers or ())
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
    stdout.print(
        f"calibration error (15 bins): {report['ece']:.2%} at temperature {report['temperature']:.3f} "
        f"({report['ece_uncalibrated']:.2%} raw); digits accepted: {report['accepted']:.2%}, "
        f"accuracy on them {report['accepted_accuracy']:.2%}"
    )
    for name, share in report["outliers_rejected"].items():
        stdout.print(f"{name} rejected as not a digit: {share:.2%}")
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
            elif answer["digit"] is None:
                table.add_row(answer["path"], "[yellow]none[/yellow]", f"{answer['confidence']:.1%}", answer["reason"])
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
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="TCP port (default 8000).")] = None,
    model: ModelOption = None,
    max_upload_bytes: Annotated[
        Optional[int], typer.Option(help="Largest request body; larger ones get 413 (default 8 MiB).")
    ] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Most images in one request (default 64).")] = None,
    batch_window_ms: Annotated[
        Optional[float], typer.Option(help="How long a model call waits to gather requests (default 2).")
    ] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Most images in one model call (default 128).")] = None,
    queue_size: Annotated[
        Optional[int], typer.Option(help="Requests waiting for the model before 503s (default 512).")
    ] = None,
    timeout: Annotated[
        Optional[float], typer.Option(help="Seconds to receive a request, and to wait for its answer (default 10).")
    ] = None,
    max_connections: Annotated[Optional[int], typer.Option(help="Open connections before 503s (default 1024).")] = None,
    workers: Annotated[
        Optional[int], typer.Option(help="Server processes, each with its own model (default 1).")
    ] = None,
    torch_threads: Annotated[Optional[int], typer.Option(help="Torch threads per process (default 1).")] = None,
    requests_per_connection: Annotated[
        Optional[int], typer.Option(help="Requests a keep-alive connection carries before it is closed (default 25).")
    ] = None,
) -> None:
    """Serve the model over HTTP (REST API under /v1, docs at /docs) with a draw-a-digit page at /."""
    try:
        from .serve import ServeSettings, serve as run_service
    except ModuleNotFoundError as error:
        raise UsageError(f"serving needs {error.name}; install it with: pip install 'digitlab[serve]'") from None

    given = dict(
        host=host, port=port, model=model, max_upload_bytes=max_upload_bytes, max_images=max_images,
        batch_window_ms=batch_window_ms, max_batch=max_batch, queue_size=queue_size, timeout_s=timeout,
        max_connections=max_connections, workers=workers, torch_threads=torch_threads,
        requests_per_connection=requests_per_connection,
    )
    run_service(ServeSettings(**{name: value for name, value in given.items() if value is not None}))


@app.command()
def presets(
    toml: Annotated[
        Optional[str], typer.Option("--toml", help="Print this preset's [spec] and recipe's [recipe] as TOML.")
    ] = None,
) -> None:
    """List the architecture presets and training recipes, or print one as a TOML file to edit."""
    from .model import PRESETS, build_model, count_parameters, multiply_adds
    from .train import RECIPES

    if toml is not None:
        from .specfile import to_toml

        if toml not in PRESETS and toml not in RECIPES:
            raise UsageError(f"unknown preset or recipe {toml!r}; choose one of: {', '.join({**PRESETS, **RECIPES})}")
        tables = [to_toml("spec", PRESETS[toml])] if toml in PRESETS else []
        tables += [to_toml("recipe", RECIPES[toml])] if toml in RECIPES else []
        print("\n".join(tables), end="")
        return
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


@app.command()
def lab(
    sweep: Annotated[str, typer.Argument(help="A sweep .toml file, or a built-in sweep: exercises, best, ...")],
    out: Annotated[Optional[Path], typer.Option(help="Sweep folder; default: runs/lab/SWEEP. Rerun to resume.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds instead of the sweep's.")] = None,
    parallel: Annotated[
        Optional[int], typer.Option(help="Trials at once; default: the sweep's, else one per core.")
    ] = None,
    ray: Annotated[
        bool, typer.Option("--ray", help="Run the trials on Ray Tune (pip install 'digitlab[ray]').")
    ] = False,
    ray_address: Annotated[
        Optional[str], typer.Option(help="With --ray: an existing cluster's address; default: a local Ray instance.")
    ] = None,
    ensemble: Annotated[
        Optional[Path],
        typer.Option(
            help="Then average the selected trial's seed models (every trial's, where the sweep sets "
            'ensemble = "all") into this model file.'
        ),
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sweep architectures and recipes over seeds; report cost beside accuracy (table, CSV/JSON, HTML, plots)."""
    from .lab import ensemble_members, load_sweep, run_sweep
    from .lab_report import TABLE_HEADER, table_rows

    chosen = load_sweep(sweep, tuple(int(seed) for seed in seeds.split(",")) if seeds else None)
    folder = out or Path("runs") / "lab" / Path(sweep).stem
    results = run_sweep(
        chosen,
        folder,
        parallel=parallel,
        use_ray=ray or ray_address is not None,
        ray_address=ray_address,
        data_dir=data_dir,
        show_progress=not as_json,
    )
    if ensemble is not None:
        from .ensemble import build_ensemble_file

        results["ensemble"] = build_ensemble_file(ensemble_members(chosen, folder, results), ensemble, data_dir=data_dir)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title=f"sweep {results['sweep']}: mean ± std over seeds {results['seeds']} (* Pareto front)")
    for column in TABLE_HEADER:
        table.add_column(column, justify="left" if column == "trial" else "right")
    for cells in table_rows(results["trials"]):
        table.add_row(*cells)
    stdout.print(table)
    stdout.print(f"selected on validation accuracy: {results['best']}; report: {folder / 'report.html'}")
    if ensemble is not None:
        stdout.print(f"ensemble {ensemble}: test accuracy {results['ensemble']['test_accuracy']:.2%}")


@app.command(name="ensemble")
def ensemble_command(
    models: Annotated[list[Path], typer.Argument(help="Two or more model files to average.")],
    out: Annotated[Path, typer.Option(help="Ensemble model file to write.")] = Path("ensemble.safetensors"),
    check: Annotated[bool, typer.Option(help="Score each member and the ensemble on the test split.")] = True,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Average several models' probabilities into one model file, usable wherever a model is."""
    from .ensemble import build_ensemble_file

    report = build_ensemble_file(models, out, check=check, data_dir=data_dir)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    summary = f"wrote {report['path']}: {report['members']} members, {report['parameters']:,} parameters"
    if check:
        members = ", ".join(f"{accuracy:.2%}" for accuracy in report["member_test_accuracy"])
        summary += f"; test accuracy {report['test_accuracy']:.2%} (members {members})"
    stdout.print(summary)


@app.command()
def preprocess(
    image: Annotated[Path, typer.Argument(help="Image file in any format Pillow reads.")],
    show: Annotated[
        Optional[Path], typer.Option("--show", help="Write a PNG of every preprocessing stage to this file.")
    ] = None,
) -> None:
    """Show what the model sees: the 28x28 digit as text, and with --show a PNG of every stage that made it."""
    from .decode import read_for_analysis
    from .vision import preprocess_stages, stages_image

    if show is not None and (show.is_dir() or not show.parent.is_dir()):
        raise UsageError(f"--show {show}: give a PNG file name in an existing folder, such as stages.png")
    # Decoded as answers decode it (a big JPEG straight to a smaller size), so the stages are what the model saw.
    stages = preprocess_stages(read_for_analysis(image)[0])
    digit = stages[-1][1]
    shades = " .:-=+*#%@"
    for row in digit:
        print("".join(shades[int(value) * len(shades) // 256] * 2 for value in row))
    if show is not None:
        # Always PNG, as the help says, whatever the name's suffix (Pillow would guess the format from it).
        try:
            stages_image(stages).save(show, format="PNG")
        except OSError as error:
            raise UsageError(f"--show {show}: cannot write it ({error.strerror or error})") from error
        stdout.print(f"wrote {show} ({', '.join(title for title, _ in stages)})")


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
    finally:
        # The work is done: spare the interpreter's shutdown its collections over torch's hundreds of
        # thousands of objects, 0.3-0.5 s of every command (atexit handlers and flushes still run).
        gc.freeze()
    sys.exit(status if isinstance(status, int) else 0)
