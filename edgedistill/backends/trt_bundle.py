"""The TensorRT bundle: everything a device needs to build its own engines, in one folder.

Engines only run on the TensorRT version and GPU that built them, so the host writes
`trt_bundle/` (ONNX files, bundle.json, build_engines.sh, README.md) and the device finishes
the job with `edgedistill compile trt_bundle/` (compile_bundle) or the trtexec script.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from pathlib import Path

from ..config import from_dict
from ..errors import EdgedistillError
from ..targets import TargetProfile
from ..versions import tool_versions
from . import trt_onnx as ox
from .trt_bundle_manifest import BUNDLE_DIR, FORMAT, load_bundle
from .trt_bundle_text import build_script, readme
from .trt_env import import_tensorrt, tensorrt_version
from ..artifacts import atomic_output, sha256_file, write_json_atomic
from .trt_precision import fp32_node_names
from .trt_preflight import PRECISIONS, errors, preflight
from .trt_support import parse_version
from .trt_build import engine_dla_core
from .trt_trtexec import trtexec_command

__all__ = ["write_bundle", "compile_bundle", "load_bundle", "trtexec_command", "BUNDLE_DIR"]

log = logging.getLogger(__name__)

TIMING_CACHE = "engines/timing.cache"


def write_bundle(
    out_dir: Path,
    onnx_files: dict[str, Path],
    target: TargetProfile,
    calibration_npy: Path | None = None,
    *,
    input_name: str | None = None,
) -> Path:
    """Write `<out_dir>/trt_bundle/` atomically and return its path.

    An `out_dir` that is itself named `trt_bundle` is used as the bundle folder (no nesting).
    `onnx_files` maps precision -> ONNX file, e.g. {"fp16": model.onnx, "int8": model.int8.qdq.onnx}.
    Preflight findings are recorded, not raised: the README tells the user what to fix.
    """
    if not onnx_files:
        raise EdgedistillError("no ONNX files were given for the TensorRT bundle", "pass at least {'fp16': model.onnx}")
    unknown = sorted(set(onnx_files) - set(PRECISIONS))
    if unknown:
        raise EdgedistillError(f"unknown precision '{unknown[0]}' for the TensorRT bundle", f"use {', '.join(PRECISIONS)}")
    if calibration_npy is not None and not Path(calibration_npy).is_file():
        raise EdgedistillError(f"calibration file '{calibration_npy}' does not exist", "pass the .npy the quantize stage wrote, or none")
    final = Path(out_dir) if Path(out_dir).name == BUNDLE_DIR else Path(out_dir) / BUNDLE_DIR
    with atomic_output(final) as tmp:
        tmp.mkdir()
        copied: dict[Path, tuple[str, dict]] = {}
        models = []
        for precision, src in onnx_files.items():
            src = Path(src)
            graph = ox.load_graph(src)
            if src.resolve() not in copied:
                copied[src.resolve()] = _copy_onnx(src, graph, tmp / "onnx" / precision)
            rel, files = copied[src.resolve()]
            name, dims = ox.resolve_input(graph, input_name)
            engine = f"engines/{precision}.engine"
            findings = preflight(src, target, precision=precision, input_name=name)
            pins = fp32_node_names(graph)
            models.append({
                "precision": precision,
                "onnx": rel,
                "files": files,
                "input": {"name": name, "shape": dims},
                "engine": engine,
                "fp32_layers": pins,
                "trtexec": trtexec_command(rel, engine, precision, target, name, dims, fp32_layers=pins, timing_cache=TIMING_CACHE),
                "dla_core": engine_dla_core(target, precision),  # trt_tag records it, and the runner sets it
                "findings": [f.to_dict() for f in findings],
            })
            for finding in findings:
                log.warning("%s (%s): %s", src.name, precision, finding.one_line())
        calibration = None
        if calibration_npy is not None:
            dest = tmp / "calibration" / Path(calibration_npy).name
            dest.parent.mkdir(parents=True)
            shutil.copy2(calibration_npy, dest)
            calibration = {"file": dest.relative_to(tmp).as_posix(), "sha256": sha256_file(dest)}
        manifest = {
            "format": FORMAT,
            "format_version": 1,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "created_with": tool_versions(),
            "target": _target_dict(target),
            "expected": {"tensorrt": target.tensorrt_version, "jetpack": target.jetpack},
            "precisions": list(onnx_files),
            "timing_cache": TIMING_CACHE,
            "models": models,
            "calibration": calibration,
            "compiled": None,
        }
        (tmp / "engines").mkdir()
        write_json_atomic(tmp / "bundle.json", manifest)
        script = tmp / "build_engines.sh"
        script.write_text(build_script(manifest))
        script.chmod(0o755)
        (tmp / "README.md").write_text(readme(manifest))
    return final


def compile_bundle(bundle_dir: Path) -> list[Path]:
    """On the device: re-check, build every engine, tag it, and record the results in bundle.json."""
    from ..progress import progress_bar
    from .trt_build import build_engine

    bundle_dir = Path(bundle_dir)
    manifest = load_bundle(bundle_dir)
    target = from_dict(TargetProfile, manifest["target"], where="bundle target")
    _verify_files(bundle_dir, manifest)
    installed = tensorrt_version()
    findings = {m["precision"]: preflight(bundle_dir / m["onnx"], target, precision=m["precision"], input_name=m["input"]["name"], trt_version=installed)
                for m in manifest["models"]}
    blocking = [(p, f) for p, found in findings.items() for f in errors(found)]
    if blocking:
        precision, first = blocking[0]
        more = f" (+{len(blocking) - 1} more, see {BUNDLE_DIR}/README.md)" if len(blocking) > 1 else ""
        raise EdgedistillError(f"{precision} model: {first.message}{more}", first.fix)
    trt = import_tensorrt("compiling a TensorRT bundle")
    _warn_version_drift(manifest, trt.__version__)

    built: list[Path] = []
    records = []
    with progress_bar() as progress:
        task = progress.add_task("TensorRT engines", total=len(manifest["models"]), info="")
        for model in manifest["models"]:
            progress.update(task, info=f"building {model['engine']} ({model['precision']})")
            engine = build_engine(
                bundle_dir / model["onnx"],
                bundle_dir / model["engine"],
                precision=model["precision"],
                target=target,
                timing_cache=bundle_dir / manifest.get("timing_cache", TIMING_CACHE),
                input_name=model["input"]["name"],
            )
            built.append(engine)
            records.append({"precision": model["precision"], "engine": model["engine"], "sha256": sha256_file(engine), "bytes": engine.stat().st_size})
            progress.advance(task)
    manifest["compiled"] = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tensorrt": trt.__version__,
        "engines": records,
        "findings": {p: [f.to_dict() for f in found] for p, found in findings.items()},
    }
    write_json_atomic(bundle_dir / "bundle.json", manifest)
    return built


def _target_dict(target: TargetProfile) -> dict:
    data = dataclasses.asdict(target)
    data.pop("source", None)  # a host path means nothing on the device
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _copy_onnx(src: Path, graph, dest_dir: Path) -> tuple[str, dict]:
    """Copy the ONNX file and its external weight files; return (relative path, {file: sha256})."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.parent.parent
    files = {}
    for name in [src.name, *sorted(ox.external_data_files(graph))]:
        source = src.parent / name
        if not source.is_file():
            raise EdgedistillError(f"'{src.name}' refers to external data '{name}', which is missing", "keep the .onnx and its weight file(s) together")
        dest = dest_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        files[dest.relative_to(root).as_posix()] = sha256_file(dest)
    return (dest_dir / src.name).relative_to(root).as_posix(), files


def _verify_files(bundle_dir: Path, manifest: dict) -> None:
    for model in manifest["models"]:
        for rel, digest in model["files"].items():
            path = bundle_dir / rel
            if not path.is_file():
                raise EdgedistillError(f"bundle file '{rel}' is missing", "copy the whole trt_bundle/ folder from the host again")
            if sha256_file(path) != digest:
                raise EdgedistillError(f"bundle file '{rel}' changed since the bundle was written", "copy the trt_bundle/ folder from the host again")


def _warn_version_drift(manifest: dict, installed: str) -> None:
    expected, have = parse_version(manifest["expected"].get("tensorrt")), parse_version(installed)
    if expected and have and expected[:2] != have[:2]:
        log.warning("the bundle expected TensorRT %s, this device has %s; preflight was re-run for %s",
                    manifest["expected"]["tensorrt"], installed, installed)
