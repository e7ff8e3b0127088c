"""Build a TensorRT engine from an ONNX file for a target, with the TensorRT Python API.

The steps mirror `trtexec` (see trt_trtexec.py for the equivalent command line): parse the
ONNX, set the workspace pool, precision flags, an optimisation profile over the target's batch
range at the model's static C x H x W, DLA with GPU fallback when the target names a DLA core,
FP32 pins on normalization and softmax layers (including LayerNorms decomposed into float math,
found in the ONNX graph: see trt_precision.py), and a tagged timing cache. The engine is written
atomically, followed by its `<engine>.json` tag.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import EdgedistillError
from ..targets import TargetProfile
from . import trt_onnx as ox
from .trt_env import cuda_device, import_tensorrt
from ..artifacts import sha256_file, write_bytes_atomic
from .trt_precision import fp32_node_names, keep_fp32
from .trt_preflight import PRECISIONS, errors, preflight
from .trt_support import parse_version
from .trt_tag import engine_tag, load_tagged_cache, save_tagged_cache, sidecar_path, write_engine_tag

log = logging.getLogger(__name__)

# Builder flags per precision while TensorRT still has weak typing (<= 10.x). INT8 also enables
# FP16 so layers left unquantized (LayerNorm, Softmax, GELU) run in FP16 rather than FP32.
PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16"), "best": ("FP16",)}


def engine_dla_core(target: TargetProfile, precision: str) -> int | None:
    """The DLA core an engine of this precision is built for. DLA runs only FP16 and INT8, so an
    fp32 engine is built for the GPU alone (both builders, and the record the runner reads)."""
    return None if precision == "fp32" else target.dla_core


def profile_shapes(dims: list[int | None], target: TargetProfile, dla_core: int | None) -> tuple[tuple, tuple, tuple] | None:
    """(min, opt, max) NCHW shapes for a dynamic batch; None when the batch is fixed in the ONNX.

    DLA has no dynamic shapes, so for an engine on a DLA core all three are the target's batch_opt.
    """
    if dims[0] is not None:
        return None
    chw = tuple(int(d) for d in dims[1:])
    if dla_core is not None:
        batches = (target.batch_opt,) * 3
    else:
        batches = (target.batch_min, target.batch_opt, target.batch_max)
    return tuple((b, *chw) for b in batches)  # type: ignore[return-value]


def build_engine(
    onnx_path: Path,
    out_path: Path,
    *,
    precision: str,
    target: TargetProfile,
    timing_cache: Path | None = None,
    input_name: str | None = "input",
    layernorm_fp32: bool = True,
) -> Path:
    """Build `onnx_path` into a serialized engine at `out_path` (plus `<out_path>.json`)."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if precision not in PRECISIONS:
        raise EdgedistillError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}", "use fp16, int8, best or fp32")
    trt = import_tensorrt("building a TensorRT engine")
    device = cuda_device()
    if device is None:
        raise EdgedistillError("no CUDA device is visible, so no TensorRT engine can be built here", "run the build on the NVIDIA device itself")
    found = errors(preflight(onnx_path, target, precision=precision, input_name=input_name, trt_version=trt.__version__))
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise EdgedistillError(f"{onnx_path.name}: {found[0].message}{more}", found[0].fix)
    model = ox.load_graph(onnx_path)
    name, dims = ox.resolve_input(model, input_name)
    tag = engine_tag(trt.__version__, device.name, device.compute_capability)

    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgedistillError(
            f"TensorRT {trt.__version__} could not parse {onnx_path.name}: {problems[0] if problems else 'unknown error'}",
            "run edgedistill's preflight on the bundle and re-export the ONNX as it advises",
        )

    config = builder.create_builder_config()
    # The workspace pool caps scratch memory per layer; on Jetson it is shared with the CPU.
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(target.workspace_mb) << 20)
    # 'best' sets INT8 only where Q/DQ nodes carry the scales: INT8 with neither them nor a calibrator fails
    # the build ("Calibration failure occurred with no scaling factors detected"), as trtexec_command knows
    flags = PRECISION_FLAGS[precision] + (("INT8",) if precision == "best" and ox.has_qdq(model) else ())
    for flag in flags:
        if hasattr(trt.BuilderFlag, flag):  # absent in TensorRT 11 (strongly typed only)
            config.set_flag(getattr(trt.BuilderFlag, flag))
    pinned = 0
    if layernorm_fp32 and precision != "fp32" and hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
        # Layers carry their ONNX node's name; only the ONNX graph shows a decomposed LayerNorm.
        pinned = keep_fp32(network, trt, fp32_node_names(model))
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    dla_core = engine_dla_core(target, precision)
    if dla_core is not None:
        _use_dla(trt, builder, config, dla_core)

    shapes = profile_shapes(dims, target, dla_core)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(name, *shapes)
        config.add_optimization_profile(profile)

    cache = config.create_timing_cache(load_tagged_cache(timing_cache, tag) or b"")
    config.set_timing_cache(cache, False)  # False: do not accept a cache from another device

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgedistillError(
            f"TensorRT failed to build an engine from {onnx_path.name} ({precision})",
            "read the TensorRT messages above; raising workspace_mb in the target or building fp32 usually gets past tactic failures",
        )
    if timing_cache is not None:
        save_tagged_cache(Path(timing_cache), bytes(config.get_timing_cache().serialize()), tag)

    # An old tag must never vouch for the new engine, so drop it before the engine lands.
    sidecar_path(out_path).unlink(missing_ok=True)
    write_bytes_atomic(out_path, bytes(serialized))
    write_engine_tag(out_path, tag, {
        "precision": precision,
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "input": {"name": name, "profile": [list(s) for s in shapes] if shapes else None, "static_shape": None if shapes else dims},
        "target": target.name,
        "workspace_mb": target.workspace_mb,
        "dla_core": dla_core,
        "fp32_layers": pinned,
        "seconds": round(time.perf_counter() - started, 1),
    })
    log.info("built %s (%s, %d layers pinned to fp32)", out_path, precision, pinned)
    return out_path


def _network_flags(trt) -> int:
    """TensorRT 8.x needs EXPLICIT_BATCH; from 10.0 explicit batch is the only mode and the flag is ignored."""
    version = parse_version(trt.__version__) or (10, 0)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 1 << int(flag) if version[0] < 10 and flag is not None else 0


def _use_dla(trt, builder, config, core: int) -> None:
    available = int(getattr(builder, "num_DLA_cores", 0))
    if core >= available:
        raise EdgedistillError(
            f"the target asks for DLA core {core} but this device has {available} DLA cores",
            "unset dla_core in the target (Orin Nano has no DLA) or pick a core below the count",
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    # Layers DLA cannot run (attention, GELU, LayerNorm) go to the GPU instead of failing the build.
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
