"""torch -> ONNX: static spatial size, dynamic batch, onnxslim simplification, metadata_props."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ..errors import EdgedistillError

INPUT_NAME = "input"
# protobuf's 2 GiB message limit, less room for the graph: a larger model needs ONNX external data, which the
# simplify and metadata steps (onnx.save of one file) and the stages after them do not handle
SINGLE_FILE_BYTES = (1 << 31) - (64 << 20)


def export_onnx(model: nn.Module, input_size: list[int], path: Path, output_names: list[str], opset: int = 17) -> Path:
    """Export with the TorchScript-based exporter (mature for timm models, fast); the batch axis is dynamic."""
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    if weights > SINGLE_FILE_BYTES:
        raise EdgedistillError(f"the student holds {weights / 1e9:.2f} GB of weights, over the 2 GB an ONNX file can hold without external data",
                               "pick a smaller student (an edge model is far below this), or export it yourself with torch.onnx and external data")
    sample = torch.randn(2, *input_size)
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.eval(), (sample,), str(path), input_names=[INPUT_NAME], output_names=output_names,
                opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False,
            )
        except torch.onnx.errors.OnnxExporterError as exc:  # an operator this opset lacks (ViT attention needs 14)
            raise EdgedistillError(f"ONNX export at opset {opset} failed: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}",
                                   "set export.opset to 17 (the default), or at least 14 for ViT students") from exc
        except RuntimeError as exc:
            if "Unsupported onnx_opset_version" not in str(exc):
                raise
            top = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", None)
            raise EdgedistillError(f"torch {torch.__version__} cannot export ONNX opset {opset}",
                                   f"set export.opset to {top} or lower (17 is the default)" if top else "set export.opset lower (17 is the default)") from exc
    return path


def simplify(path: Path) -> Path:
    """Fold constants and fuse patterns with onnxslim, in place."""
    import onnxslim

    slimmed = onnxslim.slim(onnx.load(str(path)))
    onnx.save(slimmed, str(path))
    return path


def set_metadata(path: Path, metadata: dict) -> None:
    """Store key facts in the ONNX file's metadata_props (values JSON-encoded when not strings)."""
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if key in existing:
            existing[key].value = text
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, text
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
