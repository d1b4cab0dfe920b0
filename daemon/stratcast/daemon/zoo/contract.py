"""What every zoo model shares: the config base with self-describing parameters, and the model contract.

Contract for a zoo model ``X`` in ``x.py``:

* ``XConfig(ModelConfig)``: a frozen keyword-only dataclass holding architecture only (training options live
  once, in ``TrainConfig``). Each field is declared with :func:`param`, which records its range or choices and a
  help line, so ``stratcastd models`` and the TUI can describe it and ``__post_init__`` can validate it.
  ``XConfig.tiny()`` returns a config small enough that the whole zoo trains on a CPU in seconds.
* ``X(nn.Module)``: ``X(config, input_size=L, horizon=H, n_outputs=O)``, plus ``n_series=N`` (the panel's number
  of series) for a model with per-series parameters. ``O`` is the run's output head's ``n_params`` (``zoo/heads.py``):
  1 for the point losses, one per level for quantiles, 2 for Gaussian, 3 for Student-t, 4 for the hurdle. The
  head, not the model, owns the loss, the point forecast (always the mean: it ranks the strategies) and the
  quantiles or samples.
* Its catalog entry declares its :class:`Capabilities` once; the engine reads nothing else about a model.

The call, by capability (``B`` windows, ``L`` inputs, ``H`` horizon, ``O`` outputs, ``S`` series per window)::

    univariate (the default)   forward(x [B, L])               -> [B, H, O]     one window of one series per row
    multivariate               forward(x [B, S, L])            -> [B, S, H, O]  S series at the same origin per row
    + per_series               ..., ids=[B] or [B, S] (long)                    each window's series (panel row)
    + origin                   ..., origin=[B] or [B, S] (long)                 each window's first forecast period

The window batch's inputs come first and positionally; the side inputs a model declares come as keyword tensors
shaped like the leading dimensions of ``x``, and only those (the engine builds them in one place, from the
windows' series rows and origins). A model that declares nothing keeps ``forward(x)``, so per-strategy stacking
(``torch.func.vmap`` over ``functional_call``) still applies to it. Covariates will be further declared side
inputs. Decoders (TFT, Seq2Seq) stay inside the model. A model with ``own_loss`` computes its training loss itself
(the ``OwnLoss`` protocol of ``zoo/heads.py``: ``training_loss(x, y, **side)`` and ``sample(x, n, generator,
**side)``; its point forecast is the mean of ``SAMPLES`` seeded draws); a ``stochastic`` one draws random numbers
in its forward pass (sampling), from torch's global generator, so a seed reproduces it. Rows of a univariate model
are forecast independently; a multivariate model mixes the ``S`` series of a row, and one with per-series parameters
refuses
ids outside ``[0, n_series)``.

Activation checkpointing (the ``activation_checkpointing`` training option) is offered by models built from
blocks: such a model (or the block stack inside it) subclasses :class:`Checkpointable` and calls each block
through :meth:`Checkpointable.run_block`, and its capabilities say ``checkpointing=True``. A checkpointed block
keeps only its inputs in the forward pass and recomputes its activations in the backward pass: about a third less
activation memory for about a third more time (NOTES.md). The results are the same; ``torch.utils.checkpoint``
restores the RNG state for the recomputation, so dropout draws the same masks again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Protocol, Self

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from stratcast.daemon.zoo.search import Search


def param(
    default: Any,
    *,
    help: str,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[Any, ...] | None = None,
    search: Search | None = None,
) -> Any:
    """Declare a config field: its default, valid range (inclusive) or choices, help line, and tuner search space.

    ``search`` says where a tuner should look (within the valid values); None: a tuner leaves the field alone.

    Raises:
        TypeError: for a mutable default.
        ValueError: for a search space that reaches outside the valid values or does not fit the field's type.
    """
    if isinstance(default, list | dict | set):
        raise TypeError("config defaults must be immutable; use a tuple")
    if search is not None:
        _check_search(search, default, lo, hi, choices)
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "search": search}
    return dataclasses.field(default=default, metadata=meta)


def _check_search(search: Search, default: Any, lo: float | None, hi: float | None, choices: Any) -> None:
    """Refuse a search space that a field could not hold: values outside its range or choices, or another type."""
    fits = type(default) is int if search.kind == "int" else type(default) is float
    if search.kind == "categorical":
        fits = all(type(c) is type(default) for c in search.values())
    if not fits:
        raise ValueError(f"search space {search} does not fit a field whose default is {default!r}")
    for value in search.values():
        if problem := value_problem("search", value, lo, hi, choices):
            raise ValueError(f"search space reaches outside the valid values: {problem}")


def check_fields(obj: Any) -> None:
    """Validate every field declared with :func:`param` against its range or choices.

    Raises:
        ValueError: naming the field, the value and what is allowed.
    """
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if problem := value_problem(f.name, getattr(obj, f.name), meta.get("lo"), meta.get("hi"), meta.get("choices")):
            raise ValueError(problem)


def value_problem(name: str, value: Any, lo: float | None, hi: float | None, choices: Any) -> str | None:
    """What is wrong with ``name=value`` for a range (each number of a tuple) or choices; None when it is valid."""
    if choices is not None and value not in choices:
        return f"{name}={value!r} is not one of {', '.join(map(str, choices))}"
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if not math.isfinite(v):
            return f"{name}={value!r} must be finite"
        if lo is not None and v < lo:
            return f"{name}={value!r} is below its minimum {lo}"
        if hi is not None and v > hi:
            return f"{name}={value!r} is above its maximum {hi}"
    return None


def describe_fields(cls: type[Any]) -> list[dict[str, Any]]:
    """Describe a config class's fields (name, type, default, range, choices, help, search space) as plain data."""
    out = []
    for f in dataclasses.fields(cls):
        search: Search | None = f.metadata.get("search")
        out.append(
            {
                "name": f.name,
                "type": str(f.type),
                "default": f.default,
                "lo": f.metadata.get("lo"),
                "hi": f.metadata.get("hi"),
                "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None,
                "help": f.metadata.get("help", ""),
                "search": None if search is None else search.to_dict(),
            }
        )
    return out


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Base of every model's architecture config; subclasses declare fields with :func:`param`."""

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def tiny(cls) -> Self:
        """A config small enough for CPU tests; subclasses override where the defaults are large."""
        return cls()

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        """Why this architecture cannot serve a panel of ``n_series`` series read ``series_per_window`` per window.

        A model with a stated limit (a multivariate model's series per window, a per-series table's size) overrides
        this to return a sentence naming the limit and the option that changes it; the engine refuses such a run
        before training (``stratcastd`` before queueing it). None: it can.
        """
        del n_series, series_per_window
        return None


SIDE_INPUTS = ("ids", "origin")
"""Every keyword input a model may declare, in call order: see :attr:`Capabilities.side_inputs`."""


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a model is and needs, declared once in its catalog entry: the engine honours it, the harness tests it.

    Raises:
        ValueError: for a combination the engine cannot run (a stackable model that reads other series or has
            per-series parameters: per-strategy mode already gives every series a model of its own).
    """

    multivariate: bool = False
    """It forecasts ``S`` series at the same origins together: ``x`` [B, S, L] -> [B, S, H, O]."""
    per_series: bool = False
    """It has parameters per series: built with ``n_series=N`` and called with ``ids=`` (each window's series)."""
    origin: bool = False
    """It is called with ``origin=`` (each window's first forecast period): the door to calendar features."""
    own_loss: bool = False
    """It computes its own training loss (``OwnLoss``, zoo/heads.py) instead of the engine's loss over its output."""
    stochastic: bool = False
    """Its forward pass samples (draws from torch's global generator), also in eval mode: a seed reproduces it."""
    stackable: bool = True
    """It runs under ``torch.func.vmap``, and so in per-strategy (stacked) mode."""
    checkpointing: bool = False
    """The ``activation_checkpointing`` training option applies (its blocks are :class:`Checkpointable`)."""

    def __post_init__(self) -> None:
        if self.stackable and (self.multivariate or self.per_series):
            raise ValueError(
                "a multivariate or per-series model cannot be stackable: per-strategy mode gives each series a model "
                "of its own, which sees one series and has no ids to tell"
            )

    @property
    def side_inputs(self) -> tuple[str, ...]:
        """The keyword inputs of its forward pass, in :data:`SIDE_INPUTS` order (empty: ``forward(x)``)."""
        declared = {"ids": self.per_series, "origin": self.origin}
        return tuple(name for name in SIDE_INPUTS if declared[name])

    def to_dict(self) -> dict[str, bool]:
        """Every capability by name, as plain data (``stratcastd models --json``)."""
        return dataclasses.asdict(self)


UNIVARIATE = Capabilities()
"""A plain univariate model: ``forward(x [B, L]) -> [B, H, O]``, stackable, no side inputs."""


class ForecastModel(Protocol):
    """The call signature every zoo model implements (see the module docstring for the shapes by capability)."""

    def __call__(self, x: Tensor, **side: Tensor) -> Tensor:
        """Forecast ``horizon`` steps for each row (or each series of each row) of ``x``."""
        ...


def check_ids(ids: Tensor, n_series: int, windows: Tensor | None = None) -> None:
    """Refuse series ids outside ``[0, n_series)``, and ids not shaped like the series [B, S] of ``windows``.

    An index past a per-series table would read another series' row. ``windows`` [B, S, L] are a multivariate
    model's inputs (None: a univariate model's ids need no shape check here).

    The range is not read while a CUDA graph is being captured: reading it back would synchronise, which capture
    forbids; the eager warm-up calls before the capture check the same ids.

    Raises:
        ValueError: naming the ids and the number of series.
    """
    if windows is not None and ids.shape != windows.shape[:2]:
        raise ValueError(f"ids {tuple(ids.shape)} do not match the windows' series {tuple(windows.shape[:2])}")
    if ids.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_series):
        raise ValueError(f"ids must lie in [0, {n_series}), got {int(ids.min())}..{int(ids.max())}")


def check_model_args(input_size: int, horizon: int, n_outputs: int) -> None:
    """Reject shapes no model can be built for."""
    if input_size < 1 or horizon < 1 or n_outputs < 1:
        raise ValueError(f"input_size={input_size}, horizon={horizon}, n_outputs={n_outputs} must all be >= 1")


def activation(name: str) -> nn.Module:
    """The activation module for a config's ``activation`` name."""
    table: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
    return table[name]()


ACTIVATIONS = ("relu", "gelu", "silu", "tanh")


class Checkpointable(nn.Module):
    """A module whose blocks may run with activation checkpointing (off until :func:`set_activation_checkpointing`).

    Not under ``torch.func.vmap``: the recomputation in the backward pass runs outside the vmapped function, so
    per-strategy (stacked) training cannot use it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.activation_checkpointing = False
        """Recompute each block's activations in the backward pass instead of keeping them."""

    def run_block(self, block: nn.Module, *args: Any) -> Any:
        """``block(*args)``, checkpointed when switched on, in training mode and with gradients enabled."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)


def supports_activation_checkpointing(model: nn.Module) -> bool:
    """Whether ``model`` (or a module inside it, through wrappers) has checkpointable blocks."""
    return any(isinstance(m, Checkpointable) for m in model.modules())


def set_activation_checkpointing(model: nn.Module, on: bool) -> None:
    """Switch activation checkpointing on or off in every :class:`Checkpointable` module inside ``model``.

    Raises:
        ValueError: when ``on`` and ``model`` has no checkpointable blocks.
    """
    found = [m for m in model.modules() if isinstance(m, Checkpointable)]
    if on and not found:
        raise ValueError(f"{type(model).__name__} has no blocks that activation checkpointing could apply to")
    for m in found:
        m.activation_checkpointing = on
