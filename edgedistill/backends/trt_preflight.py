"""Check an ONNX model against a target's TensorRT before anyone waits for a build on the device.

Uses the `onnx` package only, so it runs on the host that writes the bundle and again on the
device before compiling. Every finding carries a concrete fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from ..errors import EdgedistillError
from ..targets import TargetProfile
from . import trt_onnx as ox
from .trt_support import (
    DLA_OPS,
    NEVER_SUPPORTED,
    has_weak_typing,
    max_opset,
    missing_ops,
    parse_version,
    version_label,
)

PRECISIONS = ("fp32", "fp16", "int8", "best")
NORM_OPSET_FOR_OLD_TRT = 16  # below opset 17 the exporter decomposes LayerNorm into basic ops


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" blocks the build; "warning" builds but may not be what you expect
    code: str  # stable id, e.g. "opset-too-new"
    message: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)

    def one_line(self) -> str:
        return f"{self.severity}: {self.message} (fix: {self.fix})"


def preflight(
    onnx_path: Path,
    target: TargetProfile,
    *,
    precision: str | None = None,
    input_name: str | None = None,
    trt_version: str | None = None,
) -> list[Finding]:
    """Findings for building `onnx_path` on `target` (TensorRT version: `trt_version`, else the target's)."""
    model = ox.load_graph(Path(onnx_path))
    version = parse_version(trt_version or target.tensorrt_version)
    findings = _check_input(model, input_name, target)
    if version is None:
        findings.append(Finding("warning", "trt-version-unknown",
                                f"target '{target.name}' names no TensorRT version, so opset and op support were not checked",
                                "set tensorrt_version in the target profile (e.g. \"10.3\" for JetPack 6.1)"))
    else:
        findings += _check_parser(model, version)
    if precision is not None:
        findings += _check_precision(model, precision, version)
    if target.dla_core is not None:
        findings += _check_dla(model, target, precision, version)
    return findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def _check_input(model: onnx.ModelProto, input_name: str | None, target: TargetProfile) -> list[Finding]:
    inputs = ox.graph_inputs(model)
    if len(inputs) > 1 and input_name is None:
        return [Finding("error", "many-inputs", f"the model has {len(inputs)} inputs ({', '.join(inputs)}); the TensorRT path builds one image input",
                        "export the student with a single image input")]
    try:
        name, dims = ox.resolve_input(model, input_name)
    except EdgedistillError as exc:
        return [Finding("error", "input-missing", exc.cause, exc.fix)]
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if len(dims) != 4:
        return [Finding("error", "input-rank", f"input '{name}' has shape {shown}; expected N x C x H x W",
                        "export the student with an NCHW image input")]
    if any(d is None for d in dims[1:]):
        return [Finding("error", "dynamic-spatial", f"input '{name}' has dynamic non-batch dims ({shown}); engines need a static C x H x W",
                        f"re-export with only the batch axis dynamic: dynamic_axes={{'{name}': {{0: 'batch'}}}}")]
    if dims[0] is not None and not (dims[0] == target.batch_min == target.batch_max):
        return [Finding("warning", "static-batch",
                        f"input '{name}' has a fixed batch of {dims[0]}, the target asks batch {target.batch_min}..{target.batch_max}; the engine will only take batch {dims[0]}",
                        f"re-export with a dynamic batch axis: dynamic_axes={{'{name}': {{0: 'batch'}}}}")]
    return []


def _check_parser(model: onnx.ModelProto, version: tuple[int, ...]) -> list[Finding]:
    label = version_label(version[:2])
    top = max_opset(version)
    if top is None or tuple(version[:2]) < (8, 5):  # the runner's name-based I/O (set_input_shape, execute_async_v3) is 8.5+
        return [Finding("error", "trt-too-old", f"TensorRT {label} is older than 8.5, which edgedistill does not build or run for",
                        "move the device to a JetPack with TensorRT >= 8.5 (JetPack 5.1)")]
    findings = []
    ops = ox.op_counts(model)
    missing = missing_ops(version, ops)
    opset = ox.default_opset(model)
    if opset > top:
        old_norm = "LayerNormalization" in ops and tuple(version[:2]) < (8, 6)
        suggest = min(top, NORM_OPSET_FOR_OLD_TRT) if old_norm else top
        findings.append(Finding("error", "opset-too-new", f"the model uses ONNX opset {opset}; TensorRT {label} parses up to opset {top}",
                                f"re-export with export.opset={suggest}"))
    for op, added in sorted(missing.items()):
        need = version_label(added)
        if op == "LayerNormalization":
            fix = (f"export at opset {NORM_OPSET_FOR_OLD_TRT} (export.opset={NORM_OPSET_FOR_OLD_TRT}) so LayerNorm is decomposed into basic ops, "
                   f"or move the device to JetPack 6 (TensorRT >= {need})")
        else:
            fix = f"export at a lower opset so {op} is decomposed, or use TensorRT >= {need}"
        findings.append(Finding("error", "op-unsupported", f"{op} ({ops[op]} nodes) needs TensorRT >= {need}; the target has TensorRT {label}", fix))
    for op in sorted(set(ops) & set(NEVER_SUPPORTED)):
        findings.append(Finding("error", "op-unsupported", f"{op} ({ops[op]} nodes) has no TensorRT importer", NEVER_SUPPORTED[op]))
    for op, count in sorted(ox.custom_domain_ops(model).items()):
        if op.startswith("com.microsoft::"):
            findings.append(Finding("error", "custom-domain-op", f"{op} ({count} nodes) is an ONNX Runtime contrib op TensorRT cannot parse",
                                    "give TensorRT the plain exported ONNX, not an ONNX Runtime-optimised one"))
        else:
            findings.append(Finding("warning", "custom-domain-op", f"{op} ({count} nodes) is outside the standard ONNX domain",
                                    "register a TensorRT plugin that implements it before building"))
    return findings


def _check_precision(model: onnx.ModelProto, precision: str, version: tuple[int, ...] | None) -> list[Finding]:
    if precision not in PRECISIONS:
        return [Finding("error", "precision-unknown", f"precision '{precision}' is not one of {', '.join(PRECISIONS)}",
                        "use fp16, int8, best or fp32")]
    findings = []
    qdq = ox.has_qdq(model)
    if precision == "int8" and not qdq:
        findings.append(Finding("error", "int8-without-qdq",
                                "int8 needs an explicitly quantized (Q/DQ) model, but this one has no QuantizeLinear/DequantizeLinear nodes; "
                                "TensorRT 10 deprecated implicit INT8 calibration and TensorRT 11 removed it",
                                "pass the quantize stage's QDQ model (symmetric int8) for int8, or build this file as fp16"))
    if precision == "best" and not qdq:
        findings.append(Finding("warning", "best-without-qdq", "'best' on a model without Q/DQ nodes has no INT8 scales, so it builds as fp16",
                                "build this file as fp16, or pass a QDQ model"))
    if qdq and precision in ("fp16", "fp32"):
        findings.append(Finding("warning", "qdq-in-float", f"the model has Q/DQ nodes but is built as {precision}; TensorRT runs those layers in INT8 anyway",
                                "build QDQ models with precision int8"))
    if qdq and (wide := ox.non_int8_dequantize(model)):
        findings.append(Finding("error", "qdq-int32-dequantize", f"{wide} DequantizeLinear nodes dequantize non-int8 constants (int32 biases); "
                                "TensorRT's ONNX parser takes only int8 there",
                                "re-quantize with quantize.quantize_bias=false (edgedistill does so for TensorRT targets)"))
    bad = ox.zero_point_problems(model)
    if bad.get("uint8"):
        findings.append(Finding("error", "qdq-uint8", f"{bad['uint8']} Q/DQ nodes use uint8 zero points (asymmetric activations); TensorRT accepts only symmetric int8 with zero point 0",
                                "re-quantize with quantize.symmetric_activations=true (int8 activations)"))
    if bad.get("nonzero"):
        findings.append(Finding("error", "qdq-zero-point", f"{bad['nonzero']} Q/DQ nodes have non-zero zero points; TensorRT accepts only zero point 0",
                                "re-quantize with quantize.symmetric_activations=true"))
    if version is not None and not has_weak_typing(version) and precision in ("fp16", "best") and not ox.has_float16(model):
        findings.append(Finding("error", "fp16-needs-strong-typing",
                                f"TensorRT {version_label(version[:2])} builds only strongly typed networks, so an fp32 ONNX cannot become an fp16 engine",
                                "convert the ONNX with ModelOpt AutoCast (python -m modelopt.onnx.autocast --onnx_path model.onnx), or use TensorRT 10.x"))
    return findings


DLA_RETURNS = (11, 4, 1)  # "TensorRT 11.4.1 supports DLA on Jetson AGX Orin when using JetPack 7.2.2 or later"
DLA_JETPACK = (7, 2, 2)


def _dla_release_findings(target: TargetProfile, version: tuple[int, ...] | None) -> list[Finding]:
    """DLA left Linux after TensorRT 10.7 (11.0-11.3 have none, 11.4.0 only Windows on ARM) and came back
    in 11.4.1, on AGX Orin under JetPack 7.2.2 or later. A version named without its patch ("11.4") is
    read as its first release, 11.4.0."""
    if version is None or tuple(version[:2]) <= (10, 7):
        return []
    label = version_label(version[:3])
    if tuple(version[:3]) < DLA_RETURNS:  # (11, 4) < (11, 4, 1): a version without its patch is its .0
        return [Finding("error", "dla-unavailable", f"TensorRT {label} has no DLA support on Linux (10.7 was the last before 11.4.1)",
                        "use the JetPack's TensorRT (10.3 on JetPack 6) or TensorRT 11.4.1+ on JetPack 7.2.2+, or unset dla_core")]
    jetpack = parse_version(target.jetpack)
    if jetpack is None:
        return [Finding("warning", "dla-jetpack-unknown", f"TensorRT {label} runs DLA only under JetPack 7.2.2 or later, and target '{target.name}' names no JetPack",
                        "set jetpack in the target profile (e.g. \"7.2.2\")")]
    if tuple(jetpack[:3]) < DLA_JETPACK:
        return [Finding("error", "dla-unavailable", f"TensorRT {label} runs DLA only under JetPack 7.2.2 or later; the target names JetPack {target.jetpack}",
                        "upgrade the device to JetPack 7.2.2+, or use the JetPack's own TensorRT 10.x, or unset dla_core")]
    return []


def _check_dla(model: onnx.ModelProto, target: TargetProfile, precision: str | None, version: tuple[int, ...] | None) -> list[Finding]:
    if precision == "fp32":  # built for the GPU alone (trt_build.engine_dla_core): no DLA check applies
        return [Finding("warning", "dla-fp32", "DLA runs only FP16 and INT8, so the fp32 engine is built for the GPU alone",
                        "build fp16 or int8 for DLA")]
    findings = []
    findings += _dla_release_findings(target, version)
    if not (target.batch_min == target.batch_opt == target.batch_max):
        findings.append(Finding("warning", "dla-static-batch",
                                f"DLA needs static shapes, so the engine is built for batch {target.batch_opt} only (the target asks {target.batch_min}..{target.batch_max})",
                                "set batch_min = batch_opt = batch_max in the target to make the DLA batch explicit"))
    ops = ox.op_counts(model)
    off = {op: n for op, n in ops.items() if op not in DLA_OPS}
    if off:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(off.items(), key=lambda kv: (-kv[1], kv[0])))
        findings.append(Finding("warning", "dla-fallback", f"{sum(off.values())} ops have no DLA layer and fall back to the GPU: {listed}",
                                "expected for transformer blocks; each DLA/GPU switch costs a copy, so for a DLA-heavy deployment "
                                "pick a convolutional student, or unset dla_core to run on the GPU only"))
    return findings
