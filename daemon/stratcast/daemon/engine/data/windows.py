"""Windows cut from the panel on the device, by index, without look-ahead.

The whole scaled panel lives on the device as one tensor, padded with ``input_size`` zeros on the left and
``horizon`` zeros on the right so every window is a plain gather. A training step draws ``batch_size`` window
origins uniformly over every valid (series, origin) pair with one ``searchsorted`` and gathers them: no per-step
host-to-device copy, no DataLoader.

Time split of each series, counted back from its own end (a ragged panel's series end apart)::

    [ ... train ... | val_size | holdout ]
    start      train_end    val_end     end

A window with origin ``o`` (the first forecast period) reads inputs ``[o - input_size, o)`` and targets
``[o, o + horizon)``. Training windows need ``o <= train_end - 1`` and mask out every target at or after
``train_end``; validation windows start at ``train_end`` and score targets before ``val_end``; the holdout window
starts at ``val_end`` and is never seen in training or early stopping. Periods outside ``[start, end)`` read as 0
and are never scored. On a rectangular panel every series ends at the grid's ``T``.

Multivariate models read ``S`` series at the same origin per window (:class:`SeriesSampler`): every field gains a
series dimension, ``x`` [B, S, L], ``y`` and ``mask`` [B, S, H], ``rows`` and ``origin`` [B, S].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LEVERS = "lower --input-size, --horizon or --holdout, or --set val_size=N (0: no validation)"
"""What shortens the history a job needs, for the messages that refuse a too-short one."""


@dataclass(frozen=True, eq=False)
class Split:
    """Where each series' training and validation parts end, counted back from its own end.

    A series' last ``holdout`` periods are its holdout and the ``val_size`` before them its validation.
    """

    end: Tensor
    """[N] (or one 0-d value for every series) index just past each series' last period."""
    val_size: int
    holdout: int

    @classmethod
    def make(cls, end: int | Tensor, val_size: int, holdout: int) -> Split:
        """Split the periods up to ``end`` (one for every series, or [N] one each) into train, validation, holdout."""
        ends = torch.as_tensor(end)
        shortest = int(ends.min())
        if holdout < 0 or val_size < 0 or val_size + holdout >= shortest:
            raise ValueError(
                f"val_size {val_size} + holdout {holdout} leave no training periods of {shortest}: {LEVERS}"
            )
        return cls(ends, val_size, holdout)

    @property
    def val_end(self) -> Tensor:
        """[N] first holdout period of each series."""
        return self.end - self.holdout

    @property
    def train_end(self) -> Tensor:
        """[N] first validation period of each series."""
        return self.val_end - self.val_size


@dataclass(frozen=True)
class WindowBatch:
    """Windows with their targets; ``mask`` says which target periods may be scored.

    The shapes are for one series per window; a multivariate batch has [B, S] in place of [B] (module docstring).
    """

    x: Tensor
    """[B, L] inputs."""
    y: Tensor
    """[B, H] targets (0 where masked out)."""
    mask: Tensor
    """[B, H] bool, true where the target lies in the part being scored."""
    rows: Tensor
    """[B] series index of each window."""
    origin: Tensor
    """[B] first forecast period of each window."""

    def map(self, fn: Callable[[Tensor], Tensor]) -> WindowBatch:
        """The same windows with ``fn`` applied to every field (slicing, reordering, reshaping)."""
        return WindowBatch(fn(self.x), fn(self.y), fn(self.mask), fn(self.rows), fn(self.origin))


WINDOW_FIELDS = ("x", "y", "mask", "rows", "origin")
"""The fields of a :class:`WindowBatch`, in order."""


class PanelWindows:
    """The scaled panel on the device and the window arithmetic over it."""

    def __init__(
        self,
        scaled: Tensor,
        start: Tensor,
        *,
        input_size: int,
        horizon: int,
        pad_start: bool = False,
        end: Tensor | None = None,
    ) -> None:
        self.input_size, self.horizon, self.pad_start = input_size, horizon, pad_start
        self.n_series, self.n_times = scaled.shape
        self.start = start.to(scaled.device)
        self.end = torch.full_like(self.start, self.n_times) if end is None else end.to(scaled.device)
        # periods outside a series' own read as 0 whatever the scaler did to them: a centring scaler moves them to
        # -loc / scale; pad_start windows read those before the start as input (no trade), and no window reads
        # those after the end (a stopped series' periods are not data)
        t = torch.arange(self.n_times, device=scaled.device)[None, :]
        outside = (t < self.start[:, None]) | (t >= self.end[:, None])  # [N, T]
        # [N, T] -> [N, L + T + H]; the pads are never scored and only read as input with pad_start
        self.padded = torch.nn.functional.pad(torch.where(outside, 0.0, scaled), (input_size, horizon))
        # a view, no copy: [N, L + T + H] -> [N, T + 1, L + H], the window at each origin 0..T
        self.by_origin = self.padded.unfold(1, input_size + horizon, 1)
        self.offsets = torch.arange(-input_size, horizon, device=scaled.device)

    def earliest_origin(self) -> Tensor:
        """[N] first origin whose inputs are all observed (or that has one observed input, with pad_start)."""
        return self.start + (1 if self.pad_start else self.input_size)

    def gather(self, rows: Tensor, origin: Tensor, end: Tensor) -> WindowBatch:
        """Cut windows at ``origin`` for series ``rows``, masking targets at or after ``end`` (one per window)."""
        # [B, L + H]; one (row, origin) lookup per window copies it whole, about 4x faster on a CPU than
        # gathering B x (L + H) single elements
        window = self.by_origin[rows, origin]
        target_t = origin[:, None] + self.offsets[self.input_size :]  # [B, H]
        mask = target_t < end[:, None]
        y = torch.where(mask, window[:, self.input_size :], 0.0)
        return WindowBatch(window[:, : self.input_size], y, mask, rows, origin)

    def origins_at(self, origin: int | Tensor, end: Tensor | None = None) -> WindowBatch | None:
        """One window per series whose inputs allow a forecast from ``origin`` (None when there is none).

        Args:
            origin: The first forecast period: one for every series, or [N] one each.
            end: [N] where each series' scored targets stop (default: its own end).
        """
        origin = torch.as_tensor(origin, device=self.start.device).expand_as(self.start)
        end = self.end if end is None else end
        rows = torch.nonzero(self.earliest_origin() <= origin).flatten()
        if rows.numel() == 0:
            return None
        return self.gather(rows, origin[rows], end[rows])

    def forecast_inputs(self) -> Tensor:
        """[N, L] the last ``input_size`` periods of every series: the inputs of its forecast past its own end."""
        # grid period p is padded column p + L: the inputs [end - L, end) are columns [end, end + L)
        cols = self.end[:, None] + torch.arange(self.input_size, device=self.end.device)  # [N, L]
        return self.padded.gather(1, cols)


class TrainSampler:
    """Uniform sampling of training windows by index, reproducible from its generator state."""

    def __init__(self, windows: PanelWindows, train_end: int | Tensor, seed: int) -> None:
        """Sample the windows whose targets lie before ``train_end``: one value for every series, or one each."""
        self.windows = windows
        self.lo = windows.earliest_origin()
        self.train_end = torch.as_tensor(train_end, device=self.lo.device).expand_as(self.lo)  # [N]
        self.count = (self.train_end - self.lo).clamp(min=0)  # [N] valid origins per series
        self.cum = torch.cumsum(self.count, 0)
        self.total = int(self.cum[-1]) if self.cum.numel() else 0
        if self.total == 0:
            raise ValueError(
                f"no training window fits: a series needs input_size {windows.input_size} + 1 periods before the "
                f"validation part, which starts at period {int(self.train_end.max())}"
                f"{'' if bool((self.train_end == self.train_end.max()).all()) else ' at the latest'}: {LEVERS}, "
                "or --set pad_start=true"
            )
        self.generator = torch.Generator(device=windows.padded.device)
        self.generator.manual_seed(seed)

    @property
    def n_windows(self) -> int:
        """Number of distinct training windows (an epoch)."""
        return self.total

    def sample(self, batch_size: int) -> WindowBatch:
        """Draw ``batch_size`` training windows."""
        dev = self.cum.device
        u = torch.randint(0, self.total, (batch_size,), generator=self.generator, device=dev)
        rows = torch.searchsorted(self.cum, u, right=True)
        offset = u - (self.cum[rows] - self.count[rows])
        return self.windows.gather(rows, self.lo[rows] + offset, self.train_end[rows])

    def state_dict(self) -> dict[str, Tensor]:
        """The generator state: the sampler's position."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Continue from a saved position."""
        self.generator.set_state(state["generator"])


def validation_windows(windows: PanelWindows, split: Split, stride: int | None = None) -> WindowBatch | None:
    """Windows scoring each series' validation part: origins every ``stride`` periods from its ``train_end``.

    The default stride, the horizon, scores each validation period once (early stopping); a stride of 1 gives a
    window at every origin of the validation part, each scoring its targets before ``val_end`` (the
    out-of-sample residuals that calibrate intervals and the combination with the baselines).
    """
    train_end = split.train_end.to(windows.start.device).expand_as(windows.start)  # [N]
    val_end = train_end + split.val_size
    batches = [
        b
        for k in range(0, split.val_size, stride or windows.horizon)
        if (b := windows.origins_at(train_end + k, val_end)) is not None
    ]
    if not batches:
        return None
    return WindowBatch(*(torch.cat([getattr(b, k) for b in batches]) for k in WINDOW_FIELDS))


class SeriesSampler(TrainSampler):
    """Training windows of ``series`` series each at one shared origin, for multivariate models.

    Every window draws its origin uniformly over the panel's training origins (from the earliest series' first to
    the latest series' last) and its series as a random subset, without repeats, of all of them (every series when
    ``series`` is the panel's count), as MTGNN and iTransformer train on many series. A series whose own training
    origins do not include the window's contributes its inputs (0 outside its periods) but no scored target.
    """

    def __init__(self, windows: PanelWindows, train_end: int | Tensor, seed: int, *, series: int) -> None:
        super().__init__(windows, train_end, seed)
        if not 1 <= series <= windows.n_series:
            raise ValueError(f"a window cannot hold {series} of {windows.n_series} series")
        self.series = series
        self.first, self.stop = int(self.lo.min()), int(self.train_end.max())

    @property
    def n_windows(self) -> int:
        """Distinct training windows counted as (series, origin) pairs over the series per window (an epoch)."""
        return max(1, self.total // self.series)

    def sample(self, batch_size: int) -> WindowBatch:
        """Draw ``batch_size`` windows: x [B, S, L], y and mask [B, S, H], rows and origin [B, S]."""
        dev, n, s = self.cum.device, self.windows.n_series, self.series
        origin = torch.randint(self.first, self.stop, (batch_size, 1), generator=self.generator, device=dev)
        if s == n:
            rows = torch.arange(n, device=dev).expand(batch_size, n)
        else:  # a random subset per window: the first s of a random permutation of the series
            rows = torch.rand(batch_size, n, generator=self.generator, device=dev).argsort(dim=1)[:, :s]
        flat_rows, flat_origin = rows.reshape(-1), origin.expand(batch_size, s).reshape(-1)  # [B, S] -> [B*S]
        flat = self.windows.gather(flat_rows, flat_origin, self.train_end[flat_rows])
        usable = (flat_origin >= self.lo[flat_rows])[:, None]  # [B*S, 1]: the series' own inputs are observed
        flat = WindowBatch(flat.x, flat.y * usable, flat.mask & usable, flat.rows, flat.origin)
        return flat.map(lambda t: t.reshape(batch_size, s, *t.shape[1:]))  # [B*S, ...] -> [B, S, ...]


def group_series(batch: WindowBatch, series: int) -> WindowBatch:
    """Flat windows [M, ...] (as from :func:`validation_windows`) as [ceil(M / S), S, ...] for a multivariate model.

    ``series`` consecutive windows make one (``validation_windows`` lists them origin by origin); the last is
    filled up with copies of the last window, whose targets are masked out.
    """
    short = -batch.x.shape[0] % series
    if short:
        pad = batch.map(lambda t: t[-1:].expand(short, *t.shape[1:]))
        pad = WindowBatch(pad.x, pad.y, torch.zeros_like(pad.mask), pad.rows, pad.origin)
        batch = WindowBatch(*(torch.cat([getattr(batch, k), getattr(pad, k)]) for k in WINDOW_FIELDS))
    return batch.map(lambda t: t.reshape(-1, series, *t.shape[1:]))  # [M, ...] -> [M / S, S, ...]
