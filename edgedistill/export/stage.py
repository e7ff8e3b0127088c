"""Stage `export`: student/ -> model.onnx, parity-checked against torch through ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifacts import Artifact, atomic_output
from ..backends import get_backend
from ..config import BuildConfig
from ..data.eval_set import evaluation_views
from ..errors import EdgedistillError
from ..models.deploy import load_deploy_model
from ..models.preprocess import preprocess_images
from ..versions import tool_versions
from .onnx_export import INPUT_NAME, export_onnx, set_metadata, simplify
from .parity import compare

PARITY_IMAGES = 8


def torch_outputs(model, batch: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(batch))
    out = out if isinstance(out, tuple) else (out,)
    return {name: t.numpy() for name, t in zip(model.output_names, out)}


def run(cfg: BuildConfig, inputs: dict, workdir: Path) -> Artifact:
    student: Artifact = inputs["student"]
    model, spec = load_deploy_model(student.abspath(workdir))
    data_config = spec["data_config"]
    final = workdir / "model.onnx"
    batch = preprocess_images(evaluation_views(cfg.data.source, PARITY_IMAGES), data_config)
    reference = torch_outputs(model, batch)
    with atomic_output(final) as tmp:
        export_onnx(model, data_config["input_size"], tmp, model.output_names, cfg.export.opset)
        if cfg.export.simplify:
            simplify(tmp)
        with get_backend("onnxruntime").runner(tmp) as runner:
            exported = runner.infer({INPUT_NAME: batch})
            single = runner.infer({INPUT_NAME: batch[:1]})  # the batch axis really is dynamic
        parity = compare(reference["embedding"], exported["embedding"], reference.get("logits"), exported.get("logits"))
        single_parity = compare(reference["embedding"][:1], single["embedding"])
        for check in (parity, single_parity):
            if not check.within(cfg.export.parity_min_cosine, cfg.export.parity_max_abs):
                raise EdgedistillError(
                    f"ONNX export does not match torch: {check.describe()}",
                    "try another export.opset, or report the model; loosen export.parity_* only if you accept the drift",
                )
        set_metadata(tmp, {
            "edgedistill.architecture": spec["architecture"],
            "edgedistill.model_args": spec.get("model_args", {}),
            "edgedistill.data_config": data_config,
            "edgedistill.teacher": spec["teacher"]["name"],
            "edgedistill.outputs": model.output_names,
            "edgedistill.precision": "fp32",
            "edgedistill.student_sha256": student.sha256,
            "edgedistill.versions": tool_versions(("edgedistill", "torch", "timm", "onnx", "onnxslim")),
        })
    return Artifact.record(
        workdir, final, kind="onnx", name="onnx-fp32", parents=[student.name], precision="fp32", backend="onnxruntime",
        config_hash=cfg.section_hash("export"), data_config=data_config,
        extra={"opset": cfg.export.opset, "outputs": model.output_names, "parity": parity.__dict__},
    )
