"""DDP: a 2-process torchrun (gloo, CPU) run trains, checkpoints, stops, and resumes to the end."""

import json
import os
import subprocess
import sys

import torch

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
    "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
    "data.max_images=4", "data.auto_augment=''", "distill.steps=4", "distill.batch_size=2", "distill.warmup_steps=1",
    "distill.checkpoint_every=2", "distill.tensorboard=false", "distill.log_every=1", "distill.device=cpu",
]

CHILD = """
import json, os, sys
from pathlib import Path
from edgedistill.config import load_config
from edgedistill.distill import stage
overrides, workdir, stop_at = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

def on_step(step):
    if step == stop_at:  # every rank stops here, as if the job were pre-empted
        os._exit(3)

artifact = stage.run(load_config(None, overrides), {}, workdir, on_step=on_step)
# one file per rank: two ranks printing to one shared pipe can interleave mid-line
Path(sys.argv[4], f"result-{os.environ['RANK']}.json").write_text(json.dumps(artifact.extra["train"]))
"""


def _torchrun(tmp_path, workdir, stop_at: int) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    (tmp_path / "results").mkdir(exist_ok=True)
    env = {**os.environ, "EDGEDISTILL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), json.dumps(TINY), str(workdir), str(stop_at), str(tmp_path / "results")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_two_process_gloo_run_checkpoints_and_resumes(tmp_path):
    workdir = tmp_path / "build"
    first = _torchrun(tmp_path, workdir, stop_at=3)
    assert first.returncode != 0, first.stdout + first.stderr
    checkpoint = torch.load(workdir / "distill_state" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["world"] == 2 and len(checkpoint["rng"]) == 2
    assert not (workdir / "student").exists()

    second = _torchrun(tmp_path, workdir, stop_at=-1)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    results = [json.loads(path.read_text()) for path in sorted((tmp_path / "results").glob("result-*.json"))]
    assert len(results) == 2 and all(r["resumed_from_step"] == 2 and r["world_size"] == 2 for r in results)
    log = (workdir / "student" / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
