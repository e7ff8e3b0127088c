"""CUDA: the engine's bf16 autocast + torch.compile + checkpoint path on tiny models."""

import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("standardize", ["running", "phi-s"])
def test_bf16_compiled_run_on_cuda(tmp_path, standardize):
    cfg = load_config(None, [
        "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=56", "teacher.model_args={depth: 2, patch_size: 14}",
        "student.name=vit_tiny_patch16_224", "student.img_size=64", "student.model_args={depth: 2}", "data.max_images=4",
        "distill.steps=4", "distill.batch_size=8", "distill.checkpoint_every=2", "distill.compile=true", f"distill.standardize={standardize}", "distill.standardize_batches=2",
        "distill.device=cuda", "distill.tensorboard=false",
    ])
    artifact = stage.run(cfg, {}, tmp_path)
    train = artifact.extra["train"]
    assert train["device"].startswith("cuda") and train["loss_last"] == train["loss_last"]  # finite, not NaN
