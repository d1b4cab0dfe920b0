"""Attention blocks (private): a small Transformer encoder and decoder, and additive attention.

The Transformer encoder is shared by :mod:`patchtst`, :mod:`itransformer` and :mod:`transformer`; the decoder
(causal self-attention, then cross-attention to the encoder's output) and the sinusoidal positional encoding by
:mod:`transformer`; additive attention by :mod:`seq2seq`; interpretable multi-head attention (heads sharing their
values, averaged) by :mod:`tft`.

Written from ``nn.Linear``, ``nn.LayerNorm`` and a plain ``softmax(q k^T / sqrt(d)) v`` rather than with
``nn.TransformerEncoderLayer`` (whose inference fast path takes another kernel and misbehaves under
``torch.func.vmap``) or ``F.scaled_dot_product_attention`` (whose CPU kernel has no ``vmap`` batching rule in
torch 2.13: it falls back to a per-model loop and warns). The models here attend over a few dozen tokens at most,
so a fused kernel would buy little. The layer is post-norm, as in "Attention Is All You Need" (Vaswani et al.,
NeurIPS 2017) and both papers that use it here: ``x = norm(x + attn(x)); x = norm(x + ffn(x))``.

Under ``vmap`` in training mode, dropout needs ``randomness="different"`` (or ``"same"``).

Additive attention is Bahdanau, Cho and Bengio's, "Neural Machine Translation by Jointly Learning to Align and
Translate" (ICLR 2015): a query scores each key by ``v^T tanh(W q + U k)``, and the softmax of the scores weighs
the keys into one context vector.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.contract import Checkpointable, activation


def check_heads(name: str, d_model: int, n_heads: int) -> None:
    """Reject a model width the heads cannot split evenly."""
    if d_model % n_heads:
        raise ValueError(f"{name}.d_model={d_model} must be divisible by n_heads={n_heads}")


def attention_weights(q: Tensor, k: Tensor, *, causal: bool = False) -> Tensor:
    """Softmax of the scaled dot products per head: ``q [B, h, N, d]``, ``k [B, h, M, d]`` -> ``[B, h, N, M]``.

    ``causal``: query ``i`` sees keys ``0..i`` only (needs ``N == M``).
    """
    # the queries scaled before the product: [B, h, N, d] numbers, not the [B, h, N, M] scores (a tenth of the work)
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # [B, h, N, d] @ [B, h, d, M] -> [B, h, N, M]
    if causal:
        n, m = scores.shape[-2:]
        future = torch.ones(n, m, dtype=torch.bool, device=scores.device).triu(1)  # [N, M], True above the diagonal
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1)


def attend(q: Tensor, k: Tensor, v: Tensor, dropout: nn.Module, *, causal: bool = False) -> Tensor:
    """Scaled dot-product attention per head: ``q [B, h, N, d]`` over ``k, v [B, h, M, d]`` -> ``[B, h, N, d]``.

    ``causal``: query ``i`` sees keys ``0..i`` only (needs ``N == M``).
    """
    out: Tensor = dropout(attention_weights(q, k, causal=causal)) @ v  # [B, h, N, M] @ [B, h, M, d] -> [B, h, N, d]
    return out


def merge_heads(heads: Tensor) -> Tensor:
    """Concatenate the heads: ``[B, h, N, d]`` -> ``[B, N, h*d]``."""
    b, h, n, d = heads.shape
    return heads.transpose(1, 2).reshape(b, n, h * d)  # [B, h, N, d] -> [B, N, h, d] -> [B, N, h*d]


def feed_forward(d_model: int, d_ff: int, *, dropout: float, act: str) -> nn.Sequential:
    """The position-wise feed-forward network of a Transformer layer."""
    return nn.Sequential(nn.Linear(d_model, d_ff), activation(act), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the token axis; ``causal`` masks the future tokens."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, *, causal: bool = False) -> None:
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.dropout = nn.Dropout(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, N, D]`` to ``[B, N, D]``."""
        b, n, d = x.shape
        # [B, N, 3D] -> [B, N, 3, h, D/h] -> [3, B, h, N, D/h]
        qkv = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out: Tensor = self.out(merge_heads(attend(q, k, v, self.dropout, causal=self.causal)))
        return out


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``[B, N, D]`` over a memory ``[B, M, D]`` (the encoder's output)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = nn.Dropout(dropout)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Map ``x [B, N, D]`` and ``memory [B, M, D]`` to ``[B, N, D]``."""
        (b, n, d), m, h = x.shape, memory.shape[1], self.n_heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)  # [B, N, D] -> [B, N, h, D/h] -> [B, h, N, D/h]
        # [B, M, 2D] -> [B, M, 2, h, D/h] -> [2, B, h, M, D/h]
        k, v = self.kv(memory).reshape(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        out: Tensor = self.out(merge_heads(attend(q, k, v, self.dropout)))
        return out


class InterpretableAttention(nn.Module):
    """Interpretable multi-head self-attention (Lim et al., IJF 2021, eq. 13-16 of the Temporal Fusion Transformer).

    Each head has its own query and key projections but all share one value projection, and the heads are
    averaged rather than concatenated: ``(1/h) sum_i A_i (V W_V) W_H`` equals ``(mean_i A_i) V W_V W_H``, so the
    mean attention matrix alone says how much each position drew on each other one. ``causal`` masks later
    positions (the paper's decoder masking).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, *, causal: bool = True) -> None:
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.d_head = d_model // n_heads
        self.qk = nn.Linear(d_model, 2 * n_heads * self.d_head)
        self.value = nn.Linear(d_model, self.d_head)
        self.out = nn.Linear(self.d_head, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``[B, N, D]`` to ``[B, N, D]``; also returns the head-averaged attention ``[B, N, N]``."""
        b, n, _ = x.shape
        # [B, N, 2*h*d] -> [B, N, 2, h, d] -> [2, B, h, N, d]
        q, k = self.qk(x).reshape(b, n, 2, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        weights = attention_weights(q, k, causal=self.causal).mean(dim=1)  # [B, h, N, N] -> [B, N, N]
        mixed = self.dropout(weights) @ self.value(x)  # [B, N, N] @ [B, N, d] -> [B, N, d]
        out: Tensor = self.out(mixed)  # [B, N, d] -> [B, N, D]
        return out, weights


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer: self-attention, then a position-wise feed-forward network."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, *, dropout: float, act: str, attention: nn.Module | None = None
    ) -> None:
        """``attention``: another self-attention ``[B, N, D] -> [B, N, D]`` (default: full :class:`SelfAttention`)."""
        super().__init__()
        self.attention = SelfAttention(d_model, n_heads, dropout) if attention is None else attention
        self.ffn = feed_forward(d_model, d_ff, dropout=dropout, act=act)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, N, D]`` to ``[B, N, D]``."""
        x = self.norm1(x + self.dropout(self.attention(x)))
        out: Tensor = self.norm2(x + self.dropout(self.ffn(x)))
        return out


class Encoder(Checkpointable):
    """``n_layers`` encoder layers in sequence; activation checkpointing applies layer by layer."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, *, dropout: float, act: str) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(EncoderLayer(d_model, n_heads, d_ff, dropout=dropout, act=act) for _ in range(n_layers))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, N, D]`` to ``[B, N, D]``."""
        for layer in self.layers:
            x = self.run_block(layer, x)
        return x


class DecoderLayer(nn.Module):
    """Post-norm Transformer decoder layer: causal self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, *, dropout: float, act: str) -> None:
        super().__init__()
        self.attention = SelfAttention(d_model, n_heads, dropout, causal=True)
        self.cross = CrossAttention(d_model, n_heads, dropout)
        self.ffn = feed_forward(d_model, d_ff, dropout=dropout, act=act)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Map ``x [B, N, D]`` and ``memory [B, M, D]`` to ``[B, N, D]``."""
        x = self.norm1(x + self.dropout(self.attention(x)))
        x = self.norm2(x + self.dropout(self.cross(x, memory)))
        out: Tensor = self.norm3(x + self.dropout(self.ffn(x)))
        return out


class Decoder(Checkpointable):
    """``n_layers`` decoder layers in sequence over one memory; activation checkpointing applies layer by layer."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, *, dropout: float, act: str) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(DecoderLayer(d_model, n_heads, d_ff, dropout=dropout, act=act) for _ in range(n_layers))
        )

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Map ``x [B, N, D]`` and ``memory [B, M, D]`` to ``[B, N, D]``."""
        for layer in self.layers:
            x = self.run_block(layer, x, memory)
        return x


def sinusoidal_positions(n: int, d_model: int) -> Tensor:
    """The fixed positional encoding of Vaswani et al.: ``sin``/``cos`` of ``pos / 10000^(2i/D)``, ``[n, D]``."""
    position = torch.arange(n, dtype=torch.float32)[:, None]  # [n, 1]
    rates = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # [D/2]
    table = torch.zeros(n, d_model)
    table[:, 0::2] = torch.sin(position * rates)  # [n, 1] * [D/2] -> [n, D/2]
    table[:, 1::2] = torch.cos(position * rates[: d_model // 2])  # odd D: one cosine column fewer
    return table


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention of one query over a sequence of keys, which are also the values."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``U k`` for every key: ``[B, N, Dk]`` -> ``[B, N, A]``, computed once for a whole decoding."""
        out: Tensor = self.key(keys)
        return out

    def forward(self, query: Tensor, keys: Tensor, projected: Tensor) -> tuple[Tensor, Tensor]:
        """Attend from ``query [B, Dq]`` over ``keys [B, N, Dk]`` (``projected``: :meth:`project_keys` of them).

        Returns:
            The context ``[B, Dk]`` and the attention weights ``[B, N]`` (nonnegative, summing to 1).
        """
        energy = torch.tanh(self.query(query)[:, None, :] + projected)  # [B, 1, A] + [B, N, A] -> [B, N, A]
        weights = self.score(energy).squeeze(-1).softmax(dim=-1)  # [B, N, 1] -> [B, N]
        context = (weights[:, :, None] * keys).sum(dim=1)  # [B, N, 1] * [B, N, Dk] -> [B, Dk]
        return context, weights
