from pathlib import Path

import pytest

from edgedistill.artifacts import Artifact, Manifest, remove_orphans, atomic_output


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.mkdir()
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("stage crashed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_clears_what_killed_writers_left(tmp_path):
    """SIGKILL skips every cleanup: the next write removes a dead writer's temp folder, puts back a
    previous version caught between the two renames, and leaves a live writer's folder alone."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f".cache.partial-{dead}").mkdir()
    (tmp_path / f".cache.partial-{dead}" / "shard.bin").write_bytes(b"x" * 1000)
    (tmp_path / f".other.old-{dead}").mkdir()  # another output's previous version, its final missing
    live = tmp_path / f".cache.partial-{os.getppid()}"
    live.mkdir()
    with atomic_output(tmp_path / "cache") as tmp:
        tmp.mkdir()
    (tmp_path / f".other.old-{dead}" / "previous.txt").write_text("kept")
    remove_orphans(tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cache", "other", live.name])
    assert (tmp_path / "other" / "previous.txt").read_text() == "kept"


def _exported(folder: Path) -> Path:
    """A build folder whose export stage recorded model.onnx (b"abc") under the key "key1"."""
    path = folder / "model.onnx"
    path.write_bytes(b"abc")
    manifest = Manifest(folder)
    manifest.add(Artifact.record(folder, path, kind="onnx", name="onnx-fp32"))
    manifest.record_stage("export", "key1", ["onnx-fp32"])
    manifest.save()
    return path


def test_manifest_freshness_follows_content(tmp_path):
    path = _exported(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded.stage_is_fresh("export", "key1")
    assert not loaded.stage_is_fresh("export", "key2")
    path.write_bytes(b"changed")
    assert not loaded.stage_is_fresh("export", "key1")


def test_written_files_are_readable_by_others_as_plain_files_are(tmp_path):
    import os
    import stat

    from edgedistill.artifacts import write_bytes_atomic

    old = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "manifest.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0600


def _dead_pid() -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()


def test_an_atomic_write_names_its_temp_file_with_its_pid_and_sweeps_dead_writers_ones(tmp_path, monkeypatch):
    """A kill while manifest.json is replaced leaves .manifest.json.XXXX: the next write removes those a
    dead writer left (and pid-less ones from before), never a live writer's."""
    import os

    from edgedistill import artifacts
    from edgedistill.artifacts import write_json_atomic

    dead = _dead_pid()
    left = [tmp_path / f".manifest.json.{dead}-k1ll3d00", tmp_path / ".manifest.json.k1ll3d00"]
    live = tmp_path / f".manifest.json.{os.getppid()}-wr1t1ng0"
    editor = tmp_path / ".manifest.json.swp"
    for path in (*left, live, editor):
        path.write_text("{")
    renamed, real = [], os.replace
    monkeypatch.setattr(artifacts.os, "replace", lambda src, dst: (renamed.append(os.path.basename(src)), real(src, dst)))
    write_json_atomic(tmp_path / "manifest.json", {"a": 1})
    assert renamed[0].startswith(f".manifest.json.{os.getpid()}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["manifest.json", live.name, editor.name])


def test_a_reader_puts_back_what_a_writer_killed_between_the_two_renames_left(tmp_path):
    """Killed after moving model.onnx aside, before moving the new one in: reading the manifest finds the
    previous version again instead of reporting it gone."""
    path = _exported(tmp_path)
    aside = tmp_path / f".model.onnx.old-{_dead_pid()}"
    path.rename(aside)
    assert Manifest.load(tmp_path).stage_is_fresh("export", "key1")
    assert path.read_bytes() == b"abc" and not aside.exists()


def test_a_failed_atomic_write_names_the_file_it_was_writing(tmp_path, monkeypatch):
    """A full disk during write() or fsync() raises ENOSPC with no file name; the CLI's one-line error names it."""
    from edgedistill import artifacts
    from edgedistill.artifacts import write_json_atomic

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", full)
    with pytest.raises(OSError) as error:
        write_json_atomic(tmp_path / "bench.json", {"a": 1})
    assert error.value.errno == 28 and error.value.filename == str(tmp_path / "bench.json")
    assert list(tmp_path.iterdir()) == []


def test_a_file_hashed_by_several_keys_is_read_once_until_it_is_written(tmp_path, monkeypatch):
    import os

    from edgedistill import artifacts

    path = tmp_path / "teacher.safetensors"
    path.write_bytes(b"weights")
    reads = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: reads.append(p) or real(p))
    first = artifacts.file_digest(path)
    assert artifacts.file_digest(path) == first and len(reads) == 1  # the pipeline key, the resume hash, the cache check
    stat = path.stat()
    path.write_bytes(b"Weights")  # the same size, its times put back: the write still shows (ctime)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert artifacts.file_digest(path) != first and len(reads) == 2
