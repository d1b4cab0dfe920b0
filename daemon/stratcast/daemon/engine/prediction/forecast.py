"""Batch prediction for every strategy at once, and the mean-reversion blend.

Prediction runs the model over all series in large fixed-size chunks. On CUDA the chunk's forward pass is captured
once as a CUDA graph and replayed for every chunk (the shapes are static; the last chunk is padded), which removes
the per-kernel launch cost that dominates small models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.training.trainparts import autocast_for

PREDICT_CHUNK = 16_384


class GraphedForward:
    """A model's forward pass for one static input shape, captured as a CUDA graph and replayed."""

    def __init__(self, model: nn.Module, example: Tensor, precision: str) -> None:
        self.static_in = example.clone()
        side = torch.cuda.Stream(device=example.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side), autocast_for(example.device, precision):
            for _ in range(2):  # warm-up outside the graph, as CUDA graph capture requires
                model(self.static_in)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast_for(example.device, precision):
            self.static_out = model(self.static_in)

    def __call__(self, x: Tensor) -> Tensor:
        """Replay the graph on ``x`` (same shape as the example) and return a copy of the output."""
        self.static_in.copy_(x)
        self.graph.replay()
        out: Tensor = self.static_out.clone()
        return out


@torch.no_grad()
def predict(
    model: nn.Module, x: Tensor, *, precision: str = "auto", chunk: int = PREDICT_CHUNK, graphs: bool = True
) -> Tensor:
    """Model outputs [M, H, O] (float32) for inputs ``x`` [M, L], in chunks; CUDA graphs on CUDA."""
    model.eval()
    m = x.shape[0]
    chunk = min(chunk, max(m, 1))
    forward = _forward_fn(model, x[:chunk], precision, graphs and x.is_cuda)
    outs = []
    for lo in range(0, m, chunk):
        part = x[lo : lo + chunk]
        short = chunk - part.shape[0]
        if short:  # pad the last chunk to the captured shape
            part = torch.cat([part, part.new_zeros(short, part.shape[1])])
        outs.append(forward(part)[: chunk - short].float())
    return torch.cat(outs) if outs else x.new_zeros(0)


def _forward_fn(model: nn.Module, example: Tensor, precision: str, graphs: bool) -> Callable[[Tensor], Tensor]:
    if graphs:
        return GraphedForward(model, example, precision)

    def plain(part: Tensor) -> Tensor:
        with autocast_for(part.device, precision):
            out: Tensor = model(part)
        return out

    return plain


def blend_toward_mean(forecast: Tensor, recent_mean: Tensor, steps: int) -> Tensor:
    """Blend the first ``steps`` steps of ``forecast`` [N, H] toward ``recent_mean`` [N].

    Step ``h`` (0-based) gets weight ``1 - (h + 1) / (steps + 1)`` on the recent mean, so the first step leans
    most on it and step ``steps`` onwards is the model's own. ``steps = 0`` returns the forecast unchanged.
    """
    if steps <= 0:
        return forecast
    h = torch.arange(forecast.shape[1], device=forecast.device, dtype=forecast.dtype)
    w = (1 - (h + 1) / (steps + 1)).clamp(min=0)  # [H]
    return w * recent_mean[:, None] + (1 - w) * forecast
