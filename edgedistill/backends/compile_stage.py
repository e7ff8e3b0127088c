"""Stage `compile`: per-target engines. OpenVINO IR here; TensorRT engines on a host that has
TensorRT, otherwise a bundle that `edgedistill compile BUNDLE` finishes on the device."""

from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import MANIFEST, Artifact, Manifest, atomic_output
from ..config import BuildConfig
from ..errors import EdgedistillError
from ..targets import TargetProfile
from .openvino_backend import convert_onnx, ir_batch, save_ir_weights
from .registry import get_backend


def run(cfg: BuildConfig, inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    onnx_fp32: Artifact = inputs["onnx"]
    produced = []
    if "openvino" in target.backends:
        precisions = [p for p in ("fp32", "fp16") if p in target.precisions]
        model = convert_onnx(onnx_fp32.abspath(workdir), ir_batch(target.device, target.batch_opt)) if precisions else None  # once for both
        for precision in precisions:
            final = workdir / "openvino" / precision
            with atomic_output(final) as tmp:
                save_ir_weights(model, tmp / "model.xml", fp16_weights=precision == "fp16")
            produced.append(Artifact.record(
                workdir, final, kind="openvino-ir", name=f"openvino-{precision}", parents=[onnx_fp32.name], precision=precision,
                backend="openvino", device=target.device, data_config=onnx_fp32.data_config, config_hash=target.content_hash(),
            ))
    if "tensorrt" in target.backends:
        produced += _tensorrt(inputs, workdir, target)
    return produced


def _tensorrt(inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    from .trt_bundle import write_bundle

    sources = {}
    for precision in target.precisions:
        source = inputs.get("onnxruntime-int8") if precision == "int8" else inputs["onnx"]
        if source is not None:
            sources[precision] = source
    calibration = inputs.get("trt-calibration")  # the exact batch the QDQ graph was calibrated on
    calibration_npy = calibration.abspath(workdir) / "calibration.npy" if calibration is not None else None
    bundle = write_bundle(workdir / "trt_bundle", {p: a.abspath(workdir) for p, a in sources.items()}, target, calibration_npy)
    refuse_blocked(bundle)
    engines = []
    # An engine fits the GPU and TensorRT it was built with: build here only when this host is the target
    if target.runs_on_this_host()[0] and get_backend("tensorrt").is_available():
        from .trt_bundle import compile_bundle

        engines = compile_bundle(bundle)
    # its parents are what it holds copies of: the ONNX models and the calibration batch
    parents = list(dict.fromkeys([*(a.name for a in sources.values()), *([calibration.name] if calibration is not None else [])]))
    return bundle_records(workdir, bundle, engines, parents, inputs["onnx"].data_config, target.device, sorted(sources),
                          target.content_hash())


def refuse_blocked(bundle: Path) -> None:
    """A bundle whose preflight found errors cannot build on the device (its README says so): fail here,
    where CI sees it, not on the Jetson. The bundle stays on disk for its README, unrecorded."""
    manifest = json.loads((bundle / "bundle.json").read_text())
    blocking = [(m["precision"], f) for m in manifest["models"] for f in m.get("findings", []) if f["severity"] == "error"]
    if blocking:
        precision, first = blocking[0]
        more = f" (and {len(blocking) - 1} more, listed in {bundle / 'README.md'})" if len(blocking) > 1 else ""
        raise EdgedistillError(f"TensorRT preflight of the {precision} model: {first['message']}{more}", first["fix"])


def bundle_records(workdir: Path, bundle: Path, engines: list[Path], parents: list[str], data_config: dict, device: str,
                   precisions: list[str], config_hash: str) -> list[Artifact]:
    """The bundle, pending until its engines are built and hashed after they are, then each engine.
    `config_hash`: the target profile's, whose settings the bundle's build commands carry."""
    records = [Artifact.record(workdir, bundle, kind="trt-bundle", name="tensorrt-bundle", parents=parents, backend="tensorrt",
                               device=device, status="ready" if engines else "pending", data_config=data_config,
                               config_hash=config_hash, extra={"precisions": precisions})]
    for engine in engines:
        precision = engine.stem.split(".")[-1]
        records.append(Artifact.record(workdir, engine, kind="trt-engine", name=f"tensorrt-{precision}", parents=["tensorrt-bundle"],
                                       backend="tensorrt", device=device, precision=precision, data_config=data_config,
                                       config_hash=config_hash))
    return records


def record_device_engines(bundle: Path, engines: list[Path]) -> Path | None:
    """After `edgedistill compile BUNDLE` on the device: the engines join the build folder's manifest
    (the bundle's parent, when it is one), so `edgedistill bench BUILD` there times them. Returns that folder."""
    workdir = bundle.resolve().parent
    if not (workdir / MANIFEST).is_file():
        return None  # a bundle copied on its own
    manifest = Manifest.load(workdir)
    if not adopt_engines(manifest, engines):
        return None
    manifest.save()
    return workdir


def adopt_engines(manifest: Manifest, engines: list[Path] | None = None) -> list[str]:
    """Record in `manifest` the engines built in its TensorRT bundle (default: every engines/*.engine there,
    as build_engines.sh leaves them) with the bundle re-hashed; the names recorded, [] when it has no bundle."""
    workdir, found = manifest.root.resolve(), manifest.artifacts()
    recorded = found.get("tensorrt-bundle")
    if recorded is None or "onnx-fp32" not in found:  # by name: the bundle's parents also name the int8 model and calibration
        return []
    bundle = recorded.abspath(workdir).resolve()
    engines = sorted((bundle / "engines").glob("*.engine")) if engines is None else [e.resolve() for e in engines]
    if not engines or any(bundle not in e.parents for e in engines):
        return []
    known = {a.abspath(workdir).resolve(): a for a in found.values() if a.kind == "trt-engine"}
    if recorded.status == "ready" and all(e in known and known[e].is_intact(workdir) for e in engines) and recorded.is_intact(workdir):
        return []  # recorded as they are (a tag sidecar or timing cache written since changes the bundle's hash: re-recorded)
    # parents as recorded: a manifest written before the bundle named all it holds keeps ['onnx-fp32']
    records = bundle_records(workdir, bundle, engines, recorded.parents, found["onnx-fp32"].data_config, recorded.device,
                             recorded.extra.get("precisions", []), recorded.config_hash)
    for record in records:
        manifest.add(record)
    stage = manifest.data["stages"].get("compile")
    if stage is not None:  # still fresh for the pipeline: these are the compile stage's outputs now
        stage["outputs"] = sorted({*stage["outputs"], *(r.name for r in records)})
    return [r.name for r in records]
