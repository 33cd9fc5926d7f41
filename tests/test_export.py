"""ONNX export of a real trained model: valid ONNX, the same logits as PyTorch, and clear refusals."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from digitlab.errors import ModelFileError, UsageError
from digitlab.export import export_onnx, sequential_to_onnx
from digitlab.model import build_ensemble, build_model, get_preset, to_model_input


def test_export_matches_pytorch_on_the_whole_mnist_test_set(tmp_path, seed_run, mnist_test):
    digits = mnist_test[0]
    report = export_onnx(seed_run.model, tmp_path / "seed.onnx", check_digits=digits)
    assert report["checked_digits"] == 10_000 and report["max_logit_difference"] <= 1e-4
    exported = onnx.load(str(tmp_path / "seed.onnx"))
    onnx.checker.check_model(exported, full_check=True)
    metadata = {prop.key: prop.value for prop in exported.metadata_props}
    assert json.loads(metadata["class_names"]) == list("0123456789")
    session = onnxruntime.InferenceSession(str(tmp_path / "seed.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch size stays free
        logits = session.run(["logits"], {"digits": to_model_input(digits[:batch]).numpy()})[0]
        with torch.inference_mode():
            expected = seed_run.model.network(to_model_input(digits[:batch])).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("preset", ["tiny", "fast"])
def test_layer_by_layer_translation_matches_pytorch_with_batch_norm_and_refuses_ensembles(mnist_test, preset):
    torch.manual_seed(0)
    network = build_model(get_preset(preset))
    with torch.no_grad():
        network(torch.rand(64, 1, 28, 28))  # running statistics away from their initial values
    network.eval()
    session = onnxruntime.InferenceSession(sequential_to_onnx(network).SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = to_model_input(mnist_test[0][:500])
    with torch.inference_mode():
        np.testing.assert_allclose(session.run(["logits"], {"digits": inputs.numpy()})[0], network(inputs).numpy(), atol=1e-4)
    with pytest.raises(UsageError, match="Ensemble"):
        sequential_to_onnx(build_ensemble((get_preset("seed"), get_preset("tiny"))))


def test_cli_export_writes_the_file_and_refuses_unknown_formats(cli, tmp_path, model_path):
    done = cli("export", model_path, "--out", tmp_path / "m.onnx", "--no-check", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["format"] == "onnx" and (tmp_path / "m.onnx").is_file()
    refused = cli("export", model_path, "--format", "tflite")
    assert refused.returncode != 0 and refused.stderr.strip().startswith("digitlab:") and "onnx" in refused.stderr


def test_a_corrupt_model_is_refused_before_anything_is_written(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        export_onnx(broken, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()

