"""Engine and cache tags: a file from another TensorRT version or GPU is refused, never reused."""

from __future__ import annotations

import json
import logging

import pytest

from edgedistill.backends import trt_tag
from edgedistill.backends.trt_tag import (
    check_engine_tag,
    engine_tag,
    load_tagged_cache,
    save_tagged_cache,
    sidecar_path,
    write_engine_tag,
)
from edgedistill.errors import EdgedistillError

ORIN = engine_tag("10.3.0.30", "Orin", "8.7")
FIX = "rebuild with edgedistill compile BUNDLE on this device"


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "fp16.engine"
    path.write_bytes(b"serialized engine bytes")
    write_engine_tag(path, ORIN, {"precision": "fp16"})
    return path


def test_tag_sidecar_contents(engine):
    record = json.loads(sidecar_path(engine).read_text())
    assert sidecar_path(engine).name == "fp16.engine.json"
    assert record["tag"] == {"tensorrt": "10.3.0.30", "device": "Orin", "compute_capability": "8.7"}
    assert record["engine"]["bytes"] == len(b"serialized engine bytes") and len(record["engine"]["sha256"]) == 64
    assert record["build"] == {"precision": "fp16"}


def test_matching_tag_passes(engine):
    check_engine_tag(engine, dict(ORIN))


@pytest.mark.parametrize("current,words", [
    (engine_tag("10.7.0.23", "Orin", "8.7"), "built with TensorRT 10.3.0.30, this machine has TensorRT 10.7.0.23"),
    (engine_tag("10.3.0.30", "NVIDIA H100 80GB HBM3", "9.0"), "built for Orin (compute 8.7), this machine has NVIDIA H100 80GB HBM3 (compute 9.0)"),
    (engine_tag("10.3.0.30", "Orin NX", "8.7"), "built for Orin"),
])
def test_mismatch_is_a_one_line_error_with_the_fix(engine, current, words):
    with pytest.raises(EdgedistillError) as caught:
        check_engine_tag(engine, current)
    assert words in caught.value.cause and caught.value.fix == FIX and "\n" not in caught.value.one_line()


def test_untagged_changed_or_missing_engines_are_refused(engine, tmp_path):
    engine.write_bytes(b"another engine")
    with pytest.raises(EdgedistillError, match="does not match the sha256"):
        check_engine_tag(engine, ORIN)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EdgedistillError, match="unreadable"):
        check_engine_tag(engine, ORIN)
    sidecar_path(engine).unlink()
    with pytest.raises(EdgedistillError, match="has no tag file 'fp16.engine.json'") as caught:
        check_engine_tag(engine, ORIN)
    assert caught.value.fix == FIX
    with pytest.raises(EdgedistillError, match="does not exist"):
        check_engine_tag(tmp_path / "nothing.engine", ORIN)


def test_timing_cache_is_reused_only_for_its_own_version_and_gpu(tmp_path, caplog):
    cache = save_tagged_cache(tmp_path / "timing.cache", b"tactics", ORIN)
    assert load_tagged_cache(cache, ORIN) == b"tactics"
    with caplog.at_level(logging.WARNING):
        assert load_tagged_cache(cache, engine_tag("10.7.0.23", "Orin", "8.7")) is None
    assert "tensorrt=10.3.0.30" in caplog.text and "tensorrt=10.7.0.23" in caplog.text
    assert load_tagged_cache(cache, engine_tag("10.3.0.30", "NVIDIA H100 80GB HBM3", "9.0")) is None
    assert load_tagged_cache(None, ORIN) is None and load_tagged_cache(tmp_path / "absent.cache", ORIN) is None


def test_untagged_or_edited_caches_are_ignored(tmp_path):
    raw = tmp_path / "trtexec.cache"
    raw.write_bytes(b"written by trtexec, no tag")
    assert load_tagged_cache(raw, ORIN) is None
    cache = save_tagged_cache(tmp_path / "timing.cache", b"tactics", ORIN)
    cache.write_bytes(b"edited")
    assert load_tagged_cache(cache, ORIN) is None


def test_tag_command_line(engine, monkeypatch, capsys):
    sidecar_path(engine).unlink()
    monkeypatch.setattr(trt_tag, "current_tag", lambda: dict(ORIN))  # TensorRT and a GPU are not here
    assert trt_tag.main([str(engine)]) == 0
    check_engine_tag(engine, ORIN)
    assert trt_tag.main([str(engine.with_name("absent.engine"))]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert trt_tag.main([]) == 2
