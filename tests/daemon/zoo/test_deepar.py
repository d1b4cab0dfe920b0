"""DeepAR trains teacher-forced on the true targets and forecasts by ancestral sampling through its likelihood."""

from __future__ import annotations

import pytest
import torch

from stratcast.daemon.zoo.heads import GaussianHead, OwnLoss
from stratcast.daemon.zoo.models.deepar import LIKELIHOODS, DeepAR, DeepARConfig

L, H, B = 12, 6, 4


def model(likelihood: str = "student-t") -> DeepAR:
    torch.manual_seed(0)
    return DeepAR(
        DeepARConfig(hidden_size=8, num_layers=2, dropout=0.0, likelihood=likelihood), input_size=L, horizon=H
    )


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_samples_from_a_fixed_generator_are_reproducible_paths_of_the_horizon(likelihood: str) -> None:
    net = model(likelihood).eval()
    assert isinstance(net, OwnLoss)
    x = torch.randn(B, L)
    with torch.no_grad():
        first, again = (net.sample(x, 9, torch.Generator().manual_seed(1)) for _ in range(2))
        other = net.sample(x, 9, torch.Generator().manual_seed(2))
    assert first.shape == (9, B, H) and bool(first.isfinite().all())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_the_spread_of_the_samples_grows_with_the_heads_scale(likelihood: str) -> None:
    net = model(likelihood).eval()
    x = torch.randn(B, L)

    def spread() -> float:
        with torch.no_grad():
            draws = net.sample(x, 400, torch.Generator().manual_seed(0))
        return float(draws.std(dim=0).mean())

    narrow = spread()
    with torch.no_grad():
        net.project.bias[1] += 3.0  # the raw scale: softplus grows about linearly with it
    assert spread() > 2 * narrow


def test_each_sampled_step_is_drawn_given_the_path_drawn_before_it() -> None:
    """Teacher-forcing a sampled path recovers, at every step, exactly the uniform draw that produced it."""
    net, n = model("gaussian").eval(), 5
    x = torch.randn(B, L)
    with torch.no_grad():
        paths = net.sample(x, n, torch.Generator().manual_seed(3)).reshape(n * B, H)  # [n, B, H] -> [n*B, H]
        params = net.step_params(x.repeat(n, 1), paths)  # copy k of window b is row k*B + b, as in sample
    assert isinstance(net.distribution, GaussianHead)
    loc, scale = params[..., 0], torch.nn.functional.softplus(params[..., 1]) + 1e-3
    generator = torch.Generator().manual_seed(3)
    uniforms = torch.stack([torch.rand(1, n * B, 1, generator=generator)[0, :, 0] for _ in range(H)], dim=1)
    torch.testing.assert_close((paths - loc) / scale, torch.special.ndtri(uniforms), atol=1e-4, rtol=1e-4)


def test_teacher_forcing_conditions_each_step_on_the_targets_before_it_only() -> None:
    net = model()
    x, y = torch.randn(B, L), torch.randn(B, H)
    changed = y.clone()
    changed[:, 3] += 1.0
    before, after = net.training_loss(x, y), net.training_loss(x, changed)
    assert before.shape == (B, H)
    torch.testing.assert_close(before[:, :3], after[:, :3])  # steps before the changed target do not see it
    assert not torch.allclose(before[:, 3:], after[:, 3:])  # its own step scores it, later steps read it


def test_training_the_likelihood_fits_the_level_and_spread_of_noisy_targets() -> None:
    net = model("gaussian")
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.zeros(32, L)
    for _ in range(100):
        y = 2.0 + 0.5 * torch.randn(32, H)
        optimizer.zero_grad()
        net.training_loss(x, y).mean().backward()
        optimizer.step()
    with torch.no_grad():
        draws = net.eval().sample(x[:8], 500, torch.Generator().manual_seed(0))
    assert abs(float(draws.mean()) - 2.0) < 0.15
    assert abs(float(draws.std(dim=0).mean()) - 0.5) < 0.15
