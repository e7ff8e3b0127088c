"""PHI-S standardisation: Hadamard constructions, the Givens fallback, the fitted map, and a
distill run that trains with it and folds it back into the deployed heads."""

import numpy as np
import pytest
import torch

from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.distill.hadamard import equalizing_rotation, hadamard
from edgedistill.distill.phi_s import PhiSNorm
from edgedistill.errors import EdgedistillError
from edgedistill.models.heads import projection_head


@pytest.mark.parametrize("n", [1, 2, 12, 20, 28, 192, 320, 384, 768, 1024, 1152, 1280, 1408])
def test_hadamard_is_orthonormal_with_equal_magnitude_entries(n):
    matrix = hadamard(n)
    assert np.allclose(matrix @ matrix.T, np.eye(n), atol=1e-12)
    assert np.allclose(np.abs(matrix), 1 / np.sqrt(n))


@pytest.mark.parametrize("n", [3, 6, 10, 1002])
def test_widths_without_a_hadamard_matrix_use_the_givens_equaliser(n):
    assert hadamard(n) is None  # orders other than 1, 2 and multiples of 4 have none
    eigenvalues = np.random.default_rng(n).gamma(0.5, size=n)  # a skewed spectrum, like a real teacher's
    rotation = equalizing_rotation(eigenvalues)
    assert np.allclose(rotation @ rotation.T, np.eye(n), atol=1e-10)
    assert np.allclose(np.diag(rotation @ np.diag(eigenvalues) @ rotation.T), eigenvalues.mean(), atol=1e-10)


def _correlated(samples: int, dim: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator) * torch.logspace(-1, 1, dim)  # scales over two decades
    return torch.randn(samples, dim, generator=generator) @ mixing + 5.0


def test_phi_s_gives_unit_variance_everywhere_with_one_scale_and_a_rotation():
    x = _correlated(4098, 12)
    norm = PhiSNorm(12, estimate_batches=3)  # 3 is not a power of two: the last batch still refits
    for chunk in x.chunk(3):
        norm.update(chunk)
    y = norm(x).double()
    assert y.mean(0).abs().max() < 1e-4
    assert torch.allclose(y.var(0, unbiased=False), torch.ones(12, dtype=torch.float64), atol=1e-4)
    rotation = norm.rotation.double()
    assert torch.allclose(rotation @ rotation.T, torch.eye(12, dtype=torch.float64), atol=1e-5)
    # one scale: distances shrink by φ alike in every direction (per-channel scaling would not)
    d_in, d_out = torch.pdist(x[:64].double()), torch.pdist(y[:64])
    assert torch.allclose(d_out * norm.scale.double(), d_in, rtol=1e-4)


def test_phi_s_freezes_after_its_estimate_batches():
    x = _correlated(512, 8)
    norm = PhiSNorm(8, estimate_batches=2)
    norm.update(x[:256])
    norm.update(x[256:])
    frozen = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.update(x[:10] * 100)
    assert all(torch.equal(frozen[k], v) for k, v in norm.state_dict().items())


def test_phi_s_folds_back_into_the_head_exactly():
    norm = PhiSNorm(6, estimate_batches=1)  # 6 has no Hadamard matrix: the Givens path
    norm.update(_correlated(256, 6))
    head = projection_head(4, 6)
    x = torch.randn(5, 4)
    standardised = head(x)
    norm.fold_into_head(head)
    assert torch.allclose(norm(head(x)), standardised, atol=1e-4)


def test_distill_run_with_phi_s_resumes_its_statistics_and_saves_teacher_space_heads(tmp_path):
    cfg = load_config(None, [
        "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
        "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
        "data.max_images=4", "distill.batch_size=2", "distill.steps=3", "distill.warmup_steps=1", "distill.tensorboard=false",
        "distill.standardize=phi-s", "distill.standardize_batches=2", "distill.device=cpu",
    ])
    prepared = stage.prepare(cfg, tmp_path)
    norm = prepared.job.norms.norms[0].token
    assert isinstance(norm, PhiSNorm) and norm.estimate_batches == 2
    stage.train(prepared.job)
    assert int(norm.count) == 2 and float(norm.scale) != 1.0
    heads = stage.deploy_heads(prepared.job.module, prepared.job.norms)
    x = torch.randn(3, 192)
    assert torch.allclose(norm(heads[0].token(x)), prepared.job.module.heads.token(x), atol=1e-4)


def test_unknown_standardisation_fails_at_load_and_names_the_choices():
    with pytest.raises(EdgedistillError, match="not a known choice") as error:
        load_config(None, ["distill.standardize=phis"])
    assert "phi-s" in error.value.fix


def test_phi_s_map_is_stable_under_rounding_of_its_inputs():
    """fp16 caches round the targets; eigh's arbitrary eigenvector signs must not turn that into a new map."""
    x = _correlated(64, 192)
    exact, rounded = PhiSNorm(192, estimate_batches=1), PhiSNorm(192, estimate_batches=1)
    exact.update(x)
    rounded.update(x.half().float())
    change = (exact(x) - rounded(x)).norm() / exact(x).norm()
    assert change < 0.01, change
