"""The SQNR ranking's first layers re-ranked by what each alone in float does to the output."""

from __future__ import annotations

from edgedistill.quantize.fidelity import Fidelity
from edgedistill.quantize.refine import refine_ranking
from tests.small_cnn import small_cnn


def test_the_layer_that_helps_the_output_most_goes_first_and_the_rest_keep_their_order():
    alone = {"dw0": 0.897, "dw1": 0.873, "pw2": 0.871, "pw3": 0.871, "pwl4": 0.871, "stem": 0.954}
    tried = []

    def alone_in_float(name: str) -> Fidelity:
        tried.append(name)
        return Fidelity(cosine=alone[name], top1=None, samples=48)

    ranking = ["dw0", "dw1", "pw2", "pw3", "pwl4", "stem", "late7", "late8"]  # SQNR's order: the stem 6th
    order, records = refine_ranking(ranking, 6, alone_in_float)
    assert order == ["stem", "dw0", "dw1", "pw2", "pw3", "pwl4", "late7", "late8"]  # ties (pw2, pw3, pwl4) keep SQNR's order
    assert tried == ranking[:6] and [r["layer"] for r in records] == order[:6] and records[0]["sqnr_rank"] == 6
    assert refine_ranking(ranking, 1, alone_in_float) == (ranking, []) and len(tried) == 6  # one candidate: nothing to order


def test_the_fallback_search_meets_a_budget_with_fewer_float_layers_after_re_ranking(tmp_path):
    """An outlier channel after the first conv: SQNR ranks that conv most sensitive, yet the depthwise
    conv alone in float does more for the output. For the budget that conv meets alone, the re-ranked
    search keeps one layer in float; SQNR's order tries the first conv and, at the float-share cap of
    one layer here, ends below the budget."""
    import numpy as np

    from edgedistill.config import QuantizeConfig
    from edgedistill.export.onnx_export import export_onnx
    from edgedistill.quantize.fallback import quantize_with_fallback
    from edgedistill.quantize.fidelity import Budget

    model = small_cnn(outlier_channel=True)
    export_onnx(model, [3, 32, 32], tmp_path / "model.onnx", ["logits"])
    rng = np.random.default_rng(0)
    calibration, holdout = (rng.standard_normal((n, 3, 32, 32)).astype(np.float32) for n in (16, 16))

    def search(refine: int, budget: Budget, name: str):
        return quantize_with_fallback(tmp_path / "model.onnx", tmp_path / name, calibration, holdout,
                                      QuantizeConfig(sensitivity_samples=4, fallback_refine=refine), budget)

    unreachable = search(8, Budget(1.0, 1.0), "a.onnx")
    assert [r["layer"] for r in unreachable.refined] == ["/2/Conv", "/4/Conv", "/0/Conv"]  # the head stays float anyway
    assert [r["sqnr_rank"] for r in unreachable.refined] == [2, 3, 1] and unreachable.as_record()["refined"] == unreachable.refined
    budget = Budget(unreachable.refined[0]["cosine"], 0.0)  # what the depthwise conv alone in float reaches
    refined, sqnr_only = search(8, budget, "b.onnx"), search(0, budget, "c.onnx")
    assert refined.within_budget and refined.float_layers == ["/8/Gemm", "/2/Conv"]
    assert not sqnr_only.within_budget and sqnr_only.refined == [] and [t["float_layers"] for t in sqnr_only.trials] == [1]
