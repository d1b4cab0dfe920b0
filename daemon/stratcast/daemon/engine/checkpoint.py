"""Writing and reading checkpoints safely: temp file, fsync, atomic rename, sha256 manifest, weights-only load."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_SCHEMA = 1
SCHEMA_KEY = "schema"


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
        expected = json.loads(manifest.read_text()).get("sha256")
        if expected != _sha256(path):
            raise CheckpointError(f"checkpoint {path} does not match the sha256 in {manifest.name}: corrupt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is not a checkpoint we can trust
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    if not isinstance(state, dict) or state.get(SCHEMA_KEY) != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"checkpoint {path} has schema {state.get(SCHEMA_KEY)!r}, not {CHECKPOINT_SCHEMA}")
    return state


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
