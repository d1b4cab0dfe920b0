"""MTGNN: a top-k graph of k neighbours per series, sparse propagation equal to the dense one, equivariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from stratcast.daemon.zoo.blocks import graph as graph_block
from stratcast.daemon.zoo.blocks.graph import TopKGraph, _NeighbourSum, top_k_graph
from stratcast.daemon.zoo.models.mtgnn import INCEPTION_KERNELS, MTGNN, DilatedInception, MTGNNConfig
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job


def embeddings(b: int, s: int, d: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(b, s, d, generator=gen)), torch.tanh(torch.randn(b, s, d, generator=gen))


def dense_top_k(source: Tensor, target: Tensor, k: int, alpha: float) -> Tensor:
    """The paper's adjacency written densely: every entry, then all but each row's k largest (self excluded) zeroed."""
    scores = source @ target.transpose(1, 2) - target @ source.transpose(1, 2)
    eye = torch.eye(scores.shape[-1], dtype=torch.bool)
    scores = scores.masked_fill(eye, -torch.inf)
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(2, scores.topk(k, dim=-1).indices, True)
    return torch.where(keep, torch.relu(torch.tanh(alpha * scores)), 0.0)


@pytest.mark.parametrize(("s", "k"), [(12, 3), (40, 5)])
def test_the_graph_keeps_exactly_k_neighbours_per_series_and_never_the_series_itself(s: int, k: int) -> None:
    source, target = embeddings(2, s)
    graph = top_k_graph(source, target, k, alpha=3.0)
    assert graph.index.shape == (2, s, k)
    assert all(len(set(row.tolist())) == k for row in graph.index.flatten(0, 1))  # k distinct neighbours
    assert not bool((graph.index == torch.arange(s)[:, None]).any())  # never itself
    dense = graph.dense()
    torch.testing.assert_close(dense, dense_top_k(source, target, k, alpha=3.0))
    # k non-zeros per row, fewer only where a series has fewer than k positive (ReLU'd) scores
    positive = (dense_top_k(source, target, s - 1, alpha=3.0) > 0).sum(-1)
    assert torch.equal((dense > 0).sum(-1), positive.clamp(max=k))
    assert bool((positive >= k).float().mean() > 0.8)  # and that is most series


def test_a_window_with_fewer_series_than_k_links_every_other_series() -> None:
    source, target = embeddings(1, 3)
    graph = top_k_graph(source, target, 5, alpha=3.0)
    assert graph.index.shape == (1, 3, 2)
    assert top_k_graph(*embeddings(1, 1), 5, alpha=3.0).index.shape == (1, 1, 0)


def test_choosing_neighbours_in_row_chunks_gives_the_same_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = embeddings(2, 30)
    whole = top_k_graph(source, target, 4, alpha=3.0).dense()
    monkeypatch.setattr(graph_block, "SCORE_CHUNK", 7)
    torch.testing.assert_close(top_k_graph(source, target, 4, alpha=3.0).dense(), whole)


def test_the_graph_follows_the_series_when_they_are_reordered() -> None:
    source, target = embeddings(1, 15)
    order = torch.randperm(15, generator=torch.Generator().manual_seed(1))
    dense = top_k_graph(source, target, 3, alpha=3.0).dense()
    moved = top_k_graph(source[:, order], target[:, order], 3, alpha=3.0).dense()
    torch.testing.assert_close(moved, dense[:, order][:, :, order])


@pytest.mark.parametrize("transpose", [False, True])
def test_a_propagation_step_is_the_normalised_dense_one(transpose: bool) -> None:
    source, target = embeddings(2, 9)
    graph = top_k_graph(source, target, 3, alpha=3.0)
    h = torch.randn(2, 9, 5)
    a = graph.dense()
    a = a.transpose(1, 2) if transpose else a
    a_hat = a + torch.eye(9)
    expected = (a_hat @ h) / a_hat.sum(-1, keepdim=True)  # D^-1 (A + I) h
    torch.testing.assert_close(graph.step(h, transpose=transpose), expected)


@pytest.mark.parametrize("transpose", [False, True])
def test_the_sparse_propagation_has_the_gradients_of_its_definition(transpose: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    index = torch.stack([torch.randperm(6, generator=gen)[:3] for _ in range(2 * 6)]).reshape(2, 6, 3)
    x = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: _NeighbourSum.apply(x, index, w, transpose), (x, weight))


def test_the_propagation_keeps_its_inputs_not_k_gathered_copies_for_the_backward_pass() -> None:
    source, target = embeddings(4, 50)
    graph = top_k_graph(source.detach(), target.detach(), 10, alpha=3.0)
    weight = graph.weight.clone().requires_grad_()
    h = torch.randn(4, 50, 64, requires_grad=True)
    sizes: list[int] = []

    def pack(t: Tensor) -> Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        TopKGraph(graph.index, weight).step(h).sum()
    assert sum(sizes) < 3 * h.numel() * h.element_size()  # a gathered [B, S, k, F] would be 10x h


def test_the_fused_inception_convolution_is_four_convolutions_cut_to_their_last_steps() -> None:
    torch.manual_seed(0)
    layer = DilatedInception(4, 8, dilation=2)
    x = torch.randn(3, 4, 20)
    out = layer(x)
    assert out.shape == (3, 8, 20 - 6 * 2)
    biases = layer.bias.split(2)
    branches = [F.conv1d(x, w, b, dilation=2) for w, b in zip(layer.weights, biases, strict=True)]
    assert [br.shape[-1] for br in branches] == [20 - (k - 1) * 2 for k in INCEPTION_KERNELS]
    torch.testing.assert_close(out, torch.cat([br[..., -out.shape[-1] :] for br in branches], dim=1))


def test_reordering_a_windows_series_and_their_ids_reorders_the_forecasts() -> None:
    torch.manual_seed(0)
    config = MTGNNConfig(node_dim=6, k=3, n_layers=2, channels=8, skip_channels=8, end_channels=8, dropout=0.0)
    model = MTGNN(config, input_size=24, horizon=4, n_outputs=2, n_series=40).eval()
    ids = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:12].expand(2, 12)
    x = torch.randn(2, 12, 24)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, order], ids=ids[:, order]), model(x, ids=ids)[:, order])


def test_it_runs_under_bf16_autocast_with_finite_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = MTGNN(MTGNNConfig.tiny(), input_size=24, horizon=4, n_series=10)
    ids = torch.arange(10).expand(3, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(3, 10, 24), ids=ids)
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_the_limit_on_series_per_window_names_the_option() -> None:
    config = MTGNNConfig()
    assert config.panel_problem(n_series=6000, series_per_window=2000) is None
    problem = config.panel_problem(n_series=6000, series_per_window=2001)
    assert problem is not None and "series_per_window" in problem and "2000" in problem


def test_channels_must_split_over_the_four_kernels() -> None:
    with pytest.raises(ValueError, match="channels"):
        MTGNNConfig(channels=30)


def test_it_trains_on_subsets_of_series_and_forecasts_every_strategy_through_a_job(tmp_path: Path) -> None:
    tiny = ["node_dim=4", "k=2", "n_layers=1", "channels=8", "skip_channels=8", "end_channels=16", "dropout=0"]
    forecast, metrics = level_job(tmp_path, "mtgnn", ["series_per_window=4", "batch_size=8", "max_steps=40", *tiny])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N
