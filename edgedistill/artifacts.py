"""Artifact records and the build folder's manifest.json, written atomically.

A build folder is complete only when its manifest says `"status": "complete"`; a stage that
fails leaves the manifest at "incomplete" with the failure recorded, never a finished look.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import datetime as dt
import glob
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .errors import EdgedistillError
from .ranks import is_first_rank
from .versions import newest, tool_versions

MANIFEST = "manifest.json"


def model_digest(student: "Artifact") -> str:
    """Which model a student artifact is: its weights' digest (models.student.weights_digest), or for one
    recorded before that the folder's sha256, which also covers its train_log.csv."""
    return student.extra.get("weights_sha256") or student.sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: Path | str) -> str:
    """sha256_file, remembered for this process by the file's identity and times (ctime: no utime() hides a
    write), so a teacher checkpoint or an image that several stage keys hash in one command is read once."""
    found = os.stat(path)
    key = (os.path.realpath(path), found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _path_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, or of a folder's files in sorted order. Memoised per file (file_digest):
    each stage's freshness check hashes model.onnx and the IRs again, and a rewritten file gets new times."""
    if path.is_file():
        return file_digest(path), path.stat().st_size
    digest, size = hashlib.sha256(), 0
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_digest(child).encode())
        size += child.stat().st_size
    return digest.hexdigest(), size


# The kinds a runtime loads and bench times (the student, the evalset and bundles are not run)
RUNNABLE_KINDS = ("onnx", "openvino-ir", "trt-engine")


@dataclass
class Artifact:
    kind: str  # student | onnx | openvino-ir | trt-bundle | trt-engine | bench
    path: str  # relative to the build folder
    name: str = ""
    sha256: str = ""
    size: int = 0
    parents: list = field(default_factory=list)  # names of the artifacts it was made from
    config_hash: str = ""
    precision: str = ""
    backend: str = ""
    device: str = ""
    status: str = "ready"  # ready | pending (must be finished on the device)
    tool_versions: dict = field(default_factory=dict)
    data_config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def record(cls, root: Path, path: Path, **fields) -> "Artifact":
        """Describe the file or folder at `path` (inside `root`), hashing its content."""
        digest, size = _path_digest(path)
        fields.setdefault("name", path.name)
        fields.setdefault("tool_versions", tool_versions())
        return cls(path=str(path.relative_to(root)), sha256=digest, size=size, **fields)

    def abspath(self, root: Path) -> Path:
        return root / self.path

    def is_intact(self, root: Path) -> bool:
        """True when the file still exists with the recorded content."""
        path = self.abspath(root)
        restore_interrupted(path)
        return path.exists() and _path_digest(path)[0] == self.sha256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Artifact":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def shareable(path: Path | str) -> None:
    """The permissions a plain open() would give (0644 under umask 022): mkstemp and safetensors
    write 0600, which another user (a container USER, a web server) could not read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def temp_file(path: Path) -> tuple[int, str]:
    """mkstemp beside `path`, named with this process's pid (.NAME.PID-XXXXXXXX), after removing the temp
    files killed writers left there: a live writer, this one included, keeps its own."""
    sweep_dead_temp_files(path)
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", dir=path.parent)


# mkstemp's 8 random characters, and before them the writer's pid (not an editor's .NAME.swp)
_TEMP_SUFFIX = re.compile(r"(?:(\d+)-)?[a-z0-9_]{8}")


def sweep_dead_temp_files(path: Path) -> None:
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        found = _TEMP_SUFFIX.fullmatch(stale.name[len(path.name) + 2:])
        # no pid: written by a version that did not name them, which no longer runs
        if found and stale.is_file() and not (found[1] and process_alive(int(found[1]))):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename, so a crash never leaves an empty file
        shareable(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:  # a write's ENOSPC names no file: the CLI's message would not say which
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def strict_json(obj):
    """NaN/inf become the words "nan", "inf", "-inf" (NON_FINITE), so bench.json and report.json stay strict
    JSON and a NaN cosine still fails its budget when the file is read again (null would mean "not computed")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data: dict) -> Path:
    return write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def remove_path(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temp path (file or folder) beside `final`; it replaces `final` only on success.

    A previous `final` survives a failure untouched, and on success it is moved aside before
    the rename, so there is no moment when `final` holds a mix of old and new content.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(final)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    if tmp.exists():
        remove_path(tmp)
    try:
        yield tmp
    except BaseException:
        if tmp.exists():
            remove_path(tmp)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists() or old.is_symlink():
        remove_path(old)


def remove_orphans(final: Path) -> None:
    """Temp folders a killed writer (SIGKILL, OOM) left beside `final`: gigabytes for a teacher cache.
    A writer still alive keeps its own (same host; its pid is in the name)."""
    restore_interrupted(final, quiet=False)
    for kind in ("partial", "old"):
        for stale in _dead_writers(final, kind):
            remove_path(stale)


def restore_interrupted(final: Path, quiet: bool = True) -> None:
    """A writer killed between atomic_output's two renames left no `final`, and its previous version in
    .NAME.old-PID: put that back. Readers call it too, so an output that is read but not written again
    (a teacher cache, a stage's recorded artifact) does not look lost. `quiet`: a reader that cannot
    write there (a read-only copy) finds it missing, as before."""
    if final.exists() or final.is_symlink():
        return
    for stale in _dead_writers(final, "old"):
        try:
            os.replace(stale, final)
        except OSError:
            if not quiet:
                raise
        return


def _dead_writers(final: Path, kind: str) -> list[Path]:
    found = []
    for stale in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            found.append(stale)
    return found


def os_error_in(message: str) -> int | None:
    """The errno a Rust writer (safetensors) words into its message: "... (os error 28)"."""
    found = re.search(r"\(os error (\d+)\)", message)
    return int(found.group(1)) if found else None


def safetensors_stamp(path: Path, key: str) -> dict:
    """The JSON object stored under `key` in a .safetensors file's metadata; {} for any other file (missing,
    damaged, not safetensors, no such key, or not an object)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            stamp = json.loads((f.metadata() or {}).get(key, "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def save_safetensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """safetensors' save_file, readable as a plain open() would leave it. Its OS errors are worded in a
    SafetensorError that names no file: they become the OSError any other write gives, naming `path`."""
    from safetensors.torch import save_file

    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    except Exception as exc:
        code = os_error_in(str(exc))
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from exc
    shareable(path)


def write_failure_errno(path: Path, size: int) -> int | None:
    """Why writing `size` bytes at `path` failed when the writer said no errno (numpy, OpenVINO): EFBIG at
    this process's file-size limit (ulimit -f), ENOSPC when they do not fit in the space left there."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except ImportError:  # not on Unix: no such limit
        limit = None
    if limit is not None and limit != resource.RLIM_INFINITY and size >= limit:
        return errno.EFBIG
    if shutil.disk_usage(Path(path).parent).free < size:
        return errno.ENOSPC
    return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


SCHEMA = "edgedistill.manifest/1"


def newest_writer(manifest_data: dict) -> str | None:
    """The newest edgedistill version that recorded an artifact in this manifest, None when none says."""
    return newest([(item.get("tool_versions") or {}).get("edgedistill") for item in manifest_data.get("artifacts", {}).values()
                   if isinstance(item, dict)])


class Manifest:
    """The build folder's manifest.json: artifacts by name, stage records, overall status."""

    def __init__(self, root: Path, data: dict | None = None):
        self.root = Path(root)
        self.data = data or {
            "schema": SCHEMA,
            "status": "incomplete",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "artifacts": {},
            "stages": {},
        }

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        path = Path(root) / MANIFEST
        if not path.is_file():
            return cls(root)
        fix = f"restore it, or delete it to rebuild '{root}' from scratch"
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise EdgedistillError(f"the build folder's {path} is not valid JSON: {str(exc).splitlines()[0]}", fix) from exc
        if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict) or not isinstance(data.get("stages"), dict):
            raise EdgedistillError(f"the build folder's {path} is not an edgedistill manifest (no artifacts and stages)", fix)
        if data.get("schema", SCHEMA) != SCHEMA:  # a later layout: reading it as this one would misread it
            made_by = newest_writer(data)
            raise EdgedistillError(f"the build folder's {path} has the layout {data.get('schema')!r}, which this edgedistill "
                                   f"({tool_versions(('edgedistill',)).get('edgedistill', 'unknown')}) does not know",
                                   f"install the edgedistill that made it ({made_by or 'a newer one'}): pip install -U edgedistill")
        return cls(root, data)

    def save(self) -> None:
        if not is_first_rank():
            return  # under torchrun only rank 0 owns the build folder's manifest
        self.data["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(self.root / MANIFEST, self.data)

    def artifacts(self) -> dict[str, Artifact]:
        return {name: Artifact.from_dict(item) for name, item in self.data["artifacts"].items()}

    def get(self, name: str) -> Artifact | None:
        item = self.data["artifacts"].get(name)
        return Artifact.from_dict(item) if item else None

    def add(self, artifact: Artifact) -> None:
        self.data["artifacts"][artifact.name] = artifact.to_dict()

    def record_stage(self, stage: str, key: str, outputs: list[str], status: str = "done", error: str = "") -> None:
        self.data["stages"][stage] = {"key": key, "outputs": outputs, "status": status, "error": error}

    def stage_is_fresh(self, stage: str, key: str) -> bool:
        """True when `stage` already ran with the same inputs+config key and its outputs are intact."""
        record = self.data["stages"].get(stage)
        if not record or record.get("key") != key or record.get("status") != "done":
            return False
        artifacts = self.artifacts()
        return all(name in artifacts and artifacts[name].is_intact(self.root) for name in record["outputs"])

    def changed_artifacts(self) -> list[str]:
        """Artifacts whose files are gone or hold other content than recorded (a partial copy, an edit)."""
        return [name for name, artifact in self.artifacts().items() if not artifact.is_intact(self.root)]

    def set_status(self, status: str, **info) -> None:
        self.data["status"] = status
        self.data.update(info)
