"""What every zoo model shares: the config base with self-describing parameters, and the model contract.

Contract for a zoo model ``X`` in ``x.py``:

* ``XConfig(ModelConfig)``: a frozen keyword-only dataclass holding architecture only (training options live
  once, in ``TrainConfig``). Each field is declared with :func:`param`, which records its range or choices and a
  help line, so ``stratcastd models`` and the TUI can describe it and ``__post_init__`` can validate it.
  ``XConfig.tiny()`` returns a config small enough that the whole zoo trains on a CPU in seconds.
* ``X(nn.Module)``: ``X(config, input_size=L, horizon=H, n_outputs=O)``; ``forward(x)`` maps ``[B, L]`` (one
  window of one scaled series per row) to ``[B, H, O]`` (``O`` is 1 for point losses, the number of quantiles for
  the quantile loss).

Activation checkpointing (the ``activation_checkpointing`` training option) is offered by models built from
blocks: such a model (or the block stack inside it) subclasses :class:`Checkpointable` and calls each block
through :meth:`Checkpointable.run_block`, and its catalog entry says ``checkpointing=True``. A checkpointed block
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


class ForecastModel(Protocol):
    """The call signature every zoo model implements: ``[B, L] -> [B, H, O]``."""

    def __call__(self, x: Tensor) -> Tensor:
        """Forecast ``horizon`` steps for each row of ``x``."""
        ...


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
