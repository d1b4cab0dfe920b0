"""Graphs over the series of a window, for the multivariate graph models (MTGNN, StemGNN).

Two ways to hold a graph over the ``S`` series of each of ``B`` windows:

* **Sparse, top-k** (MTGNN): each series keeps its ``k`` strongest neighbours, as neighbour indices and weights
  ``[B, S, k]``. Nothing ``S x S`` is kept for the backward pass: the scores that choose the neighbours are computed
  in row chunks without gradients, and the ``k`` chosen weights are recomputed from the gathered embeddings with
  them. Propagation over the graph (and over its transpose) is one sparse matrix product; its backward pass,
  written out in :class:`_NeighbourSum`, keeps only the inputs, not the ``k`` gathered neighbours of every series.
* **Dense, spectral** (StemGNN): a weighted adjacency ``[B, S, S]``, its normalised Laplacian and the Laplacian's
  eigenbasis for the graph Fourier transform. The eigendecomposition is ``O(S^3)`` per window and runs in float32
  with autocast off (``torch.linalg.eigh`` takes no bf16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

SCORE_CHUNK = 256
"""Rows of the ``S x S`` score matrix computed at once when choosing top-k neighbours (memory ``B x 256 x S``)."""


@dataclass(frozen=True)
class TopKGraph:
    """A directed graph keeping ``k`` out-neighbours per series: ``A[b, i, index[b, i, m]] = weight[b, i, m]``."""

    index: Tensor
    """``[B, S, k]`` long: the neighbours of each series, distinct and never the series itself."""
    weight: Tensor
    """``[B, S, k]``: the edges' weights (nonnegative for MTGNN's graphs)."""

    def dense(self) -> Tensor:
        """The adjacency as a dense ``[B, S, S]`` matrix (for tests and small ``S`` only)."""
        b, s, _ = self.index.shape
        out = self.weight.new_zeros(b, s, s)
        return out.scatter(2, self.index, self.weight)

    def degree(self, *, transpose: bool) -> Tensor:
        """``[B, S]``: ``1 +`` the row sums of ``A`` (or of ``A^T``: the column sums), the degrees of ``A + I``."""
        if not transpose:
            return 1.0 + self.weight.sum(-1)
        b, s, k = self.index.shape
        into = self.weight.new_zeros(b, s)
        return 1.0 + into.scatter_add(1, self.index.reshape(b, s * k), self.weight.reshape(b, s * k))

    def step(self, h: Tensor, *, transpose: bool = False) -> Tensor:
        """One normalised propagation ``D^-1 (A + I) h`` (``A^T`` for ``transpose``) of ``h`` ``[B, S, F]``."""
        weight = self.weight.to(h.dtype)
        neighbours: Tensor = _NeighbourSum.apply(h, self.index, weight, transpose)  # type: ignore[no-untyped-call]
        return (h + neighbours) / self.degree(transpose=transpose).to(h.dtype)[..., None]


def top_k_graph(source: Tensor, target: Tensor, k: int, alpha: float) -> TopKGraph:
    """MTGNN's learned graph: ``A = ReLU(tanh(alpha (M1 M2^T - M2 M1^T)))``, keeping each row's ``k`` largest.

    Args:
        source: ``M1`` ``[B, S, d]``, the series' source embeddings (already ``tanh(alpha E1 Theta1)``).
        target: ``M2`` ``[B, S, d]``, their target embeddings.
        k: Neighbours per series; ``min(k, S - 1)`` are kept (a series is never its own neighbour: the
            antisymmetric score of the diagonal is 0, and the self-loop is added by the propagation).
        alpha: The saturation rate of the tanh.

    Returns:
        The graph; its weights carry gradients to ``source`` and ``target``, its choice of neighbours does not.
    """
    b, s, d = source.shape
    k = min(k, s - 1)
    with torch.no_grad():
        chosen = [_top_rows(source, target, lo, min(lo + SCORE_CHUNK, s), k) for lo in range(0, s, SCORE_CHUNK)]
        index = torch.cat(chosen, dim=1) if chosen else source.new_zeros(b, 0, k, dtype=torch.long)
    flat = index.reshape(b, s * k, 1)  # [B, S*k, 1]: the neighbours, one row each
    their_source = source.gather(1, flat.expand(-1, -1, d)).reshape(b, s, k, d)  # [B, S, k, d]
    their_target = target.gather(1, flat.expand(-1, -1, d)).reshape(b, s, k, d)  # [B, S, k, d]
    score = (source[:, :, None] * their_target).sum(-1) - (target[:, :, None] * their_source).sum(-1)  # [B, S, k]
    return TopKGraph(index, torch.relu(torch.tanh(alpha * score)))


def _top_rows(source: Tensor, target: Tensor, lo: int, hi: int, k: int) -> Tensor:
    """The ``k`` highest-scoring columns ``[B, hi - lo, k]`` of rows ``lo:hi`` of the score matrix, self excluded."""
    score = source[:, lo:hi] @ target.transpose(1, 2) - target[:, lo:hi] @ source.transpose(1, 2)  # [B, c, S]
    rows = torch.arange(lo, hi, device=source.device)
    score[:, rows - lo, rows] = -torch.inf
    return score.topk(k, dim=-1).indices


def _neighbour_sum(x: Tensor, index: Tensor, weight: Tensor, transpose: bool) -> Tensor:
    """``y_i = sum_m w_im x_{index_im}`` (``transpose``: ``y_j = sum_{i,m: index_im = j} w_im x_i``), ``[B, S, F]``.

    One sparse matrix product over all windows (block-diagonal, ``B*S*k`` entries), in float32 (float64 stays)
    with autocast off: on a CPU it ran 20x faster than gathering the neighbours slot by slot, 100x faster than
    ``index_add_`` (500 series, 20 neighbours, 3,136 features).
    """
    b, s, f = x.shape
    rows = torch.arange(b * s, device=x.device).repeat_interleave(index.shape[-1])  # [B*S*k]: each edge's source
    columns = _flat_rows(index).reshape(-1)  # [B*S*k]: each edge's neighbour
    at = torch.stack([columns, rows]) if transpose else torch.stack([rows, columns])
    working = _working(x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        adjacency = torch.sparse_coo_tensor(
            at, weight.reshape(-1).to(working), (b * s, b * s), check_invariants=False
        ).coalesce()
        out: Tensor = torch.sparse.mm(adjacency, x.reshape(b * s, f).to(working))  # [B*S, B*S] @ [B*S, F]
    return out.reshape(b, s, f).to(x.dtype)


def _working(dtype: torch.dtype) -> torch.dtype:
    """The dtype the sparse products run in: float64 stays, everything narrower is widened to float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


EDGE_CHUNK = 1 << 24
"""Gathered neighbour features per chunk when the weights' gradients are computed (64 MiB in float32)."""


def _edge_products(rows: Tensor, columns: Tensor, index: Tensor) -> Tensor:
    """``[B, S, k]``: ``<rows_i, columns_{index_im}>`` for every edge, in chunks of series."""
    b, s, f = rows.shape
    k = index.shape[-1]
    at = _flat_rows(index)  # [B*S, k]
    flat_rows, flat_columns = rows.reshape(b * s, f), columns.reshape(b * s, f)
    step = max(1, EDGE_CHUNK // max(1, k * f))
    parts = []
    for lo in range(0, b * s, step):
        theirs = flat_columns.index_select(0, at[lo : lo + step].reshape(-1)).reshape(-1, k, f)  # [c, k, F]
        parts.append(torch.bmm(theirs, flat_rows[lo : lo + step, :, None])[..., 0])  # [c, k, F] @ [c, F, 1] -> [c, k]
    return torch.cat(parts).reshape(b, s, k) if parts else rows.new_zeros(index.shape)


def _flat_rows(index: Tensor) -> Tensor:
    """Neighbour indices ``[B, S, k]`` as rows of the flattened ``[B*S, F]`` features: ``[B*S, k]``."""
    b, s, k = index.shape
    offset = torch.arange(b, device=index.device)[:, None, None] * s  # window b's series start at row b*S
    return (index + offset).reshape(b * s, k)


class _NeighbourSum(torch.autograd.Function):
    """:func:`_neighbour_sum` with a backward pass that keeps only its inputs.

    With ``y = A x`` (``A`` the sparse adjacency): ``dx = A^T dy``, the same sum transposed, and
    ``dw_im = <dy_i, x_{index_im}>``; for ``y = A^T x``: ``dx = A dy`` and ``dw_im = <x_i, dy_{index_im}>``.
    """

    @staticmethod
    def forward(x: Tensor, index: Tensor, weight: Tensor, transpose: bool) -> Tensor:
        return _neighbour_sum(x, index, weight, transpose)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor, bool], output: Tensor) -> None:
        x, index, weight, transpose = inputs
        ctx.save_for_backward(x, index, weight)
        ctx.transpose = transpose

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None]:
        x, index, weight = ctx.saved_tensors
        dx = _neighbour_sum(grad, index, weight, not ctx.transpose) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[2]:
            with torch.autocast(x.device.type, enabled=False):
                pair = (x, grad) if ctx.transpose else (grad, x)
                working = _working(x.dtype)
                dw = _edge_products(pair[0].to(working), pair[1].to(working), index).to(weight.dtype)
        return dx, None, dw, None


class MixHop(nn.Module):
    """MTGNN's mix-hop propagation: ``H_k = beta H_in + (1 - beta) A~ H_{k-1}``, the hops mixed by a 1x1 conv.

    ``A~ = D^-1 (A + I)``; keeping a share ``beta`` of the input at every hop stops deep propagation from
    smoothing every series into the same value, and the learned selection ``sum_k H_k W_k`` weighs the hops.
    """

    def __init__(self, c_in: int, c_out: int, *, depth: int, beta: float) -> None:
        super().__init__()
        self.depth, self.beta = depth, beta
        self.select = nn.Linear((depth + 1) * c_in, c_out)  # a 1x1 convolution over the stacked hops

    def forward(self, h: Tensor, graph: TopKGraph, *, transpose: bool = False) -> Tensor:
        """Propagate ``h`` ``[B, S, C, T]`` over ``graph`` (or its transpose) and select: ``[B, S, C_out, T]``."""
        b, s, c, t = h.shape
        start = h.reshape(b, s, c * t)  # [B, S, C, T] -> [B, S, C*T]
        hops, current = [h.reshape(b * s, c, t)], start
        for _ in range(self.depth):
            current = self.beta * start + (1 - self.beta) * graph.step(current, transpose=transpose)
            hops.append(current.reshape(b * s, c, t))
        stacked = torch.cat(hops, dim=1).transpose(1, 2)  # [B*S, (K+1)*C, T] -> [B*S, T, (K+1)*C]
        out: Tensor = self.select(stacked).transpose(1, 2)  # [B*S, T, C_out] -> [B*S, C_out, T]
        return out.reshape(b, s, -1, t)


# -- dense graphs and the graph Fourier transform ------------------------------------------------------------------


def normalised_laplacian(adjacency: Tensor) -> Tensor:
    """``L = I - D^-1/2 W D^-1/2`` of a symmetric nonnegative ``W`` ``[B, S, S]``; eigenvalues lie in ``[0, 2]``."""
    inv_sqrt = adjacency.sum(-1).clamp(min=1e-12).rsqrt()  # [B, S]
    eye = torch.eye(adjacency.shape[-1], dtype=adjacency.dtype, device=adjacency.device)
    return eye - inv_sqrt[..., :, None] * adjacency * inv_sqrt[..., None, :]


@dataclass(frozen=True)
class FourierBasis:
    """A graph's Fourier basis: the normalised Laplacian's eigenvalues (frequencies) and eigenvectors, float32."""

    eigenvalues: Tensor
    """``[B, S]`` ascending; differentiable with respect to the graph."""
    eigenvectors: Tensor
    """``[B, S, S]``, one per column, orthonormal; constants of the backward pass (see :func:`fourier_basis`)."""


def fourier_basis(adjacency: Tensor) -> FourierBasis:
    """The graph Fourier basis of a symmetric nonnegative adjacency ``[B, S, S]``, in float32 with autocast off.

    The eigenvectors carry no gradient: their derivative divides by the gaps between eigenvalues, and a learned
    graph close to uniform has ``S - 1`` eigenvalues close to 1, so it explodes. The eigenvalues keep theirs
    (``lambda_i = u_i^T L u_i``, finite whatever the gaps): the graph learns through the spectral filters.
    Each eigenvector's sign is fixed (its largest entry in absolute value positive), so the basis follows the
    series when they are reordered instead of flipping with the solver.
    """
    with torch.autocast(adjacency.device.type, enabled=False):
        laplacian = normalised_laplacian(adjacency.float())
        with torch.no_grad():
            _, vectors = torch.linalg.eigh(laplacian)
            peak = vectors.gather(-2, vectors.abs().argmax(dim=-2, keepdim=True))  # [B, 1, S]: each column's peak
            vectors = vectors * torch.where(peak < 0, -1.0, 1.0)
        values = ((laplacian @ vectors) * vectors).sum(-2)  # [B, S]: u_i^T L u_i
    return FourierBasis(values, vectors)


def gft(x: Tensor, basis: FourierBasis) -> Tensor:
    """The graph Fourier transform ``U^T x`` of ``x`` ``[B, S, ...]`` along its series, in float32."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.einsum("bsf,bs...->bf...", basis.eigenvectors, x.float())


def igft(z: Tensor, basis: FourierBasis) -> Tensor:
    """The inverse graph Fourier transform ``U z`` of ``z`` ``[B, S, ...]`` (graph frequencies first), float32."""
    with torch.autocast(z.device.type, enabled=False):
        return torch.einsum("bsf,bf...->bs...", basis.eigenvectors, z.float())
