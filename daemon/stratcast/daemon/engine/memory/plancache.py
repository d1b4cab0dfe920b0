"""Plan cache: memory plans kept in one JSON file, so repeated runs and tuning trials skip probing.

:func:`plan_key` hashes everything that changes a training step's peak memory (model and config, shapes, batch,
precision, GPU, torch version, activation checkpointing, and whatever else the caller names). :class:`PlanCache`
maps those keys to plans (:class:`~stratcast.daemon.engine.memory.planner.MemoryPlan`) and hands one back only while the
budget is within :data:`BUDGET_TOLERANCE` of the one it was planned for and its measured peak still fits. The
file is written atomically; one that cannot be read is ignored with a :class:`PlanCacheWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stratcast.daemon.engine.memory.planner import MemoryPlan


class PlanCacheWarning(UserWarning):
    """A plan cache file could not be read; it is ignored (and rewritten on the next ``put``)."""


CACHE_VERSION = 1
BUDGET_TOLERANCE = 0.05
"""A cached plan is reused when the budget differs from its own by at most this share."""


def plan_key(
    *,
    model_name: str,
    model_config: Mapping[str, Any],
    input_size: int,
    horizon: int,
    n_outputs: int,
    batch_size: int,
    precision: str,
    gpu_name: str,
    torch_version: str = torch.__version__,
    activation_checkpointing: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Return the cache key: a sha256 of everything that changes a step's peak memory.

    ``extra`` holds whatever else the caller knows to change it (the training mode, the panel's shape on the
    device, the scaler's wrapper); JSON-serialisable values.
    """
    parts = {
        "model": model_name,
        "config": dict(model_config),
        "input_size": input_size,
        "horizon": horizon,
        "n_outputs": n_outputs,
        "batch_size": batch_size,
        "precision": precision,
        "gpu": gpu_name,
        "torch": torch_version,
        "checkpointing": activation_checkpointing,
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class PlanCache:
    """Plans in one JSON file, keyed by :func:`plan_key`.

    A budget change re-plans: :meth:`get` returns a plan only when the new budget is within
    :data:`BUDGET_TOLERANCE` of the cached one and the cached measured peak still fits. Re-choosing from the cached
    probes would skip probing but leave the new choice unconfirmed, and a confirmation step costs about what the
    probes do. Writes are atomic (temp file, fsync, ``os.replace``); a corrupt file is ignored with a
    :class:`PlanCacheWarning`, never an error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, key: str, *, budget_bytes: int | None = None) -> MemoryPlan | None:
        """Return the cached plan for ``key`` if it is still valid for ``budget_bytes`` (any budget when None)."""
        raw = self._load().get(key)
        if raw is None:
            return None
        try:
            plan = MemoryPlan.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            warnings.warn(f"ignoring a malformed plan in {self.path}: {exc}", PlanCacheWarning, stacklevel=2)
            return None
        if budget_bytes is None or _budget_matches(plan, budget_bytes):
            return plan
        return None

    def put(self, key: str, plan: MemoryPlan) -> None:
        """Store ``plan`` under ``key``, atomically."""
        plans = self._load()
        plans[key] = plan.to_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": CACHE_VERSION, "plans": plans}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable plan cache {self.path}: {exc}", PlanCacheWarning, stacklevel=3)
            return {}
        if (
            not isinstance(data, dict)
            or data.get("version") != CACHE_VERSION
            or not isinstance(data.get("plans"), dict)
        ):
            warnings.warn(f"ignoring plan cache {self.path}: unknown layout", PlanCacheWarning, stacklevel=3)
            return {}
        return dict(data["plans"])


def _budget_matches(plan: MemoryPlan, budget: int) -> bool:
    if abs(budget - plan.budget_bytes) > BUDGET_TOLERANCE * plan.budget_bytes:
        return False
    return plan.measured_peak is None or plan.measured_peak <= budget
