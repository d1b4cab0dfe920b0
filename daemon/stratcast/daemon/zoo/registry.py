"""The explicit model registry: every zoo model, its config class and what it is for.

Models are listed here by hand (never discovered by scanning a folder), so a typo fails at import and the list a
user sees is the list that was reviewed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from stratcast.daemon.zoo.base import ModelConfig, describe_fields
from stratcast.daemon.zoo.dlinear import DLinear, DLinearConfig


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    """Name used on the command line and in run specs (lower case)."""
    model_cls: type[nn.Module]
    """The ``nn.Module``; built as ``model_cls(config, input_size=, horizon=, n_outputs=)``."""
    config_cls: type[ModelConfig]
    """Its architecture config (a :class:`ModelConfig` subclass with ``tiny()``)."""
    summary: str
    """One line on what the model is."""
    paper: str
    """The paper it is implemented from."""
    stackable: bool = True
    """Whether it runs under ``torch.func.vmap`` and so in per-strategy (stacked) mode."""


REGISTRY: Mapping[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            "dlinear",
            DLinear,
            DLinearConfig,
            "trend/remainder decomposition with two linear maps",
            "Zeng et al., AAAI 2023",
        ),
    )
}


def get_entry(name: str) -> ModelEntry:
    """Look a model up by name.

    Raises:
        KeyError: with the list of known names.
    """
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}") from None


def make_config(name: str, overrides: Mapping[str, Any] | None = None, *, tiny: bool = False) -> ModelConfig:
    """Build a model's config from its defaults (or ``tiny()``) plus overrides, validated."""
    entry = get_entry(name)
    base = entry.config_cls.tiny() if tiny else entry.config_cls()
    known = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = set(overrides or {}) - known
    if unknown:
        raise ValueError(f"model {name!r} has no parameter(s) {sorted(unknown)}; it has {sorted(known)}")
    return dataclasses.replace(base, **dict(overrides or {}))


def build_model(
    name: str, config: ModelConfig, *, input_size: int, horizon: int, n_outputs: int = 1
) -> nn.Module:
    """Instantiate a registered model for the given shapes."""
    entry = get_entry(name)
    if not isinstance(config, entry.config_cls):
        raise TypeError(f"{name} needs a {entry.config_cls.__name__}, got {type(config).__name__}")
    return entry.model_cls(config, input_size=input_size, horizon=horizon, n_outputs=n_outputs)


def describe_models() -> list[dict[str, Any]]:
    """Every model with its parameters, defaults and ranges, as plain data for ``stratcastd models``."""
    return [
        {
            "name": e.name,
            "summary": e.summary,
            "paper": e.paper,
            "stackable": e.stackable,
            "params": describe_fields(e.config_cls),
        }
        for e in REGISTRY.values()
    ]
