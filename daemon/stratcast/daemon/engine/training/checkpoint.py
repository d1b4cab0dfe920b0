"""Writing and reading checkpoints safely: temp file, fsync, atomic rename, sha256 manifest, weights-only load.

Training checkpoints of a run live in one folder as ``step-00000123.pt`` (+ ``step-00000123.pt.json``, the
manifest with its sha256, step and the validation loss of the check before it); :func:`save_rotating` keeps the
newest :data:`KEEP` plus the one with the best validation loss (never deleted by rotation), and
:func:`latest_checkpoint` finds the newest one that still loads, so a file torn by a crash or a full disk costs one
interval of training, not the run. Rotation deletes a checkpoint's rank files with it (``step-00000123.rank1.pt``,
the other ranks' state of a data-parallel run, see :mod:`stratcast.daemon.engine.training.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_SCHEMA = 1
SCHEMA_KEY = "schema"
KEEP = 2
"""Newest training checkpoints kept per run (at least 2: the one before the newest, in case the newest is damaged),
besides the best one by validation loss."""
_STEP_FILE = re.compile(r"step-(\d+)\.pt")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or of an unknown schema."""


def save_checkpoint(path: Path, state: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """Write ``state`` to ``path`` atomically; record its sha256 and ``meta`` in ``path.json``; returns the digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        torch.save({SCHEMA_KEY: CHECKPOINT_SCHEMA, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    digest = _sha256(tmp)
    os.replace(tmp, path)
    _write_json(path.with_suffix(path.suffix + ".json"), {"file": path.name, "sha256": digest, **(meta or {})})
    fsync_path(path.parent)
    return digest


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` after checking its manifest digest.

    Raises:
        CheckpointError: when the file is missing, fails its digest, or does not load as plain tensors and data.
    """
    manifest = path.with_suffix(path.suffix + ".json")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if manifest.exists():
        expected = _manifest_digest(manifest)
        if expected != _sha256(path):
            raise CheckpointError(f"checkpoint {path} does not match the sha256 in {manifest.name}: corrupt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is not a checkpoint we can trust
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of named state")
    if state.get(SCHEMA_KEY) != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"checkpoint {path} has schema {state.get(SCHEMA_KEY)!r}, not {CHECKPOINT_SCHEMA}")
    return state


def _manifest_digest(manifest: Path) -> Any:
    """The sha256 a manifest records (None when it records none)."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint manifest {manifest} is unreadable: {exc}") from None
    return data.get("sha256") if isinstance(data, dict) else None


def checkpoint_path(directory: Path, step: int) -> Path:
    """Where the training checkpoint of ``step`` goes: ``directory/step-00000123.pt``."""
    return directory / f"step-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """The training checkpoints in ``directory`` as (step, path), newest (highest step) first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.fullmatch(p.name))]
    return sorted(found, reverse=True)


def save_rotating(
    directory: Path, step: int, state: dict[str, Any], keep: int = KEEP, val_loss: float | None = None
) -> Path:
    """Save the training checkpoint of ``step``; delete all but it, the ``keep - 1`` newest before it and the best.

    ``val_loss`` (the latest validation loss, None before the first check) goes into the manifest; the best is
    the checkpoint with the lowest one, and rotation never deletes it. Checkpoints of later steps are deleted
    too: they belong to an abandoned attempt (a resume from an older file because the newer one was damaged, or a
    restart from scratch).

    Raises:
        ValueError: for ``keep < 2``.
    """
    if keep < 2:
        raise ValueError(f"keep the newest 2 checkpoints at least (the newest may be damaged), got keep={keep}")
    path = checkpoint_path(directory, step)
    save_checkpoint(path, state, {"step": step, "val_loss": val_loss})
    current = [p for s, p in list_checkpoints(directory) if s <= step]  # newest first
    kept = set(current[:keep])
    best = best_checkpoint(current)
    if best is not None:
        kept.add(best)
    for _, p in list_checkpoints(directory):
        if p not in kept:
            _remove_checkpoint(p)
    for stale in directory.glob(".step-*.pt.tmp"):  # left by a process killed mid-write (not another rank's)
        if _STEP_FILE.fullmatch(stale.name[1:-4]):
            stale.unlink(missing_ok=True)
    return path


def best_checkpoint(paths: list[Path]) -> Path | None:
    """The checkpoint among ``paths`` whose manifest records the lowest finite validation loss (the newest on ties)."""
    scored = [(loss, -i, p) for i, p in enumerate(paths) if (loss := manifest_val_loss(p)) is not None]
    return min(scored)[2] if scored else None


def manifest_val_loss(path: Path) -> float | None:
    """The validation loss the manifest of ``path`` records; None when it records none or is unreadable."""
    try:
        value = json.loads(path.with_suffix(path.suffix + ".json").read_text()).get("val_loss")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def latest_checkpoint(
    directory: Path,
    log: Callable[[str], None] | None = None,
    verify: Callable[[Path, dict[str, Any]], None] | None = None,
) -> Path | None:
    """The newest training checkpoint in ``directory`` that verifies and loads; None when there is none.

    A damaged newer file (torn write, wrong digest, not a checkpoint) is reported through ``log`` and skipped.
    Every candidate is fully loaded with ``weights_only=True``; there is no unsafe fallback. ``verify`` (the path
    and its loaded state) may refuse a candidate too, by raising :class:`CheckpointError`.
    """
    for _, path in list_checkpoints(directory):
        try:
            state = load_checkpoint(path)
            if verify is not None:
                verify(path, state)
        except CheckpointError as exc:
            if log is not None:
                log(f"warning: skipping checkpoint {path.name}: {exc}; trying the one before it")
            continue
        return path
    return None


def _remove_checkpoint(path: Path) -> None:
    for p in [path, *path.parent.glob(f"{path.stem}.rank*{path.suffix}")]:  # with a data-parallel run's rank files
        p.with_suffix(p.suffix + ".json").unlink(missing_ok=True)
        p.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file and an atomic rename."""
    _write_json(path, data)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # its own name: writers in threads never share one
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Fsync a file or a folder (a folder: the names in it, after a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
