"""The DDPM schedule block against its closed forms, and the diffusion forecaster's training and sampling."""

import math

import pytest
import torch

from stratcast.daemon.zoo.blocks import diffusion as block
from stratcast.daemon.zoo.blocks.diffusion import DiffusionSchedule, beta_schedule, step_embedding
from stratcast.daemon.zoo.models import diffusion as model_module
from stratcast.daemon.zoo.models.diffusion import Diffusion, DiffusionConfig

L, H = 16, 4


@pytest.mark.parametrize("kind", block.SCHEDULES)
@pytest.mark.parametrize("steps", [2, 20, 1000])
def test_alpha_bars_fall_strictly_within_zero_and_one(kind, steps):
    schedule = DiffusionSchedule(kind, steps)
    abar = schedule.alpha_bars.double()
    assert bool((abar > 0).all() and (abar < 1).all())
    assert bool((abar[1:] < abar[:-1]).all())
    assert bool((schedule.betas > 0).all() and (schedule.betas < 1).all())
    torch.testing.assert_close(schedule.alpha_bars, torch.cumprod(1 - schedule.betas, 0))


def test_the_linear_schedule_over_1000_steps_is_ddpms_and_ends_near_pure_noise():
    betas = beta_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.cumprod(1 - betas, 0)[-1].item() < 1e-4
    assert torch.cumprod(1 - beta_schedule("linear", 20), 0)[-1].item() < 1e-4  # rescaled: still near pure noise


def test_the_cosine_schedule_follows_its_closed_form():
    steps, s = 20, block.COSINE_OFFSET
    abar = torch.cumprod(1 - beta_schedule("cosine", steps), 0)

    def f(t: float) -> float:
        return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2

    for k in (1, 5, 10, 19):  # the last step's beta is capped, so its abar is not f(K) / f(0) = 0
        assert abar[k - 1].item() == pytest.approx(f(k) / f(0), rel=1e-9)


def test_unknown_schedules_and_step_counts_are_refused():
    with pytest.raises(ValueError, match="unknown diffusion schedule"):
        beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="at least one step"):
        beta_schedule("linear", 0)


def test_q_sample_has_the_closed_form_mean_and_variance():
    schedule = DiffusionSchedule("cosine", 10)
    x0 = torch.tensor([2.0, -1.0, 0.5])
    n, k = 200_000, 6
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(n, 3, generator=gen)
    xk = schedule.q_sample(x0.expand(n, 3), torch.full((n,), k), noise)
    abar = schedule.alpha_bars[k]
    torch.testing.assert_close(xk.mean(0), abar.sqrt() * x0, atol=0.01, rtol=0)
    torch.testing.assert_close(xk.var(0), (1 - abar).expand(3), atol=0.01, rtol=0)


@pytest.mark.parametrize("kind", block.SCHEDULES)
def test_the_reverse_step_is_the_posterior_of_the_forward_process(kind):
    # x_{k-1} | x_0 ~ N(sqrt(abar_{k-1}) x_0, 1 - abar_{k-1}) and x_k | x_{k-1} ~ N(sqrt(alpha_k) x_{k-1}, beta_k):
    # Gaussian conditioning gives x_{k-1} | x_k, x_0 directly, without the paper's closed form
    schedule = DiffusionSchedule(kind, 12)
    betas = beta_schedule(kind, 12)
    abar = torch.cumprod(1 - betas, 0)
    x0, xk = torch.tensor([0.7]), torch.tensor([-0.4])
    for k in range(1, 12):
        prior_var, beta = 1 - abar[k - 1].item(), betas[k].item()
        var = 1 / (1 / prior_var + (1 - beta) / beta)
        mean = var * (math.sqrt(abar[k - 1].item()) * x0.item() / prior_var + math.sqrt(1 - beta) * xk.item() / beta)
        step = torch.tensor([k])
        assert schedule.posterior_mean(xk, x0, step).item() == pytest.approx(mean, rel=1e-5, abs=1e-6)
        assert schedule.posterior_std[k].item() ** 2 == pytest.approx(var, rel=1e-5)


def test_the_in_place_reverse_step_equals_the_tensor_one_and_the_last_step_adds_no_noise():
    schedule = DiffusionSchedule("linear", 8)
    gen = torch.Generator().manual_seed(1)
    xk, x0_hat, noise = (torch.randn(5, H, generator=gen) for _ in range(3))
    for k in (7, 3, 1):
        want = schedule.reverse_step(xk, x0_hat, torch.tensor([k]), noise)
        torch.testing.assert_close(schedule.reverse_step_(xk.clone(), x0_hat, k, noise), want)
    assert torch.equal(schedule.reverse_step(xk, x0_hat, torch.tensor([0]), noise), x0_hat)
    torch.testing.assert_close(schedule.reverse_step_(xk.clone(), x0_hat, 0, None), x0_hat)


def test_the_step_embedding_puts_each_frequency_on_the_unit_circle_and_tells_steps_apart():
    e = step_embedding(torch.arange(20), 16)
    assert e.shape == (20, 16)
    torch.testing.assert_close(e[:, :8].square() + e[:, 8:].square(), torch.ones(20, 8))
    assert torch.cdist(e, e).add(torch.eye(20)).min() > 0.1


def tiny(**overrides: object) -> Diffusion:
    torch.manual_seed(0)
    config = DiffusionConfig(steps=6, hidden_size=16, embedding_size=8, **overrides)  # type: ignore[arg-type]
    return Diffusion(config, input_size=L, horizon=H)


def test_draws_are_reproducible_from_their_generator_and_leave_the_global_one_alone(monkeypatch):
    model = tiny().eval()
    x = torch.randn(7, L)
    state = torch.get_rng_state()
    first = model.sample(x, 5, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert first.shape == (5, 7, H) and bool(first.isfinite().all())
    torch.testing.assert_close(first, model.sample(x, 5, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, model.sample(x, 5, torch.Generator().manual_seed(4)))
    monkeypatch.setattr(model_module, "SAMPLE_ROWS", 14)  # two draws of the 7 windows per reverse pass
    grouped = model.sample(x, 5, torch.Generator().manual_seed(3))
    assert grouped.shape == (5, 7, H)
    assert not torch.equal(grouped[1:], grouped[:-1])  # every group draws noise of its own


def test_the_validation_loss_is_the_same_at_every_check_and_the_training_loss_is_random():
    model = tiny()
    x, y = torch.randn(32, L), torch.randn(32, H)
    model.eval()
    with torch.no_grad():
        first = model.training_loss(x, y)
        assert first.shape == (32, H)
        assert torch.equal(first, model.training_loss(x, y))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model.training_loss(x, y), model.training_loss(x, y))


def test_without_the_ar_guess_the_loss_is_the_denoising_error_alone():
    with_ar, without = tiny(), tiny(ar_init=False)
    assert without.ar is None and with_ar.ar is not None
    x, y = torch.randn(8, L), torch.randn(8, H)
    with_ar.eval()
    with torch.no_grad():
        # the AR guess's own squared error is part of the loss: at least that much, whatever the denoiser does
        assert bool((with_ar.training_loss(x, y) >= (with_ar.ar(x) - y).square() - 1e-6).all())


def test_it_learns_the_conditional_mean():
    # y = the window's level + N(0, 0.5^2) noise: the mean of the draws (the engine's forecast) must find the level
    torch.manual_seed(0)
    config = DiffusionConfig(steps=10, hidden_size=32, embedding_size=16, dropout=0.0)
    model = Diffusion(config, input_size=L, horizon=H)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(400):
        level = 4 * torch.rand(128, 1) - 2
        loss = model.training_loss(level.expand(128, L), level + 0.5 * torch.randn(128, H)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    levels = torch.tensor([[1.0], [-1.5]])
    draws = model.sample(levels.expand(2, L), 500, torch.Generator().manual_seed(1))  # [500, 2, H]
    torch.testing.assert_close(draws.mean((0, 2)), levels[:, 0], atol=0.15, rtol=0)


def oracle_chain(kind: str, steps: int, mu: float, s: float, n: int) -> torch.Tensor:
    """Draws of the reverse chain for data N(mu, s^2) with the exact denoiser E[x_0 | x_k] in closed form."""
    schedule = DiffusionSchedule(kind, steps)
    gen = torch.Generator().manual_seed(0)
    xk = torch.randn(n, 1, generator=gen)
    for k in reversed(range(steps)):
        abar = schedule.alpha_bars[k].item()
        # x_k = sqrt(abar) x_0 + sqrt(1 - abar) eps with x_0 ~ N(mu, s^2): regress x_0 on x_k
        x0_hat = mu + s * s * math.sqrt(abar) / (abar * s * s + 1 - abar) * (xk - math.sqrt(abar) * mu)
        noise = torch.randn(xk.shape, generator=gen) if k else None
        schedule.reverse_step_(xk, x0_hat, k, noise)
    return xk


@pytest.mark.parametrize("kind", block.SCHEDULES)
def test_the_chain_with_the_exact_denoiser_draws_the_data_distribution_as_steps_grow(kind):
    mu, s = 1.0, 0.5
    spreads = []
    for steps in (10, 20, 100, 1000):
        draws = oracle_chain(kind, steps, mu, s, 40_000)
        assert draws.mean().item() == pytest.approx(mu, abs=0.01)  # the mean is right at any step count
        spreads.append(draws.std().item())
    # the posterior mean stands in for x_0 in each step, so few large steps draw too narrowly (cosine at 20 steps:
    # about 0.43 for 0.5); the spread grows towards the data's with the steps
    assert spreads == sorted(spreads)
    assert spreads[-1] == pytest.approx(s, abs=0.01)
