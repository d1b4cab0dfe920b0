"""Neural volatility: the GARCH(1, 1) recursion by hand, stationarity for any raw value, the head's sigma."""

import pytest
import torch

from stratcast.daemon.zoo.heads import GaussianHead
from stratcast.daemon.zoo.models.volatility import (
    OMEGA_MIN,
    Volatility,
    VolatilityConfig,
    garch_parameters,
    horizon_variance,
    window_variance,
)


def by_hand(eps: list[float], omega: float, alpha: float, beta: float, horizon: int) -> list[float]:
    """The recursion step by step: from the sample variance over the residuals, then the expectation ahead."""
    var = sum(e * e for e in eps) / len(eps)
    for e in eps:
        var = omega + alpha * e * e + beta * var
    out = [var]
    for _ in range(horizon - 1):
        out.append(omega + (alpha + beta) * out[-1])
    return out


def test_variance_recursion_matches_a_hand_computation():
    eps, omega, alpha, beta = [1.0, 2.0, 0.0], 0.1, 0.2, 0.7
    # sigma^2_0 = 5/3; sigma^2_1 = 0.1 + 0.2 + 0.7 * 5/3; sigma^2_2 = 0.1 + 0.8 + 0.7 sigma^2_1; sigma^2_3 = ...
    s1 = 0.1 + 0.2 * 1.0 + 0.7 * 5 / 3
    s2 = 0.1 + 0.2 * 4.0 + 0.7 * s1
    s3 = 0.1 + 0.2 * 0.0 + 0.7 * s2
    expected = [s3, 0.1 + 0.9 * s3, 0.1 + 0.9 * (0.1 + 0.9 * s3)]
    assert by_hand(eps, omega, alpha, beta, 3) == pytest.approx(expected)
    t = torch.tensor
    first = window_variance(t([eps], dtype=torch.float64), t([omega]), t([alpha]), t([beta]))
    got = horizon_variance(first, t([omega]), t([alpha + beta]), 3)
    assert got[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_variance_recursion_matches_the_loop_on_random_residuals_and_a_zero_beta():
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(4, 13, generator=g, dtype=torch.float64)
    omega, alpha = torch.tensor([0.05, 0.3, 1.0, 0.01]), torch.tensor([0.1, 0.0, 0.5, 0.05])
    beta = torch.tensor([0.85, 0.6, 0.0, 0.94])
    first = window_variance(eps, omega, alpha, beta)
    got = horizon_variance(first, omega, alpha + beta, 6)
    for i in range(4):
        want = by_hand(eps[i].tolist(), float(omega[i]), float(alpha[i]), float(beta[i]), 6)
        assert got[i].tolist() == pytest.approx(want, rel=1e-5)


def test_a_big_last_residual_raises_the_next_variance_and_it_decays_to_the_unconditional_one():
    f64 = torch.float64
    omega, alpha, beta = torch.tensor([0.1], dtype=f64), torch.tensor([0.2], dtype=f64), torch.tensor([0.7], dtype=f64)
    calm, shocked = torch.zeros(1, 20, dtype=f64), torch.zeros(1, 20, dtype=f64)
    shocked[0, -1] = 3.0
    assert window_variance(shocked, omega, alpha, beta) > window_variance(calm, omega, alpha, beta)
    path = horizon_variance(window_variance(shocked, omega, alpha, beta), omega, alpha + beta, 300)[0]
    assert bool((path[1:] <= path[:-1]).all()) and bool((path[1:100] < path[:99]).all())
    assert float(path[-1]) == pytest.approx(0.1 / (1 - 0.9), rel=1e-9)


@pytest.mark.parametrize("big", [1e4, 1e30, float("inf")])
def test_stationarity_holds_for_extreme_raw_parameters(big):
    values = [-big, -30.0, 0.0, 30.0, big]
    raw = torch.cartesian_prod(*(torch.tensor(values),) * 3)  # [125, 3]: every combination
    omega, alpha, beta = garch_parameters(raw, 0.9999)
    assert not bool(omega.isnan().any()) and bool((omega >= OMEGA_MIN).all())
    assert bool((alpha >= 0).all()) and bool((beta >= 0).all())
    assert bool((alpha + beta < 1).all())


def test_the_gaussian_heads_sigma_is_the_garch_sigma():
    torch.manual_seed(0)
    model = Volatility(VolatilityConfig.tiny(), input_size=20, horizon=5, n_outputs=2).eval()
    x = torch.randn(6, 20)
    out = model(x)
    sigma = model.sigma(x)
    one_sd_up = torch.full((6, 5), 0.8413447460685429, dtype=torch.float64)  # the normal's cdf at 1
    head_sigma = GaussianHead().icdf(out.double(), one_sd_up) - out[..., 0].double()
    torch.testing.assert_close(head_sigma.float(), sigma, rtol=1e-4, atol=1e-5)
    assert bool((sigma >= OMEGA_MIN**0.5).all())


def test_one_output_is_the_mean_alone_and_the_student_t_gets_a_third():
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    point = Volatility(VolatilityConfig.tiny(), input_size=20, horizon=4, n_outputs=1).eval()
    torch.manual_seed(0)
    t = Volatility(VolatilityConfig.tiny(), input_size=20, horizon=4, n_outputs=3).eval()
    assert point(x).shape == (3, 4, 1) and t(x).shape == (3, 4, 3)
    torch.testing.assert_close(point(x)[..., 0], t(x)[..., 0])  # the same mean network, seeded alike
