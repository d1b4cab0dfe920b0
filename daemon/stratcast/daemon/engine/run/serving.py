"""What a finished run keeps for scoring new data later: the entry ``serving`` of its final checkpoint (``model.pt``).

A saved model (:mod:`stratcast.daemon.engine.saved`) is made from it: the spec the run trained with (its options
chosen from the data applied), the columns and frequency its panel was read with, the exact combination weights,
and the calibration of the future forecast's intervals (every strategy's quantiles and score scale), all as plain
tensors and data, loadable with ``weights_only=True``. ``metrics.json`` holds the same numbers rounded for people.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.prediction.combine import CombinedForecaster
from stratcast.daemon.engine.run.build import Forecaster, Prepared
from stratcast.daemon.engine.run.intervals import JobIntervals
from stratcast.daemon.engine.spec.runspec import RunSpec

SERVING_KEY = "serving"
"""The final checkpoint's entry :func:`serving_state` writes."""


def serving_state(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster, ji: JobIntervals | None) -> dict[str, Any]:
    """``{"serving": ...}``: the spec, the panel's columns and frequency, the combination and the intervals."""
    combination = None
    if isinstance(forecast_fn, CombinedForecaster):
        c = forecast_fn.combination
        combination = {"model": c.model.cpu(), "trailing": c.trailing.cpu(), "cells": c.cells.cpu(), "check": c.check}
    intervals = None
    if ji is not None:
        conf, scale = ji.conformal, ji.scale
        share = conf.own_share
        intervals = {
            "levels": list(conf.levels),
            "pooled": conf.pooled.cpu(),
            "own": conf.own.cpu(),
            "counts": conf.counts.cpu(),
            "alphas": conf.alphas.cpu(),
            "own_share": None if share is None else share.cpu(),
            "source": conf.source,
            "notes": list(conf.notes),
            "scale_kind": scale.kind,
            "scale_window": scale.window,
            "fixed": scale.fixed.cpu(),
            "floor": scale.local_floor,
        }
    panel = prep.panel
    data = {
        "id_col": panel.id_col,
        "time_col": panel.time_col,
        "target_col": panel.target_col,
        "frequency": frequency(panel),
        "own_positions": panel.own_positions,
    }
    state = {"spec": spec_data(spec), "data": data, "combination": combination, "intervals": intervals}
    return {SERVING_KEY: state}


def spec_data(spec: RunSpec) -> dict[str, Any]:
    """``spec`` as plain data (the form ``spec.json`` holds)."""
    return dict(dataclasses.asdict(spec))


def frequency(panel: Panel) -> str:
    """The step between the panel's periods in words (``7 days 00:00:00``; ``1`` for integer periods)."""
    times: np.ndarray[Any, Any] = panel.times
    if len(times) < 2:
        return "unknown"
    step = times[1] - times[0]
    if np.issubdtype(times.dtype, np.datetime64):
        return str(pd.Timedelta(step))
    return str(step.item() if hasattr(step, "item") else step)
