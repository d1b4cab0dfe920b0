"""StemGNN (Cao, Wang, Duan, Zhang, Zhu, Huang, Tong, Xu, Bai, Tong and Zhang, NeurIPS 2020).

"Spectral Temporal Graph Neural Network for Multivariate Time-series Forecasting".

Each window's series are forecast together in two spectral domains at once:

1. **Latent correlation layer.** A GRU reads each series; its last states ``R`` give queries and keys, and
   self-attention over the series gives the graph, ``W = softmax(Q K^T / sqrt(d))``.
2. **Graph Fourier transform.** The normalised Laplacian ``L = I - D^-1/2 W D^-1/2`` is eigendecomposed,
   ``L = U Lambda U^T`` (``torch.linalg.eigh``, float32), and each block moves its input to the graph's frequencies,
   ``U^T X``: one univariate sequence per graph frequency.
3. **Spectral sequential cell.** Each such sequence is moved to time frequencies by a DFT; a 1-D convolution over
   the frequencies and a GLU act on the real and on the imaginary parts (separate weights), and the inverse DFT
   brings the result back to time.
4. **Spectral graph convolution.** Each graph frequency is scaled by a learned filter ``g(lambda)`` (a Chebyshev
   polynomial of the eigenvalue, one per channel), and the inverse GFT ``U (.)`` returns to the series.

Two blocks are stacked: the second reads what the first's backcast left unexplained (``X - X^``), and the blocks'
forecast branches are summed into a GLU output layer giving each series its ``H * O`` outputs.

Where we differ from the paper (and why):

* The attention matrix is symmetrised, ``(W + W^T) / 2``: the normalised Laplacian of a directed graph is not
  symmetric, and ``eigh`` (real eigenvalues, orthonormal eigenvectors) needs one.
* The eigenvectors are constants of the backward pass, the eigenvalues are not (see
  :func:`~stratcast.daemon.zoo.blocks.graph.fourier_basis`): the eigenvector derivative divides by eigenvalue gaps
  that vanish for a near-uniform attention. The latent correlation layer learns through the spectral filters.
* The forecasts follow the series when a window's series are reordered only while the graph's spectrum is simple:
  within a cluster of (near) equal eigenvalues the eigenvectors are the solver's choice, and the cell's GLU does
  not commute with rotating them. A near-uniform attention (as at initialisation) has ``S - 1`` eigenvalues near 1.
  The paper's reference code uses Chebyshev polynomials of the Laplacian instead of its eigenvectors.
* The paper also trains on a backcast loss; the head owns our loss, so the backcast only feeds the second block.
* The GRU reads the value and its nonzero indicator (flat weeks are exact zeros).

The eigendecomposition is ``O(S^3)`` per window: the stated limit is ``MAX_SERIES`` series per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.fourier import irfft, rfft
from stratcast.daemon.zoo.blocks.graph import FourierBasis, fourier_basis, gft, igft
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

MAX_SERIES = 1000
"""Series per window at most: each window's Laplacian is eigendecomposed, ``O(S^3)`` work and ``S^2`` memory."""


@dataclass(frozen=True, kw_only=True)
class StemGNNConfig(ModelConfig):
    """StemGNN architecture."""

    d_latent: int = param(
        32, lo=1, hi=1024, search=among(16, 32, 64), help="width of the GRU and the attention that build the graph"
    )
    n_blocks: int = param(2, lo=1, hi=6, search=ints(1, 3), help="StemGNN blocks (each on the last one's residual)")
    channels: int = param(
        8, lo=1, hi=128, search=among(4, 8, 16), help="channels of the spectral sequential cell after its GLU"
    )
    kernel_size: int = param(
        3, lo=1, hi=15, search=among(1, 3, 5), help="width of the cell's convolution over the time frequencies (odd)"
    )
    filter_order: int = param(
        3, lo=0, hi=10, search=ints(1, 4), help="Chebyshev order of the spectral graph filters g(lambda)"
    )
    d_hidden: int = param(
        128, lo=1, hi=4096, search=among(64, 128, 256), help="width of the blocks' forecasts and the output layer"
    )
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout on each block's output")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd (the convolution keeps every frequency)")

    @classmethod
    def tiny(cls) -> Self:
        """Two narrow blocks."""
        return cls(d_latent=8, channels=2, filter_order=2, d_hidden=16)

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        """Past ``MAX_SERIES`` series per window the eigendecomposition (``O(S^3)``) dominates every step."""
        del n_series
        if series_per_window <= MAX_SERIES:
            return None
        return (
            f"StemGNN eigendecomposes an S x S graph Laplacian per window (O(S^3)), and {series_per_window} series per "
            f"window is past its limit of {MAX_SERIES}; set the training option series_per_window to {MAX_SERIES} "
            "or fewer"
        )


class LatentCorrelation(nn.Module):
    """The graph over a window's series: self-attention over the last GRU states of the series, symmetrised."""

    def __init__(self, d_latent: int) -> None:
        super().__init__()
        self.gru = nn.GRU(2, d_latent, batch_first=True)
        self.query = nn.Linear(d_latent, d_latent)
        self.key = nn.Linear(d_latent, d_latent)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, S, L]`` -> a symmetric adjacency ``[B, S, S]`` with positive entries."""
        b, s, length = x.shape
        _, last = self.gru(value_and_indicator(x.reshape(b * s, length)))  # [B*S, L, 2] -> [1, B*S, d]
        states = last[0].reshape(b, s, -1)  # [B*S, d] -> [B, S, d]
        scores = self.query(states) @ self.key(states).transpose(1, 2) / math.sqrt(states.shape[-1])  # [B, S, S]
        attention = scores.float().softmax(dim=-1)
        symmetric: Tensor = (attention + attention.transpose(1, 2)) / 2
        return symmetric


class SpectralSequentialCell(nn.Module):
    """DFT of each sequence, a 1-D convolution and GLU on the real and imaginary parts, inverse DFT."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.real = nn.Conv1d(1, 2 * channels, kernel_size, padding=kernel_size // 2)
        self.imag = nn.Conv1d(1, 2 * channels, kernel_size, padding=kernel_size // 2)

    def forward(self, z: Tensor) -> Tensor:
        """``[N, T]`` -> ``[N, C, T]``."""
        steps = z.shape[-1]
        spectrum = rfft(z)  # [N, T//2 + 1] complex
        real = F.glu(self.real(spectrum.real[:, None]), dim=1)  # [N, 1, F] -> [N, 2C, F] -> [N, C, F]
        imag = F.glu(self.imag(spectrum.imag[:, None]), dim=1)
        return irfft(torch.complex(real.float(), imag.float()), n=steps, dtype=z.dtype)  # [N, C, T]


def chebyshev_filter(eigenvalues: Tensor, theta: Tensor) -> Tensor:
    """``g_c(lambda) = sum_k theta_ck T_k(lambda - 1)`` for eigenvalues ``[B, S]`` in [0, 2]: ``[B, S, C]``."""
    shifted = (eigenvalues - 1.0)[..., None]  # [B, S, 1] in [-1, 1]
    previous, current = torch.ones_like(shifted), shifted
    out = theta[:, 0] * previous
    for k in range(1, theta.shape[1]):
        out = out + theta[:, k] * current
        previous, current = current, 2 * shifted * current - previous
    return out


class StemGNNBlock(nn.Module):
    """GFT, spectral sequential cell, spectral graph filter, inverse GFT; a forecast and a backcast branch."""

    def __init__(self, config: StemGNNConfig, input_size: int, *, backcast: bool) -> None:
        super().__init__()
        c = config.channels
        self.cell = SpectralSequentialCell(c, config.kernel_size)
        theta = torch.zeros(c, config.filter_order + 1)
        theta[:, 0] = 1.0  # start near the identity filter
        theta[:, 1:] = 0.1 * torch.randn(c, config.filter_order)
        self.theta = nn.Parameter(theta)
        self.dropout = nn.Dropout(config.dropout)
        self.forecast = nn.Linear(c * input_size, config.d_hidden)
        self.backcast = nn.Linear(c * input_size, input_size) if backcast else None
        """What the block explains of its input (the next block reads the rest); None in the last block."""

    def forward(self, x: Tensor, basis: FourierBasis) -> tuple[Tensor, Tensor | None]:
        """``x`` ``[B, S, L]`` -> (forecast features ``[B, S, d_hidden]``, backcast ``[B, S, L]`` or None)."""
        b, s, length = x.shape
        z = gft(x, basis)  # [B, S, L], graph frequencies first
        h = self.cell(z.reshape(b * s, length)).reshape(b, s, -1, length)  # [B*S, C, L] -> [B, S, C, L]
        h = h * chebyshev_filter(basis.eigenvalues, self.theta)[..., None]  # [B, S, C, 1]: one gain per frequency
        h = self.dropout(igft(h, basis).to(x.dtype)).flatten(2)  # back to the series: [B, S, C, L] -> [B, S, C*L]
        return self.forecast(h), None if self.backcast is None else self.backcast(h)


class StemGNN(nn.Module):
    """A graph from attention over the series, then spectral blocks in graph and time frequencies."""

    def __init__(self, config: StemGNNConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.latent = LatentCorrelation(config.d_latent)
        n = config.n_blocks
        self.blocks = nn.ModuleList(StemGNNBlock(config, input_size, backcast=i < n - 1) for i in range(n))
        d = config.d_hidden
        self.output = nn.Sequential(nn.Linear(d, 2 * d), nn.GLU(dim=-1), nn.Linear(d, horizon * n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` ``[B, S, L]`` to ``[B, S, H, O]``."""
        basis = fourier_basis(self.latent(x))
        features, residual = x.new_zeros(0), x
        for i, block in enumerate(self.blocks):
            forecast, backcast = block(residual, basis)
            features = forecast if i == 0 else features + forecast
            if backcast is not None:
                residual = residual - backcast
        out: Tensor = self.output(features)  # [B, S, d] -> [B, S, H*O]
        return out.reshape(*x.shape[:2], self.horizon, self.n_outputs)
