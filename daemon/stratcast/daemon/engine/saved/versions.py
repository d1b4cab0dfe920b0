"""Save a finished run as a version of a named model, load a version back, export and import one as a plain tar.

``save_run`` reads the run's final checkpoint (``model.pt``, loaded with ``weights_only=True``: the daemon's own
file) and ``metrics.json`` and writes the version's two files: ``weights.safetensors`` (an 8-byte header length, a
JSON header and raw tensors: nothing runs on load) and ``manifest.json``
(:mod:`stratcast.daemon.engine.saved.manifest`). Loading never unpickles: the manifest is JSON, the weights are
read with safetensors after their sha256 is checked against the manifest, and each member's weights are loaded
strictly into a model the catalog builds from the manifest's spec.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor, nn

from stratcast.daemon.engine.run.build import make_model
from stratcast.daemon.engine.run.members import ENSEMBLE_KEY, labels
from stratcast.daemon.engine.run.serving import SERVING_KEY
from stratcast.daemon.engine.saved.manifest import (
    COMBINATION_TENSORS,
    FORMAT,
    INTERVAL_TENSORS,
    MEMBER_PREFIX,
    SCALER_LOC,
    SCALER_SCALE,
    DataSignature,
    Intervals,
    Manifest,
    StudyEvidence,
    Training,
    decode_manifest,
    encode_manifest,
    spec_from_data,
    spec_from_manifest,
)
from stratcast.daemon.engine.saved.store import (
    MANIFEST,
    WEIGHTS,
    SavedModelError,
    SavedVersion,
    check_name,
    resolve,
    write_version,
)
from stratcast.daemon.engine.spec.ensemble import member_specs
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import CheckpointError, load_checkpoint
from stratcast.shared.runfiles import Outputs

MAX_MANIFEST_BYTES = 64 << 20
"""A manifest larger than this is refused (a tar's member or a file)."""
METRICS_KEYS = ("errors", "ranking", "verdict", "holdout", "best_strategy")
"""The parts of the run's ``metrics.json`` a manifest keeps."""


@dataclass
class SavedModel:
    """A loaded version: its manifest, spec, tensors and members' models (on the CPU, in eval mode)."""

    version: SavedVersion
    manifest: Manifest
    spec: RunSpec
    tensors: dict[str, Tensor]
    models: list[nn.Module]


def describe(saved: SavedModel) -> dict[str, Any]:
    """A loaded version and its manifest as plain data (the replies' shape), its strategies and tensors counted."""
    data: dict[str, Any] = msgspec.to_builtins(saved.manifest)
    data["strategies"] = len(data["strategies"])
    data["tensors"] = len(data["tensors"])
    return saved.version.info() | {"manifest": data}


def fingerprint(ids: list[str]) -> str:
    """sha256 of the sorted strategy ids, one a line."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def save_run(
    home: Path, run_out: Path, name: str, *, source: str | None = None, study: StudyEvidence | None = None
) -> SavedVersion:
    """Save the finished run whose outputs are in ``run_out`` as the next version of model ``name``.

    ``source``: the run's id or label for the manifest (default: ``run_out``); ``study``: the study whose kept best
    the run is.

    Raises:
        SavedModelError: when ``run_out`` holds no finished run's outputs of this engine (the message says which
            file), or the name is not valid.
    """
    check_name(name)
    outputs = Outputs(Path(run_out))
    try:
        state = load_checkpoint(outputs.model)
        metrics = json.loads(outputs.metrics.read_text())
    except (OSError, ValueError, CheckpointError) as exc:
        raise SavedModelError(f"{run_out} is not a finished run's output folder: {exc}") from None
    serving = state.get(SERVING_KEY)
    if not isinstance(serving, dict):
        raise SavedModelError(
            f"{outputs.model} has no serving state (written by an older engine): run the job again to save it"
        )
    tensors, manifest = _parts(state, serving, metrics, name, source or str(run_out))
    manifest = msgspec.structs.replace(manifest, study=study)

    def fill(folder: Path) -> None:
        write_files(folder, manifest, tensors)

    return write_version(home, name, fill)


def _parts(
    state: dict[str, Any], serving: dict[str, Any], metrics: dict[str, Any], name: str, source: str
) -> tuple[dict[str, Tensor], Manifest]:
    """The tensors and the manifest (digest still empty) of a run's final checkpoint and metrics."""
    spec_data: dict[str, Any] = serving["spec"]
    ensemble = state.get(ENSEMBLE_KEY)
    weights = [m["model"] for m in ensemble["done"]] if ensemble else [state["trainer"]["model"]]
    tensors: dict[str, Tensor] = {}
    for i, w in enumerate(weights):
        tensors |= {f"{MEMBER_PREFIX}{i}.{k}": v for k, v in w.items()}
    scaler = state["scaler"]
    tensors[SCALER_LOC], tensors[SCALER_SCALE] = scaler["loc"], scaler["scale"]
    intervals = None
    if (iv := serving["intervals"]) is not None:
        tensors |= {f"intervals.{k}": iv[k] for k in INTERVAL_TENSORS if iv[k] is not None}
        intervals = Intervals(
            levels=[float(v) for v in iv["levels"]],
            source=iv["source"],
            notes=list(iv["notes"]),
            scale_kind=iv["scale_kind"],
            scale_window=int(iv["scale_window"]),
            floor=float(iv["floor"]),
            own_share=iv["own_share"] is not None,
        )
    combination = None
    if (c := serving["combination"]) is not None:
        tensors |= {f"combination.{k}": c[k] for k in COMBINATION_TENSORS}
        combination = {"check": _plain(c["check"])}
    run, train, data = metrics.get("run", {}), spec_data["train"], serving["data"]
    ids = [str(i) for i in state["ids"]]
    spec = plain_spec(spec_data)
    manifest = Manifest(
        format=FORMAT,
        name=name,
        model=spec_data["model"],
        mode=spec_data["mode"],
        spec=spec,
        members=labels(spec_from_data(spec, MANIFEST)),
        strategies=ids,
        scaler=str(scaler["kind"]),
        combination=combination,
        intervals=intervals,
        calibration=metrics.get("intervals", {}).get("future_calibration"),
        quantiles=[float(q) for q in metrics.get("quantiles", {}).get("levels", [])],
        metrics={k: metrics[k] for k in METRICS_KEYS if k in metrics},
        training=Training(
            steps=int(run.get("steps", 0)),
            best_step=run.get("best_step"),
            best_val_loss=run.get("best_val_loss"),
            stopped_early=bool(run.get("stopped_early", False)),
            train_seconds=float(run.get("train_seconds", 0.0)),
        ),
        data=DataSignature(
            id_col=str(data["id_col"]),
            time_col=str(data["time_col"]),
            target_col=str(data["target_col"]),
            frequency=str(data["frequency"]),
            own_positions=bool(data["own_positions"]),
            input_size=int(train["input_size"]),
            horizon=int(train["horizon"]),
            strategies=len(ids),
            fingerprint=fingerprint(ids),
        ),
        source_run=source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        weights_sha256="",
        tensors=sorted(tensors),
    )
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, manifest


def plain_spec(spec_data: dict[str, Any]) -> dict[str, Any]:
    """The spec as JSON data (tuples as lists), without the run's own paths and device."""
    plain: dict[str, Any] = _plain(spec_data)
    plain["data"], plain["out"], plain["device"] = "", "", "auto"
    return plain


def _plain(value: Any) -> Any:
    """``value`` as JSON data (tuples as lists, numbers as Python numbers)."""
    return json.loads(json.dumps(value, default=str))


def write_files(folder: Path, manifest: Manifest, tensors: dict[str, Tensor]) -> None:
    """Write ``weights.safetensors`` and ``manifest.json`` (with the weights' digest) into ``folder``."""
    blob = save_tensors(tensors, metadata={"format": "stratcast-saved-model", "version": str(FORMAT)})
    (folder / WEIGHTS).write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    (folder / MANIFEST).write_bytes(encode_manifest(_with(manifest, weights_sha256=digest)))


def _with(manifest: Manifest, **changes: Any) -> Manifest:
    """``manifest`` with ``changes``."""
    return msgspec.structs.replace(manifest, **changes)


def load_saved(home: Path, ref: str) -> SavedModel:
    """Load the version ``ref`` names (``NAME``, ``NAME@ALIAS``, ``NAME:VERSION``): checked, no pickle.

    Raises:
        SavedModelError: naming the file and the problem: unknown model/alias/version, a manifest that does not
            validate, weights whose digest differs from the manifest's, weights that do not fit the model.
    """
    version = resolve(home, ref)
    return load_files(version, _read(version.manifest), _read(version.weights))


def _read(path: Path) -> bytes:
    """The bytes of ``path``.

    Raises:
        SavedModelError: when it cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SavedModelError(f"{path}: cannot read it ({exc.strerror})") from None


def load_files(version: SavedVersion, manifest_raw: bytes, weights_raw: bytes) -> SavedModel:
    """A version from its two files' bytes, checked (see :func:`load_saved`)."""
    manifest = decode_manifest(manifest_raw, version.manifest)
    digest = hashlib.sha256(weights_raw).hexdigest()
    if digest != manifest.weights_sha256:
        raise SavedModelError(
            f"{version.weights}: its sha256 {digest[:12]}... differs from the manifest's "
            f"{manifest.weights_sha256[:12]}...: the weights were changed or damaged; export a good copy again"
        )
    try:
        tensors = load_tensors(weights_raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise SavedModelError(f"{version.weights}: not a readable safetensors file ({exc})") from None
    if sorted(tensors) != manifest.tensors:
        raise SavedModelError(f"{version.weights}: its tensors differ from those the manifest lists")
    spec = spec_from_manifest(manifest, version.manifest)
    models = []
    n = len(manifest.strategies)
    for i, member in enumerate(member_specs(spec)):
        prefix = f"{MEMBER_PREFIX}{i}."
        weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        model = make_model(member, n)
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise SavedModelError(f"{version.weights}: member {i}'s weights do not fit {member.model}: {exc}") from None
        models.append(model.eval())
    if len(models) != len(manifest.members):
        raise SavedModelError(f"{version.manifest}: {len(manifest.members)} members listed, the spec builds "
                              f"{len(models)}")  # fmt: skip
    return SavedModel(version, manifest, spec, tensors, models)


def export_version(home: Path, ref: str, path: Path) -> SavedVersion:
    """Write the version ``ref`` names to ``path``: a plain tar of ``manifest.json`` and ``weights.safetensors``.

    The version is loaded (checked) first: a damaged version is not exported; an existing file is never replaced.

    Raises:
        SavedModelError: when ``path`` exists or its folder does not, or the version is missing or damaged.
    """
    path = Path(path)
    if path.exists():
        raise SavedModelError(f"{path} exists: export to a new file")
    if not path.parent.is_dir():
        raise SavedModelError(f"{path.parent}: no such folder")
    version = resolve(home, ref)
    manifest_raw, weights_raw = _read(version.manifest), _read(version.weights)
    load_files(version, manifest_raw, weights_raw)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, raw in ((MANIFEST, manifest_raw), (WEIGHTS, weights_raw)):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(raw), 0o644
            tar.addfile(info, io.BytesIO(raw))
    tmp.replace(path)
    return version


def import_version(home: Path, path: Path, name: str | None = None) -> SavedVersion:
    """A new version from an exported tar at ``path``, under ``name`` (default: the name it was saved under).

    Everything is checked (members of the tar, manifest, digest, weights against the model) before the version
    is created.

    Raises:
        SavedModelError: naming the tar and the problem.
    """
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar.getmembers():
                if info.name not in (MANIFEST, WEIGHTS) or not info.isfile() or info.name in files:
                    raise SavedModelError(
                        f"{path}: unexpected entry {info.name!r}: an export holds only {MANIFEST} and {WEIGHTS}"
                    )
                if info.name == MANIFEST and info.size > MAX_MANIFEST_BYTES:
                    raise SavedModelError(f"{path}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
                handle = tar.extractfile(info)
                assert handle is not None
                files[info.name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise SavedModelError(f"{path}: not a readable export ({exc})") from None
    if set(files) != {MANIFEST, WEIGHTS}:
        raise SavedModelError(f"{path}: an export holds {MANIFEST} and {WEIGHTS}; found {', '.join(files) or 'none'}")
    loaded = load_files(SavedVersion("import", 0, Path(f"{path}!")), files[MANIFEST], files[WEIGHTS])
    target = check_name(name or loaded.manifest.name)
    manifest = _with(loaded.manifest, name=target)

    def fill(folder: Path) -> None:
        (folder / WEIGHTS).write_bytes(files[WEIGHTS])
        (folder / MANIFEST).write_bytes(encode_manifest(manifest))

    return write_version(home, target, fill)
