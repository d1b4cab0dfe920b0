"""ES-RNN: per-series exponential smoothing that normalises the window for a dilated LSTM learned with it.

From Smyl, "A hybrid method of exponential smoothing and recurrent neural networks for time series forecasting",
International Journal of Forecasting 2020, written from its equations.

Each series ``i`` has its own smoothing parameters, learned by gradient descent with the shared network: the
level smoothing ``alpha_i`` and, with a ``season_length`` ``m``, the seasonality smoothing ``gamma_i`` and ``m``
initial seasonal indices (both coefficients through a sigmoid). Over each window ``y_0..y_{L-1}`` they run the
Holt-Winters recursions, here in additive form::

    l_0 = y_0 - s_0
    l_t = alpha (y_t - s_t) + (1 - alpha) l_{t-1}
    s_{t+m} = gamma (y_t - l_t) + (1 - gamma) s_t

and past the window the seasonal indices repeat with period ``m``. The initial indices belong to calendar phases:
window step ``t`` of a window with origin ``o`` is period ``o - L + t``, in phase ``(o - L + t) mod m`` (hence
the ``origin`` input; without seasonality it is unused). The network reads the window deseasonalised and
normalised by the level: step ``t`` sees the last ``step_window`` deseasonalised values minus the level ``l_t``
(with their nonzero indicators), and a stack of dilated LSTMs (``blocks/rnn.py``) runs over the steps. A tanh
layer and a linear map take its final state to the horizon, and the forecast's location (output 0) gets the last
level and the seasonal indices of the horizon back: ``y_{L-1+h} = l_{L-1} + s_{L-1+h} + net_h``.

Deviations: Smyl's model is multiplicative (it divides by the level and seasonality and takes logs), which
weekly strategy profits rule out: they are often exactly zero and often negative. Here the level and seasonality
are additive (subtracted, added back), which stays finite with zeros and sign changes. The recursions start at
each window's first step (the engine trains on windows, not whole series), the residual connections go around
every dilated layer after the first instead of around blocks of them, and the level-wiggliness penalty of the
paper's loss is left out (the run's loss applies unchanged). Its pinball loss near the median would make the
forecast collapse to zero on zero-heavy profits, so no training default changes the engine's loss either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.rnn import DilatedLSTMStack
from stratcast.daemon.zoo.contract import ModelConfig, check_ids, check_model_args, param
from stratcast.daemon.zoo.search import among

INIT_LOGIT = -1.0
"""Initial smoothing coefficients ``sigmoid(-1)``, about 0.27: a level that follows noisy weekly profits slowly."""
INIT_SPREAD = 0.01
"""Each series' initial logits and seasonal indices start this far apart (std), so no two series start alike."""


@dataclass(frozen=True, kw_only=True)
class ESRNNConfig(ModelConfig):
    """ES-RNN architecture."""

    season_length: int = param(
        0, lo=0, hi=104, search=among(0, 52), help="seasonal period in steps (0: no seasonality; 52: yearly weeks)"
    )
    step_window: int = param(
        8,
        lo=1,
        hi=104,
        search=among(4, 8, 13),
        help="deseasonalised values the LSTM reads at each step (at most the window's)",
    )
    hidden_size: int = param(64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the dilated LSTMs' states")
    dilations: tuple[int, ...] = param(
        (1, 2, 4, 8),
        lo=1,
        hi=64,
        search=among((1, 2), (1, 2, 4, 8), (1, 4, 13), (1, 2, 4, 13, 26)),
        help="one dilated LSTM layer per entry: its state follows from that many steps back",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dilations:
            raise ValueError(f"{type(self).__name__}.dilations needs at least one layer")

    @classmethod
    def tiny(cls) -> Self:
        """A four-step season, two narrow layers."""
        return cls(season_length=4, step_window=4, hidden_size=16, dilations=(1, 2))


class ESRNN(nn.Module):
    """Per-series additive exponential smoothing, a dilated LSTM over the normalised window, the level put back."""

    def __init__(
        self, config: ESRNNConfig, *, input_size: int, horizon: int, n_outputs: int = 1, n_series: int
    ) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        if n_series < 1:
            raise ValueError(f"ESRNN needs n_series >= 1, got {n_series}")
        self.horizon, self.n_outputs, self.n_series = horizon, n_outputs, n_series
        self.season, self.step_window = config.season_length, min(config.step_window, input_size)
        spread = torch.randn(n_series, 2 + config.season_length) * INIT_SPREAD
        self.level_logit = nn.Parameter(INIT_LOGIT + spread[:, 0])  # [N]
        if self.season:
            self.season_logit = nn.Parameter(INIT_LOGIT + spread[:, 1])  # [N]
            self.initial_season = nn.Parameter(spread[:, 2:])  # [N, m], by calendar phase
        self.rnn = DilatedLSTMStack(2 * self.step_window, config.hidden_size, config.dilations)
        self.adaptor = nn.Linear(config.hidden_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, horizon * n_outputs)

    def forward(self, x: Tensor, *, ids: Tensor, origin: Tensor) -> Tensor:
        """Map windows ``[B, L]`` of series ``ids [B]`` with first forecast periods ``origin [B]`` to ``[B, H, O]``.

        Raises:
            ValueError: for ids outside ``[0, n_series)``.
        """
        levels, seasons = self.smooth(x, ids=ids, origin=origin)  # [B, L], [B, L + H]
        k = self.step_window
        deseasonalised = x - seasons[:, : x.shape[1]]  # [B, L]
        # each step's last k values, minus that step's level: [B, L] -> [B, L - k + 1, k]
        chunks = deseasonalised.unfold(1, k, 1) - levels[:, k - 1 :, None]
        flat = value_and_indicator(x.unfold(1, k, 1), value=chunks).flatten(-2)  # [B, L-k+1, k, 2] -> [..., 2k]
        state = self.rnn(flat)[:, -1]  # [B, L-k+1, 2k] -> [B, D]
        net = self.head(torch.tanh(self.adaptor(state))).view(-1, self.horizon, self.n_outputs)  # [B, H, O]
        location = net[..., 0] + levels[:, -1:] + seasons[:, x.shape[1] :]  # [B, H] + [B, 1] + [B, H]
        return torch.cat([location.unsqueeze(-1), net[..., 1:]], dim=-1)  # [B, H, 1] beside [B, H, O - 1]

    def smooth(self, x: Tensor, *, ids: Tensor, origin: Tensor) -> tuple[Tensor, Tensor]:
        """The level at every window step ``[B, L]`` and the seasonal index at every step and horizon ``[B, L + H]``.

        Raises:
            ValueError: for ids outside ``[0, n_series)``.
        """
        check_ids(ids, self.n_series)
        b, length, m = x.shape[0], x.shape[1], self.season
        alpha = torch.sigmoid(self.level_logit[ids])  # [B]
        if m:
            gamma = torch.sigmoid(self.season_logit[ids])  # [B]
            phase = torch.remainder(origin[:, None] - length + torch.arange(m, device=x.device), m)  # [B, m]
            seasons = list(self.initial_season[ids].gather(1, phase).unbind(1))  # m x [B], window steps 0..m-1
        else:
            seasons = [x.new_zeros(b)] * (length + self.horizon)
        levels: list[Tensor] = []
        for t in range(length):
            y, s = x[:, t], seasons[t]
            levels.append(y - s if t == 0 else alpha * (y - s) + (1 - alpha) * levels[-1])
            if m:
                seasons.append(gamma * (y - levels[-1]) + (1 - gamma) * s)  # s_{t+m}
        while len(seasons) < length + self.horizon:
            seasons.append(seasons[len(seasons) - m])  # past the window: the indices repeat every m steps
        return torch.stack(levels, dim=1), torch.stack(seasons[: length + self.horizon], dim=1)
