"""DDP: a 2-process torchrun (gloo, CPU) run trains, checkpoints, stops, and resumes to the end;
a resume with another world size is refused; unreadable files are counted once across ranks."""

import shutil

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill import stage
from edgedistill.errors import EdgedistillError

from .distributed_run import TINY, results, torchrun


def _photos_with_two_unreadable(folder):
    folder.mkdir()
    for i, path in enumerate(bundled_photo_paths()[:4]):
        shutil.copy(path, folder / f"{2 * i}{path.suffix}")
    for name in ("1.jpg", "5.png"):  # not neighbours in file order, so each is met on its own
        (folder / name).write_bytes(b"not an image")
    return [f"data.source={folder}", "data.max_images=null"]


def test_two_process_gloo_run_checkpoints_and_resumes(tmp_path):
    workdir = tmp_path / "build"
    extra = _photos_with_two_unreadable(tmp_path / "images")
    first = torchrun(tmp_path, workdir, stop_at=3, extra=extra)
    assert first.returncode != 0, first.stdout + first.stderr
    checkpoint = torch.load(workdir / "distill_state" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["world"] == 2 and len(checkpoint["rng"]) == 2
    assert not (workdir / "student").exists()

    with pytest.raises(EdgedistillError, match="written by 2 processes") as error:  # one process may not take over
        stage.run(load_config(None, TINY + extra), {}, workdir)
    assert "--nproc_per_node 2" in error.value.fix and (workdir / "distill_state" / "checkpoint.pt").is_file()

    second = torchrun(tmp_path, workdir, extra=extra)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    assert len(results(workdir)) == 2 and all(r["resumed_from_step"] == 2 and r["world_size"] == 2 for r in results(workdir))
    assert [r["skipped_images"] for r in results(workdir)] == [2, 2]  # both ranks met both files: still 2
    log = (workdir / "student" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]


def test_ddp_without_a_masked_pass_trains(tmp_path):
    """mask_ratio 0 (or share × batch rounding to 0) leaves the patch head without gradients: DDP must know."""
    workdir = tmp_path / "build"
    run = torchrun(tmp_path, workdir, extra=("distill.mask_ratio=0", "distill.steps=2", "distill.checkpoint_every=0"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert [r["patch_level"] for r in results(workdir)] == [False, False]  # and the build says so


def test_a_collective_whose_peer_is_gone_is_a_one_line_error_saying_how_to_resume():
    from edgedistill.distill.distributed import DistContext, PeerStopped, peer_stopped

    gloo = RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:7395: Connection reset by peer. This is typically "
                        "caused by a remote worker hanging or bugs in the application. GLHF!")
    stopped = peer_stopped(gloo, DistContext(rank=0, world=2))
    assert isinstance(stopped, PeerStopped) and stopped.exit_code == 1  # the job's environment, not a mistake (2) nor a bug (3)
    assert "another process of this 2-process torchrun job stopped" in stopped.cause and "relaunch the same torchrun command" in stopped.fix
    assert peer_stopped(gloo, DistContext()) is None  # one process: nothing else to blame
    assert peer_stopped(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), DistContext(rank=0, world=2)) is None  # a bug stays a bug
