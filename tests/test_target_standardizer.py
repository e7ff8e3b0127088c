"""Target standardisation lives outside the trained module: EMA leaves it alone, and under torchrun
every rank's targets feed one set of statistics (not rank 0's alone)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.distill.phi_s import PhiSNorm
from edgedistill.distill.standardize import TargetNorm

from .distributed_run import TINY

POOLING_CHILD = """
import json, os, sys
import torch
import torch.distributed as dist
from edgedistill.distill import distributed
from edgedistill.distill.phi_s import PhiSNorm
from edgedistill.distill.standardize import TargetNorm

dist.init_process_group("gloo")
ctx = distributed.DistContext(dist.get_rank(), dist.get_world_size())
data = torch.load(sys.argv[1])
running, phi_s = TargetNorm(8), PhiSNorm(8, estimate_batches=2)
for batch in data[ctx.rank]:  # each rank sees only its own share of each global batch
    running.update(batch, ctx)
    phi_s.update(batch, ctx)
out = {name: t.tolist() for name, t in [("mean", running.mean), ("var", running.var), ("phi_mean", phi_s.mean),
                                         ("rotation", phi_s.rotation), ("scale", phi_s.scale)]}
with open(os.path.join(sys.argv[2], f"rank-{ctx.rank}.json"), "w") as f:
    json.dump(out, f)
dist.destroy_process_group()
"""


def test_norm_statistics_pool_every_ranks_share_of_the_global_batch(tmp_path):
    torch.manual_seed(0)
    mixing = torch.randn(8, 8)
    # two ranks with clearly different data: rank 1's share is shifted and scaled
    data = [[torch.randn(4, 5, 8) @ mixing, torch.randn(4, 5, 8) @ mixing] for _ in range(2)]
    data[1] = [b * 3 + 2 for b in data[1]]
    torch.save(data, tmp_path / "data.pt")
    (tmp_path / "child.py").write_text(POOLING_CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(tmp_path / "child.py"), str(tmp_path / "data.pt"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # one set of statistics on every rank

    running, phi_s = TargetNorm(8), PhiSNorm(8, estimate_batches=2)
    for step in range(2):  # a single process that sees each whole global batch
        whole = torch.cat([data[0][step], data[1][step]])
        running.update(whole)
        phi_s.update(whole)
    pooled = {k: torch.tensor(v) for k, v in ranks[0].items()}
    assert torch.allclose(pooled["mean"], running.mean, atol=1e-5) and torch.allclose(pooled["var"], running.var, rtol=1e-5)
    assert torch.allclose(pooled["phi_mean"], phi_s.mean, atol=1e-5) and torch.allclose(pooled["scale"], phi_s.scale, rtol=1e-5)
    assert torch.allclose(pooled["rotation"].abs(), phi_s.rotation.abs(), atol=1e-4)  # eigenvector signs may differ
    rank0_only = TargetNorm(8)
    for batch in data[0]:
        rank0_only.update(batch)
    assert not torch.allclose(pooled["mean"], rank0_only.mean, atol=0.5)  # pooling is not rank 0's statistics


def test_running_norm_pooling_matches_the_two_pass_variance():
    x = torch.randn(3, 7, 5) * 4 + 100  # a large mean: naive E[x²] - E[x]² in fp32 would lose the variance
    norm = TargetNorm(5, eps=0.0)
    norm.update(x)
    var, mean = torch.var_mean(x.reshape(-1, 5), 0)  # unbiased (n - 1), as BatchNorm's running_var
    assert torch.allclose(norm.mean, mean) and torch.allclose(norm.var, var, rtol=1e-5)


def test_small_batches_standardise_to_unit_variance():
    # the biased batch variance (n) gave targets std 1.07 at 8 samples a batch, 1.15 at 4
    generator = torch.Generator().manual_seed(0)
    norm = TargetNorm(64, momentum=1e-3)
    for _ in range(400):
        norm.update(torch.randn(4, 64, generator=generator) * 3 + 1)
    held_out = norm(torch.randn(20000, 64, generator=generator) * 3 + 1)
    assert held_out.std().item() == pytest.approx(1.0, abs=0.03)
    single = TargetNorm(4)
    single.update(torch.ones(1, 4) * 5)  # one sample: its mean, and no spread yet (not the initial 1.0, which would linger)
    assert torch.equal(single.var, torch.zeros(4)) and torch.equal(single.mean, torch.full((4,), 5.0))
    assert torch.equal(single(torch.ones(1, 4) * 5), torch.zeros(1, 4))  # standardised after its update: 0, not 0/0


def test_ema_averages_the_student_not_the_standardisation(tmp_path):
    cfg = load_config(None, TINY + ["data.auto_augment=''", "distill.ema_decay=0.9", "distill.standardize=phi-s",
                                    "distill.standardize_batches=2", "distill.checkpoint_every=0"])
    prepared = stage.prepare(cfg, tmp_path)
    # the module is what EMA copies and averages: no statistic of the targets may be part of it
    assert not [k for k in prepared.job.module.state_dict() if "mean" in k.split(".")[-1] or "rotation" in k]
    before = {k: v.clone() for k, v in prepared.job.module.state_dict().items()}
    stage.train(prepared.job)
    assert any(not torch.equal(before[k], v) for k, v in prepared.job.module.state_dict().items())  # EMA weights were loaded
    norm = prepared.job.norms.norms[0].patch
    assert isinstance(norm, PhiSNorm) and int(norm.count) == 2
    rotation = norm.rotation
    # EMA over the refits would mix the identity and several rotations into a matrix that is not one
    assert torch.allclose(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-4)
    heads = stage.deploy_heads(prepared.job.module, prepared.job.norms)
    x = torch.randn(3, prepared.probe["dim"])
    assert torch.allclose(norm(heads[0].patch(x)), prepared.job.module.heads.patch(x), atol=1e-4)


def test_checkpoints_from_when_norms_were_module_buffers_still_resume(tmp_path):
    from edgedistill.distill.state import load_checkpoint, save_checkpoint

    old = {"config_hash": "h", "step": 2,
           "module": {"backbone.w": torch.ones(1), "norms.0.token.mean": torch.zeros(3)},
           "ema": {"module.backbone.w": torch.ones(1), "module.norms.0.token.mean": torch.zeros(3)}}
    save_checkpoint(tmp_path, old)
    loaded = load_checkpoint(tmp_path, "h")
    assert list(loaded["module"]) == ["backbone.w"] and list(loaded["ema"]) == ["module.backbone.w"]
    assert list(loaded["norms"]) == ["norms.0.token.mean"]  # the key TargetStandardizer.state_dict() uses


def test_norms_count_on_the_host_and_take_the_loaded_count_after_a_resume():
    torch.manual_seed(0)
    running = TargetNorm(4)
    for _ in range(3):
        running.update(torch.randn(8, 4))
    resumed = TargetNorm(4)
    resumed.update(torch.randn(8, 4))  # a count of 1 on the host...
    resumed.load_state_dict(running.state_dict())  # ...then 3 from the checkpoint
    batch = torch.randn(8, 4) + 5
    running.update(batch)
    resumed.update(batch)
    assert int(resumed.count) == 4 and torch.equal(resumed.mean, running.mean)  # weight 1/4, as uninterrupted

    phi_s = PhiSNorm(4, estimate_batches=1)
    phi_s.update(torch.randn(16, 4))
    phi_s.update(torch.randn(16, 4))  # frozen after one batch
    fresh = PhiSNorm(4, estimate_batches=1)
    state = fresh.state_dict()
    phi_s.load_state_dict(state)  # back to an unfitted state (count 0)
    phi_s.update(torch.randn(16, 4))
    assert int(phi_s.count) == 1  # it fitted again instead of staying frozen
