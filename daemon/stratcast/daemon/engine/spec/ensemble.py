"""An ensemble's members (``--ensemble``): their models, seeds, labels and specs, checked before anything runs.

``--ensemble 3`` trains three seeds of the job's model (``seed``, ``seed + 1``, ``seed + 2``); ``--ensemble
nhits,dlinear`` trains each named model with its default architecture, the first being the job's model. Every
member shares the job's prepared panel and the training options the job set (``--set``); for the rest each member
trains with its own model's catalog training defaults and the panel's choices for it, as it would alone
(``RunSpec.member_train``). Member ``i`` trains with ``seed + i``. The job forecasts the members' mean
(:class:`~stratcast.daemon.engine.prediction.ensemble.EnsembleForecaster`), which the combination with the
baselines then wraps as it wraps one model.

Multivariate and per-series models mix with the others: each member trains with its own sampler and forecasts
with its own forecaster, on the same panel and windows.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stratcast.daemon.zoo.catalog import CATALOG

if TYPE_CHECKING:
    from stratcast.daemon.engine.spec.runspec import RunSpec


def check_ensemble(model: str, members: Sequence[str], params: Mapping[str, Any]) -> None:
    """Refuse an ensemble that cannot run: too few members, an unknown model, a first member other than ``model``.

    Raises:
        ValueError: naming the problem and what to change.
    """
    given = ",".join(members)
    if len(members) < 2:
        raise ValueError(f"--ensemble {given}: an ensemble needs 2 or more members (give a count such as 3)")
    if unknown := [name for name in members if name not in CATALOG]:
        raise ValueError(
            f"--ensemble {given}: unknown model {', '.join(unknown)}; choose from {', '.join(sorted(CATALOG))}"
        )
    if members[0] != model:
        raise ValueError(
            f"--ensemble {given} with --model {model}: the job's model is the ensemble's first member; give one of "
            f"its models as --model (or leave --ensemble a count of {model} seeds)"
        )
    if params and len(set(members)) > 1:
        raise ValueError(
            f"--ensemble {given}: --set {', '.join(sorted(params))} is a {model} parameter, but an ensemble of "
            "different models keeps each model's default architecture; drop it, or ensemble seeds of one model"
        )


def refuse_backtest(members: Sequence[str]) -> None:
    """Refuse an ensemble in a walk-forward backtest, which refits one model per block.

    Raises:
        ValueError: naming the ensemble and what to do instead.
    """
    if members:
        raise ValueError(
            f"--ensemble {','.join(members)}: a backtest refits one model at each block and does not train "
            "ensembles yet; drop --ensemble to backtest the model, or run the ensemble with run/submit and a --holdout"
        )


def member_labels(members: Sequence[str]) -> list[str]:
    """Each member's name in tables and ``metrics.json``: ``nhits#0``, ``nhits#1`` where a model repeats."""
    counts = Counter(members)
    return [f"{name}#{i}" if counts[name] > 1 else name for i, name in enumerate(members)]


def member_specs(spec: RunSpec) -> list[RunSpec]:
    """The spec each member trains with: its model, training options and seed (one model: the job's spec).

    A member's architecture is its model's default unless it is ``spec``'s model; its training options are
    :meth:`~stratcast.daemon.engine.spec.runspec.RunSpec.member_train`'s.
    """
    if not spec.ensemble:
        return [spec]
    return [
        dataclasses.replace(
            spec,
            model=name,
            ensemble=(),
            model_params=spec.model_params if name == spec.model else {},
            train=dataclasses.replace(spec.member_train(name), seed=spec.train.seed + i),
        )
        for i, name in enumerate(spec.ensemble)
    ]
