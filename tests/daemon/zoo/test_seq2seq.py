"""Seq2Seq's additive attention weighs the encoder's annotations into a convex combination at every horizon step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stratcast.daemon.zoo.blocks.attention import AdditiveAttention
from stratcast.daemon.zoo.models.seq2seq import Seq2Seq, Seq2SeqConfig


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_attention_weights_are_a_distribution_over_the_window_at_every_horizon_step(cell: str) -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(Seq2SeqConfig.tiny(), cell=cell)
    model = Seq2Seq(config, input_size=12, horizon=5, n_outputs=2).eval()
    x = torch.randn(3, 12)
    out, weights = model.decode(x)
    assert out.shape == (3, 5, 2) and weights.shape == (3, 5, 12)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, 5))
    torch.testing.assert_close(model(x), out)


def test_additive_attention_over_identical_keys_returns_that_key() -> None:
    torch.manual_seed(0)
    attention = AdditiveAttention(4, 6, 5)
    key = torch.randn(2, 1, 6)
    keys = key.expand(2, 7, 6)  # [B, 1, Dk] -> [B, N, Dk]: the same key at every step
    context, weights = attention(torch.randn(2, 4), keys, attention.project_keys(keys))
    torch.testing.assert_close(context, key[:, 0])
    torch.testing.assert_close(weights, torch.full((2, 7), 1 / 7))


def test_the_context_follows_the_keys_the_query_scores_highest() -> None:
    torch.manual_seed(0)
    attention = AdditiveAttention(4, 6, 5)
    keys = torch.randn(1, 9, 6)
    context, weights = attention(torch.randn(1, 4), keys, attention.project_keys(keys))
    torch.testing.assert_close(context, weights @ keys[0])  # [1, N] @ [N, Dk] -> [1, Dk]
    assert weights.std() > 0  # distinct keys get distinct weights
