"""Writing and reading checkpoints safely: temp file, fsync, atomic rename, sha256 manifest, weights-only load.

Training checkpoints of a run live in one folder as ``step-00000123.pt`` (+ ``step-00000123.pt.json``, the
manifest with its sha256); :func:`save_rotating` keeps the newest :data:`KEEP` and :func:`latest_checkpoint`
finds the newest one that still loads, so a file torn by a crash or a full disk costs one interval of training,
not the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_SCHEMA = 1
SCHEMA_KEY = "schema"
KEEP = 2
"""Training checkpoints kept per run: the newest and the one before it, in case the newest is damaged."""
_STEP_FILE = re.compile(r"step-(\d+)\.pt")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or of an unknown schema."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> str:
    """Write ``state`` to ``path`` atomically and record its sha256 in ``path.json``; returns the digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        torch.save({SCHEMA_KEY: CHECKPOINT_SCHEMA, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    digest = _sha256(tmp)
    os.replace(tmp, path)
    _write_json(path.with_suffix(path.suffix + ".json"), {"file": path.name, "sha256": digest})
    _fsync_dir(path.parent)
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


def save_rotating(directory: Path, step: int, state: dict[str, Any], keep: int = KEEP) -> Path:
    """Save the training checkpoint of ``step``, then delete all but it and the ``keep - 1`` newest before it.

    Checkpoints of later steps are deleted too: they belong to an abandoned attempt (a resume from an older file
    because the newer one was damaged, or a restart from scratch).
    """
    path = checkpoint_path(directory, step)
    save_checkpoint(path, state)
    older = [p for s, p in list_checkpoints(directory) if s < step][: keep - 1]
    for _, p in list_checkpoints(directory):
        if p != path and p not in older:
            _remove_checkpoint(p)
    for stale in directory.glob(".step-*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: Path, log: Callable[[str], None] | None = None) -> Path | None:
    """The newest training checkpoint in ``directory`` that verifies and loads; None when there is none.

    A damaged newer file (torn write, wrong digest, not a checkpoint) is reported through ``log`` and skipped.
    Every candidate is fully loaded with ``weights_only=True``; there is no unsafe fallback.
    """
    for _, path in list_checkpoints(directory):
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            if log is not None:
                log(f"warning: skipping checkpoint {path.name}: {exc}; trying the one before it")
            continue
        return path
    return None


def _remove_checkpoint(path: Path) -> None:
    path.with_suffix(path.suffix + ".json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file and an atomic rename."""
    _write_json(path, data)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
