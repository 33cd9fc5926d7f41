"""Tests for digitlab.modelfile: a real trained model saved, loaded, and damaged in every way a file can be."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
import struct
from pathlib import Path

import digitlab
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from digitlab.errors import ModelFileError, UsageError
from digitlab.model import PRESETS, ModelSpec, batched_logits, build_model
from digitlab.modelfile import DigitModel, default_model_path, load_model, save_model
from digitlab.predict import Predictor
from digitlab.train import train


def read_parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    return load_file(str(path)), metadata


def rewrite(source: Path, target: Path, tensors=None, **metadata_changes: str) -> Path:
    """Write target as a valid safetensors file: source's tensors (or the given ones) and changed metadata."""
    original_tensors, metadata = read_parts(source)
    save_file(original_tensors if tensors is None else tensors, str(target), metadata={**metadata, **metadata_changes})
    return target


def refusal(path: Path) -> str:
    """The ModelFileError message loading path gives, checked to be one line naming the file."""
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ---- round trip ----

def test_save_then_load_gives_the_same_model(tmp_path, seed_run, mnist_test):
    path = save_model(seed_run.model, tmp_path / "copy" / "model.safetensors")
    assert path.is_file() and not list(path.parent.glob("*.partial"))
    loaded = load_model(path)
    assert loaded.spec == seed_run.model.spec
    assert loaded.metrics == seed_run.metrics
    assert loaded.class_names == tuple("0123456789")
    assert loaded.dataset == "mnist"
    assert loaded.recipe == seed_run.model.recipe
    assert loaded.preprocessing == seed_run.model.preprocessing
    assert not loaded.network.training
    digits = torch.from_numpy(mnist_test[0][:256])
    cpu = torch.device("cpu")
    torch.testing.assert_close(
        batched_logits(loaded.network, digits, cpu), batched_logits(seed_run.model.network, digits, cpu), rtol=0, atol=0
    )


def test_run_folder_model_loads_with_the_run_metrics(model_path, seed_run):
    loaded = load_model(model_path)
    assert loaded.metrics["test_accuracy"] == seed_run.metrics["test_accuracy"]
    assert loaded.metrics["parameters"] == 215_370


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_round_trips_including_batch_norm_buffers(tmp_path, preset):
    torch.manual_seed(0)
    network = build_model(PRESETS[preset])
    network.train()
    network(torch.rand(8, 1, 28, 28))  # move batch-norm running statistics off their initial values
    path = save_model(DigitModel(network=network.eval(), spec=PRESETS[preset]), tmp_path / "model.safetensors")
    loaded = load_model(path)
    for name, tensor in network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], tensor), name


def test_shipped_default_model_loads_and_records_its_accuracy():
    model = load_model()
    assert model.spec == PRESETS["default"]
    assert model.metrics["test_accuracy"] >= 0.994


def test_default_model_path_points_inside_the_package():
    path = default_model_path()
    assert isinstance(path, Path)
    assert path == Path(digitlab.__file__).parent / "models" / "default.safetensors"


# ---- refusals ----

@pytest.mark.fault("model files")
def test_missing_file(tmp_path):
    assert "no such model file" in refusal(tmp_path / "absent.safetensors")


@pytest.mark.fault("model files")
def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    refusal(path)


@pytest.mark.fault("model files")
def test_truncated_file(tmp_path, model_path):
    content = model_path.read_bytes()
    path = tmp_path / "half.safetensors"
    path.write_bytes(content[: len(content) // 2])
    refusal(path)


@pytest.mark.fault("model files")
def test_flipped_bit_in_the_weights_fails_the_checksum(tmp_path, model_path):
    content = bytearray(model_path.read_bytes())
    content[-5] ^= 0x10  # inside the last tensor's data, far past the header
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(content))
    assert "checksum" in refusal(path)


@pytest.mark.fault("model files")
def test_pickle_renamed_to_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"conv.weight": [0.1, 0.2], "note": "a pickle, not a safetensors file"}))
    refusal(path)


@pytest.mark.fault("model files")
def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.randn(4, 3), "encoder.bias": torch.randn(4)}, str(path))
    assert "not a digitlab model" in refusal(path)


@pytest.mark.fault("model files")
def test_newer_format_version(tmp_path, model_path):
    path = rewrite(model_path, tmp_path / "future.safetensors", format_version="99")
    message = refusal(path)
    assert "99" in message and "upgrade" in message


@pytest.mark.fault("model files")
def test_spec_that_does_not_fit_the_tensors(tmp_path, model_path):
    _, metadata = read_parts(model_path)
    spec = {**json.loads(metadata["spec"]), "dense_units": [64]}
    path = rewrite(model_path, tmp_path / "reshaped.safetensors", spec=json.dumps(spec))
    assert "spec needs" in refusal(path)


@pytest.mark.fault("model files")
def test_missing_tensor(tmp_path, model_path):
    tensors, _ = read_parts(model_path)
    dropped = sorted(tensors)[-1]
    del tensors[dropped]
    path = rewrite(model_path, tmp_path / "missing.safetensors", tensors=tensors)
    assert dropped in refusal(path)


@pytest.mark.fault("model files")
def test_extra_tensor(tmp_path, model_path):
    tensors, _ = read_parts(model_path)
    tensors["backdoor.weight"] = torch.zeros(3)
    path = rewrite(model_path, tmp_path / "extra.safetensors", tensors=tensors)
    assert "backdoor.weight" in refusal(path)


@pytest.mark.fault("model files")
def test_unknown_spec_key_in_file(tmp_path, model_path):
    _, metadata = read_parts(model_path)
    spec = {**json.loads(metadata["spec"]), "attention_heads": 8}
    path = rewrite(model_path, tmp_path / "unknown-key.safetensors", spec=json.dumps(spec))
    assert "attention_heads" in refusal(path)


@pytest.mark.parametrize("value", [1.5, "high"])
def test_a_calibration_threshold_out_of_range_is_refused(tmp_path, model_path, value):
    _, metadata = read_parts(model_path)
    calibration = {**json.loads(metadata.get("calibration", "{}")), "reject_threshold": value}
    path = rewrite(model_path, tmp_path / "bad-threshold.safetensors", calibration=json.dumps(calibration))
    assert "reject_threshold" in refusal(path)


@pytest.mark.fault("model files")
def test_metadata_without_checksum(tmp_path, model_path):
    tensors, metadata = read_parts(model_path)
    del metadata["weights_sha256"]
    path = tmp_path / "no-checksum.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    refusal(path)


@pytest.mark.fault("model files")
def test_refusal_leaves_the_file_alone(tmp_path, model_path):
    path = tmp_path / "copy.safetensors"
    shutil.copyfile(model_path, path)
    content = bytearray(path.read_bytes())
    content[-5] ^= 0x10
    path.write_bytes(bytes(content))
    refusal(path)
    assert path.read_bytes() == bytes(content)


class Payload:
    """Unpickling this touches the marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def pickled_models(folder: Path, marker: Path) -> dict[str, Path]:
    """Pickle-based model files named .safetensors: plain pickle and both torch.save formats."""
    weights = {"0.weight": torch.zeros(32, 1, 3, 3), "hook": Payload(marker)}
    plain, zipped, legacy = folder / "plain.safetensors", folder / "zip.safetensors", folder / "legacy.safetensors"
    plain.write_bytes(pickle.dumps(weights))
    torch.save(weights, zipped)
    torch.save(weights, legacy, _use_new_zipfile_serialization=False)
    return {"plain": plain, "zip": zipped, "legacy": legacy}


@pytest.mark.fault("model files")
@pytest.mark.parametrize("kind", ["plain", "zip", "legacy"])
def test_a_pickle_renamed_to_safetensors_never_runs_its_code(tmp_path, kind, cli):
    marker = tmp_path / "code-ran"
    path = pickled_models(tmp_path, marker)[kind]
    # First prove the payload is live: a pickle loader runs it (torch.load under a .pt name, since it treats
    # a .safetensors name as safetensors).
    if kind == "plain":
        pickle.loads(path.read_bytes())
    else:
        torch.load(shutil.copyfile(path, tmp_path / "proof.pt"), weights_only=False)
    assert marker.exists()
    marker.unlink()

    refusal(path)
    with pytest.raises(ModelFileError):
        Predictor(path)
    result = cli("predict", "--model", path, path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert not marker.exists(), "code from the model file ran"


@pytest.mark.fault("model files")
@pytest.mark.parametrize("change", ["transposed", "float64"])
def test_tensor_of_the_wrong_shape_or_type(tmp_path, model_path, change):
    tensors, _ = read_parts(model_path)
    name = "0.weight"
    tensors[name] = tensors[name].transpose(0, 1).contiguous() if change == "transposed" else tensors[name].double()
    path = rewrite(model_path, tmp_path / f"{change}.safetensors", tensors=tensors)
    message = refusal(path)
    assert name in message and "the spec needs" in message


@pytest.mark.fault("model files")
@pytest.mark.parametrize("header_bytes", [2**63 - 1, 2**40, 100])
def test_a_forged_header_length_is_refused(tmp_path, model_path, header_bytes):
    # safetensors starts with the header's length; a forged one must not make the loader allocate or read it.
    content = model_path.read_bytes()
    path = tmp_path / "forged.safetensors"
    path.write_bytes(struct.pack("<Q", header_bytes) + content[8:])
    refusal(path)


@pytest.mark.fault("model files")
def test_every_refusal_is_one_line_from_the_cli(tmp_path, model_path, cli):
    content = model_path.read_bytes()
    broken = {"truncated": content[: len(content) // 2], "empty": b"", "text": b"weights go here\n"}
    for name, body in broken.items():
        (tmp_path / f"{name}.safetensors").write_bytes(body)
    rewrite(model_path, tmp_path / "future.safetensors", format_version="2")
    image = tmp_path / "digit.png"
    image.write_bytes(b"never read: the model fails first")
    for path in sorted(tmp_path.glob("*.safetensors")):
        result = cli("predict", "--model", path, image)
        assert result.returncode == 1 and result.stdout == "", path
        assert result.stderr.startswith(f"digitlab: {path}") and result.stderr.count("\n") == 1, result.stderr


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    """A run folder after one epoch of a two-epoch seed run, to copy and damage."""
    run = tmp_path_factory.mktemp("checkpointed") / "run"
    train("seed", epochs=1, train_limit=300, out=run, seed=1)
    return run


@pytest.mark.fault("model files")
@pytest.mark.parametrize("damage", ["truncated", "flipped header", "pickle"])
def test_a_damaged_checkpoint_is_refused_on_resume(tmp_path, one_epoch_run, damage):
    run = shutil.copytree(one_epoch_run, tmp_path / "run")
    checkpoint = run / "checkpoint.safetensors"
    content = checkpoint.read_bytes()
    checkpoint.write_bytes({
        "truncated": content[: len(content) // 2],
        "flipped header": content[:9] + bytes([content[9] ^ 0x55]) + content[10:],
        "pickle": pickle.dumps({"model.0.weight": [0.0]}),
    }[damage])
    with pytest.raises(ModelFileError) as caught:
        train("seed", epochs=2, train_limit=300, out=run, seed=1, resume=True)
    assert str(checkpoint) in str(caught.value) and "\n" not in str(caught.value)


# ---- ModelSpec as stored ----

def test_spec_round_trips_through_json():
    spec = ModelSpec(conv_channels=(8, 16, 32), dense_units=(64, 32), batch_norm=True)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_from_dict_refuses_unknown_keys():
    with pytest.raises(UsageError, match="colour"):
        ModelSpec.from_dict({**ModelSpec().to_dict(), "colour": "blue"})
