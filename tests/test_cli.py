"""End-to-end tests through the installed `digitlab` executable, as a user or another tool runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "seed"
ANSWER_KEYS = {"path", "digit", "confidence", "probabilities", "error"}


def assert_user_error(result) -> str:
    """A user error: non-zero exit, nothing but one 'digitlab:' line on stderr."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("digitlab:"), result.stderr
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# ---- help and listing ----

@pytest.mark.parametrize("command", ["", "train", "evaluate", "predict", "presets"])
def test_help(cli, command):
    result = cli(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_presets_lists_seed(cli):
    result = cli("presets")
    assert result.returncode == 0, result.stderr
    assert "seed" in result.stdout and "215,370" in result.stdout


# ---- predict ----

def test_predict_json_answers_every_example(cli, model_path):
    result = cli("predict", "--json", EXAMPLES, "--model", model_path)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert isinstance(answers, list) and len(answers) == 10
    assert sorted(Path(answer["path"]).name for answer in answers) == sorted(p.name for p in EXAMPLES.glob("*.png"))
    for answer in answers:
        assert ANSWER_KEYS <= answer.keys()
        assert answer["error"] is None
        assert isinstance(answer["digit"], int) and 0 <= answer["digit"] <= 9
        assert len(answer["probabilities"]) == 10
        assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= answer["confidence"] <= 1.0


def test_predict_with_one_unreadable_file(cli, model_path, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("3.png", "6.png"):
        shutil.copyfile(EXAMPLES / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is missing")
    result = cli("predict", "--json", folder, "--model", model_path)
    line = assert_user_error(result)
    assert "1 of 3" in line
    answers = {Path(answer["path"]).name: answer for answer in json.loads(result.stdout)}
    assert set(answers) == {"3.png", "6.png", "broken.png"}
    assert answers["broken.png"]["digit"] is None and "broken.png" in answers["broken.png"]["error"]
    for name in ("3.png", "6.png"):
        assert answers[name]["error"] is None and isinstance(answers[name]["digit"], int)


# ---- user errors ----

@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--epochs", "-1"], "epochs"),
        (["train", "--preset", "nope"], "nope"),
        (["predict", "missing.png"], "missing.png"),
        (["predict", "--colour", "x.png"], "--colour"),
    ],
    ids=["negative-epochs", "unknown-preset", "missing-image", "unknown-option"],
)
def test_user_errors_are_one_line(cli, tmp_path, args, needle):
    line = assert_user_error(cli(*args))
    assert needle in line
    assert not (tmp_path / "runs").exists()


def test_evaluate_corrupt_model(cli, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    line = assert_user_error(cli("evaluate", corrupt, "--json"))
    assert str(corrupt) in line


# ---- train and evaluate ----

def test_train_writes_a_run_folder_and_refuses_to_clobber_it(cli, tmp_path):
    run = tmp_path / "quick"
    result = cli("train", "--json", "--epochs", "1", "--train-limit", "1000", "--out", run)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert Path(printed["run_dir"]) == run

    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test_accuracy", "train_seconds", "epochs"} <= metrics.keys()
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["train_seconds"] > 0
    assert printed["test_accuracy"] == metrics["test_accuracy"]
    history = json.loads((run / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1]
    with Image.open(run / "history.png") as plot:
        assert plot.format == "PNG"
    assert (run / "model.safetensors").stat().st_size > 800_000  # 215,370 float32 weights

    before = snapshot(run)
    again = cli("train", "--json", "--epochs", "1", "--train-limit", "1000", "--out", run)
    line = assert_user_error(again)
    assert "--overwrite" in line or "--resume" in line
    assert snapshot(run) == before


def test_evaluate_json_has_accuracy(cli, model_path, seed_run, tmp_path):
    result = cli("evaluate", model_path, "--json", "--out", tmp_path / "figures")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accuracy"] == pytest.approx(seed_run.metrics["test_accuracy"], abs=1e-6)
    assert (tmp_path / "figures" / "confusion.png").is_file()
