"""DeepNPTS: weights form a distribution over the window, draws are past values, flat windows forecast exact 0."""

import math

import pytest
import torch

from stratcast.daemon.zoo.heads import OwnLoss
from stratcast.daemon.zoo.models.deepnpts import DeepNPTS, DeepNPTSConfig, kernel_nll

L, H = 12, 5


def model(**overrides) -> DeepNPTS:
    torch.manual_seed(0)
    return DeepNPTS(DeepNPTSConfig(hidden_size=16, num_layers=2, dropout=0.0, **overrides), input_size=L, horizon=H)


def uniform(net: DeepNPTS) -> DeepNPTS:
    """The net with its logits zeroed: equal weight on every value of the window."""
    with torch.no_grad():
        net.logits.weight.zero_()
        net.logits.bias.zero_()
    return net


def test_weights_are_non_negative_and_sum_to_one():
    x = torch.randn(7, L, generator=torch.Generator().manual_seed(0)) * 100
    w = model().log_weights(x).exp()
    assert w.shape == (7, L) and bool((w >= 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(7))


def test_discrete_draws_are_always_values_of_the_window():
    x = torch.randint(-3, 4, (6, L), generator=torch.Generator().manual_seed(1)).float() * 1.7
    draws = model().eval().sample(x, 50, torch.Generator().manual_seed(2))
    assert draws.shape == (50, 6, H)
    for row in range(6):
        assert bool(torch.isin(draws[:, row], x[row]).all())


def test_a_window_of_zeros_forecasts_exact_zeros():
    net = model().eval()
    x = torch.zeros(4, L)
    assert bool((net.sample(x, 20, torch.Generator().manual_seed(0)) == 0).all())
    assert bool((net(x) == 0).all())


def test_exact_zeros_keep_their_probability():
    x = torch.tensor([[0.0, 1.5] * (L // 2)])  # half the weeks flat
    draws = uniform(model()).eval().sample(x, 2000, torch.Generator().manual_seed(3))
    share = float((draws[:, 0, 0] == 0).float().mean())
    assert share == pytest.approx(0.5, abs=0.04)
    assert set(draws.unique().tolist()) == {0.0, 1.5}


def test_smooth_draws_spread_around_the_past_values():
    x = torch.zeros(2, L)
    draws = model(sampling="smooth", bandwidth=0.2).eval().sample(x, 500, torch.Generator().manual_seed(0))
    assert bool((draws != 0).all())
    assert float(draws[:, :, 0].std()) == pytest.approx(0.2, rel=0.15)


def test_training_loss_is_the_kernel_nll_with_the_true_targets_appended():
    net = uniform(model(bandwidth=0.5))
    x = torch.randn(3, L, generator=torch.Generator().manual_seed(4))
    y = torch.randn(3, H, generator=torch.Generator().manual_seed(5))
    loss = net.training_loss(x, y).detach()
    assert loss.shape == (3, H)

    def by_hand(window: list[float], target: float) -> float:
        densities = [math.exp(-0.5 * ((target - v) / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi)) for v in window]
        return -math.log(sum(densities) / len(densities))

    for b in range(3):
        for h in range(H):
            window = torch.cat([x[b], y[b, :h]])[-L:].tolist()  # step h sees targets 0..h-1 at its end
            assert float(loss[b, h]) == pytest.approx(by_hand(window, float(y[b, h])), rel=1e-5)


def test_kernel_nll_approaches_the_discrete_likelihood_for_a_narrow_kernel():
    values = torch.tensor([0.0, 0.0, 1.0, 2.0])
    log_w = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    b = 1e-3
    got = kernel_nll(torch.tensor(0.0), values, log_w, b)
    # P(0) = 0.1 + 0.2, times the kernel's peak density 1 / (b sqrt(2 pi))
    assert float(got) == pytest.approx(-math.log(0.3) + math.log(b * math.sqrt(2 * math.pi)), rel=1e-5)


def test_its_draws_are_reproducible_from_a_generator():
    net = model().eval()
    assert isinstance(net, OwnLoss)
    x = torch.randn(8, L, generator=torch.Generator().manual_seed(6))
    draws = [net.sample(x, 3, torch.Generator().manual_seed(9)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], net.sample(x, 3, torch.Generator().manual_seed(10)))


def test_its_own_loss_learns_where_in_the_window_the_next_value_is():
    net = model()
    x = torch.randn(8, L, generator=torch.Generator().manual_seed(6))
    y = x[:, -H:].clone()  # each target repeats the value H steps back, at one place in its window
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = float(net.training_loss(x, y).mean().detach())
    for _ in range(40):
        optimizer.zero_grad()
        net.training_loss(x, y).mean().backward()
        optimizer.step()
    assert float(net.training_loss(x, y).mean().detach()) < first - 1.0
    draws = net.eval().sample(x, 20, torch.Generator().manual_seed(0))
    assert float((draws == y).float().mean()) > 0.5  # most draws now take that one value
