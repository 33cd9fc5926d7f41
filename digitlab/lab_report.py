"""A sweep's results from its run folders: mean and std over seeds, the Pareto front, and the files that show them."""

from __future__ import annotations

import csv
import html
import json
import statistics
from pathlib import Path

MEASURES = ("val_accuracy", "test_accuracy", "train_seconds")
# Columns that do not depend on timing: equal for the same sweep run locally or on Ray.
DETERMINISTIC_COLUMNS = ("trial", "parameters", "multiply_adds", "seeds", "val_accuracy_mean", "test_accuracy_mean")


def summarize(sweep, jobs: list) -> list[dict]:
    """One row per trial with every finished seed: cost, and mean/std of the measures over seeds."""
    rows = []
    for trial in sweep.trials:
        runs = [
            json.loads((job.run_dir / "metrics.json").read_text())
            for job in jobs
            if job.trial.trial_id == trial.trial_id and job.done
        ]
        if not runs:
            continue
        row = {
            "trial": trial.name,
            "id": trial.trial_id,
            **{f"setting.{key}": _plain(value) for key, value in trial.settings.items()},
            "parameters": runs[0]["parameters"],
            "multiply_adds": runs[0]["multiply_adds"],
            "epochs": runs[0]["epochs"],
            "seeds": len(runs),
        }
        for measure in MEASURES:
            values = [run[measure] for run in runs]
            row[f"{measure}_mean"] = statistics.fmean(values)
            row[f"{measure}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["test_accuracy_median"] = statistics.median(run["test_accuracy"] for run in runs)
        rows.append(row)
    for cost in ("parameters", "train_seconds_mean"):
        front = pareto_front(rows, cost)
        for index, row in enumerate(rows):
            row[f"pareto_{cost.removesuffix('_mean')}"] = index in front
    return rows


def pareto_front(rows: list[dict], cost: str) -> set[int]:
    """Rows no other row beats on both validation accuracy (higher) and `cost` (lower): the test set never picks."""
    front = set()
    for index, row in enumerate(rows):
        dominated = any(
            other[cost] <= row[cost]
            and other["val_accuracy_mean"] >= row["val_accuracy_mean"]
            and (other[cost] < row[cost] or other["val_accuracy_mean"] > row["val_accuracy_mean"])
            for other in rows
        )
        if not dominated:
            front.add(index)
    return front


def write_reports(sweep, jobs: list, out: Path) -> dict:
    """results.json, results.csv, the two plots and report.html; returns what results.json holds."""
    rows = summarize(sweep, jobs)
    best = max(rows, key=lambda row: row["val_accuracy_mean"], default=None)
    results = {
        "sweep": sweep.name,
        "seeds": list(sweep.seeds),
        "selected_by": "val_accuracy_mean",
        "best": best["trial"] if best else None,
        "complete": all(job.done for job in jobs),
        "trials": rows,
    }
    _write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "results.csv.partial", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.csv.partial").replace(out / "results.csv")
    figures = []
    if rows:
        figures = [
            plot_front(rows, "parameters", "parameters", out / "accuracy_vs_parameters.png"),
            plot_front(rows, "train_seconds_mean", "training time (s)", out / "accuracy_vs_time.png"),
        ]
    _write_text(out / "report.html", render_html(results, figures))
    results["figures"] = [str(path) for path in figures]
    return results


def plot_front(rows: list[dict], cost: str, label: str, path: Path) -> Path:
    """Validation accuracy (mean +- std over seeds) against a cost on a log axis, the Pareto front joined."""
    from .plots import plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        axis.errorbar(row[cost], row["val_accuracy_mean"] * 100, yerr=row["val_accuracy_std"] * 100, fmt="o",
                      color="tab:blue", capsize=3)
        axis.annotate(row["trial"], (row[cost], row["val_accuracy_mean"] * 100), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
    front = sorted((rows[index] for index in pareto_front(rows, cost)), key=lambda row: row[cost])
    axis.plot([row[cost] for row in front], [row["val_accuracy_mean"] * 100 for row in front], "--",
              color="tab:red", label="Pareto front")
    axis.set_xscale("log")
    axis.set_xlabel(label)
    axis.set_ylabel("validation accuracy (%)")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def table_rows(rows: list[dict]) -> list[list[str]]:
    """The report's table as text cells, shared by the terminal table, the HTML page and EXERCISES.md."""
    return [
        [
            row["trial"] + (" *" if row["pareto_parameters"] else ""),
            f"{row['parameters']:,}",
            f"{row['multiply_adds']:,}",
            f"{row['train_seconds_mean']:.1f} ± {row['train_seconds_std']:.1f}",
            f"{row['val_accuracy_mean']:.2%} ± {row['val_accuracy_std']:.2%}",
            f"{row['test_accuracy_mean']:.2%} ± {row['test_accuracy_std']:.2%}",
            str(row["seeds"]),
        ]
        for row in rows
    ]


TABLE_HEADER = ["trial", "parameters", "multiply-adds", "train s", "validation", "test", "seeds"]


def render_html(results: dict, figures: list[Path]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in TABLE_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in table_rows(results["trials"])
    )
    images = "".join(f'<img src="{html.escape(path.name)}" alt="{html.escape(path.stem)}">' for path in figures)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(results['sweep'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%}</style></head><body>"
        f"<h1>Sweep {html.escape(results['sweep'])}</h1>"
        f"<p>Mean ± standard deviation over seeds {html.escape(str(results['seeds']))}. "
        f"Selected on validation accuracy: <b>{html.escape(str(results['best']))}</b>; "
        "the test column is reported, never used to choose. * marks the Pareto front of "
        "validation accuracy against parameters.</p>"
        f"<table><tr>{head}</tr>{body}</table>{images}</body></html>\n"
    )


def _plain(value):
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
