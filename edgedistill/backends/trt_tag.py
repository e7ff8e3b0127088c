"""Engine and cache tags: which TensorRT version and which GPU a serialized file belongs to.

A TensorRT engine only runs on the TensorRT version and GPU model that built it, and a timing
cache is only valid for them too. Each such file gets a `<file>.json` sidecar holding that tag
(plus the file's sha256); loading checks it first, so a stale file fails with a clear message
instead of a deserialization crash, and a stale cache is never silently reused.

Tag engines that trtexec built: python -m edgedistill.backends.trt_tag ENGINE [ENGINE ...]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..errors import EdgedistillError
from ..artifacts import sha256_file, write_bytes_atomic, write_json_atomic
from .trt_bundle_manifest import load_bundle

log = logging.getLogger(__name__)

REBUILD_FIX = "rebuild with edgedistill compile BUNDLE on this device"
TAG_KEYS = ("tensorrt", "device", "compute_capability")


def engine_tag(trt_version: str, device_name: str, compute_capability: str) -> dict:
    return {"tensorrt": str(trt_version), "device": str(device_name), "compute_capability": str(compute_capability)}


def current_tag() -> dict:
    """The tag of this machine: installed TensorRT and the first CUDA device."""
    from .trt_env import cuda_device, import_tensorrt

    trt = import_tensorrt("checking a TensorRT engine")
    device = cuda_device()
    if device is None:
        raise EdgedistillError("no CUDA device is visible, so TensorRT engines cannot run here", "run on the NVIDIA device the engine was built for")
    return engine_tag(trt.__version__, device.name, device.compute_capability)


def sidecar_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_engine_tag(engine_path: Path, tag: dict, build: dict | None = None) -> Path:
    """Write `<engine>.json` with the tag, the engine's sha256 and how it was built."""
    engine_path = Path(engine_path)
    record = {
        "format": "edgedistill-tensorrt-engine",
        "tag": {key: tag[key] for key in TAG_KEYS},
        "engine": {"file": engine_path.name, "sha256": sha256_file(engine_path), "bytes": engine_path.stat().st_size},
        "build": build or {},
    }
    return write_json_atomic(sidecar_path(engine_path), record)


def read_engine_tag(engine_path: Path) -> dict:
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise EdgedistillError(
            f"engine '{engine_path}' has no tag file '{side.name}', so its TensorRT version and GPU are unknown", REBUILD_FIX
        )
    try:
        record = json.loads(side.read_text())
        record["tag"][TAG_KEYS[0]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgedistillError(f"engine tag file '{side}' is unreadable", REBUILD_FIX) from exc
    return record


def check_engine_tag(engine_path: Path, current: dict) -> None:
    """Raise EdgedistillError unless the engine was built by this TensorRT for this GPU."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EdgedistillError(f"engine '{engine_path}' does not exist", REBUILD_FIX)
    record = read_engine_tag(engine_path)
    tag = record["tag"]
    if record.get("engine", {}).get("sha256") != sha256_file(engine_path):
        raise EdgedistillError(f"engine '{engine_path}' does not match the sha256 in its tag (changed or truncated)", REBUILD_FIX)
    if tag.get("tensorrt") != current.get("tensorrt"):
        raise EdgedistillError(
            f"engine '{engine_path.name}' was built with TensorRT {tag.get('tensorrt')}, this machine has TensorRT {current.get('tensorrt')}",
            REBUILD_FIX,
        )
    if tag.get("compute_capability") != current.get("compute_capability") or tag.get("device") != current.get("device"):
        raise EdgedistillError(
            f"engine '{engine_path.name}' was built for {tag.get('device')} (compute {tag.get('compute_capability')}), "
            f"this machine has {current.get('device')} (compute {current.get('compute_capability')})",
            REBUILD_FIX,
        )


def save_tagged_cache(path: Path, data: bytes, tag: dict) -> Path:
    """Save a timing (or calibration) cache with a sidecar naming the TensorRT and GPU it is for."""
    path = write_bytes_atomic(Path(path), bytes(data))
    write_json_atomic(sidecar_path(path), {"format": "edgedistill-tensorrt-cache", "tag": {k: tag[k] for k in TAG_KEYS}, "sha256": sha256_file(path)})
    return path


def load_tagged_cache(path: Path | None, tag: dict) -> bytes | None:
    """The cache bytes when they belong to `tag`; None (and a logged reason) otherwise."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    side = sidecar_path(path)
    try:
        record = json.loads(side.read_text())
        saved = record["tag"]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring cache %s: it has no readable tag, so its TensorRT version is unknown", path)
        return None
    mismatched = [key for key in TAG_KEYS if saved.get(key) != tag.get(key)]
    if mismatched:
        log.warning(
            "ignoring cache %s: made for %s, this is %s",
            path,
            ", ".join(f"{k}={saved.get(k)}" for k in mismatched),
            ", ".join(f"{k}={tag.get(k)}" for k in mismatched),
        )
        return None
    if record.get("sha256") != sha256_file(path):
        log.warning("ignoring cache %s: its contents changed after it was tagged", path)
        return None
    return path.read_bytes()


def bundle_build_settings(engine_path: Path) -> dict:
    """How build_engines.sh built this engine, from the bundle.json beside its engines/ folder
    ({} for an engine from elsewhere): the runner needs the DLA core, which the engine does not hold."""
    try:
        manifest = load_bundle(Path(engine_path).resolve().parent.parent)
    except EdgedistillError:
        return {}
    wanted = f"engines/{Path(engine_path).name}"
    model = next((m for m in manifest.get("models", []) if m.get("engine") == wanted), None)
    return {} if model is None else {"precision": model.get("precision"), "dla_core": model.get("dla_core")}


def main(argv: list[str] | None = None) -> int:
    """Tag engines built outside edgedistill (e.g. by trtexec) with this machine's tag."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m edgedistill.backends.trt_tag ENGINE [ENGINE ...]", file=sys.stderr)
        return 2
    try:
        tag = current_tag()
        for path in paths:
            if not path.is_file():
                raise EdgedistillError(f"engine '{path}' does not exist", "pass the --saveEngine path trtexec wrote")
            print(f"tagged {write_engine_tag(path, tag, {'built_by': 'trtexec', **bundle_build_settings(path)})}")
    except EdgedistillError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
