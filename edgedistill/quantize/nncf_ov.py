"""OpenVINO INT8 through NNCF post-training quantization.

The scheme follows the graph: model_type=TRANSFORMER (LayerNorm, Softmax and GELU stay in float,
SmoothQuant on the MatMuls) when the ONNX graph has LayerNormalization or Softmax, plain
otherwise. Measured on EfficientNet-Lite0 (96 photo crops): the TRANSFORMER scheme on this CNN keeps
top-1 0.865 against fp32, the plain one 0.896. With a validation set, nncf.quantize_with_accuracy_control reverts the most
harmful quantizers until the drop is within `nncf_max_drop`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..backends import get_backend, kept_signal_stack
from ..backends.openvino_backend import compile_config, fix_batch
from ..config import QuantizeConfig
from ..errors import EdgedistillError, MissingBackendError
from .scratch import scratch_dir

TRANSFORMER_OPS = {"LayerNormalization", "Softmax"}
MODEL_TYPES = ("auto", "transformer", "cnn")
# The deployable student's own heads (models/deploy.py: token_head starts with a LayerNorm, classifier):
# every student has them, so they say nothing of whether its backbone is a transformer
HEAD_SCOPES = ("/token_head/", "/classifier/")


def graph_is_transformer(onnx_path: Path) -> bool:
    """Whether the backbone has LayerNorm or Softmax: a CNN student (fastvit, repvit, mobileone) gets the plain scheme."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in TRANSFORMER_OPS and not node.name.startswith(HEAD_SCOPES) for node in graph.node)


def resolve_model_type(cfg: QuantizeConfig, onnx_path: Path) -> str:
    if cfg.nncf_model_type not in MODEL_TYPES:
        raise EdgedistillError(f"unknown quantize.nncf_model_type '{cfg.nncf_model_type}'", f"use one of: {', '.join(MODEL_TYPES)}")
    if cfg.nncf_model_type != "auto":
        return cfg.nncf_model_type
    return "transformer" if graph_is_transformer(onnx_path) else "cnn"


def _metric_output(outputs) -> str | None:
    return "logits" if "logits" in outputs else ("embedding" if "embedding" in outputs else None)


def _validation(compiled_model, data) -> float:
    """Teacher-labelled metric: top-1 agreement with fp32 logits, else mean cosine with fp32 output."""
    outputs = {name: port for port in compiled_model.outputs for name in port.get_names()}
    key = _metric_output(outputs)
    scores = []
    for sample, reference in data:
        result = compiled_model(sample)
        out = np.asarray(result[outputs[key]] if key else result[0]).reshape(len(sample), -1)
        ref = reference.reshape(len(sample), -1)
        if key == "logits":
            scores += list(out.argmax(-1) == ref.argmax(-1))
        else:
            scores += list((out * ref).sum(1) / np.maximum(np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1), 1e-12))
    return float(np.mean(scores))


def quantized_ops(model) -> set[str]:
    """The ops a FakeQuantize feeds, directly or through ops NNCF does not quantize (Reshape, Transpose, ...):
    NNCF's own count of quantized operations (nncf.common.graph.utils.get_number_of_quantized_ops)."""
    from nncf.openvino.graph.metatypes.groups import INPUTS_QUANTIZABLE_OPERATIONS

    quantizable = {name for metatype in INPUTS_QUANTIZABLE_OPERATIONS for name in metatype.get_all_aliases()}
    found, seen = set(), set()
    to_see = [target.get_node() for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
              for target in op.output(0).get_target_inputs()]
    while to_see:
        node = to_see.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in quantizable:
            found.add(node.get_friendly_name())
        else:
            to_see += [target.get_node() for output in node.outputs() for target in output.get_target_inputs()]
    return found


def accuracy_control_record(core, quantized, intermediate, items: list, max_drop: float) -> dict:
    """What accuracy control reached, which NNCF logs but does not return: the quantized model's metric on the
    validation items, its drop, and the ops it reverted to float (quantized in NNCF's fully quantized
    intermediate model, not in the result; weight FakeQuantizes are folded into int8 constants by then, the
    activation ones remain). The fp32 reference scores 1.0: the validation labels are the fp32 model's own
    outputs (quantize/stage.py), so the drop is 1 - metric."""
    # f32, as NNCF scores it and bench runs it: OpenVINO's default on a bf16 CPU is bf16 (0.833 here against NNCF's 0.854)
    metric = _validation(core.compile_model(quantized, "CPU", compile_config("CPU", None, None)), items)
    before = quantized_ops(intermediate)
    reverted = before - quantized_ops(quantized)
    names = [op.get_friendly_name() for op in intermediate.get_ordered_ops() if op.get_friendly_name() in reverted]
    key = _metric_output({name for port in quantized.outputs for name in port.get_names()})
    return {"metric": "top-1 agreement" if key == "logits" else "cosine", "metric_value": round(metric, 6), "drop": round(1.0 - metric, 6),
            "within_max_drop": bool(1.0 - metric <= max_drop), "quantized_ops": len(before), "float_ops": names}


def quantize_openvino_int8(onnx_path: Path, xml_path: Path, batch: np.ndarray, cfg: QuantizeConfig | None = None,
                           validation: tuple[np.ndarray, np.ndarray] | None = None, metadata: dict | None = None,
                           fixed_batch: int | None = None) -> dict:
    """Write an INT8 IR to `xml_path`; returns what was applied (recorded in the artifact).

    `validation` is (inputs, fp32 reference of the metric output: logits, else embedding);
    with it and cfg.nncf_accuracy_control, accuracy control is used.
    `fixed_batch` fixes the saved IR's batch (openvino_backend.ir_batch); calibration runs dynamic first.
    """
    # nncf imports torch's cpp_extension, which warns about a missing CUDA runtime on CPU hosts.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise MissingBackendError("nncf", None, "OpenVINO INT8 quantization") from exc
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from .calibration import nncf_dataset

    cfg = cfg or QuantizeConfig()
    model_type = resolve_model_type(cfg, onnx_path)
    smooth_quant = cfg.nncf_smooth_quant and model_type == "transformer"  # NNCF applies it only to transformers
    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters() if smooth_quant else AdvancedSmoothQuantParameters(convolution=-1, matmul=-1))
    common = dict(subset_size=len(batch), preset=nncf.QuantizationPreset.MIXED,
                  model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None)
    core = ov.Core()  # one for the stage: each Core loads its own plugins
    model = core.read_model(str(onnx_path))
    use_control = cfg.nncf_accuracy_control and validation is not None
    with kept_signal_stack():  # NNCF compiles on several ov.Core objects: see signal_stack
        if use_control:
            from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

            inputs, reference = validation
            items = [(inputs[i : i + 8], reference[i : i + 8]) for i in range(0, len(inputs), 8)]
            with scratch_dir(xml_path.parent) as tmp:  # NNCF writes its fully quantized model here, before reverting any op
                quantized = nncf.quantize_with_accuracy_control(
                    model, nncf_dataset(batch), nncf.Dataset(items, lambda item: item[0]), _validation,
                    max_drop=cfg.nncf_max_drop, advanced_quantization_parameters=advanced,
                    advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                        max_num_iterations=cfg.fallback_max_trials, intermediate_model_dir=str(tmp)),
                    **common)
                control = accuracy_control_record(core, quantized, core.read_model(str(tmp / "intermediate_model.xml")), items,
                                                  cfg.nncf_max_drop)
        else:
            quantized = nncf.quantize(model, nncf_dataset(batch), advanced_parameters=advanced, **common)
    # The IR carries the ONNX file's metadata_props under rt_info "framework"; they said fp32 until updated here
    for key, value in (metadata or {}).items():
        quantized.set_rt_info(value if isinstance(value, str) else json.dumps(value, sort_keys=True), ["framework", key])
    fix_batch(quantized, fixed_batch)
    get_backend("openvino").save_ir(quantized, xml_path, compress_to_fp16=False)  # a full disk gives the CLI's one-line error
    return {"model_type": model_type, "smooth_quant": smooth_quant, "accuracy_control": use_control,
            "max_drop": cfg.nncf_max_drop if use_control else None, "preset": "mixed", **(control if use_control else {})}
