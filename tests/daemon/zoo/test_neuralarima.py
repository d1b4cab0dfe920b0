"""Neural ARIMA: integration inverts differencing, and the forecast follows a shifted window."""

import pytest
import torch

from stratcast.daemon.zoo.models.neuralarima import NeuralARIMA, NeuralARIMAConfig, difference, integrate, lags


@pytest.mark.parametrize("d", [0, 1, 2])
def test_integration_inverts_differencing_exactly(d):
    torch.manual_seed(0)
    series = torch.randint(-50, 50, (5, 30)).to(torch.float64)  # whole numbers: sums and differences are exact
    window, future = series[:, :20], series[:, 20:]
    _, lasts = difference(window, d)
    full, _ = difference(series, d)
    assert torch.equal(integrate(full[:, -10:], lasts), future)


def test_lags_put_lag_i_plus_one_in_column_i():
    z = torch.arange(6.0).unsqueeze(0)  # [1, 6]
    got = lags(z, 2)  # steps 2..5, each with its two predecessors
    assert torch.equal(got[0], torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0]]))


def test_a_shifted_window_gets_a_shifted_forecast_when_differenced():
    model = NeuralARIMA(NeuralARIMAConfig.tiny(), input_size=12, horizon=4).eval()
    x = torch.randn(3, 12)
    assert torch.allclose(model(x + 7.0), model(x) + 7.0, atol=1e-5)


def test_orders_shrink_to_a_short_window():
    model = NeuralARIMA(NeuralARIMAConfig(p=50, q=50), input_size=6, horizon=2)
    assert (model.p, model.q) == (4, 1)
    assert model(torch.randn(2, 6)).shape == (2, 2, 1)
