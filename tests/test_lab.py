"""The lab: sweep files expand into trials, run locally and on Ray with the same table, and resume after a kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, CLI_TIMEOUT_S
from digitlab.errors import UsageError
from digitlab.lab import PARENT_CHECK_S, available_cores, builtin_sweeps, ensemble_members, load_sweep, run_sweep
from digitlab.lab_report import DETERMINISTIC_COLUMNS, pareto_front
from digitlab.modelfile import load_model

# Small enough to train in seconds: one epoch on 1,500 digits, 300 of them held out for validation.
QUICK = 'recipe_settings = { epochs = 1, train_limit = 1500, validation_size = 300 }'


def write_sweep(folder: Path, body: str) -> Path:
    path = folder / "sweep.toml"
    path.write_text(body)
    return path


def test_a_grid_crosses_explicit_trials_with_the_space(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, f"""
[sweep]
seeds = [0, 1]
[base]
recipe = "tiny"
{QUICK}
[[trials]]
preset = "tiny"
[[trials]]
preset = "seed"
[space]
"spec.kernel_size" = [3, 5]
"recipe.learning_rate" = [0.01, 0.003]
"""))
    assert len(sweep.trials) == 8 and sweep.seeds == (0, 1)
    assert len({trial.trial_id for trial in sweep.trials}) == 8
    assert {trial.spec.kernel_size for trial in sweep.trials} == {3, 5}
    # Selection happens on a holdout: no trial may validate on the test split.
    assert {trial.recipe.validation for trial in sweep.trials} == {"holdout"}
    assert {trial.recipe.train_limit for trial in sweep.trials} == {1500}


def test_random_search_draws_the_asked_number_reproducibly(tmp_path):
    body = """
[sweep]
search = "random"
samples = 5
random_seed = 7
[space]
"spec.dropout" = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
"spec.dense_units" = [[32], [64], [128]]
"""
    first, second = load_sweep(write_sweep(tmp_path, body)), load_sweep(write_sweep(tmp_path, body))
    assert [trial.trial_id for trial in first.trials] == [trial.trial_id for trial in second.trials]
    assert 1 <= len(first.trials) <= 5  # repeated draws are one trial


def test_spec_and_recipe_files_are_found_beside_the_sweep(tmp_path):
    (tmp_path / "narrow.toml").write_text("[spec]\nconv_channels = [4, 8]\n")
    (tmp_path / "short.toml").write_text("[recipe]\nepochs = 1\n")
    trial = load_sweep(write_sweep(tmp_path, '[base]\npreset = "narrow.toml"\nrecipe = "short.toml"\n')).trials[0]
    assert (trial.spec.conv_channels, trial.recipe.epochs) == ((4, 8), 1)


def test_a_trial_id_follows_its_settings(tmp_path):
    one = load_sweep(write_sweep(tmp_path, '[[trials]]\nname = "a"\nspec = { dropout = 0.1 }\n')).trials[0]
    other = load_sweep(write_sweep(tmp_path, '[[trials]]\nname = "a"\nspec = { dropout = 0.2 }\n')).trials[0]
    assert one.trial_id != other.trial_id and one.trial_id.startswith("a-")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[sweep]\nseed = [0]\n", "unknown keys ['seed'] in [sweep]"),
        ("[sweeps]\n", "unknown tables ['sweeps']"),
        ("[space]\nkernel_size = [3]\n", "must be preset, recipe, spec.FIELD or recipe.FIELD"),
        ("[space]\n'spec.kernel_size' = [4]\n", "kernel_size must be a positive odd number"),
        ("[space]\n'spec.kernel' = [3]\n", "unknown ModelSpec keys ['kernel']"),
        ("[sweep]\nsearch = 'bayes'\n", "search must be grid or random"),
        ("[base]\npreset = 'huge'\n", "unknown preset 'huge'"),
        ("[sweep]\nensemble = 'best'\n", "ensemble must be selected or all"),
        ("[sweep]\norder = 'cheapest'\n", "order must be costliest or listed"),
    ],
)
def test_bad_sweeps_are_refused_with_the_reason(tmp_path, body, message):
    path = write_sweep(tmp_path, body)
    with pytest.raises(UsageError) as caught:
        load_sweep(path)
    assert message in str(caught.value)


def test_builtin_sweeps_load():
    assert {"exercises", "best-ensemble"} <= set(builtin_sweeps())
    exercises = load_sweep("exercises")
    assert [trial.name for trial in exercises.trials] == ["seed", "tiny", "wide", "default"]
    assert all(trial.recipe.epochs == 2 for trial in exercises.trials)


def test_an_ensemble_averages_the_selected_trials_seeds_or_every_trials_models(tmp_path):
    body = '[sweep]\nseeds = [0, 1]\n[[trials]]\nname = "a"\n[[trials]]\nname = "b"\nspec = { dropout = 0.2 }\n'
    selected = load_sweep(write_sweep(tmp_path, body))
    every = load_sweep(write_sweep(tmp_path, body.replace("[sweep]", '[sweep]\nensemble = "all"')))
    a, b = (trial.trial_id for trial in selected.trials)
    files = [tmp_path / "trials" / trial / f"seed-{seed}" / "model.safetensors" for trial in (a, b) for seed in (0, 1)]
    assert ensemble_members(selected, tmp_path, {"best": "b"}) == files[2:]
    assert ensemble_members(every, tmp_path, {"best": "b"}) == files
    assert load_sweep("best-ensemble").ensemble == "all"


def test_pareto_front_keeps_only_undominated_trials():
    rows = [
        {"parameters": 10, "val_accuracy_mean": 0.95},
        {"parameters": 20, "val_accuracy_mean": 0.94},  # bigger and worse than the first
        {"parameters": 30, "val_accuracy_mean": 0.97},
        {"parameters": 30, "val_accuracy_mean": 0.96},  # as big as the third and worse
    ]
    assert pareto_front(rows, "parameters") == {0, 2}


def test_the_same_sweep_gives_the_same_table_locally_and_on_ray(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, f"""
[sweep]
seeds = [0]
deterministic = true
[base]
preset = "tiny"
recipe = "tiny"
{QUICK}
[space]
"spec.conv_channels" = [[8, 16], [16, 32]]
"""))
    local = run_sweep(sweep, tmp_path / "local", parallel=2)
    on_ray = run_sweep(sweep, tmp_path / "ray", parallel=2, use_ray=True)
    assert len(local["trials"]) == 2 and local["complete"] and on_ray["complete"]
    for mine, theirs in zip(local["trials"], on_ray["trials"]):
        assert {column: mine[column] for column in DETERMINISTIC_COLUMNS} == {
            column: theirs[column] for column in DETERMINISTIC_COLUMNS
        }
    for folder in ("local", "ray"):
        written = {path.name for path in (tmp_path / folder).iterdir()}
        assert {"results.json", "results.csv", "report.html", "accuracy_vs_parameters.png", "trials"} <= written


@pytest.mark.parametrize("order, first", [("costliest", "seed"), ("listed", "tiny")])
def test_trials_start_costliest_first_or_as_listed(tmp_path, order, first):
    sweep = load_sweep(write_sweep(tmp_path, f"""
[sweep]
seeds = [0]
parallel = 1
order = "{order}"
[base]
recipe = "tiny"
{QUICK}
[[trials]]
name = "tiny"
preset = "tiny"
[[trials]]
name = "seed"
preset = "seed"
"""))
    run_sweep(sweep, tmp_path / "out")
    runs = tmp_path / "out" / "trials"
    finished = {trial.name: (runs / trial.trial_id / "seed-0" / "metrics.json").stat().st_mtime_ns
                for trial in sweep.trials}
    assert min(finished, key=finished.get) == first


@pytest.mark.skipif(available_cores() < 2, reason="one core leaves nothing to share")
def test_a_trial_left_to_run_alone_takes_every_core(tmp_path):
    def sweep(seeds: str):
        return load_sweep(write_sweep(tmp_path, f"""
[sweep]
seeds = {seeds}
parallel = 2
[base]
preset = "tiny"
recipe = "tiny"
{QUICK}
"""))

    run_sweep(sweep("[0]"), tmp_path / "out")
    run_sweep(sweep("[0, 1]"), tmp_path / "out")  # planned two side by side, but seed 0 is done
    (metrics,) = (tmp_path / "out" / "trials").glob("*/seed-1/metrics.json")
    assert json.loads(metrics.read_text())["threads"] == available_cores()


@pytest.mark.fault("crashes")
def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    path = write_sweep(tmp_path, f"""
[sweep]
seeds = [0]
parallel = 1
[base]
preset = "tiny"
recipe = "tiny"
{QUICK}
[space]
"spec.dropout" = [0.0, 0.1, 0.2]
""")
    out = tmp_path / "out"
    command = [str(CLI), "lab", str(path), "--out", str(out), "--json"]
    # Its own session, so SIGKILL reaches the trial processes too, as when a machine goes down.
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + CLI_TIMEOUT_S
    finished: list[Path] = []
    while not finished and first.poll() is None and time.monotonic() < deadline:
        finished = list(out.glob("trials/*/seed-0/metrics.json"))
        time.sleep(0.2)  # polling interval only; correctness waits on the file itself
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert finished, "no trial finished before the sweep was killed"
    kept = {metrics: (metrics.stat().st_mtime_ns, metrics.read_text()) for metrics in finished}

    second = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert second.returncode == 0, second.stderr
    results = json.loads(second.stdout)
    assert results["complete"] and len(results["trials"]) == 3
    for metrics, (mtime, text) in kept.items():
        assert (metrics.stat().st_mtime_ns, metrics.read_text()) == (mtime, text)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.fault("crashes")
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the trial processes in Linux's /proc")
def test_trials_end_when_the_sweep_alone_is_killed(tmp_path):
    # Long enough (50 epochs) that a trial left running would still be training when the test looks.
    path = write_sweep(tmp_path, """
[sweep]
seeds = [0]
parallel = 1
[base]
preset = "tiny"
recipe = "tiny"
recipe_settings = { epochs = 50, train_limit = 1500, validation_size = 300 }
""")
    out = tmp_path / "out"
    sweep = subprocess.Popen([str(CLI), "lab", str(path), "--out", str(out)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while not list(out.glob("trials/*/seed-0/checkpoint.safetensors")) and time.monotonic() < deadline:
            assert sweep.poll() is None, "the sweep ended before its trial saved a checkpoint"
            time.sleep(0.2)  # polling interval only; the test waits on the file itself
        trials = [pid for pid in _children(sweep.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert trials, "no trial process found"
        sweep.kill()  # the sweep's own process only, as `kill -9 PID` does
        sweep.wait()
        deadline = time.monotonic() + 10 * PARENT_CHECK_S + 5
        while any(map(_alive, trials)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, trials)), "a trial kept training after its sweep was killed"
        assert not list(out.glob("trials/*/seed-0/metrics.json"))
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of the sweep is still there
            os.killpg(sweep.pid, signal.SIGKILL)


def test_cli_names_an_unknown_sweep_in_one_line(cli):
    result = cli("lab", "nosuch")
    assert result.returncode == 1
    assert result.stderr.startswith("digitlab: unknown sweep 'nosuch'; give a .toml file or one of:")
    assert "exercises" in result.stderr


def test_cli_lab_ensemble_of_every_trial_is_a_model_file_that_reads_digits(cli, tmp_path):
    write_sweep(tmp_path, f"""
[sweep]
seeds = [0]
ensemble = "all"
[base]
preset = "tiny"
recipe = "tiny"
{QUICK}
[space]
"spec.kernel_size" = [3, 5]
""")
    result = cli("lab", "sweep.toml", "--out", "out", "--ensemble", "e.safetensors", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["ensemble"]
    # One epoch on 1,200 digits reads little; what matters here is that both trials' models are the members.
    assert [Path(path).parts[2] for path in report["member_files"]] == [
        trial["id"] for trial in json.loads(result.stdout)["trials"]
    ]
    assert len(load_model(tmp_path / "e.safetensors").network.specs) == 2
    predicted = cli("predict", "--model", "e.safetensors", Path(__file__).parents[1] / "examples" / "seed" / "3.png")
    assert predicted.returncode == 0, predicted.stderr
