"""What torch.onnx cannot write as edgedistill's single-file model is a one-line error, before any file."""

from __future__ import annotations

import pytest
import torch

from edgedistill.errors import EdgedistillError
from edgedistill.export.onnx_export import export_onnx


def test_an_opset_torch_cannot_export_is_a_clear_error(tmp_path):
    with pytest.raises(EdgedistillError, match="cannot export ONNX opset 99") as caught:
        export_onnx(torch.nn.Linear(4, 2), [4], tmp_path / "m.onnx", ["embedding"], opset=99)
    assert "export.opset" in caught.value.fix and not (tmp_path / "m.onnx").exists()


def test_a_student_over_two_gigabytes_is_refused_before_export(tmp_path):
    huge = torch.nn.Linear(50_000, 12_000, device="meta")  # 2.4 GB of fp32 weights, none allocated
    with pytest.raises(EdgedistillError, match="2.40 GB of weights") as caught:
        export_onnx(huge, [50_000], tmp_path / "m.onnx", ["embedding"])
    assert "smaller student" in caught.value.fix and list(tmp_path.iterdir()) == []
