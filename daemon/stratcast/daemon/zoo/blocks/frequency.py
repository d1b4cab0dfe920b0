"""Attention in the frequency domain: Autoformer's Auto-Correlation, FEDformer's Fourier enhanced block and attention.

All three take the place of self- or cross-attention over ``[B, N, D]`` tokens (one per time step) and keep the
multi-head layout of ``zoo/blocks/attention.py``: linear query, key and value projections split into ``h`` heads of
``e = D / h`` channels, and a linear output projection of the concatenated heads. The spectral work runs in float32
with autocast off (``zoo/blocks/fourier.py``), so a bf16 forward pass reaches it in full precision; the result is
cast back to the activations' dtype.

Auto-Correlation (Wu, Xu, Wang and Long, "Autoformer: Decomposition Transformers with Auto-Correlation for
Long-Term Series Forecasting", NeurIPS 2021): per head, the correlation of queries and keys at every lag,
``R(tau) = sum_t q_t k_(t - tau)`` (circular, averaged over the head's channels), is one FFT product away
(Wiener-Khinchin: ``R = irfft(rfft(q) * conj(rfft(k)))``). The ``k = floor(c ln N)`` lags with the largest ``R``
are the likeliest periods; the values rolled by each of them (``Roll(v, tau)_t = v_(t + tau)``, wrapping around) are
summed, weighted by the softmax of their ``R``. Each window (and head) picks its own lags, as the paper's equations
have it; a roll by ``tau`` is a phase ramp ``exp(2 pi i f tau / N)`` on the values' spectrum, so the weighted sum of
the ``k`` rolls is one filter on one FFT, which runs under ``torch.func.vmap`` (no data-dependent shapes).

Fourier enhanced block and attention (Zhou, Ma, Wen, Wang, Sun and Jin, "FEDformer: Frequency Enhanced Decomposed
Transformer for Long-term Series Forecasting", ICML 2022), the Fourier version: a fixed subset of ``M`` Fourier modes
(chosen once, at random from a seeded generator, or the lowest ``M``) represents each sequence. The block (FEB-f)
multiplies the queries' selected modes by a learned complex ``[e, e]`` matrix per mode and head and transforms back,
the other modes zero; the attention (FEA-f) scores each selected query mode against each selected key mode
(``Q K^T`` over the channels), weighs the keys' modes by the activated scores and transforms back.

Deviation: the paper activates FEA-f's complex scores with softmax or tanh; here the softmax runs over the scores'
moduli (scaled by ``1 / sqrt(e)``), a real weight per key mode. A complex tanh has poles on the imaginary axis, so
its gradients can blow up where the plain scores would not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.fourier import irfft, rfft


def lag_count(factor: int, length: int) -> int:
    """The ``floor(c ln N)`` lags Auto-Correlation aggregates over ``N`` steps: at least one, at most ``N``."""
    return max(1, min(length, int(factor * math.log(length))))


def correlation(q: Tensor, k: Tensor) -> Tensor:
    """Circular cross-correlation ``R(tau) = sum_t q_t k_(t - tau)`` of ``q, k`` [..., N] (time last), in float32.

    Returns:
        ``[..., N]``: ``R`` at lags ``0..N-1``, by the FFT (float32, or float64 for float64 inputs).
    """
    n = q.shape[-1]
    return irfft(rfft(q) * rfft(k).conj(), n=n)


def top_lags(corr: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` lags with the largest correlation ``corr`` [..., N], and their softmax weights.

    Returns:
        ``(lags [..., count] long, weights [..., count])``; the weights are positive and sum to 1.
    """
    values, lags = corr.topk(count, dim=-1)
    return lags, values.softmax(dim=-1)


def delay_aggregate(v: Tensor, lags: Tensor, weights: Tensor) -> Tensor:
    """``sum_i weights_i * Roll(v, lags_i)`` with ``Roll(v, tau)_t = v_((t + tau) mod N)``, through the FFT.

    Args:
        v: Values ``[..., N]`` (time last).
        lags: ``[..., k]`` integer lags, broadcastable against ``v``'s leading dimensions.
        weights: ``[..., k]``, like ``lags``.

    Returns:
        ``[..., N]`` in float32 (float64 for float64 values): the weighted sum of the rolled values.
    """
    n, spectrum = v.shape[-1], rfft(v)
    frequencies = torch.arange(n // 2 + 1, device=v.device)  # [F]
    turns = (lags[..., None] * frequencies) % n  # [..., k, 1] * [F] -> [..., k, F], whole turns taken out
    phase = turns.to(spectrum.real.dtype) * (2 * math.pi / n)
    w = weights[..., None].to(phase.dtype)  # [..., k, 1]
    ramp = torch.complex((w * phase.cos()).sum(-2), (w * phase.sin()).sum(-2))  # [..., F]: sum of k phase ramps
    return irfft(spectrum * ramp, n=n)


def fit_length(memory: Tensor, n: int) -> Tensor:
    """Cut ``memory`` [B, M, D] to its last ``n`` steps, or pad it with zeros at the end to ``n`` steps."""
    m = memory.shape[1]
    if m >= n:
        return memory[:, m - n :]
    return nn.functional.pad(memory, (0, 0, 0, n - m))  # [B, M, D] -> [B, n, D]


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """``[B, N, D]`` -> ``[B, h, e, N]``: heads of ``e = D / h`` channels, time last for the FFT."""
    b, n, d = x.shape
    return x.reshape(b, n, n_heads, d // n_heads).permute(0, 2, 3, 1)  # [B, N, h, e] -> [B, h, e, N]


def merge_heads(x: Tensor) -> Tensor:
    """``[B, h, e, N]`` -> ``[B, N, h*e]``, the inverse of :func:`split_heads`."""
    b, h, e, n = x.shape
    return x.permute(0, 3, 1, 2).reshape(b, n, h * e)  # [B, N, h, e] -> [B, N, D]


class AutoCorrelation(nn.Module):
    """Multi-head Auto-Correlation: each head aggregates its values rolled by its ``floor(c ln N)`` strongest lags.

    Called with ``x`` alone it is self-attention; with ``memory`` (the encoder's output) cross-attention. The paper
    fits keys and values to the queries' length ``N`` by zero-filling or truncating; here the truncation keeps the
    memory's last (most recent) ``N`` steps, and the zeros go at the end.
    """

    def __init__(self, d_model: int, n_heads: int, *, factor: int) -> None:
        super().__init__()
        self.n_heads, self.factor = n_heads, factor
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """Map ``x`` [B, N, D] (and ``memory`` [B, M, D]) to ``[B, N, D]``."""
        n = x.shape[1]
        q = split_heads(self.q(x), self.n_heads)  # [B, h, e, N]
        k, v = (
            split_heads(t, self.n_heads) for t in self.kv(fit_length(x if memory is None else memory, n)).chunk(2, -1)
        )
        corr = correlation(q, k).mean(2)  # [B, h, e, N] -> [B, h, N]: one correlation per head
        lags, weights = top_lags(corr, lag_count(self.factor, n))  # [B, h, k] each
        heads = delay_aggregate(v, lags[:, :, None], weights[:, :, None]).to(x.dtype)  # [B, h, e, N]
        out: Tensor = self.out(merge_heads(heads))
        return out


def select_modes(length: int, modes: int, *, policy: str, seed: int) -> list[int]:
    """The Fourier modes (indices into the ``length // 2 + 1`` of an rfft) a frequency-enhanced block keeps.

    Args:
        length: The sequence length the block transforms.
        modes: How many to keep (all when there are fewer).
        policy: ``random`` (drawn without replacement from a generator seeded with ``seed``; the same draw every
            time, whatever torch's global seed) or ``lowest`` (the first ``modes``).
        seed: The draw's seed (give each block its own).

    Returns:
        The kept modes in increasing order.
    """
    available = length // 2 + 1
    kept = min(modes, available)
    if policy == "lowest":
        return list(range(kept))
    draw = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:kept]
    return sorted(draw.tolist())


class ModeSet:
    """A fixed set of Fourier modes of sequences ``length`` long: picks them out of a spectrum and puts them back.

    Not a module and holds no buffer: the modes are the same for every model of an architecture, so stacked
    (vmapped) copies need not carry them. The index and the one-hot scatter matrix are made once per device (and
    dtype), in the first forward pass: a CUDA graph captured later (prediction) must not copy them from the host.
    """

    def __init__(self, length: int, modes: int, *, policy: str, seed: int) -> None:
        self.length = length
        self.modes = select_modes(length, modes, policy=policy, seed=seed)
        self._index: dict[torch.device, Tensor] = {}
        self._one_hot: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def __len__(self) -> int:
        return len(self.modes)

    def pick(self, spectrum: Tensor) -> Tensor:
        """The kept modes ``[..., M]`` of ``spectrum`` [..., length // 2 + 1]."""
        index = self._index.get(spectrum.device)
        if index is None:
            index = self._index[spectrum.device] = torch.tensor(self.modes, device=spectrum.device)
        return spectrum.index_select(-1, index)

    def place(self, kept: Tensor) -> Tensor:
        """The full spectrum ``[..., length // 2 + 1]`` holding ``kept`` [..., M] at the kept modes, zero elsewhere."""
        key = (kept.device, kept.dtype)
        one_hot = self._one_hot.get(key)
        if one_hot is None:
            table = torch.zeros(len(self.modes), self.length // 2 + 1, dtype=kept.dtype)
            table[torch.arange(len(self.modes)), torch.tensor(self.modes)] = 1
            one_hot = self._one_hot[key] = table.to(kept.device)
        return kept @ one_hot  # [..., M] @ [M, F] -> [..., F]: a scatter that vmap batches like any matmul


def complex_weight(*shape: int, scale: float) -> nn.Parameter:
    """A complex weight stored as ``[2, *shape]`` real and imaginary parts, uniform in ``(-scale, scale)``.

    Real pairs, not a complex tensor: torch's fused AdamW refuses complex parameters (NOTES.md).
    """
    return nn.Parameter(torch.empty(2, *shape).uniform_(-scale, scale))


class FourierBlock(nn.Module):
    """FEB-f: the queries' kept Fourier modes, each mixed across its head's channels by a learned complex matrix.

    Self-attention only (keys and values are not used, as in the paper); built for sequences ``length`` long.
    """

    def __init__(self, d_model: int, n_heads: int, *, length: int, modes: int, policy: str, seed: int) -> None:
        super().__init__()
        self.n_heads, self.length = n_heads, length
        self.modes = ModeSet(length, modes, policy=policy, seed=seed)
        e = d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.weight = complex_weight(n_heads, e, e, len(self.modes), scale=1 / math.sqrt(e))  # [2, h, e, e, M]
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` [B, N, D] (``N`` the block's length) to ``[B, N, D]``."""
        q = split_heads(self.q(x), self.n_heads)  # [B, h, e, N]
        mixed = self.spectral(q).to(x.dtype)  # [B, h, e, N]
        out: Tensor = self.out(merge_heads(mixed))
        return out

    def spectral(self, q: Tensor) -> Tensor:
        """The frequency-domain map of heads ``q`` [B, h, e, N]: kept modes times the weights, back to time."""
        with torch.autocast(q.device.type, enabled=False):
            kept = self.modes.pick(rfft(q))  # [B, h, e, F] -> [B, h, e, M]
            w = self.weight.float()
            mixed = torch.einsum("bhim,hiom->bhom", kept, torch.complex(w[0], w[1]))  # [B, h, e, M]
            return irfft(self.modes.place(mixed), n=self.length)  # [B, h, e, F] -> [B, h, e, N]


class FourierCrossAttention(nn.Module):
    """FEA-f: attention between the kept Fourier modes of the queries and of the keys, back to the queries' time."""

    def __init__(
        self, d_model: int, n_heads: int, *, q_length: int, kv_length: int, modes: int, policy: str, seed: int
    ) -> None:
        super().__init__()
        self.n_heads, self.q_length = n_heads, q_length
        self.q_modes = ModeSet(q_length, modes, policy=policy, seed=seed)
        self.kv_modes = ModeSet(kv_length, modes, policy=policy, seed=seed + 1)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Map queries ``x`` [B, N, D] over ``memory`` [B, M, D] (the lengths it was built for) to ``[B, N, D]``."""
        q = split_heads(self.q(x), self.n_heads)  # [B, h, e, N]
        k, v = (split_heads(t, self.n_heads) for t in self.kv(memory).chunk(2, -1))  # [B, h, e, M] each
        attended = self.spectral(q, k, v).to(x.dtype)  # [B, h, e, N]
        out: Tensor = self.out(merge_heads(attended))
        return out

    def spectral(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``irfft(place(softmax(|Q K^T| / sqrt(e)) V))`` over the kept modes of heads ``[B, h, e, N or M]``."""
        with torch.autocast(q.device.type, enabled=False):
            qm = self.q_modes.pick(rfft(q))  # [B, h, e, Mq]
            km, vm = self.kv_modes.pick(rfft(k)), self.kv_modes.pick(rfft(v))  # [B, h, e, Mk] each
            scores = torch.einsum("bhex,bhey->bhxy", qm, km)  # [B, h, Mq, Mk], summed over the channels
            weights = (scores.abs() / math.sqrt(q.shape[2])).softmax(dim=-1)
            attended = torch.einsum("bhxy,bhey->bhex", weights.to(vm.dtype), vm)  # [B, h, e, Mq]
            return irfft(self.q_modes.place(attended), n=self.q_length)  # [B, h, e, Fq] -> [B, h, e, N]
