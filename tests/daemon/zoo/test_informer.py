"""Informer's ProbSparse attention lets only the top-u queries attend, and distilling halves the sequence."""

import torch

from stratcast.daemon.zoo.blocks.attention import merge_heads
from stratcast.daemon.zoo.models.informer import Distil, ProbSparseAttention, sparse_count


def test_only_the_top_u_queries_attend_and_the_rest_get_the_mean_of_the_values():
    torch.manual_seed(0)
    attention = ProbSparseAttention(8, 2, 0.0, factor=1).eval()
    x = torch.randn(3, 20, 8)
    b, n, d = x.shape
    _, _, v = attention.qkv(x).reshape(b, n, 3, 2, d // 2).permute(2, 0, 3, 1, 4).unbind(0)
    lazy = attention.out(merge_heads(v.mean(dim=2, keepdim=True).expand(-1, -1, n, -1)))  # every query lazy
    out = attention(x)
    lazy_rows = torch.isclose(out, lazy, atol=1e-6).all(dim=-1)  # [B, N]
    u = sparse_count(1, n)
    assert u == 3
    # with two heads, a token is fully lazy only when neither head picked it: between N - 2u and N - u per row
    assert ((lazy_rows.sum(dim=1) >= n - 2 * u) & (lazy_rows.sum(dim=1) <= n - u)).all()


def test_distilling_halves_the_sequence():
    distil = Distil(8)
    assert distil(torch.randn(2, 32, 8)).shape == (2, 16, 8)
    assert distil(torch.randn(2, 9, 8)).shape == (2, 5, 8)
