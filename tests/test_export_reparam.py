"""Export: re-parameterisation of repvit and fastvit before export, opset/dynamic batch, and a parity check
that fails the stage on a deliberately broken export. Tiny random-init models (no downloads)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import timm
import torch

from edgedistill.artifacts import atomic_output
from edgedistill.config import ExportConfig
from edgedistill.errors import EdgedistillError
from edgedistill.export import stage as export_stage
from edgedistill.export.reparam import reparameterizable, reparameterize
from edgedistill.export.stage import export_checked

SIZE = 64


def _tiny_repvit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("repvit_m0_9", pretrained=False, num_classes=10, embed_dim=(16, 32, 48, 64), depth=(1, 1, 1, 1))
    return model.eval()


def _tiny_fastvit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("fastvit_t8", pretrained=False, num_classes=10, layers=(1, 1, 1, 1), embed_dims=(32, 64, 128, 256)).eval()


def _batch(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _convs(path) -> int:
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("build", [_tiny_repvit, _tiny_fastvit], ids=["repvit", "fastvit"])
def test_model_is_reparameterised_before_export_and_still_matches_torch(tmp_path, build):
    model = build()
    assert reparameterizable(model)
    fused_model, fused = reparameterize(model)
    assert fused and fused_model is not model and reparameterizable(model)  # the original is left untouched
    parity, fused = export_checked(model, ["logits"], [3, SIZE, SIZE], tmp_path / "fused.onnx", ExportConfig(), _batch())
    assert fused and parity.cosine_min >= 0.9999
    unfused_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert _convs(tmp_path / "fused.onnx") < unfused_convs  # parallel branches became one conv each


def test_export_uses_opset_17_and_a_dynamic_batch(tmp_path):
    export_checked(_tiny_repvit(), ["logits"], [3, SIZE, SIZE], tmp_path / "m.onnx", ExportConfig(), _batch())
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]


def test_an_opset_too_old_for_the_model_is_a_one_line_error(tmp_path):
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=1).eval()
    with pytest.raises(EdgedistillError, match="ONNX export at opset 13 failed: .*scaled_dot_product_attention") as error:
        export_checked(vit, ["embedding"], [3, 32, 32], tmp_path / "m.onnx", ExportConfig(opset=13), _batch()[:, :, :32, :32])
    assert "export.opset" in error.value.fix and "\n" not in error.value.one_line()


def test_parity_failure_fails_the_export_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(model):  # a fusion bug: the exported graph no longer computes what torch computes
        copy, names = reparameterize(model)
        with torch.no_grad():
            next(p for p in copy.parameters() if p.ndim == 4).mul_(1.5)
        return copy, names

    monkeypatch.setattr(export_stage, "reparameterize", broken)
    final = tmp_path / "model.onnx"
    with pytest.raises(EdgedistillError, match="does not match torch"):
        with atomic_output(final) as tmp:
            export_checked(_tiny_repvit(), ["logits"], [3, SIZE, SIZE], tmp, ExportConfig(), _batch())
    assert not final.exists() and not list(tmp_path.iterdir())


class _EmbeddingAndLogits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        embedding = self.body(x)
        return embedding, self.head(embedding)


def test_a_broken_classifier_output_fails_parity_even_when_the_embedding_matches(tmp_path, monkeypatch):
    def broken_head(model):
        import copy

        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.head.weight.mul_(1.5)  # the embedding is untouched, only the logits drift
        return bad, ["head"]

    monkeypatch.setattr(export_stage, "reparameterize", broken_head)
    with pytest.raises(EdgedistillError, match="does not match torch"):
        export_checked(_EmbeddingAndLogits().eval(), ["embedding", "logits"], [3, SIZE, SIZE], tmp_path / "m.onnx", ExportConfig(), _batch())
