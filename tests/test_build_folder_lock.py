"""One process at a time in a build folder or a teacher cache: a second (a CI retry overlapping a run)
is refused with a one-line error naming the holder, instead of resuming from the first run's
checkpoints and replacing its files under it."""

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.folder_lock import LOCK, FolderLock
from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.errors import EdgedistillError
from edgedistill.pipeline import Pipeline
from edgedistill.targets import load_target

HOLDER = """
import sys
from pathlib import Path
from edgedistill.folder_lock import FolderLock
lock = FolderLock(Path(sys.argv[1]), "it", "wait")
print("held", flush=True)
sys.stdin.read()  # until the test lets go
"""


@pytest.fixture
def holder():
    """Another process holding the lock file it is given, until the test ends."""
    procs = []

    def hold(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_process_is_refused_a_build_folder_in_use(tmp_path, holder, capsys):
    build = tmp_path / "build"
    build.mkdir()
    other = holder(build / LOCK)
    assert main(["distill", str(build), "--set", "distill.steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"build folder '{build}' is in use by another edgedistill process (pid {other.pid})" in err[0]
    assert "--out" in err[0] and not (build / "distill_state").exists()
    other.stdin.close()
    other.wait(timeout=30)  # the kernel drops a lock with its process: no stale lock after a kill either
    Pipeline(load_config(), load_target("x86-cpu"), build)


def test_one_process_and_the_ranks_of_a_torchrun_job_share_it(tmp_path, holder, monkeypatch):
    build = tmp_path / "build"
    first = Pipeline(load_config(), load_target("x86-cpu"), build)
    second = Pipeline(load_config(), load_target("x86-cpu"), build)  # this process again: a stage inside a build
    assert (build / LOCK).read_text().strip().isdigit()
    del first, second  # released with the last holder
    gc.collect()
    other = holder(build / LOCK)
    monkeypatch.setenv("RANK", "1")  # rank 0 of the job holds it for all of its ranks
    Pipeline(load_config(), load_target("x86-cpu"), build)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(EdgedistillError, match=f"pid {other.pid}"):
        Pipeline(load_config(), load_target("x86-cpu"), build)


def test_a_second_cache_teacher_into_one_folder_is_refused(tmp_path, holder, capsys):
    out = tmp_path / "cache"
    other = holder(tmp_path / ".cache.lock")  # beside the folder, which is replaced whole
    args = ["cache-teacher", str(out), "-k", "1", "--set", "teacher.name=vit_tiny_patch16_224", "--set", "teacher.pretrained=false",
            "--set", "teacher.img_size=28", "--set", "teacher.model_args={depth: 1, patch_size: 14}", "--set", "data.max_images=2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"teacher cache '{out}' is in use by another edgedistill process (pid {other.pid})" in err[0]
    assert not out.exists()


def test_a_folder_that_cannot_be_locked_here_is_used_unlocked(tmp_path, monkeypatch):
    from edgedistill import folder_lock

    def no_locks(handle):
        raise OSError(37, "No locks available")  # ENOLCK: some network and FUSE file systems

    monkeypatch.setattr(folder_lock, "_try_lock", no_locks)
    with FolderLock(tmp_path / LOCK, "it", "wait"):
        pass


def test_compiling_a_bundle_inside_a_build_folder_in_use_is_refused_before_building(tmp_path, holder, capsys):
    """On the device, `edgedistill compile BUILD/trt_bundle` records its engines in BUILD's manifest."""
    build = tmp_path / "build"
    (build / "trt_bundle").mkdir(parents=True)
    (build / "trt_bundle" / "bundle.json").write_text("{}")
    (build / "manifest.json").write_text('{"artifacts": {}, "stages": {}}')
    other = holder(build / LOCK)
    assert main(["compile", str(build / "trt_bundle")]) == 2
    assert f"is in use by another edgedistill process (pid {other.pid})" in capsys.readouterr().err


def test_a_forked_child_does_not_keep_the_folder_locked(tmp_path):
    # OpenVINO's convert_model forks a telemetry sender that can outlive the command holding the lock
    import os
    import signal

    lock = FolderLock(tmp_path / LOCK, "it", "wait")
    child = os.fork()
    if child == 0:  # the child lives on, as the telemetry sender did
        signal.pause()
        os._exit(0)
    try:
        lock.release()
        other = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path / LOCK)], input="", capture_output=True, text=True)
        assert other.returncode == 0 and other.stdout.strip() == "held", other.stderr
        again = FolderLock(tmp_path / LOCK, "it", "wait")  # and the parent's lock, while held, still refuses others
        refused = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path / LOCK)], input="", capture_output=True, text=True)
        assert refused.returncode != 0 and "in use by another edgedistill process" in refused.stderr
        again.release()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_releasing_unlocks_every_copy_of_the_lock_file(tmp_path):
    # a child forked while the lock is held shares the open file until its at-fork hook closes its copy, which a
    # busy machine delays: the parent's release must end the lock then, not when the last copy closes
    import os

    lock = FolderLock(tmp_path / LOCK, "it", "wait")
    copy = os.dup(FolderLock._held[lock.key][0].fileno())  # what such a child holds
    try:
        lock.release()
        other = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path / LOCK)], input="", capture_output=True, text=True)
        assert other.returncode == 0 and other.stdout.strip() == "held", other.stderr
    finally:
        os.close(copy)
