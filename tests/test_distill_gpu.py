"""CUDA: the engine's bf16 autocast + torch.compile + checkpoint path on tiny models."""

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


TINY_CUDA = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=56", "teacher.model_args={depth: 2, patch_size: 14}",
    "student.name=vit_tiny_patch16_224", "student.img_size=64", "student.model_args={depth: 2}", "data.max_images=4",
    "distill.steps=4", "distill.batch_size=8", "distill.device=cuda", "distill.tensorboard=false",
]


@pytest.mark.parametrize("standardize", ["running", "phi-s"])
def test_bf16_compiled_run_on_cuda(tmp_path, standardize):
    cfg = load_config(None, TINY_CUDA + [
        "distill.checkpoint_every=2", "distill.compile=true", f"distill.standardize={standardize}", "distill.standardize_batches=2",
    ])
    artifact = stage.run(cfg, {}, tmp_path)
    train = artifact.extra["train"]
    assert train["device"].startswith("cuda") and train["loss_last"] == train["loss_last"]  # finite, not NaN


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_train_on_the_teachers_own_outputs(tmp_path, mode):
    """standardize=none hands the compiled teacher's outputs straight to the compiled student step: a teacher
    replaying CUDA graphs had them freed when that step started (pytorch/pytorch#160281)."""
    cfg = load_config(None, TINY_CUDA + ["distill.compile=true", f"distill.compile_mode={mode}", "distill.standardize=none"])
    train = stage.run(cfg, {}, tmp_path).extra["train"]
    assert train["loss_last"] == train["loss_last"]  # finite, not NaN


def test_teacher_on_a_side_stream_gives_the_same_targets(tmp_path):
    """distill.overlap_teacher on CUDA: the teacher runs on another stream one batch ahead; every
    logged loss (the targets each batch met) matches a run without it. Weights are compared with a
    tolerance, as attention backward kernels may add in another order."""
    from safetensors.torch import load_file

    runs = {}
    for overlap in ("false", "true"):
        workdir = tmp_path / overlap
        stage.run(load_config(None, TINY_CUDA + ["distill.log_every=1", f"distill.overlap_teacher={overlap}"]), {}, workdir)
        runs[overlap] = ((workdir / "student" / "train_log.csv").read_text().splitlines(),
                         load_file(str(workdir / "student" / "student.safetensors")))
    (plain_log, plain), (ahead_log, ahead) = runs["false"], runs["true"]
    first_loss = lambda log: float(log[1].split(",")[1])
    assert first_loss(ahead_log) == pytest.approx(first_loss(plain_log), rel=1e-6)  # same weights and batch: the same targets
    assert max((ahead[k].float() - plain[k].float()).abs().max().item() for k in plain) < 1e-3
