"""A run's spec on disk: ``OUT/spec.json``, written by ``stratcastd run`` and read back by ``run --resume OUT``.

The file is ``{"version": 1, "spec": <the RunSpec as plain data>}``. A resume rebuilds the job from it; only the
:data:`SCHEDULE_OPTIONS` of its training options may differ from the run it continues.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from stratcast.daemon.engine.spec.runspec import RunSpec, spec_from_dict
from stratcast.shared import runfiles
from stratcast.shared.runfiles import RunFolder

SPEC_FILE_VERSION = 1
SCHEDULE_OPTIONS = frozenset(
    {
        "checkpoint_every_steps",
        "checkpoint_every_s",
        "micro_batch_size",
        "oom_grow_after",
        "activation_checkpointing",
        "compile",
        "forecast_quantiles",
    }
)
"""Training options that do not change what is trained: a resume may use other values (another micro-batch
accumulates the same gradient, to float tolerance; activation checkpointing recomputes the same activations; a
compiled forward pass computes the same function, to float tolerance; the quantiles written are read off the
trained model). A checkpoint written before one of them existed resumes too: the comparison leaves them out."""


def write_spec(out: Path, spec: RunSpec) -> None:
    """Record ``spec`` in ``out/spec.json`` so that ``stratcastd run --resume out`` can rebuild the job."""
    out.mkdir(parents=True, exist_ok=True)
    path = RunFolder(out).spec
    tmp = path.with_name(f".{path.name}.tmp")  # temp file, fsync, atomic rename: a crash leaves the old file
    with open(tmp, "w") as fh:
        json.dump({"version": SPEC_FILE_VERSION, "spec": dataclasses.asdict(spec)}, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_spec(out: Path) -> RunSpec:
    """The spec :func:`write_spec` recorded in ``out``, with ``out`` as its output folder (it may have moved).

    Raises:
        ValueError: when ``out`` holds no readable ``spec.json`` of this version.
    """
    path = RunFolder(out).spec
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{out} is not a resumable run folder: cannot read {runfiles.SPEC} ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != SPEC_FILE_VERSION:
        raise ValueError(f"{path} is not a version {SPEC_FILE_VERSION} run spec")
    return spec_from_dict(data["spec"], out=str(out))
