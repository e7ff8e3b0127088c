"""Launch the distill stage as a 2-process torchrun job (gloo on the CPU) for the DDP and FSDP tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
    "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 2}",
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


def torchrun(tmp_path: Path, workdir: Path, stop_at: int = -1, extra: tuple = ()) -> subprocess.CompletedProcess:
    """Run CHILD on 2 processes; per-rank results land in workdir/../results-<workdir name>/."""
    results_dir(workdir).mkdir(parents=True, exist_ok=True)
    return launch(tmp_path / "child.py", CHILD, [json.dumps(TINY + list(extra)), str(workdir), str(stop_at), str(results_dir(workdir))])


def launch(script: Path, text: str, args: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Write `text` to `script` and run it on 2 processes with `args`."""
    script.write_text(text)
    env = {**os.environ, "EDGEDISTILL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def results_dir(workdir: Path) -> Path:
    return workdir.parent / f"results-{workdir.name}"


def results(workdir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(results_dir(workdir).glob("result-*.json"))]
