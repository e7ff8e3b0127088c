"""FSDP2: a sharded 2-process run trains the same student as DDP, and a pre-empted sharded run
resumes from its full-state checkpoint to the same weights as an uninterrupted one, as does a DDP one."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from edgedistill.config import load_config
from edgedistill.distill import fsdp, stage
from edgedistill.errors import EdgedistillError

from .distributed_run import TINY, results, torchrun

FSDP = ("distill.strategy=fsdp",)


def _weights(workdir):
    return load_file(str(workdir / "student" / "student.safetensors"))


def _assert_close(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < atol, worst


def test_fsdp_matches_ddp_and_resumes_exactly(tmp_path):
    ddp, whole, resumed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "fsdp-resumed"
    for workdir, extra in ((ddp, ()), (whole, FSDP)):
        run = torchrun(tmp_path, workdir, extra=extra)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    initial = stage.prepare(load_config(None, TINY), None).job.module.backbone.state_dict()
    moved = max((initial[k] - v).abs().max().item() for k, v in _weights(whole).items())
    assert moved > 1e-3  # training changed the weights, so agreeing below is not trivial
    _assert_close(_weights(whole), _weights(ddp), atol=1e-4)  # sharded and replicated training agree

    first = torchrun(tmp_path, resumed, stop_at=3, extra=FSDP)
    assert first.returncode != 0
    checkpoint = torch.load(resumed / "distill_state" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 2 and "backbone.blocks.0.attn.qkv.weight" in checkpoint["module"]
    assert not any(isinstance(v, torch.distributed.tensor.DTensor) for v in checkpoint["module"].values())  # full, not sharded
    second = torchrun(tmp_path, resumed, extra=FSDP)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    assert [r["resumed_from_step"] for r in results(resumed)] == [2, 2]
    _assert_close(_weights(resumed), _weights(whole), atol=1e-6)

    # a DDP job pre-empted, then relaunched with strategy=fsdp (after an OOM): it resumes the DDP checkpoint
    crossed = tmp_path / "ddp-then-fsdp"
    assert torchrun(tmp_path, crossed, stop_at=3).returncode != 0
    checkpoint = torch.load(crossed / "distill_state" / "checkpoint.pt", weights_only=False)
    assert "backbone.blocks.0.attn.qkv.weight" in checkpoint["optimizer"]["state"]  # keyed by name, as FSDP's
    second = torchrun(tmp_path, crossed, extra=FSDP)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    assert [r["resumed_from_step"] for r in results(crossed)] == [2, 2]
    _assert_close(_weights(crossed), _weights(whole), atol=1e-4)


def _model_and_optimizer():
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2), torch.nn.Linear(2, 2))
    return model, create_optimizer_v2(model, opt="adamw", lr=1e-2, weight_decay=0.05)  # two groups, as the trainer's


@pytest.mark.parametrize("form", ["by position", "by name"])
def test_an_unsharded_checkpoint_resumes_exactly_in_either_optimizer_form(form):
    """Checkpoints of DDP and one-process runs held optimizer.state_dict() (keyed by position) before they held it
    by parameter name, as FSDP's do: both load, and the next steps match an uninterrupted optimizer's bit for bit,
    the last layer's too, which had no gradient (nor optimizer state) before the checkpoint."""
    import copy

    model, optimizer = _model_and_optimizer()
    inputs = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(1))
    for x in inputs[:3]:
        optimizer.zero_grad()
        model[:3](x).sum().backward()
        optimizer.step()
    saved = copy.deepcopy(fsdp.full_state(model, optimizer, sharded=False))  # what torch.load gives back: no shared tensors
    if form == "by position":
        saved = (saved[0], copy.deepcopy(optimizer.state_dict()))
    resumed, resumed_optimizer = _model_and_optimizer()
    fsdp.load_full_state(resumed, resumed_optimizer, *saved, sharded=False)
    assert len(resumed_optimizer.state) == len(optimizer.state) == 6  # none for the unused layer
    for m, opt in ((model, optimizer), (resumed, resumed_optimizer)):
        opt.zero_grad()
        m(inputs[3]).sum().backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters()))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="Inductor on the CPU needs a C++ compiler")
def test_compiled_fsdp_matches_compiled_ddp(tmp_path):
    """distill.compile on a sharded student (compiled after fully_shard, as the trainer does) trains
    what compiled DDP trains. Compiled and eager differ by more (about 2e-3 here: Adam's steps are
    lr-sized whatever the gradient, so rounding can flip a tiny one), hence compiled against compiled."""
    ddp, sharded = tmp_path / "ddp", tmp_path / "fsdp"
    for workdir, extra in ((ddp, ("distill.compile=true",)), (sharded, ("distill.compile=true", *FSDP))):
        run = torchrun(tmp_path, workdir, extra=extra)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    _assert_close(_weights(sharded), _weights(ddp), atol=1e-4)


def test_fsdp_refuses_ema_with_a_fix():
    with pytest.raises(EdgedistillError, match="ema_decay") as error:
        fsdp.check_supported(ema_decay=0.999)
    assert "strategy=ddp" in error.value.fix
