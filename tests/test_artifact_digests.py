"""is_intact reads an artifact's files once per command (not once per stage that checks it), yet sees a rewrite."""

import collections
import os

from edgedistill import artifacts
from edgedistill.artifacts import Artifact, Manifest


def _counted_reads(monkeypatch) -> collections.Counter:
    reads = collections.Counter()
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda path: reads.update([os.path.basename(path)]) or real(path))
    return reads


def _build(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx" * 1000)
    ir = tmp_path / "openvino" / "int8"
    ir.mkdir(parents=True)
    (ir / "model.xml").write_text("<net/>")
    (ir / "model.bin").write_bytes(b"weights" * 100)
    manifest = Manifest(tmp_path)
    for path, name in ((tmp_path / "model.onnx", "onnx-fp32"), (ir, "openvino-int8")):
        manifest.add(Artifact.record(tmp_path, path, kind="onnx", name=name))
        manifest.record_stage(name, "key", [name])
    return manifest


def test_repeated_freshness_checks_read_each_artifact_file_once(tmp_path, monkeypatch):
    reads = _counted_reads(monkeypatch)
    manifest = _build(tmp_path)
    for _ in range(6):  # export, quantize, compile and bench each check their inputs: the same files again
        assert manifest.stage_is_fresh("onnx-fp32", "key") and manifest.stage_is_fresh("openvino-int8", "key")
        assert manifest.changed_artifacts() == []
    assert reads == {"model.onnx": 1, "model.xml": 1, "model.bin": 1}  # recording them read them; the checks did not again


def test_a_file_rewritten_in_the_same_command_is_hashed_again(tmp_path, monkeypatch):
    reads = _counted_reads(monkeypatch)
    manifest = _build(tmp_path)
    onnx, ir = manifest.get("onnx-fp32"), manifest.get("openvino-int8")
    assert onnx.is_intact(tmp_path) and ir.is_intact(tmp_path)

    model = tmp_path / "model.onnx"
    stat = model.stat()
    model.write_bytes(b"ONNX" * 1000)  # edited in place: the same inode and size
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its mtime put back (ctime still shows it)
    assert not onnx.is_intact(tmp_path) and reads["model.onnx"] == 2
    model.write_bytes(b"onnx" * 1000)  # put back: intact again
    assert onnx.is_intact(tmp_path)

    bin_path = tmp_path / "openvino" / "int8" / "model.bin"
    replacement = bin_path.with_name("new.bin")
    replacement.write_bytes(b"WEIGHTS" * 100)
    os.replace(replacement, bin_path)  # a writer's atomic rename: another inode
    assert not ir.is_intact(tmp_path) and not manifest.stage_is_fresh("openvino-int8", "key")
    assert manifest.changed_artifacts() == ["openvino-int8"]
