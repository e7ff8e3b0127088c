"""Stage `export`: student/ -> model.onnx, parity-checked against torch through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts import Artifact, atomic_output, model_digest
from ..backends import get_backend
from ..config import BuildConfig, ExportConfig
from ..data.eval_set import evaluation_views
from ..errors import EdgedistillError
from ..models.deploy import load_deploy_model
from ..models.preprocess import preprocess_images
from ..versions import tool_versions
from .onnx_export import INPUT_NAME, export_onnx, set_metadata, simplify
from .parity import Parity, compare
from .reparam import reparameterize

PARITY_IMAGES = 8


def torch_outputs(model: nn.Module, batch: np.ndarray, output_names: list[str]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(batch))
    out = out if isinstance(out, tuple) else (out,)
    return {name: t.numpy() for name, t in zip(output_names, out)}


def export_checked(model: nn.Module, output_names: list[str], input_size: list[int], path: Path, cfg: ExportConfig, batch: np.ndarray) -> tuple[Parity, list[str]]:
    """Export `model` (re-parameterised when it can be) to `path` and check it against the
    original torch model on `batch`, at the full batch and at batch 1; raises beyond tolerance.
    Returns (parity, fused module names)."""
    model = model.eval()
    reference = torch_outputs(model, batch, output_names)  # the unfused model: parity covers the fusion too
    fused: list[str] = []
    if cfg.reparameterize:
        model, fused = reparameterize(model)
    export_onnx(model, input_size, path, output_names, cfg.opset)
    if cfg.simplify:
        simplify(path)
    with get_backend("onnxruntime").runner(path) as runner:
        exported = runner.infer({INPUT_NAME: batch})
        single = runner.infer({INPUT_NAME: batch[:1]})  # the batch axis really is dynamic
    main = output_names[0]
    parity = compare(reference[main], exported[main], reference.get("logits"), exported.get("logits"))
    # every output, at the full batch and at batch 1: a broken classifier export must not pass
    checks = [parity, *(compare(reference[name], exported[name]) for name in output_names[1:]),
              *(compare(reference[name][:1], single[name]) for name in output_names)]
    for check in checks:
        if not check.within(cfg.parity_min_cosine, cfg.parity_max_abs):
            raise EdgedistillError(
                f"ONNX export does not match torch: {check.describe()}",
                "try another export.opset or export.reparameterize=false, or report the model; loosen export.parity_* only if you accept the drift",
            )
    return parity, fused


def run(cfg: BuildConfig, inputs: dict, workdir: Path) -> Artifact:
    student: Artifact = inputs["student"]
    model, spec = load_deploy_model(student.abspath(workdir))
    data_config = spec["data_config"]
    final = workdir / "model.onnx"
    batch = preprocess_images(evaluation_views(cfg.data.source, PARITY_IMAGES), data_config)
    with atomic_output(final) as tmp:
        parity, fused = export_checked(model, model.output_names, data_config["input_size"], tmp, cfg.export, batch)
        set_metadata(tmp, {
            "edgedistill.architecture": spec["architecture"],
            "edgedistill.model_args": spec.get("model_args", {}),
            "edgedistill.data_config": data_config,
            "edgedistill.teacher": spec["teacher"]["name"],
            "edgedistill.outputs": model.output_names,
            "edgedistill.precision": "fp32",
            "edgedistill.opset": cfg.export.opset,
            "edgedistill.reparameterized": bool(fused),
            "edgedistill.student_sha256": model_digest(student),  # its weights: a student trained again to them exports the same bytes
            "edgedistill.versions": tool_versions(("edgedistill", "torch", "timm", "onnx", "onnxslim")),
        })
    return Artifact.record(
        workdir, final, kind="onnx", name="onnx-fp32", parents=[student.name], precision="fp32", backend="onnxruntime",
        config_hash=cfg.section_hash("export"), data_config=data_config,
        extra={"opset": cfg.export.opset, "outputs": model.output_names, "parity": parity.__dict__, "reparameterized_modules": len(fused)},
    )
