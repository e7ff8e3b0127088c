"""DDP: a 2-process torchrun (gloo, CPU) run trains, checkpoints, stops, and resumes to the end."""

import torch

from .distributed_run import results, torchrun


def test_two_process_gloo_run_checkpoints_and_resumes(tmp_path):
    workdir = tmp_path / "build"
    first = torchrun(tmp_path, workdir, stop_at=3)
    assert first.returncode != 0, first.stdout + first.stderr
    checkpoint = torch.load(workdir / "distill_state" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["world"] == 2 and len(checkpoint["rng"]) == 2
    assert not (workdir / "student").exists()

    second = torchrun(tmp_path, workdir)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    assert len(results(workdir)) == 2 and all(r["resumed_from_step"] == 2 and r["world_size"] == 2 for r in results(workdir))
    log = (workdir / "student" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
