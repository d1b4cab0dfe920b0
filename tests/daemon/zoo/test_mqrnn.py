"""MQ-RNN scores a forecast at every encoder step (forking sequences) and its quantiles never cross."""

from __future__ import annotations

import dataclasses

import torch

from stratcast.daemon.zoo.models.mqrnn import MQRNN, MQRNNConfig

L, H, B = 10, 4, 3


def model() -> MQRNN:
    torch.manual_seed(0)
    return MQRNN(dataclasses.replace(MQRNNConfig.tiny(), dropout=0.0), input_size=L, horizon=H)


def test_forking_sequences_score_one_forecast_per_encoder_step_against_the_values_after_it() -> None:
    net = model()
    x, y = torch.randn(B, L), torch.randn(B, H)
    losses = net.forking_losses(x, y)
    assert losses.shape == (B, L, H)  # L encoder steps, each forecasting H steps: L * H terms per window
    series = torch.cat([x, y], dim=1)
    targets = net.forking_targets(x, y)
    for t in range(L):
        torch.testing.assert_close(targets[:, t], series[:, t + 1 : t + 1 + H])
    torch.testing.assert_close(net.training_loss(x, y), losses.mean(dim=1))
    torch.testing.assert_close(net.eval().training_loss(x, y), losses[:, -1])  # validation: the forecast asked for


def test_validation_decodes_only_the_forecast_at_the_windows_end() -> None:
    net = model().eval()
    decoded: list[tuple[int, ...]] = []
    net.global_mlp.register_forward_hook(lambda _m, inputs, _out: decoded.append(tuple(inputs[0].shape)))
    with torch.no_grad():
        net.training_loss(torch.randn(B, L), torch.randn(B, H))
    assert decoded == [(B, net.encoder.hidden_size)]  # not [B, L, hidden]: L times the decoding for one forecast


def test_each_encoder_steps_forecast_is_the_forecast_from_the_history_up_to_it() -> None:
    net = model().eval()
    x = torch.randn(B, L)
    with torch.no_grad():
        forking = net.forking_forecasts(x)
        for t in (0, 3, L - 1):
            torch.testing.assert_close(forking[:, t], net.last_forecast(x[:, : t + 1]))


def test_a_horizon_steps_loss_reads_no_target_after_it_so_the_engines_mask_stays_valid() -> None:
    net = model()
    x, y = torch.randn(B, L), torch.randn(B, H)
    changed = y.clone()
    changed[:, 2] += 5.0
    before, after = net.training_loss(x, y), net.training_loss(x, changed)
    torch.testing.assert_close(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2:], after[:, 2:])


def test_quantiles_do_not_cross_by_construction_even_after_training() -> None:
    """Non-crossing is built in (lowest level plus softplus increments): it holds for any weights."""
    net = model()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        net.training_loss(torch.randn(16, L), 3 * torch.randn(16, H)).mean().backward()
        optimizer.step()
    with torch.no_grad():
        for p in net.local_mlp.parameters():
            p.mul_(10.0)  # weights far from any trained value
        q = net.quantiles(torch.randn(64, L))
    assert q.shape == (64, H, 3)
    assert bool((q[..., 1:] >= q[..., :-1]).all())


def test_the_mean_of_the_stratified_draws_is_the_quantile_functions_mean() -> None:
    net = model().eval()
    x = torch.randn(B, L)
    with torch.no_grad():
        draws = net.sample(x, 100, torch.Generator().manual_seed(0))
        again = net.sample(x, 100, torch.Generator().manual_seed(0))
        mean = net(x)[..., 0]
        q = net.quantiles(x)
    assert draws.shape == (100, B, H) and torch.equal(draws, again)
    spread = (q[..., -1] - q[..., 0]).max()
    assert float((draws.mean(0) - mean).abs().max()) < 0.01 * float(spread)


def test_training_on_forking_sequences_brackets_the_targets_between_the_outer_quantiles() -> None:
    net = model()
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        series = 1.0 + torch.randn(32, L + H)
        optimizer.zero_grad()
        net.training_loss(series[:, :L], series[:, L:]).mean().backward()
        optimizer.step()
    with torch.no_grad():
        q = net.eval().quantiles(torch.randn(256, L) + 1.0)
    # N(1, 1): quantiles about -0.28, 1.0, 2.28 at 0.1, 0.5, 0.9
    torch.testing.assert_close(q.mean(dim=(0, 1)), torch.tensor([-0.28, 1.0, 2.28]), atol=0.25, rtol=0.0)
