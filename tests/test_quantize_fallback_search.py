"""The fallback search starts from the re-ranking's first trial instead of quantizing it again."""

from __future__ import annotations

import numpy as np
import pytest

import edgedistill.quantize.fallback as fallback
from edgedistill.config import QuantizeConfig
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize.fidelity import Budget, compare, run_model
from tests.small_cnn import small_cnn


@pytest.fixture
def outlier_cnn(tmp_path):
    """One outlier channel after the first conv; the depthwise conv alone in float helps the output most."""
    model = small_cnn(outlier_channel=True)
    export_onnx(model, [3, 32, 32], tmp_path / "model.onnx", ["logits"])
    rng = np.random.default_rng(0)
    return tmp_path / "model.onnx", rng.standard_normal((16, 3, 32, 32)).astype(np.float32), rng.standard_normal((16, 3, 32, 32)).astype(np.float32)


def test_no_exclusion_set_is_quantized_twice_and_the_kept_k1_model_is_the_one_written(outlier_cnn, tmp_path, monkeypatch):
    model, calibration, holdout = outlier_cnn
    quantized = []
    real = fallback.quantize_ort_static

    def counting(*args, nodes_to_exclude=None, **kwargs):
        quantized.append(tuple(nodes_to_exclude))
        return real(*args, nodes_to_exclude=nodes_to_exclude, **kwargs)

    monkeypatch.setattr(fallback, "quantize_ort_static", counting)
    cfg = QuantizeConfig(sensitivity_samples=4, fallback_refine=8, fallback_max_float_share=1.0)

    def search(budget: Budget, name: str):
        quantized.clear()
        result = fallback.quantize_with_fallback(model, tmp_path / name, calibration, holdout, cfg, budget)
        assert [r["layer"] for r in result.refined] == ["/2/Conv", "/4/Conv", "/0/Conv"]  # /0/Conv tried last
        assert len(quantized) == len(set(quantized))  # the k=1 round reuses the re-ranking's trial of /2/Conv
        assert result.trials[0]["float_layers"] == 1 and result.trials[0]["cosine"] == result.refined[0]["cosine"]
        # the file written is the model the record describes
        written = compare(run_model(model, holdout), run_model(tmp_path / name, holdout))
        assert written.cosine == pytest.approx(result.final.cosine, abs=1e-7)
        return result

    unreachable = search(Budget(1.5, 1.0), "a.onnx")  # no cosine reaches it
    assert not unreachable.within_budget and [t["float_layers"] for t in unreachable.trials] == [1, 2, 3]
    assert len(quantized) == 1 + 3 + 2  # plain, each re-ranked layer alone, then k=2 and k=3
    # the budget the depthwise conv alone in float meets: the same choice as a search that quantized k=1 again,
    # and the model written is that trial's, not the one of the layer tried alone last (/0/Conv)
    reachable = search(Budget(unreachable.refined[0]["cosine"], 0.0), "b.onnx")
    assert reachable.within_budget and reachable.float_layers == ["/8/Gemm", "/2/Conv"] and [t["float_layers"] for t in reachable.trials] == [1]
    assert len(quantized) == 1 + 3 and reachable.final.cosine == reachable.refined[0]["cosine"]
