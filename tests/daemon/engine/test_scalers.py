import pytest
import torch

from stratcast.daemon.engine.data.scalers import (
    MIN_WINDOW_STD,
    SampledWindowNorm,
    SeriesScaler,
    WindowNorm,
    fit_scaler,
    row_quantiles,
)
from tests.daemon.zoo.toys import OwnLossLinear, ToyConfig


def zero_heavy(seed: int = 0, n: int = 6, t: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    vals = torch.randn(n, t, generator=g) * torch.logspace(0, 3, n)[:, None]
    return torch.where(torch.rand(n, t, generator=g) < 0.6, 0.0, vals)


def test_robust_scale_is_the_iqr_of_nonzero_values_and_zeros_stay_zero():
    values = zero_heavy()
    mask = torch.ones_like(values, dtype=torch.bool)
    scaler = fit_scaler("robust", values, mask)
    for i in range(values.shape[0]):
        nz = values[i][values[i] != 0].double()
        iqr = torch.quantile(nz, 0.75) - torch.quantile(nz, 0.25)
        assert scaler.scale[i].item() == pytest.approx(iqr.item(), rel=1e-5)
    scaled = scaler.transform(values)
    assert torch.equal(scaled == 0, values == 0)
    assert scaled.abs().max() < 60  # scaled magnitudes stay moderate across three decades of scale


def test_robust_scaler_falls_back_to_std_then_one():
    values = torch.tensor([[0.0, 5.0, 5.0, 5.0, 9.0, 0.0], [0.0, 0.0, 3.0, 0.0, 0.0, 0.0], [0.0] * 6])
    scaler = fit_scaler("robust", values, torch.ones_like(values, dtype=torch.bool))
    # row 0: IQR of [5, 5, 5, 9] is 1.0 (quartiles 5 and 6); row 1: one non-zero value: no spread -> 1; row 2: 1
    assert scaler.scale.tolist() == pytest.approx([1.0, 1.0, 1.0])
    constant = torch.tensor([[0.0, 4.0, 4.0, 4.0, 4.0, 8.0]])
    s = fit_scaler("robust", constant, torch.ones_like(constant, dtype=torch.bool))
    nz = torch.tensor([4.0, 4.0, 4.0, 4.0, 8.0])
    assert s.scale.item() == pytest.approx(nz.std().item(), rel=1e-5)  # IQR 0 -> std of the non-zero values


def test_scaler_is_fit_on_the_training_part_only():
    values = zero_heavy()
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[:, :50] = True
    fitted = fit_scaler("standard", values, mask)
    changed = values.clone()
    changed[:, 50:] *= 1000
    assert torch.equal(fit_scaler("standard", changed, mask).scale, fitted.scale)


@pytest.mark.parametrize("kind", ["robust", "robust-centered", "standard", "identity", "revin"])
def test_inverse_undoes_transform_and_state_round_trips(kind):
    values = zero_heavy()
    scaler = fit_scaler(kind, values, torch.ones_like(values, dtype=torch.bool))
    assert torch.allclose(scaler.inverse(scaler.transform(values)), values, rtol=1e-5, atol=1e-3)
    again = SeriesScaler.from_state_dict(scaler.state_dict())
    assert torch.equal(again.loc, scaler.loc) and torch.equal(again.scale, scaler.scale) and again.kind == kind
    rows = torch.tensor([4, 1])
    assert torch.allclose(scaler.inverse(scaler.transform(values)[rows], rows), values[rows], rtol=1e-5, atol=1e-3)


def test_centered_robust_scaler_subtracts_the_nonzero_median():
    values = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0, 10.0]])
    s = fit_scaler("robust-centered", values, torch.ones_like(values, dtype=torch.bool))
    assert s.loc.item() == pytest.approx(2.5)


def test_window_norm_is_invariant_to_each_windows_level_and_handles_all_zero_windows():
    torch.manual_seed(0)
    inner = torch.nn.Linear(8, 4)
    model = WindowNorm(torch.nn.Sequential(inner, torch.nn.Unflatten(1, (4, 1))))
    x = torch.randn(3, 8)
    shifted = model(x + 100.0)
    assert torch.allclose(shifted, model(x) + 100.0, atol=1e-3)
    out = model(torch.zeros(2, 8))
    assert torch.isfinite(out).all()
    assert out.abs().max() < 1e-2 + inner.bias.abs().max() * 1e-2


def test_sampled_window_norm_trains_and_draws_in_each_windows_units_and_maps_the_draws_back():
    torch.manual_seed(0)
    seen: list[torch.Tensor] = []
    inner = OwnLossLinear(ToyConfig(), input_size=6, horizon=3, n_outputs=1)
    inner.linear.register_forward_pre_hook(lambda module, args: seen.append(args[0]))  # what the model reads
    model = SampledWindowNorm(inner)
    x = torch.randn(5, 6)
    loss = model.training_loss(x * 50 + 1000, torch.randn(5, 3) * 50 + 1000)
    assert loss.shape == (5, 3) and torch.isfinite(loss).all() and loss.mean() < 100  # targets normalised too
    window = seen[-1]  # a level of 1,000 reaches the model at mean 0 and unit spread
    torch.testing.assert_close(window.mean(-1), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(window.std(-1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)
    draws = model.sample(x * 10, 4, torch.Generator().manual_seed(1))  # spread well above MIN_WINDOW_STD
    moved = model.sample(x * 50 + 1000, 4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(moved, draws * 5 + 1000, rtol=1e-4, atol=0.05)  # the same draws, in each level
    flat = model.sample(torch.zeros(2, 6), 3, None)  # a flat window: divided by MIN_WINDOW_STD, not by ~0
    assert torch.isfinite(flat).all() and flat.abs().max() < 100 * MIN_WINDOW_STD
    with pytest.raises(TypeError, match="no loss of its own"):
        SampledWindowNorm(torch.nn.Linear(6, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_quantiles_equal_torch_nanquantile_in_float64_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(4)
    values = (torch.randn(300, 157, generator=g) * 50).round(decimals=1).to(dtype)  # ties, as in pips
    values[torch.rand(300, 157, generator=g) < 0.4] = 0
    values[0] = 0  # nothing kept
    values[1, 1:] = 0  # one value kept
    values[2, :] = 7.5  # all equal
    keep = values != 0
    expected = torch.nanquantile(
        torch.where(keep, values.double(), float("nan")),
        torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64),
        dim=1,
    )
    got = row_quantiles(values, keep, (0.1, 0.25, 0.5, 0.75, 0.9))
    assert got.dtype == torch.float64
    assert torch.equal(got.isnan(), expected.isnan()) and got[:, 0].isnan().all()
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(expected))
    assert (got[:, 1] == values[1, 0].double()).all() and (got[:, 2] == 7.5).all()
