"""A saved version's ``manifest.json``: what the model is, how it trained, what data it fits, and its weights' digest.

The manifest is JSON decoded strictly into :class:`Manifest` (msgspec): an unknown, missing or mistyped field is a
:class:`~stratcast.daemon.engine.saved.store.SavedModelError` naming the file and the field. Its ``spec`` is the
run's spec (:class:`~stratcast.daemon.engine.spec.runspec.RunSpec` as plain data, options chosen from the data
applied) and is rebuilt through the spec's own validation: a model not in the catalog or an option out of range is
refused the same way. The tensors (weights of every member, the scaler's statistics, the interval calibration's
per-strategy quantiles and scales, the combination's exact weights) are in ``weights.safetensors``, whose sha256
the manifest records; :data:`TENSOR_PREFIXES` names their keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from stratcast.daemon.engine.saved.store import SavedModelError
from stratcast.daemon.engine.spec.runspec import RunSpec, spec_from_dict

FORMAT = 1
"""The manifest format this engine writes and reads."""
MEMBER_PREFIX = "member."
"""``member.<i>.<parameter>``: the weights of member ``i`` (0 for one model; a per-strategy run's stacked weights,
one slice per strategy)."""
SCALER_LOC, SCALER_SCALE = "scaler.loc", "scaler.scale"
"""[N] the scaler's statistics of each strategy the run trained on, in :attr:`Manifest.strategies` order."""
INTERVAL_TENSORS = ("pooled", "own", "counts", "alphas", "own_share", "fixed")
"""``intervals.<name>``: the future calibration's quantiles [K, H] and [K, N, H], counts [H], alphas [K, H], share
of own quantiles [K, H] and each strategy's score scale [N]."""
COMBINATION_TENSORS = ("model", "trailing", "cells")
"""``combination.<name>``: the combination's weights [H] (float64) and cells [H]."""
TENSOR_PREFIXES = (MEMBER_PREFIX, "scaler.", "intervals.", "combination.")


class DataSignature(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The data the model was trained on, which new data must match."""

    id_col: str
    time_col: str
    target_col: str
    frequency: str
    """The step between periods (``7 days 00:00:00``; ``1`` for integer periods)."""
    own_positions: bool
    input_size: int
    horizon: int
    strategies: int
    fingerprint: str
    """sha256 of the sorted strategy ids, one a line."""


class Training(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the model trained (an ensemble's steps and seconds summed)."""

    steps: int
    best_step: int | None
    best_val_loss: float | None
    stopped_early: bool
    train_seconds: float


class Intervals(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The future forecast's interval calibration besides its tensors."""

    levels: list[float]
    source: str
    notes: list[str]
    scale_kind: str
    scale_window: int
    floor: float
    own_share: bool
    """Whether ``intervals.own_share`` is in the weights."""


class StudyEvidence(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The study a version is the kept best of: the trial whose configuration it trained and what that trial scored.

    A version kept with ``all-data`` trained with no holdout, so its own metrics hold no holdout skill: the trial's
    values (on the trials' holdout or backtest) are the evidence for it.
    """

    study: str
    """The Optuna study name."""
    trial: int
    objectives: list[str]
    values: list[float]
    """The trial's value of each objective, in :attr:`objectives` order."""
    keep: str
    """``all-data`` (trained on everything) or ``holdout`` (with the trials' holdout)."""
    complete: int
    """COMPLETE trials of the study when the best was chosen."""


class Manifest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``manifest.json``."""

    format: int
    name: str
    """The name the version was saved under (an import may give it another)."""
    model: str
    mode: str
    spec: dict[str, Any]
    """The run's spec as plain data; its ``train`` and ``model_params`` are the training and model config."""
    members: list[str]
    """Member labels (``nhits``; ``nhits#0``, ``nhits#1`` for an ensemble)."""
    strategies: list[str]
    """The strategy ids the run trained on, in panel order (the rows of the per-strategy tensors)."""
    scaler: str
    combination: dict[str, Any] | None
    """``{"check": ...}`` of the fitted combination (its weights are tensors); None: the raw model forecasts."""
    intervals: Intervals | None
    calibration: dict[str, Any] | None
    """The future calibration as ``metrics.json["intervals"]["future_calibration"]`` shows it."""
    quantiles: list[float]
    """Quantile levels written (a model forecasting a distribution); empty for a point forecast."""
    metrics: dict[str, Any]
    """The holdout's skill table and verdict from the run's ``metrics.json``."""
    training: Training
    data: DataSignature
    source_run: str
    created: str
    weights_sha256: str
    tensors: list[str]
    """Every tensor name in the weights, sorted."""
    study: StudyEvidence | None = None
    """The study this version is the kept best of (None: a run saved by hand or by ``--save-as``)."""


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest as indented JSON."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2)


def decode_manifest(raw: bytes, path: Path | str) -> Manifest:
    """Decode and check ``raw`` read from ``path``.

    Raises:
        SavedModelError: naming ``path`` and the problem (not JSON, unknown/missing/mistyped field, other format,
            model or options the catalog refuses).
    """
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.DecodeError as exc:
        raise SavedModelError(f"{path}: not a valid saved-model manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise SavedModelError(f"{path}: manifest format {manifest.format}, this engine reads format {FORMAT}")
    spec = spec_from_manifest(manifest, path)
    if spec.model != manifest.model or spec.mode != manifest.mode:
        raise SavedModelError(f"{path}: model/mode {manifest.model}/{manifest.mode} differ from its spec's")
    sig = manifest.data
    if (sig.input_size, sig.horizon) != (spec.train.input_size, spec.train.horizon):
        raise SavedModelError(f"{path}: data.input_size/horizon differ from the spec's training config")
    if sig.strategies != len(manifest.strategies):
        raise SavedModelError(f"{path}: data.strategies is {sig.strategies}, the manifest lists "
                              f"{len(manifest.strategies)} strategies")  # fmt: skip
    return manifest


def spec_from_manifest(manifest: Manifest, path: Path | str, **changes: Any) -> RunSpec:
    """The run's spec rebuilt (and so validated) from ``manifest.spec``, with ``changes``.

    Raises:
        SavedModelError: naming ``path`` when the spec is malformed or the catalog refuses it.
    """
    return spec_from_data(manifest.spec, path, **changes)


def spec_from_data(data: dict[str, Any], path: Path | str, **changes: Any) -> RunSpec:
    """A spec rebuilt (and so validated) from its plain data ``data`` (read from ``path``), with ``changes``.

    Raises:
        SavedModelError: naming ``path`` when the spec is malformed or the catalog refuses it.
    """
    try:
        return spec_from_dict(data, **changes)
    except (TypeError, ValueError, KeyError) as exc:
        raise SavedModelError(f"{path}: the manifest's spec is not valid: {exc}") from None
