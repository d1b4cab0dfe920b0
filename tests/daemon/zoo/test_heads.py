"""Output heads: each loss against its closed form, non-crossing quantiles, means, reproducible samples."""

import math

import pytest
import torch

from stratcast.daemon.zoo import studentt
from stratcast.daemon.zoo.heads import (
    MIN_DF,
    SCALE_FLOOR,
    GaussianHead,
    HurdleHead,
    QuantileHead,
    StudentTHead,
    make_head,
)

LEVELS = (0.1, 0.5, 0.9)
DISTRIBUTIONS = ["quantile", "gaussian", "student-t", "hurdle"]


def raw_for_quantiles(values: torch.Tensor) -> torch.Tensor:
    """Raw quantile-head outputs [..., Q] whose quantiles are ``values`` (increasing along the last dimension)."""
    steps = values[..., 1:] - values[..., :-1]
    return torch.cat([values[..., :1], torch.log(torch.expm1(steps))], dim=-1)  # inverse softplus


def random_out(kind: str, shape=(5, 3), seed=0) -> torch.Tensor:
    head = make_head(kind, levels=LEVELS)
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(*shape, head.n_params, generator=g, dtype=torch.float64)


def test_point_losses_are_squared_absolute_and_huber_error():
    out = torch.tensor([[[1.0], [-2.0], [0.5]]])  # [B=1, H=3, P=1]
    y = torch.tensor([[0.0, 1.0, 0.25]])
    err = torch.tensor([1.0, -3.0, 0.25])
    torch.testing.assert_close(make_head("mse").loss(out, y)[0], err**2)
    torch.testing.assert_close(make_head("mae").loss(out, y)[0], err.abs())
    huber = torch.tensor([1.0 * (1.0 - 0.5 * 1.0), 1.0 * (3.0 - 0.5), 0.5 * 0.25**2])
    torch.testing.assert_close(make_head("huber", delta=1.0).loss(out, y)[0], huber)
    for kind in ("mse", "mae", "huber"):
        head = make_head(kind)
        assert head.n_params == 1
        torch.testing.assert_close(head.mean(out), out[..., 0])
        assert torch.equal(head.quantiles(out, LEVELS), out[..., 0:1].expand(1, 3, 3))  # a point mass


def test_quantile_loss_is_the_pinball_loss_of_the_increasing_quantiles():
    q = torch.tensor([[[1.0, 2.0, 3.0]]])  # [B=1, H=1, Q=3]
    head = QuantileHead(LEVELS)
    out = raw_for_quantiles(q)
    torch.testing.assert_close(head.values(out), q)
    y = torch.tensor([[2.5]])
    expected = ((0.1 * 1.5) + (0.5 * 0.5) + (0.1 * 0.5)) / 3
    assert head.loss(out, y).item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_loss_is_the_normal_negative_log_likelihood():
    out = torch.tensor([[[0.5, 0.3]]], dtype=torch.float64)
    y = torch.tensor([[1.7]], dtype=torch.float64)
    s = math.log1p(math.exp(0.3)) + SCALE_FLOOR
    expected = math.log(s) + 0.5 * ((1.7 - 0.5) / s) ** 2 + 0.5 * math.log(2 * math.pi)
    assert GaussianHead().loss(out, y).item() == pytest.approx(expected, rel=1e-12)


def test_student_t_loss_is_its_negative_log_likelihood_with_lgamma():
    out = torch.tensor([[[0.5, 0.3, -0.4]]], dtype=torch.float64)
    y = torch.tensor([[-1.2]], dtype=torch.float64)
    s = math.log1p(math.exp(0.3)) + SCALE_FLOOR
    df = MIN_DF + math.log1p(math.exp(-0.4))
    z = (-1.2 - 0.5) / s
    log_pdf = (
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi)
        - math.log(s)
        - (df + 1) / 2 * math.log1p(z * z / df)
    )
    assert StudentTHead().loss(out, y).item() == pytest.approx(-log_pdf, rel=1e-12)
    reference = torch.distributions.StudentT(torch.tensor(df), torch.tensor(0.5), torch.tensor(s))
    assert log_pdf == pytest.approx(float(reference.log_prob(torch.tensor(-1.2))), rel=1e-5)


def test_hurdle_loss_is_minus_log_p_for_a_zero_and_minus_log_one_minus_p_minus_log_t_otherwise():
    raw = [0.8, 0.5, 0.3, -0.4]
    out = torch.tensor([[raw, raw]], dtype=torch.float64)  # [B=1, H=2, P=4]
    y = torch.tensor([[0.0, -1.2]], dtype=torch.float64)
    p = 1 / (1 + math.exp(-0.8))
    t_nll = StudentTHead().loss(out[..., 1:], y)[0, 1].item()
    loss = HurdleHead().loss(out, y)[0]
    assert loss[0].item() == pytest.approx(-math.log(p), rel=1e-12)
    assert loss[1].item() == pytest.approx(-math.log(1 - p) + t_nll, rel=1e-12)


def test_the_hurdle_mean_is_one_minus_p_times_the_location():
    out = random_out("hurdle")
    p = torch.sigmoid(out[..., 0])
    torch.testing.assert_close(HurdleHead().mean(out), (1 - p) * out[..., 1])


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
def test_quantiles_never_cross_whatever_the_raw_outputs(kind):
    head = make_head(kind, levels=LEVELS)
    out = random_out(kind, shape=(64, 4), seed=1) * 3
    levels = (0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)
    q = head.quantiles(out, levels)
    assert q.shape == (64, 4, len(levels)) and bool(q.isfinite().all())
    assert bool((q[..., 1:] >= q[..., :-1]).all())


def test_the_quantile_heads_mean_is_the_distributions_mean_not_its_median():
    levels = tuple(round(0.05 * k, 2) for k in range(1, 20))
    tau = torch.tensor(levels, dtype=torch.float64)
    head = QuantileHead(levels)
    exponential = raw_for_quantiles(-torch.log1p(-tau))[None, None]  # Exp(1): mean 1, median 0.69
    assert head.mean(exponential).item() == pytest.approx(1.0, abs=0.05)
    normal = raw_for_quantiles(3.0 + 2.0 * torch.special.ndtri(tau))[None, None]  # N(3, 2^2)
    assert head.mean(normal).item() == pytest.approx(3.0, abs=1e-9)
    single = QuantileHead((0.3,))
    assert single.mean(torch.tensor([[[1.5]]])).item() == 1.5


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
def test_samples_repeat_for_a_seeded_generator_and_average_to_the_mean(kind):
    head = make_head(kind, levels=LEVELS)
    out = random_out(kind, shape=(2, 3), seed=2)
    out[..., -1] = out[..., -1].abs() + 1 if kind in ("student-t", "hurdle") else out[..., -1]  # df >= 3.3
    a = head.sample(out, 20_000, torch.Generator().manual_seed(7))
    b = head.sample(out, 20_000, torch.Generator().manual_seed(7))
    assert a.shape == (20_000, 2, 3) and torch.equal(a, b)
    spread = head.quantiles(out, (0.25, 0.75)).diff(dim=-1)[..., 0]
    torch.testing.assert_close(a.mean(0), head.mean(out), atol=float(0.05 * spread.max()) + 1e-3, rtol=0)
    q30 = head.quantiles(out, (0.3,))[..., 0]  # the hurdle's may sit on its atom at 0: P(< q) <= 0.3 <= P(<= q)
    below, at_most = (a < q30).double().mean(0), (a <= q30).double().mean(0)
    assert bool((below <= 0.32).all()) and bool((at_most >= 0.28).all())


def test_hurdle_samples_are_exactly_zero_with_probability_p():
    out = torch.tensor([[[0.4, 1.0, 0.2, 1.0]]], dtype=torch.float64)
    draws = HurdleHead().sample(out, 20_000, torch.Generator().manual_seed(0))
    p = torch.sigmoid(torch.tensor(0.4, dtype=torch.float64))
    assert float((draws == 0).double().mean()) == pytest.approx(float(p), abs=0.01)


def test_student_t_quantile_function_inverts_its_cdf_and_the_cdf_integrates_the_density():
    df = torch.tensor([1.0, 2.2, 3.0, 7.5, 60.0], dtype=torch.float64)[:, None]
    u = torch.tensor([1e-4, 0.02, 0.3, 0.5, 0.8, 0.999], dtype=torch.float64)
    torch.testing.assert_close(studentt.cdf(studentt.icdf(u, df), df), u.expand(5, 6), atol=1e-10, rtol=0)
    grid = torch.linspace(0, 4, 40_001, dtype=torch.float64)
    for d in (2.2, 7.5):
        dens = studentt.log_density(grid, torch.tensor(d, dtype=torch.float64)).exp()
        integral = 0.5 + torch.trapezoid(dens, grid)
        assert float(studentt.cdf(torch.tensor(4.0, dtype=torch.float64), torch.tensor(d))) == pytest.approx(
            float(integral), abs=1e-8
        )


def test_scales_are_floored_and_degrees_of_freedom_exceed_two():
    out = torch.tensor([[[0.0, -80.0, -80.0]]])
    q = StudentTHead().quantiles(out, (0.25, 0.75))
    # scale = SCALE_FLOOR and df = 2 (softplus(-80) is 0 in float32): the t2 quartiles are -+ sqrt(2/3)
    assert float(q[..., 1] - q[..., 0]) == pytest.approx(SCALE_FLOOR * 2 * math.sqrt(2 / 3), rel=1e-5)


def test_make_head_refuses_an_unknown_loss_and_crossing_levels():
    assert make_head("student-t").n_params == 3 and make_head("hurdle").n_params == 4
    assert make_head("quantile", levels=(0.2, 0.4, 0.6, 0.8)).n_params == 4
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        make_head("nope")
    for bad in ((0.5, 0.1), (0.0, 0.5), (0.5, 1.0), ()):
        with pytest.raises(ValueError, match="increase strictly within"):
            make_head("quantile", levels=bad)
