"""Batch prediction for every strategy at once, and the mean-reversion blend.

Prediction runs the model over all series in large fixed-size chunks. On CUDA the chunk's forward pass is captured
once as a CUDA graph and replayed for every chunk (the shapes are static; the last chunk is padded), which removes
the per-kernel launch cost that dominates small models. A model whose forward pass cannot be captured (one that
reads a value back to the host, or changes shape with the data) is predicted without a graph, with a
:class:`GraphCaptureWarning` that names the model and the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.training.trainparts import autocast_for
from stratcast.daemon.zoo.heads import OwnLoss

PREDICT_CHUNK = 16_384
"""Rows one forward pass predicts on a GPU (one CUDA graph is captured for this shape)."""
CPU_PREDICT_CHUNK = 256
"""Rows one forward pass predicts on the CPU: the activations of 256 windows stay in the caches, where 16,384
took TCN's prediction of 6,000 strategies from 8.4 s to 23.5 s and PatchTST's from 4.3 s to 6.5 s (one thread;
the MLP-based models are alike at any size; ``benchmarks/vs_neuralforecast.py``'s profile)."""


def predict_chunk(device: torch.device) -> int:
    """The rows of one prediction forward pass on ``device``: :data:`PREDICT_CHUNK`, or :data:`CPU_PREDICT_CHUNK`."""
    return CPU_PREDICT_CHUNK if device.type == "cpu" else PREDICT_CHUNK


Forward = Callable[[Tensor, dict[str, Tensor]], Tensor]
"""A model's forward pass over one chunk: (inputs, side inputs) -> outputs."""


class GraphCaptureWarning(RuntimeWarning):
    """A model's forward pass could not be captured as a CUDA graph; it is predicted without one."""


class GraphedForward:
    """A model's forward pass for one static input shape, captured as a CUDA graph and replayed."""

    def __init__(self, model: nn.Module, example: Tensor, side: dict[str, Tensor], precision: str) -> None:
        self.static_in = example.clone()
        self.static_side = {k: v.clone() for k, v in side.items()}
        stream = torch.cuda.Stream(device=example.device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), autocast_for(example.device, precision):
            for _ in range(2):  # warm-up outside the graph, as CUDA graph capture requires
                model(self.static_in, **self.static_side)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast_for(example.device, precision):
            self.static_out = model(self.static_in, **self.static_side)

    def __call__(self, x: Tensor, side: dict[str, Tensor]) -> Tensor:
        """Replay the graph on ``x`` and ``side`` (shaped as the example's) and return a copy of the output."""
        self.static_in.copy_(x)
        for k, v in side.items():
            self.static_side[k].copy_(v)
        self.graph.replay()
        out: Tensor = self.static_out.clone()
        return out


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor,
    *,
    side: dict[str, Tensor] | None = None,
    precision: str = "auto",
    chunk: int | None = None,
    graphs: bool = True,
) -> Tensor:
    """Model outputs [M, ..., H, O] (float32) for inputs ``x`` [M, ..., L], in chunks of rows; CUDA graphs on CUDA.

    ``side``: the side inputs the model declares
    (:func:`~stratcast.daemon.engine.training.trainparts.side_inputs`), shaped like ``x`` without its last dimension;
    they are cut into the same chunks. ``chunk``: rows per forward pass (None: :func:`predict_chunk`'s).
    """
    model.eval()
    side = side or {}
    m = x.shape[0]
    chunk = min(chunk or predict_chunk(x.device), max(m, 1))
    forward = _forward_fn(model, x[:chunk], {k: v[:chunk] for k, v in side.items()}, precision, graphs and x.is_cuda)
    outs = []
    for lo in range(0, m, chunk):
        part, part_side = x[lo : lo + chunk], {k: v[lo : lo + chunk] for k, v in side.items()}
        short = chunk - part.shape[0]
        if short:  # pad the last chunk to the captured shape
            part = torch.cat([part, part.new_zeros(short, *part.shape[1:])])
            part_side = {k: torch.cat([v, v[-1:].expand(short, *v.shape[1:])]) for k, v in part_side.items()}
        outs.append(forward(part, part_side)[: chunk - short].float())
    return torch.cat(outs) if outs else x.new_zeros(0)


def predict_series(
    model: nn.Module,
    x: Tensor,
    *,
    series: int,
    side: dict[str, Tensor],
    precision: str = "auto",
) -> Tensor:
    """A multivariate model's outputs [M, H, O] for ``x`` [M, L] (one window per series), ``series`` at a time.

    The rows are cut into windows of ``series`` consecutive rows ([M, L] -> [G, S, L]); the last window takes the
    last ``series`` rows (overlapping the one before: no series is read twice in a window), or, when there are
    fewer rows than that, repeats the last row. ``side`` [M] each is cut alike; :func:`predict` runs the windows,
    without CUDA graphs: the ``ceil(M / series)`` windows are one chunk, so a graph would be captured to be replayed
    once, and the graph models synchronise with the host in their forward pass, which capture forbids
    (``torch.linalg.eigh`` checks its result, a sparse product coalesces its indices, ids are range-checked).
    """
    m = x.shape[0]
    starts = list(range(0, m - series + 1, series))
    if m % series and m > series:
        starts.append(m - series)
    offsets = torch.arange(series, device=x.device)
    if m >= series:
        index = torch.tensor(starts, device=x.device)[:, None] + offsets  # [G, S]
    else:
        index = offsets.clamp(max=m - 1)[None, :]  # [1, S]: the last row repeated
    windows, window_side = x[index], {k: v[index] for k, v in side.items()}
    out = predict(model, windows, side=window_side, precision=precision, graphs=False)  # [G, S, H, O]
    result = out.new_empty(m, *out.shape[2:])
    result[index.flatten()] = out.flatten(0, 1)  # [G, S, H, O] -> [G*S, H, O]; overlaps write the same series
    return result


def _forward_fn(model: nn.Module, example: Tensor, side: dict[str, Tensor], precision: str, graphs: bool) -> Forward:
    if graphs:
        try:
            return GraphedForward(model, example, side, precision)
        except RuntimeError as exc:  # what torch raises for an operation a capture forbids
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"{type(model).__name__}'s forward pass cannot be captured as a CUDA graph ({reason}); "
                "predicting without one",
                GraphCaptureWarning,
                stacklevel=3,
            )

    def plain(part: Tensor, part_side: dict[str, Tensor]) -> Tensor:
        with autocast_for(part.device, precision):
            out: Tensor = model(part, **part_side)
        return out

    return plain


SAMPLES = 100
"""Draws whose mean is the point forecast of a model that samples its forecasts (a model with its own loss)."""
VALIDATION_SAMPLES = 20
"""Draws per window at the validation origins, where the combination is fitted and the intervals calibrated.

A job forecasts every strategy at each of those origins (52 of them at the defaults; once, :class:`OriginMemo` keeps
them for the fit and both calibrations): with ``SAMPLES`` draws they cost a sampling model 100 times its
single-origin forecast (about 15 minutes of CPU for the diffusion model on 6,000 strategies). The mean of 20 draws
carries more sampling noise: the combination sees a slightly noisier model, which can only lower its weight, and
the residuals the intervals calibrate on are slightly wider (the bands err wide). The holdout and the future are
forecast with ``SAMPLES`` draws.
"""


@torch.no_grad()
def sample_mean(
    model: OwnLoss, x: Tensor, side: dict[str, Tensor], *, seed: int, n: int = SAMPLES, chunk: int = PREDICT_CHUNK
) -> Tensor:
    """The mean [M, H] of ``n`` forecast draws per input row of ``x`` [M, L], in chunks, reproducible from ``seed``."""
    if isinstance(model, nn.Module):
        model.eval()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    outs = []
    for lo in range(0, x.shape[0], chunk):
        part = {k: v[lo : lo + chunk] for k, v in side.items()}
        outs.append(model.sample(x[lo : lo + chunk], n, generator, **part).float().mean(0))
    return torch.cat(outs) if outs else x.new_zeros(0)


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


class OriginMemo:
    """A forecaster that forecasts each (series row, origin) once and gives the same forecast when asked again.

    A job forecasts its validation origins three times (the combination's fit, the intervals' calibration and the
    calibration again with the holdout) and the holdout's and the future's twice; a model that samples its
    forecasts pays for its draws each time. Asking
    again also gives the same draws' mean, where a second call would draw anew. A call without origins passes
    through. ``fn`` forecasts [M, H] from scaled inputs [M, L] of ``rows`` [M] at ``origin`` [M]; an input is a
    function of its row and origin, so the pair is its key.
    """

    def __init__(self, fn: Callable[[Tensor, Tensor, Tensor | None], Tensor], n_periods: int) -> None:
        self.fn, self.n_periods = fn, n_periods
        self.keys: Tensor | None = None  # [K] row * (n_periods + 1) + origin, ascending
        self.values: Tensor | None = None  # [K, H] their forecasts, in the same order

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """The forecasts [M, H]: those asked before from the memo, the rest from ``fn`` (and kept)."""
        if origin is None:
            return self.fn(x, rows, origin)
        keys = rows.long() * (self.n_periods + 1) + origin.long()
        new = torch.ones_like(keys, dtype=torch.bool)
        if self.keys is not None:
            new = ~torch.isin(keys, self.keys)
        if bool(new.any()):
            self.remember(keys[new], self.fn(x[new], rows[new], origin[new]))
        assert self.keys is not None and self.values is not None  # every key is known by now
        return self.values[torch.searchsorted(self.keys, keys)]

    def remember(self, keys: Tensor, values: Tensor) -> None:
        """Add forecasts ``values`` [M, H] under ``keys`` [M] (none known yet), keeping the keys sorted."""
        if self.keys is not None and self.values is not None:
            keys, values = torch.cat([self.keys, keys]), torch.cat([self.values, values])
        order = torch.argsort(keys)
        self.keys, self.values = keys[order], values[order]
