"""ONNX export: the network for runtimes without PyTorch, checked against PyTorch before it is written."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UsageError
from .model import to_model_input
from .modelfile import DigitModel, load_model

FORMATS = ("onnx",)
# The bar for "the same model": largest logit difference against PyTorch.
MAX_LOGIT_DIFFERENCE = 1e-4


def export_onnx(
    model: DigitModel | str | os.PathLike | None, path: str | os.PathLike, check_digits: np.ndarray | None = None
) -> dict:
    """Write `path` (input `digits`: float (N, 1, 28, 28) in 0..1, prepared MNIST-style; output `logits`).

    With `check_digits` (uint8 (N, 28, 28)), run the file in onnxruntime and refuse to keep it if
    any logit differs from PyTorch's by more than 1e-4.
    """
    try:
        import onnx  # noqa: F401  (checked here so a missing extra fails before any work)
    except ImportError:
        raise UsageError("ONNX export needs the onnx extra: pip install 'digitlab[onnx]'") from None
    model = model if isinstance(model, DigitModel) else load_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        report = _write_checked(model, partial, check_digits)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # a failed export or check leaves nothing behind
    return {**report, "path": str(path)}


def _write_checked(model: DigitModel, partial: Path, check_digits: np.ndarray | None) -> dict:
    import onnx

    network = model.network.eval()
    example = torch.zeros(2, 1, 28, 28)  # a batch of 2, so the exporter keeps the batch size symbolic
    # The exporter's own chatter (deprecations, "torchvision is not installed") is not the user's concern.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            str(partial),
            dynamo=True,
            input_names=["digits"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    exported = onnx.load(str(partial))
    onnx.checker.check_model(exported, full_check=True)
    for key, value in {
        "digitlab_spec": json.dumps(model.spec.to_dict()),
        "class_names": json.dumps(list(model.class_names)),
        "preprocessing": json.dumps(model.preprocessing),
        "metrics": json.dumps(model.metrics),
    }.items():
        exported.metadata_props.add(key=key, value=value)
    onnx.save(exported, str(partial))
    report = {"format": "onnx", "bytes": partial.stat().st_size}
    if check_digits is not None:
        report["max_logit_difference"] = _largest_difference(network, partial, check_digits)
        report["checked_digits"] = int(len(check_digits))
        if report["max_logit_difference"] > MAX_LOGIT_DIFFERENCE:
            raise UsageError(
                f"the ONNX model's logits differ from PyTorch's by {report['max_logit_difference']:.2e}, "
                f"over {MAX_LOGIT_DIFFERENCE}; not written"
            )
    return report


def sequential_to_onnx(network: nn.Module):
    """An eval-mode `build_model` network as an ONNX graph (input `digits`, output `logits`), written layer by
    layer from its weights. Milliseconds where torch.onnx.export takes seconds, so a Predictor can build one
    each time it starts; raises UsageError for any other network (an ensemble), which stays on PyTorch."""
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(network, nn.Sequential):
        raise UsageError(f"cannot translate a {type(network).__name__} to ONNX layer by layer; only build_model's")
    nodes, weights, current = [], [], "digits"

    def weight(name: str, tensor: torch.Tensor) -> str:
        weights.append(numpy_helper.from_array(tensor.detach().float().contiguous().cpu().numpy(), name))
        return name

    for index, layer in enumerate(network):
        out, name = f"x{index}", f"layer{index}"
        if isinstance(layer, nn.Conv2d):
            size, step = layer.kernel_size[0], layer.stride[0]  # build_model's: square, odd, padded by size // 2
            inputs = [current, weight(f"{name}.weight", layer.weight)]
            if layer.bias is not None:
                inputs.append(weight(f"{name}.bias", layer.bias))
            shape = {"kernel_shape": [size, size], "pads": [size // 2] * 4, "strides": [step, step]}
            nodes.append(helper.make_node("Conv", inputs, [out], **shape))
        elif isinstance(layer, nn.BatchNorm2d):
            parameters = (layer.weight, layer.bias, layer.running_mean, layer.running_var)
            inputs = [weight(f"{name}.{part}", value) for part, value in zip(("scale", "bias", "mean", "var"), parameters)]
            nodes.append(helper.make_node("BatchNormalization", [current, *inputs], [out], epsilon=layer.eps))
        elif isinstance(layer, nn.MaxPool2d):
            nodes.append(helper.make_node("MaxPool", [current], [out], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out]))
        elif isinstance(layer, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [current], [out], axis=1))
        elif isinstance(layer, nn.Linear):
            inputs = [current, weight(f"{name}.weight", layer.weight), weight(f"{name}.bias", layer.bias)]
            nodes.append(helper.make_node("Gemm", inputs, [out], transB=1))
        elif isinstance(layer, nn.Dropout):
            continue  # the identity in eval mode
        else:
            raise UsageError(f"cannot translate a {type(layer).__name__} layer to ONNX")
        current = out
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes,
        "digitlab",
        [helper.make_tensor_value_info("digits", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", None])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _largest_difference(network: torch.nn.Module, onnx_path: Path, digits: np.ndarray) -> float:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("checking the export needs onnxruntime: pip install 'digitlab[onnx]'") from None
    inputs = to_model_input(digits).contiguous()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"digits": inputs.numpy()})[0]
    with torch.inference_mode():
        torch_logits = network(inputs).numpy()
    return float(np.abs(onnx_logits - torch_logits).max())
