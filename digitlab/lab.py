"""Sweeps over architectures and recipes, each trial repeated over seeds, run in local processes or on Ray Tune.

A sweep folder holds one run folder per trial and seed (`trials/<trial-id>/seed-<n>/`, written by the
ordinary training loop) and the reports built from them. A run folder with metrics.json is finished, so
a killed sweep restarted on the same folder only runs what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from multiprocessing import get_context
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from .errors import UsageError
from .model import ModelSpec, multiply_adds
from .specfile import load_recipe, load_spec, parse_recipe, parse_spec, read_toml
from .train import Recipe

SWEEP_KEYS = {"name", "seeds", "search", "samples", "random_seed", "deterministic", "parallel", "ensemble", "order"}
# What `digitlab lab --ensemble` averages: the selected trial's model of each seed, or every trial's models
# (members built differently, which miss different digits).
ENSEMBLE_MEMBERS = ("selected", "all")
# The order trials start in: costliest first (multiply-adds times epochs), so a sweep does not end with one long
# trial running alone, or as the file lists them, for a sweep whose author knows better (one whose last trial
# should be the one that gains most from the cores the others leave).
TRIAL_ORDERS = ("costliest", "listed")
# How often a trial process looks whether the sweep that started it is still there.
PARENT_CHECK_S = 1.0
POINT_KEYS = {"name", "preset", "recipe", "spec", "recipe_settings"}


@dataclass(frozen=True)
class Trial:
    """One architecture and recipe; `settings` are the values the sweep chose, shown as report columns."""

    trial_id: str
    name: str
    spec: ModelSpec
    recipe: Recipe
    settings: dict


@dataclass(frozen=True)
class Sweep:
    name: str
    trials: tuple[Trial, ...]
    seeds: tuple[int, ...]
    deterministic: bool = False
    # Trials at once; None: one per core. A sweep of big models sets 1 so each trains on every core.
    parallel: int | None = None
    ensemble: str = "selected"
    order: str = "costliest"


@dataclass(frozen=True)
class Job:
    """One trial trained with one seed into its own run folder."""

    trial: Trial
    seed: int
    run_dir: Path
    deterministic: bool
    threads: int
    data_dir: str | None

    @property
    def done(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


def builtin_sweeps() -> dict[str, Path]:
    folder = resources.files("digitlab") / "sweeps"
    return {Path(str(entry)).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".toml")}


def load_sweep(name_or_path: str | os.PathLike, seeds: tuple[int, ...] | None = None) -> Sweep:
    """A built-in sweep by name, or a sweep TOML file: [sweep] settings, [base], [[trials]] and a [space]."""
    path = Path(name_or_path)
    if not path.suffix:
        known = builtin_sweeps()
        if str(name_or_path) not in known:
            raise UsageError(f"unknown sweep {name_or_path!r}; give a .toml file or one of: {', '.join(sorted(known))}")
        path = known[str(name_or_path)]
    values = read_toml(path)
    unknown = sorted(set(values) - {"sweep", "base", "trials", "space"})
    if unknown:
        raise UsageError(f"{path}: unknown tables {unknown}; a sweep has [sweep], [base], [[trials]] and [space]")
    settings = values.get("sweep", {})
    _check_keys(path, "[sweep]", settings, SWEEP_KEYS)
    base = values.get("base", {})
    _check_keys(path, "[base]", base, POINT_KEYS - {"name"})
    points = values.get("trials") or [{}]
    for point in points:
        _check_keys(path, "[[trials]]", point, POINT_KEYS)
    combos = _space_combinations(path, values.get("space", {}), settings)
    trials, seen = [], set()
    for point, combo in itertools.product(points, combos):
        trial = _make_trial(path, base, point, combo)
        if trial.trial_id not in seen:
            seen.add(trial.trial_id)
            trials.append(trial)
    if not trials:
        raise UsageError(f"{path}: the sweep has no trials; give [[trials]], a [space], or samples >= 1")
    sweep_seeds = tuple(seeds if seeds is not None else settings.get("seeds", [0]))
    if not sweep_seeds:
        raise UsageError(f"{path}: seeds is empty; give at least one seed")
    return Sweep(
        name=settings.get("name", path.stem),
        trials=tuple(trials),
        seeds=sweep_seeds,
        deterministic=bool(settings.get("deterministic", False)),
        parallel=settings.get("parallel"),
        ensemble=_one_of(path, settings, "ensemble", ENSEMBLE_MEMBERS),
        order=_one_of(path, settings, "order", TRIAL_ORDERS),
    )


def _one_of(path: Path, settings: dict, key: str, choices: tuple[str, ...]) -> str:
    """The [sweep] setting `key`, which must be one of `choices` (the first when the file leaves it out)."""
    value = settings.get(key, choices[0])
    if value not in choices:
        raise UsageError(f"{path}: {key} must be {' or '.join(choices)}, got {value!r}")
    return value


def _check_keys(path: Path, table: str, values: dict, known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{path}: unknown keys {unknown} in {table}; known: {', '.join(sorted(known))}")


def _space_combinations(path: Path, space: dict, settings: dict) -> list[dict]:
    """Grid: every combination of the listed values. Random: `samples` draws, one value per key each."""
    for key, choices in space.items():
        kind, _, field_name = key.partition(".")
        if not (key in ("preset", "recipe") or (kind in ("spec", "recipe") and field_name)):
            raise UsageError(f"{path}: [space] key {key!r} must be preset, recipe, spec.FIELD or recipe.FIELD")
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{path}: [space] {key} must be a non-empty list of values")
    keys = list(space)
    search = settings.get("search", "grid")
    if search == "grid":
        return [dict(zip(keys, values)) for values in itertools.product(*(space[key] for key in keys))]
    if search == "random":
        generator = random.Random(settings.get("random_seed", 0))
        return [{key: generator.choice(space[key]) for key in keys} for _ in range(settings.get("samples", 8))]
    raise UsageError(f"{path}: search must be grid or random, got {search!r}")


def _make_trial(path: Path, base: dict, point: dict, combo: dict) -> Trial:
    """Resolve base <- explicit trial <- space values into a spec and a recipe, validated."""
    preset = combo.get("preset", point.get("preset", base.get("preset", "seed")))
    recipe_name = combo.get("recipe", point.get("recipe", base.get("recipe", preset)))
    spec = load_spec(_beside(path, preset))
    spec_values = {**spec.to_dict(), **base.get("spec", {}), **point.get("spec", {})}
    recipe = load_recipe(_beside(path, recipe_name))
    recipe_values = {
        **dataclasses.asdict(recipe), **base.get("recipe_settings", {}), **point.get("recipe_settings", {})
    }
    for key, value in combo.items():
        kind, _, field_name = key.partition(".")
        if field_name:
            (spec_values if kind == "spec" else recipe_values)[field_name] = value
    # Selection must never see the test set: every trial validates on a holdout carved from training data.
    recipe_values["validation"] = "holdout"
    spec = parse_spec(spec_values, f"{path} (trial {point.get('name', preset)})")
    recipe = parse_recipe(recipe_values, f"{path} (trial {point.get('name', preset)})")
    resolved = json.dumps({"spec": spec.to_dict(), "recipe": dataclasses.asdict(recipe)}, sort_keys=True)
    name = point.get("name") or "-".join([preset] + [f"{key.split('.')[-1]}={_short(v)}" for key, v in combo.items()])
    # The id names the resolved settings, so an edited sweep never mistakes an old run for a new trial.
    trial_id = f"{_slug(name)}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"
    settings = {"preset": preset, "recipe": str(recipe_name), **combo}
    return Trial(trial_id=trial_id, name=name, spec=spec, recipe=recipe, settings=settings)


def _beside(sweep_path: Path, name: str) -> str | Path:
    """A preset or recipe name as is; a .toml file named in a sweep is found beside the sweep file."""
    return sweep_path.parent / name if str(name).endswith(".toml") else name


def _short(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def _slug(text: str) -> str:
    return "".join(char if char.isalnum() or char in "-_.=" else "_" for char in text)[:60]


def plan_jobs(sweep: Sweep, out: Path, parallel: int, data_dir: str | None = None) -> list[Job]:
    threads = max(1, available_cores() // parallel)
    return [
        Job(trial, seed, out / "trials" / trial.trial_id / f"seed-{seed}", sweep.deterministic, threads, data_dir)
        for trial in sweep.trials
        for seed in sweep.seeds
    ]


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# In a local sweep's trial process: how many trials run side by side, shared with the sweep (`_trial_process`).
_running_trials: Synchronized | None = None


def run_job(job: Job) -> dict:
    """Train one trial and seed in this process: resume a half-finished run, start a missing one afresh.
    In a local sweep, each epoch takes the cores the trials running beside it leave: a trial left alone at the
    end of a sweep trains on all of them (a default-preset trial 1.75x faster on both cores than on one). A
    deterministic sweep keeps its planned threads, since the thread count changes the order of the sums and
    which trial ends first is chance."""
    import torch

    from .train import train

    torch.set_num_threads(job.threads)

    def share_cores() -> None:
        torch.set_num_threads(max(job.threads, available_cores() // max(1, _running_trials.value)))

    resume = (job.run_dir / "checkpoint.safetensors").is_file()
    result = train(
        spec=job.trial.spec,
        recipe=job.trial.recipe,
        seed=job.seed,
        out=job.run_dir,
        deterministic=job.deterministic,
        device="cpu",
        resume=resume,
        overwrite=not resume,
        data_dir=job.data_dir,
        before_epoch=share_cores if _running_trials is not None and not job.deterministic else None,
    )
    return result.metrics


def run_sweep(
    sweep: Sweep,
    out: str | os.PathLike,
    *,
    parallel: int | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    data_dir: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> dict:
    """Run every missing trial and seed, then write results.json/csv, report.html and plots into `out`."""
    from .lab_report import write_reports

    # Absolute paths: Ray Tune runs each trial in its own working directory.
    out = Path(out).resolve()
    data_dir = Path(data_dir).resolve() if data_dir else None
    out.mkdir(parents=True, exist_ok=True)
    total_jobs = len(sweep.trials) * len(sweep.seeds)
    parallel = max(1, min(parallel or sweep.parallel or available_cores(), total_jobs))
    jobs = plan_jobs(sweep, out, parallel, str(data_dir) if data_dir else None)
    (out / "sweep.json").write_text(json.dumps(_describe(sweep, parallel), indent=2) + "\n")
    missing = [job for job in jobs if not job.done]
    if sweep.order == "costliest":
        missing.sort(key=lambda job: -multiply_adds(job.trial.spec) * job.trial.recipe.epochs)
    with SweepProgress(len(jobs), len(jobs) - len(missing), enabled=show_progress) as progress:
        if use_ray:
            _run_on_ray(missing, parallel, ray_address, out, progress)
        else:
            _run_locally(missing, parallel, progress)
    return write_reports(sweep, jobs, out)


def _describe(sweep: Sweep, parallel: int) -> dict:
    return {
        "name": sweep.name,
        "seeds": list(sweep.seeds),
        "parallel": parallel,
        "trials": [
            {"id": t.trial_id, "name": t.name, "settings": t.settings, "spec": t.spec.to_dict(),
             "recipe": dataclasses.asdict(t.recipe)}
            for t in sweep.trials
        ],
    }


def _run_locally(jobs: list[Job], parallel: int, progress: SweepProgress) -> None:
    # spawn, not fork: each trial gets a fresh interpreter whose torch thread pool it sizes itself.
    context = get_context("spawn")
    running = context.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=parallel, mp_context=context, initializer=_trial_process, initargs=(os.getpid(), running)
    ) as pool:
        queued = list(jobs)
        pending = set()
        while queued or pending:
            while queued and len(pending) < parallel:
                running.value = len(pending) + 1
                pending.add(pool.submit(run_job, queued.pop(0)))
            progress.update(running=len(pending))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            running.value = len(pending)
            for future in finished:
                future.result()  # a failed trial stops the sweep with its own error; finished ones are kept
                progress.finish_one()


def _trial_process(parent: int, running: Synchronized) -> None:
    """Set up a local sweep's trial process: the count of trials running, and an end as soon as the sweep that
    started it is gone. A sweep killed alone (SIGTERM or SIGKILL reach only its own process) otherwise left its
    trials training on unseen, racing a restarted sweep for the same run folders. Checkpoints are written
    atomically, so ending at any moment loses at most the epoch under way."""
    global _running_trials
    _running_trials = running

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _run_on_ray(jobs: list[Job], parallel: int, address: str | None, out: Path, progress: SweepProgress) -> None:
    """The same jobs as Ray Tune trials: a grid over the job list, each calling run_job on a Ray worker.

    On a multi-node cluster the sweep folder must be on storage every node sees, as Tune's own is."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UsageError("--ray needs Ray Tune: pip install 'digitlab[ray]'") from None
    if not jobs:
        return
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False)
    by_key = {f"{job.trial.trial_id}/seed-{job.seed}": job for job in jobs}

    def trainable(config: dict) -> dict:
        return run_job(by_key[config["job"]])

    progress.update(running=min(parallel, len(jobs)))
    # Tune reports on stdout; send it to stderr so `--json` output stays clean.
    with contextlib.redirect_stdout(sys.stderr):
        results = _fit(tune, trainable, jobs, by_key, parallel, out)
    errors = [result.error for result in results if result.error]
    if errors:
        raise UsageError(f"{len(errors)} Ray trials failed; the first: {errors[0]}")
    for _ in results:
        progress.finish_one()


def _fit(tune, trainable, jobs: list[Job], by_key: dict, parallel: int, out: Path):
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": jobs[0].threads}),
        param_space={"job": tune.grid_search(list(by_key))},
        tune_config=tune.TuneConfig(max_concurrent_trials=parallel),
        run_config=tune.RunConfig(name="ray", storage_path=str(out.resolve()), verbose=0),
    )
    return tuner.fit()


def ensemble_members(sweep: Sweep, out: str | os.PathLike, results: dict) -> list[Path]:
    """The model files an ensemble of the sweep averages: the trial chosen on validation accuracy, one per seed,
    or with `ensemble = "all"` every trial's."""
    chosen = [trial for trial in sweep.trials if sweep.ensemble == "all" or trial.name == results["best"]]
    return [
        Path(out) / "trials" / trial.trial_id / f"seed-{seed}" / "model.safetensors"
        for trial in chosen for seed in sweep.seeds
    ]


class SweepProgress:
    """One bar for the whole sweep: trials done, running and left, with an ETA from the finished ones."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
        )

        from .progress import stderr_console

        self.total, self.done, self.running = total, done, 0
        self.bar = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=stderr_console, disable=not enabled,
        )
        self.task = self.bar.add_task("sweep", total=total, completed=done, state=self._state())

    def _state(self) -> str:
        return f"{self.done} done, {self.running} running, {self.total - self.done - self.running} left"

    def __enter__(self) -> SweepProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, running: int) -> None:
        self.running = running
        self.bar.update(self.task, state=self._state())

    def finish_one(self) -> None:
        self.done += 1
        self.running = max(0, self.running - 1)
        self.bar.update(self.task, completed=self.done, state=self._state())
