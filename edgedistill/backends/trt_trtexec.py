"""The `trtexec` command line equivalent to `build_engine`, for devices without edgedistill.

trtexec ships with every TensorRT (on Jetson at /usr/src/tensorrt/bin/trtexec). Flags follow
the TensorRT 10 trtexec help; TensorRT 8.x takes the workspace size without a unit suffix,
and TensorRT 11 has no precision flags because every network is strongly typed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import EdgedistillError
from ..targets import TargetProfile
from .trt_build import engine_dla_core, profile_shapes
from .trt_preflight import PRECISIONS
from .trt_support import has_weak_typing, parse_version

log = logging.getLogger(__name__)

# No --best: trtexec then also enables INT8 on a model without Q/DQ and gives it placeholder scales
# (and bf16 on Ampere+), which the Python builder never does; "best" is fp16, plus int8 for a QDQ model (trt_build does the same).
PRECISION_ARGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"], "best": ["--fp16"]}
DEFAULT_VERSION = (10, 0)


def _is_qdq(onnx_path: Path | str) -> bool:
    from .trt_onnx import has_qdq, load_graph

    return Path(onnx_path).is_file() and has_qdq(load_graph(Path(onnx_path)))


def trtexec_command(
    onnx: Path | str,
    engine: Path | str,
    precision: str,
    target: TargetProfile,
    input_name: str,
    input_shape: list[int | None] | tuple,
    *,
    fp32_layers: list[str] | tuple = (),
    timing_cache: Path | str | None = None,
    trt_version: str | None = None,
) -> list[str]:
    """argv for trtexec building `onnx` into `engine` like build_engine would.

    `input_shape` is the ONNX input's dims with None for the dynamic batch; `fp32_layers` are
    node names to pin to FP32 (see trt_precision.fp32_node_names).
    """
    if precision not in PRECISIONS:
        raise EdgedistillError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}", "use fp16, int8, best or fp32")
    version = parse_version(trt_version or target.tensorrt_version) or DEFAULT_VERSION
    weak = has_weak_typing(version)
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    if weak:
        cmd += PRECISION_ARGS[precision]
        if precision == "best" and _is_qdq(onnx):
            cmd.append("--int8")  # the Q/DQ nodes carry the scales
    dla_core = engine_dla_core(target, precision)
    shapes = profile_shapes(list(input_shape), target, dla_core)
    if shapes is not None:
        for flag, shape in zip(("--minShapes", "--optShapes", "--maxShapes"), shapes):
            cmd.append(f"{flag}={input_name}:{'x'.join(str(d) for d in shape)}")
    unit = "M" if version[0] >= 10 else ""  # 8.x reads a bare number as MiB and knows no suffixes
    cmd.append(f"--memPoolSize=workspace:{int(target.workspace_mb)}{unit}")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if dla_core is not None:
        cmd += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    names = [n for n in fp32_layers if "," not in n and ":" not in n]
    if len(names) < len(fp32_layers):
        log.warning("left %d layer names with ',' or ':' out of --layerPrecisions", len(fp32_layers) - len(names))
    if weak and precision != "fp32" and names:
        spec = ",".join(f"{name}:fp32" for name in names)
        cmd += [f"--layerPrecisions={spec}", f"--layerOutputTypes={spec}", "--precisionConstraints=obey"]
    if version[0] >= 10:
        cmd.append("--skipInference")  # build only; edgedistill bench measures latency
    return cmd
