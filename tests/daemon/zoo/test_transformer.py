"""The Transformer's decoder is causal over the horizon queries and its positions are the paper's sinusoids."""

import math

import torch

from stratcast.daemon.zoo.blocks.attention import Decoder, sinusoidal_positions


def test_a_decoded_step_does_not_see_later_horizon_queries():
    torch.manual_seed(0)
    decoder = Decoder(2, 8, 2, 16, dropout=0.0, act="gelu").eval()
    queries, memory = torch.randn(3, 6, 8), torch.randn(3, 5, 8)
    changed = queries.clone()
    changed[:, 4:] += 1.0
    before, after = decoder(queries, memory), decoder(changed, memory)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_a_decoded_step_reads_the_whole_memory():
    torch.manual_seed(0)
    decoder = Decoder(1, 8, 2, 16, dropout=0.0, act="gelu").eval()
    queries, memory = torch.randn(1, 4, 8), torch.randn(1, 5, 8)
    changed = memory.clone()
    changed[:, -1] += 1.0
    assert not torch.allclose(decoder(queries, memory)[:, 0], decoder(queries, changed)[:, 0])


def test_sinusoidal_positions_follow_the_paper():
    table = sinusoidal_positions(10, 6)
    assert table.shape == (10, 6)
    pos, i = 7, 1
    assert math.isclose(table[pos, 2 * i].item(), math.sin(pos / 10000 ** (2 * i / 6)), rel_tol=1e-5)
    assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(pos / 10000 ** (2 * i / 6)), rel_tol=1e-5)
    assert sinusoidal_positions(4, 5).shape == (4, 5)  # odd width: one cosine column fewer
