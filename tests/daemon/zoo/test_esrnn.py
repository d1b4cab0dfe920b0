"""ES-RNN's smoothing follows the Holt-Winters recursions, its level is additive, and its LSTMs are dilated."""

import dataclasses
import math

import pytest
import torch

from stratcast.daemon.zoo.blocks.rnn import DilatedLSTM
from stratcast.daemon.zoo.models.esrnn import ESRNN, ESRNNConfig


def model(season_length: int, *, input_size: int = 4, horizon: int = 3, n_series: int = 3) -> ESRNN:
    torch.manual_seed(0)
    config = dataclasses.replace(ESRNNConfig.tiny(), season_length=season_length)
    return ESRNN(config, input_size=input_size, horizon=horizon, n_outputs=2, n_series=n_series).eval()


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_the_level_follows_simple_exponential_smoothing_by_hand():
    esrnn = model(0)
    with torch.no_grad():
        esrnn.level_logit[1] = logit(0.25)
    x = torch.tensor([[2.0, 0.0, -1.0, 4.0]])
    levels, seasons = esrnn.smooth(x, ids=torch.tensor([1]), origin=torch.tensor([10]))
    # l0 = y0; l_t = 0.25 y_t + 0.75 l_{t-1}
    torch.testing.assert_close(levels, torch.tensor([[2.0, 1.5, 0.875, 1.65625]]))
    assert (seasons == 0).all() and seasons.shape == (1, 7)


def test_level_and_seasonality_follow_the_additive_holt_winters_recursions_by_hand():
    esrnn = model(2)
    with torch.no_grad():
        esrnn.level_logit[2], esrnn.season_logit[2] = 0.0, 0.0  # alpha = gamma = 0.5
        esrnn.initial_season[2] = torch.tensor([0.5, -0.5])  # calendar phases 0 and 1
    x = torch.tensor([[1.5, 0.5, 3.0, -1.0]])
    # origin 6: the window is periods 2..5, phases 0, 1, 0, 1
    levels, seasons = esrnn.smooth(x, ids=torch.tensor([2]), origin=torch.tensor([6]))
    # l_t = 0.5 (y_t - s_t) + 0.5 l_{t-1}; s_{t+2} = 0.5 (y_t - l_t) + 0.5 s_t; the horizon repeats s_4, s_5
    torch.testing.assert_close(levels, torch.tensor([[1.0, 1.0, 1.75, 0.625]]))
    torch.testing.assert_close(seasons, torch.tensor([[0.5, -0.5, 0.5, -0.5, 0.875, -1.0625, 0.875]]))
    _, shifted = esrnn.smooth(x, ids=torch.tensor([2]), origin=torch.tensor([7]))  # phases 1, 0, 1, 0
    assert shifted[0, 0] == -0.5


def test_the_level_is_additive_a_shifted_window_shifts_the_forecast_location():
    esrnn = model(0, input_size=12)
    x = torch.randn(4, 12)  # no exact zeros: the nonzero indicators stay the same under the shift
    given = {"ids": torch.tensor([0, 1, 2, 0]), "origin": torch.full((4,), 20)}
    out, moved = esrnn(x, **given), esrnn(x + 3.0, **given)
    torch.testing.assert_close(moved[..., 0], out[..., 0] + 3.0)
    torch.testing.assert_close(moved[..., 1:], out[..., 1:])


def test_zero_and_negative_windows_give_finite_forecasts_and_gradients():
    esrnn = model(4, input_size=12).train()
    x = torch.zeros(3, 12)
    x[1, 6:] = -torch.rand(6)
    out = esrnn(x, ids=torch.tensor([0, 1, 2]), origin=torch.tensor([3, 30, 100]))
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in esrnn.parameters())


@pytest.mark.parametrize("bad", [-1, 3])
def test_ids_outside_the_panel_are_refused(bad: int):
    esrnn = model(2)
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        esrnn(x, ids=torch.tensor([0, bad]), origin=torch.tensor([5, 5]))


def test_a_dilated_lstm_runs_one_lstm_over_each_interleaved_subsequence():
    torch.manual_seed(0)
    layer = DilatedLSTM(2, 5, dilation=3)
    x = torch.randn(2, 12, 2)
    out = layer(x)
    for phase in range(3):
        alone, _ = layer.lstm(x[:, phase::3])
        torch.testing.assert_close(out[:, phase::3], alone)


def test_a_dilated_step_reads_the_state_from_dilation_steps_back():
    torch.manual_seed(0)
    layer = DilatedLSTM(2, 5, dilation=2)
    x = torch.randn(1, 9, 2)
    changed = x.clone()
    changed[:, 4] += 1.0
    moved = (layer(x) - layer(changed)).abs().amax(-1)[0] > 0  # [T]: which steps changed
    assert moved.tolist() == [False] * 4 + [True, False, True, False, True]
