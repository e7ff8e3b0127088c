"""Distillation losses pinned against small hand-computed cases."""

import pytest
import torch

from edgedistill.distill.align import align_grid
from edgedistill.distill.losses import proteus_losses, regression_loss
from edgedistill.distill.masking import random_masks
from edgedistill.distill.standardize import TargetNorm
from edgedistill.models.heads import projection_head
from edgedistill.models.tokens import patch_tokens


def test_mse_is_the_mean_of_squared_differences():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert regression_loss(pred, torch.zeros(2, 2)).item() == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_cosine_smoothl1_hand_cases():
    # orthogonal unit vectors: 1 - cos = 1; |d| = 1 in both elements -> smooth-L1 = 1 - 0.5 = 0.5
    assert regression_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), "cosine_smoothl1").item() == pytest.approx(1.5)
    # parallel vectors: cosine term 0; |d| = 0.5 < beta=1 -> 0.5 * 0.5**2 = 0.125
    assert regression_loss(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.5, 1.5]]), "cosine_smoothl1").item() == pytest.approx(0.125)
    # the cosine part is averaged over vectors: (0 + 1) / 2, smooth-L1 over elements: (0+0+0.5+0.5)/4
    pred, target = torch.tensor([[2.0, 0.0], [1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert regression_loss(pred, target, "cosine_smoothl1").item() == pytest.approx(0.5 + 0.25)


def test_unknown_loss_kind_is_refused():
    with pytest.raises(ValueError):
        regression_loss(torch.zeros(1, 2), torch.zeros(1, 2), "l3")


def test_proteus_levels_hand_case():
    token_pred, token_target = torch.ones(2, 1), torch.zeros(2, 1)  # token: mean(1, 1) = 1
    patch_pred = torch.tensor([[[1.0], [2.0]]])  # the masked pass of sample 0 only (M = 1)
    mask = torch.tensor([[True, False]])  # only its first patch counts: 1^2
    feature_pred = torch.tensor([[[1.0], [1.0], [2.0]], [[3.0], [1.0], [1.0]]])  # every sample: (1+1+4+9+1+1) / 6
    levels = proteus_losses(token_pred, token_target, patch_pred, torch.zeros(1, 2, 1), mask, feature_pred, torch.zeros(2, 3, 1))
    assert levels.as_floats() == pytest.approx({"token": 1.0, "patch": 1.0, "feature": 17 / 6})
    assert levels.total((1.0, 1.0, 1.0)).item() == pytest.approx(2.0 + 17 / 6)
    assert levels.total((2.0, 0.0, 0.5)).item() == pytest.approx(2.0 + 17 / 12)


def test_patch_level_without_masked_samples_is_zero_and_keeps_the_graph():
    token_pred = torch.ones(2, 1, requires_grad=True)
    levels = proteus_losses(token_pred, torch.zeros(2, 1), None, torch.zeros(0, 2, 1), torch.zeros(0, 2, dtype=torch.bool),
                            torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
    assert levels.patch.item() == 0.0 and levels.feature.item() == 0.0
    levels.total((1.0, 1.0, 1.0)).backward()
    assert token_pred.grad is not None


def test_align_grid_vit16_vs_vit14_and_cnn_strides():
    x = torch.arange(1.0, 5.0).view(1, 4, 1)
    assert torch.equal(align_grid(x, (2, 2), (2, 2)), x)  # same grid: untouched
    # antialiased 2x downscale in 1D: triangle weights 0.75, 0.75, 0.25 normalised over in-bounds pixels
    a = [1.0, 2.0, 3.0, 4.0]
    expected = [(0.75 * a[0] + 0.75 * a[1] + 0.25 * a[2]) / 1.75, (0.25 * a[1] + 0.75 * a[2] + 0.75 * a[3]) / 1.75]
    assert align_grid(x, (1, 4), (1, 2)).flatten().tolist() == pytest.approx(expected)
    assert align_grid(x, (2, 2), (1, 1)).item() == pytest.approx(2.5)  # a stride-32 CNN map onto a coarser grid
    # bilinear upsampling, align_corners=False: sample points at -0.25, 0.25, 0.75, 1.25 (clamped)
    assert align_grid(torch.tensor([1.0, 3.0]).view(1, 2, 1), (1, 2), (1, 4)).flatten().tolist() == pytest.approx([1.0, 1.5, 2.5, 3.0])
    # teacher /14 at 224 (16x16) onto student /16 at 224 (14x14): shape, and a constant field stays constant
    const = torch.full((2, 256, 3), 0.7)
    out = align_grid(const, (16, 16), (14, 14))
    assert out.shape == (2, 196, 3) and torch.allclose(out, torch.full_like(out, 0.7))


def test_cnn_feature_maps_become_row_major_tokens():
    fmap = torch.arange(12.0).view(1, 3, 2, 2)  # C=3, H=W=2
    tokens, grid = patch_tokens(torch.nn.Identity(), fmap)
    assert grid == (2, 2)
    assert tokens[0, 1].tolist() == [1.0, 5.0, 9.0]  # token (row 0, col 1) holds channel values at [.., 0, 1]


def test_random_masks_count_share_and_ratio():
    mask = random_masks(4, 10, share=0.5, ratio=0.3, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (2, 10) and mask.sum(1).tolist() == [3, 3]  # the first two samples, 3 patches each
    assert random_masks(4, 10, share=0.0, ratio=0.5).shape == (0, 10)
    assert random_masks(4, 10, share=0.5, ratio=0.0).shape == (0, 10)  # nothing masked: no masked pass either


def test_target_norm_standardises_and_folds_back():
    norm = TargetNorm(2, eps=0.0)
    norm.update(torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]))  # mean (2, 4), unbiased var (1, 4)
    assert norm(torch.tensor([[3.0, 8.0]])).tolist() == [[1.0, 2.0]]
    head = projection_head(3, 2)
    x = torch.randn(5, 3)
    expected = head(x) * torch.tensor([1.0, 2.0]) + torch.tensor([2.0, 4.0])
    norm.fold_into_head(head)
    assert torch.allclose(head(x), expected, atol=1e-6)


def test_target_norm_learns_the_spread_from_batches_of_one_vector():
    # the summary token at distill.batch_size=1: one vector a step, so no batch has a spread of its own
    std = torch.tensor([10.0, 1.0, 0.02])  # 0.02: L2-normalised embeddings' channels are this small
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * std + 5.0
    norm = TargetNorm(3)
    for step, row in enumerate(x, 1):
        norm.update(row[None])
        if step == 50:  # early too: no initial 1.0 left in the estimate (it read 0.143 for the 0.02 channel here)
            assert torch.allclose(norm.var.sqrt(), std, rtol=0.3)
    assert torch.allclose(norm.var.sqrt(), std, rtol=0.25)
    assert torch.allclose(norm.mean, torch.full((3,), 5.0), atol=2.0)
