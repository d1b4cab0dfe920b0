"""StemGNN: the graph Fourier transform round-trips, its basis follows the series, the model is equivariant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.graph import fourier_basis, gft, igft, normalised_laplacian
from stratcast.daemon.zoo.models.stemgnn import StemGNN, StemGNNConfig, chebyshev_filter
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job


def adjacency(b: int, s: int, seed: int = 0) -> Tensor:
    """A random symmetric graph with positive weights, as the latent correlation layer gives."""
    w = torch.rand(b, s, s, generator=torch.Generator().manual_seed(seed)).softmax(-1)
    return (w + w.transpose(1, 2)) / 2


def test_the_graph_fourier_transform_round_trips_and_its_basis_is_orthonormal() -> None:
    basis = fourier_basis(adjacency(3, 10))
    x = torch.randn(3, 10, 7)
    torch.testing.assert_close(igft(gft(x, basis), basis), x, atol=1e-5, rtol=1e-5)
    u = basis.eigenvectors
    torch.testing.assert_close(u.transpose(1, 2) @ u, torch.eye(10).expand(3, 10, 10), atol=1e-5, rtol=1e-5)


def test_the_laplacian_spectrum_lies_in_zero_to_two_and_starts_at_zero() -> None:
    w = adjacency(2, 8)
    basis = fourier_basis(w)
    values = basis.eigenvalues
    assert bool((values > -1e-5).all() and (values < 2 + 1e-5).all())
    torch.testing.assert_close(values[:, 0], torch.zeros(2), atol=1e-5, rtol=0)
    # the zero frequency's eigenvector is D^1/2 1, normalised (and positive: the signs are fixed)
    root_degree = w.sum(-1).sqrt()
    torch.testing.assert_close(basis.eigenvectors[..., 0], root_degree / root_degree.norm(dim=-1, keepdim=True))
    laplacian = normalised_laplacian(w)
    torch.testing.assert_close(laplacian @ basis.eigenvectors, basis.eigenvectors * values[:, None, :])


def test_the_basis_follows_the_series_when_they_are_reordered() -> None:
    w = adjacency(1, 9)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(2))
    basis, moved = fourier_basis(w), fourier_basis(w[:, order][:, :, order])
    torch.testing.assert_close(moved.eigenvalues, basis.eigenvalues, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved.eigenvectors, basis.eigenvectors[:, order], atol=1e-4, rtol=1e-4)


def test_the_eigenvalues_carry_finite_gradients_even_when_they_repeat() -> None:
    w = torch.full((1, 6, 6), 1 / 6, requires_grad=True)  # uniform: five eigenvalues equal to 1.2
    basis = fourier_basis(w)
    assert not basis.eigenvectors.requires_grad
    (basis.eigenvalues * torch.arange(6.0)).sum().backward()
    assert w.grad is not None and bool(w.grad.isfinite().all()) and bool(w.grad.abs().sum() > 0)


def test_the_spectral_filter_is_the_chebyshev_polynomial_of_the_shifted_eigenvalue() -> None:
    eigenvalues = torch.tensor([[0.0, 0.5, 1.3, 2.0]])
    theta = torch.tensor([[0.5, -1.0, 2.0, 0.25]])  # one channel, order 3
    t = eigenvalues - 1
    expected = 0.5 - 1.0 * t + 2.0 * (2 * t**2 - 1) + 0.25 * (4 * t**3 - 3 * t)
    torch.testing.assert_close(chebyshev_filter(eigenvalues, theta)[..., 0], expected)


class SharpCorrelation(nn.Module):
    """A latent correlation that is sharp at once: attention of the windows themselves, symmetrised."""

    def forward(self, x: Tensor) -> Tensor:
        w = (x @ x.transpose(1, 2) / 8).softmax(-1)
        return (w + w.transpose(1, 2)) / 2


def test_reordering_a_windows_series_reorders_the_forecasts_when_the_graph_spectrum_is_simple() -> None:
    torch.manual_seed(0)
    config = StemGNNConfig(d_latent=8, channels=3, d_hidden=16, dropout=0.0)
    model = StemGNN(config, input_size=16, horizon=4, n_outputs=2).eval()
    x = torch.randn(2, 7, 16)
    model.latent = SharpCorrelation()  # type: ignore[assignment]  # distinct eigenvalues: a unique eigenbasis
    with torch.no_grad():
        gaps = fourier_basis(model.latent(x)).eigenvalues.diff(dim=-1)
        assert bool((gaps > 1e-2).all())
        order = torch.randperm(7, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model(x[:, order]), model(x)[:, order], atol=1e-4, rtol=1e-4)


def test_a_near_uniform_graph_leaves_the_eigenbasis_to_the_solver() -> None:
    """Why equivariance needs a simple spectrum: at initialisation the attention is near uniform (documented limit)."""
    torch.manual_seed(0)
    model = StemGNN(StemGNNConfig(d_latent=8, channels=3, d_hidden=16, dropout=0.0), input_size=16, horizon=4)
    with torch.no_grad():
        values = fourier_basis(model.latent(torch.randn(2, 7, 16))).eigenvalues
    assert bool(((values[:, 1:] - 1).abs() < 1e-2).all())  # six eigenvalues within 0.01 of 1


def test_it_runs_under_bf16_autocast_with_finite_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = StemGNN(StemGNNConfig.tiny(), input_size=20, horizon=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(3, 6, 20))
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_the_limit_on_series_per_window_names_the_option() -> None:
    config = StemGNNConfig()
    assert config.panel_problem(n_series=6000, series_per_window=1000) is None
    problem = config.panel_problem(n_series=6000, series_per_window=1001)
    assert problem is not None and "series_per_window" in problem and "1000" in problem


def test_it_trains_on_subsets_of_series_and_forecasts_every_strategy_through_a_job(tmp_path: Path) -> None:
    tiny = ["d_latent=8", "channels=2", "filter_order=2", "d_hidden=16", "dropout=0"]
    forecast, metrics = level_job(tmp_path, "stemgnn", ["series_per_window=4", "batch_size=8", "max_steps=40", *tiny])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N
