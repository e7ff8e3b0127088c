"""A full disk or a file-size limit while OpenVINO or the calibration cache writes gives the CLI's
one-line disk error naming the file, and leaves no half-written temp file behind. Both writers report
such failures without an errno; the disk and the limit are faked here (no small mount needed)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections import namedtuple

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import torch
from PIL import Image

from edgedistill.artifacts import Artifact, Manifest, save_safetensors
from edgedistill.backends.openvino_backend import save_ir
from edgedistill.cli import main
from edgedistill.errors import EdgedistillError
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize import calibration

IOSTREAM = "basic_ios::clear: iostream error"  # all ov.save_model says when a write fails
DC = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0, "crop_mode": "center"}
Usage = namedtuple("Usage", "total used free")


def onnx_build(root):
    """A build folder holding only an exported fp32 model, as the export stage records it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    root.mkdir(parents=True)
    export_onnx(model, DC["input_size"], root / "model.onnx", ["logits"])
    manifest = Manifest(root)
    manifest.add(Artifact.record(root, root / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime", data_config=DC))
    manifest.save()
    return root


def tiny_model():
    x = ops.parameter([1, 256], np.float32, name="input")
    return ov.Model([ops.matmul(x, ops.constant(np.ones((256, 256), np.float32)), False, False)], [x], "tiny")  # 256 KiB of weights


def fail_save(model, path, compress_to_fp16=False):
    raise RuntimeError(IOSTREAM)


def test_a_full_disk_while_openvino_writes_an_ir_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    build = onnx_build(tmp_path / "build")
    monkeypatch.setattr(ov, "save_model", fail_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 20, 10 << 20, 4096))
    assert main(["compile", str(build), "--target", "x86-cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No space left on device writing '"), err
    assert "model.xml" in err[0] and "free space there or choose another --out" in err[0]
    assert Manifest.load(build).data["failed_stage"] == "compile"


def test_a_full_disk_while_nncf_writes_the_int8_ir_is_the_same_disk_error(tmp_path, monkeypatch):
    import nncf

    from edgedistill.quantize.nncf_ov import quantize_openvino_int8

    build = onnx_build(tmp_path / "build")
    monkeypatch.setattr(nncf, "quantize", lambda model, *args, **kwargs: model)  # the quantization itself is not under test
    monkeypatch.setattr(ov, "save_model", fail_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 20, 10 << 20, 4096))
    with pytest.raises(OSError) as info:
        quantize_openvino_int8(build / "model.onnx", tmp_path / "int8" / "model.xml", np.zeros((2, 3, 32, 32), np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "int8" / "model.xml")


def test_an_ir_past_the_file_size_limit_is_efbig(tmp_path, monkeypatch):
    import resource

    monkeypatch.setattr(ov, "save_model", fail_save)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (64 << 10, resource.RLIM_INFINITY))  # ulimit -f 64
    with pytest.raises(OSError) as info:
        save_ir(tiny_model(), tmp_path / "ir" / "model.xml")
    assert info.value.errno == errno.EFBIG and info.value.filename == str(tmp_path / "ir" / "model.xml")


def test_other_openvino_save_failures_name_the_path_or_keep_their_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(ov, "save_model", fail_save)  # room to spare here: not a full disk
    with pytest.raises(EdgedistillError, match="OpenVINO could not write .*model.xml"):
        save_ir(tiny_model(), tmp_path / "model.xml")

    def crash(*args, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp: unsupported op")

    monkeypatch.setattr(ov, "save_model", crash)
    with pytest.raises(RuntimeError, match="unsupported op"):
        save_ir(tiny_model(), tmp_path / "model.xml")


def _views():
    return [Image.new("RGB", (40, 40), (i * 60, 100, 200)) for i in range(2)]


def test_a_failed_calibration_cache_write_leaves_no_partial_and_names_the_cache(tmp_path, monkeypatch):
    def short_write(handle, array):  # numpy's words for a full disk: no errno, no file name
        handle.write(b"\x93NUMPY partial")
        raise OSError("786432 requested and 283616 written")

    monkeypatch.setattr(calibration.np, "save", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 20, 10 << 20, 4096))
    with pytest.raises(OSError) as info:
        calibration._cached_batch("k", DC, tmp_path, _views)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "calib-k.npy")
    assert list(tmp_path.iterdir()) == []


def test_calibration_partials_of_killed_writers_are_swept_when_the_cache_is_written(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    left = tmp_path / f".calib-k.npy.{dead}-abcd1234"
    writing = tmp_path / f".calib-k.npy.{os.getppid()}-efgh5678"  # a live writer's
    left.write_bytes(b"half"), writing.write_bytes(b"half")
    batch = calibration._cached_batch("k", DC, tmp_path, _views)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["calib-k.npy", writing.name])
    assert np.array_equal(np.load(tmp_path / "calib-k.npy"), batch)


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),  # as onnx.save raises it: no file name
    RuntimeError("Error parsing message with type 'onnx.ModelProto': Wire format was corrupt"),  # a model truncated unnoticed
])
@pytest.mark.parametrize("free,named", [(4096, True), (10 << 30, False)])
def test_a_full_disk_under_quantize_names_the_build_folder_only_when_it_is_the_full_one(tmp_path, monkeypatch, error, free, named):
    from edgedistill.quantize.scratch import scratch_dir

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 30, 0, free))
    with pytest.raises(Exception) as info:
        with scratch_dir(tmp_path / "quantized" / "model.int8.qdq.onnx") as outer, scratch_dir(outer / "int8-k0.onnx"):
            raise error
    if named:
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "quantized")
    else:  # with room there, the full disk is another one (onnxruntime's own temp folder): naming this one would mislead
        assert info.value is error


SAFETENSORS_PAST_THE_LIMIT = """
import resource, signal, sys, torch
from edgedistill.artifacts import save_safetensors
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))  # ulimit -f 64
try:
    save_safetensors({"w": torch.zeros(1 << 16)}, sys.argv[1])
except OSError as exc:
    print(exc.errno, exc.filename, type(exc.__cause__).__name__)
"""


def test_a_safetensors_write_past_the_file_size_limit_is_an_os_error_naming_the_file(tmp_path):
    # safetensors words the errno into its own exception's message and names no file: the student, its heads and
    # the teacher cache's shards are written through save_safetensors, so their disk errors name the file
    target = tmp_path / "student.safetensors"
    done = subprocess.run([sys.executable, "-c", SAFETENSORS_PAST_THE_LIMIT, str(target)], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(errno.EFBIG), str(target), "SafetensorError"], done.stderr


def test_a_safetensors_file_gets_a_plain_opens_permissions(tmp_path):
    save_safetensors({"w": torch.zeros(4)}, tmp_path / "w.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # safetensors alone writes 0600
