"""DLinear's folded forward pass (one matmul for large batches) is the decomposed one, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from stratcast.daemon.zoo.models.dlinear import DLinear, DLinearConfig


def both_paths(model: DLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(folded, decomposed) outputs of the same model on the same windows."""
    threshold = model.fold_min_batch
    model.fold_min_batch = 0
    folded = model(x)
    model.fold_min_batch = x.shape[0] + 1
    decomposed = model(x)
    model.fold_min_batch = threshold
    return folded, decomposed


@pytest.mark.parametrize(("input_size", "kernel", "n_outputs"), [(104, 25, 1), (12, 4, 3), (6, 25, 1), (9, 1, 2)])
def test_folded_forward_equals_the_decomposition(input_size: int, kernel: int, n_outputs: int) -> None:
    torch.manual_seed(0)
    model = DLinear(DLinearConfig(moving_avg=kernel), input_size=input_size, horizon=7, n_outputs=n_outputs)
    x = torch.randn(33, input_size, dtype=torch.float64)
    model.double()
    folded, decomposed = both_paths(model, x)
    torch.testing.assert_close(folded, decomposed)
    grads = []
    for out in both_paths(model, x):
        model.zero_grad()
        out.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for g_fold, g_dec in zip(*grads, strict=True):
        torch.testing.assert_close(g_fold, g_dec)


def test_large_batches_fold_and_small_ones_decompose() -> None:
    model = DLinear(DLinearConfig(moving_avg=25), input_size=104, horizon=52)
    assert 1 < model.fold_min_batch < 1024
