"""Per-layer INT8 sensitivity from ONNX Runtime's QDQ debugging tools, in one pass.

For every quantized node we take the signal-to-quantization-noise ratio (dB) of what Q/DQ does
to its activations (inputs and output) and to its weight (not its bias), on real calibration samples, and add
the noise powers. Low SQNR = sensitive. One pass over all layers replaces per-layer
re-quantization, which costs seconds per layer (measured: EfficientNet-Lite0 has 50 such nodes).
Leave-one-out on the output costs one re-quantization and run per layer. It can rank better: on
EfficientNet-Lite0 it puts the stem conv first where SQNR puts it 6th (benchmarks/int8_fallback.py,
docs/backends.md), so the doubling search reaches that layer at 8 float layers instead of 1.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .fidelity import INPUT_NAME
from .scratch import scratch_dir


def _combine_db(values: list[float]) -> float:
    """SQNRs of independent noise sources -> the SQNR of their sum."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.inf
    return -10.0 * math.log10(sum(10.0 ** (-v / 10.0) for v in finite))


def layer_sensitivity(float_path: Path, qdq_path: Path, batch: np.ndarray, op_types: tuple, input_name: str = INPUT_NAME) -> dict[str, float]:
    """{node name: SQNR in dB} for the quantizable nodes of the float model, worst first."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import qdq_loss_debug as dbg

    ort.set_default_logger_severity(3)  # augmented graphs trigger harmless shape-merge warnings
    feeds = [{input_name: batch[i : i + 1]} for i in range(len(batch))]
    with scratch_dir(qdq_path) as tmp:  # the augmented copies go beside the QDQ model (the build folder), not to $TMPDIR
        float_aug, qdq_aug = Path(tmp) / "float_aug.onnx", Path(tmp) / "qdq_aug.onnx"
        dbg.modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        dbg.modify_model_output_intermediate_tensors(str(qdq_path), str(qdq_aug))
        float_acts = dbg.collect_activations(str(float_aug), iter(feeds))
        qdq_acts = dbg.collect_activations(str(qdq_aug), iter(feeds))
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)  # weight matching logs every non-weight DQ it skips
    try:
        act_err = dbg.compute_activation_error(dbg.create_activation_matching(qdq_acts, float_acts))
        weight_err = dbg.compute_weight_error(dbg.create_weight_matching(str(float_path), str(qdq_path)))
    finally:
        logging.disable(previous)
    scores = {}
    for node in onnx.load(str(float_path), load_external_data=False).graph.node:
        if node.op_type not in op_types:
            continue
        parts = [act_err[t]["qdq_err"] for t in (*node.input, *node.output) if t in act_err]
        # weights, not biases (input 2 of Conv/Gemm): an int32 bias's error is relative to a near-zero bias
        # (RepMixer's reparam convs: 0.7 dB) yet adds next to nothing to the output, and ranked such layers first
        parts += [weight_err[t] for t in node.input[:2] if t in weight_err]
        if parts:  # nodes without Q/DQ around them were not quantized
            scores[node.name] = float(_combine_db(parts))
    return dict(sorted(scores.items(), key=lambda kv: kv[1]))
