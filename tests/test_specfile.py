"""Specs and recipes as TOML: round trips, helpful errors, and `train` reading the files through the real CLI."""

from __future__ import annotations

import json
import tomllib

import pytest

from digitlab.errors import UsageError
from digitlab.model import PRESETS, build_model, count_parameters
from digitlab.specfile import load_recipe, load_spec, parse_recipe, parse_spec, to_toml
from digitlab.train import RECIPES


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_toml(name):
    assert parse_spec(tomllib.loads(to_toml("spec", PRESETS[name]))["spec"]) == PRESETS[name]


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_round_trips_through_toml(name):
    assert parse_recipe(tomllib.loads(to_toml("recipe", RECIPES[name]))["recipe"]) == RECIPES[name]


def test_tiny_has_at_most_a_tenth_of_the_seeds_parameters():
    assert count_parameters(build_model(PRESETS["tiny"])) <= count_parameters(build_model(PRESETS["seed"])) // 10


def test_a_file_may_hold_top_level_keys_and_a_float_may_be_written_as_an_int(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text("epochs = 3\nlearning_rate = 1\noptimizer = 'adamw'\n")
    recipe = load_recipe(path)
    assert (recipe.epochs, recipe.learning_rate, recipe.optimizer) == (3, 1.0, "adamw")


def test_names_still_mean_presets_and_recipes():
    assert load_spec("tiny") == PRESETS["tiny"]
    assert load_recipe("best") == RECIPES["best"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[spec]\nconv_channel = [8]\n", "unknown ModelSpec keys ['conv_channel']"),
        ("[spec]\nkernel_size = 4\n", "kernel_size must be a positive odd number"),
        ("[spec]\nkernel_size = '3'\n", "kernel_size must be int, got '3'"),
        ("[spec]\nconv_channels = [8.5]\n", "conv_channels must be a list of integers"),
        ("[spec]\nbatch_norm = 1\n", "batch_norm must be bool"),
        ("[spec]\nconv_channels = [4, 4, 4, 4, 4, 4]\n", "single pixel before the last block"),
        ("[spec]\nkernel_size = \n", "not valid TOML"),
    ],
)
def test_bad_spec_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_spec(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_an_impossible_recipe_is_refused():
    with pytest.raises(UsageError, match="optimizer"):
        parse_recipe({"optimizer": "adam"}, "r.toml")


def test_presets_toml_feeds_train(cli, tmp_path):
    shown = cli("presets", "--toml", "tiny")
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "tiny.toml").write_text(shown.stdout.replace("epochs = 2", "epochs = 1"))
    trained = cli(
        "train", "--preset", "tiny.toml", "--recipe", "tiny.toml", "--train-limit", "500", "--out", "run", "--json"
    )
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads(trained.stdout)
    assert metrics["parameters"] == count_parameters(build_model(PRESETS["tiny"]))
    assert metrics["epochs"] == 1


def test_presets_toml_refuses_an_unknown_name(cli):
    result = cli("presets", "--toml", "huge")
    assert result.returncode == 1
    assert result.stderr.startswith("digitlab: unknown preset or recipe 'huge'")
