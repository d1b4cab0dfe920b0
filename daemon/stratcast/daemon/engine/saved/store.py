"""The saved models' store in the daemon's home: named models, immutable numbered versions, moving aliases.

Layout: ``HOME/models/<name>/<version>/`` holds ``weights.safetensors`` and ``manifest.json`` (versions are 1, 2,
...); ``HOME/models/<name>/aliases.json`` maps an alias (``champion``, ``challenger``) to a version. A version is
written into a temporary folder beside the versions and renamed into place: a crash leaves no half version, and a
version is never overwritten (a rename onto an existing version fails and the next number is taken). The aliases
file is replaced atomically. Every function here works on a home folder alone, so the daemon's handlers and the
foreground commands share them; every failure is a :class:`SavedModelError` naming the model, the file and what to
do.

A reference names a version: ``NAME`` (the latest), ``NAME@ALIAS`` or ``NAME:VERSION``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratcast.daemon.engine.training.checkpoint import fsync_path, write_json_atomic

MODELS = "models"
"""The home's folder of saved models."""
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
"""A model's or alias's name: letters, digits, ``-``, ``_`` and ``.``, not starting with a dot or dash."""


class SavedModelError(ValueError):
    """A saved model that cannot be found, written, read, trusted or used on the data given.

    The message names the model or file, the problem and what to do.
    """


@dataclass(frozen=True)
class SavedVersion:
    """One version of a saved model on disk."""

    name: str
    version: int
    path: Path
    """The version's folder."""

    @property
    def weights(self) -> Path:
        """Its ``weights.safetensors``."""
        return self.path / WEIGHTS

    @property
    def manifest(self) -> Path:
        """Its ``manifest.json``."""
        return self.path / MANIFEST

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    def info(self) -> dict[str, Any]:
        """As plain data (the replies' shape): ``name``, ``version``, ``ref`` and its folder ``path``."""
        return {"name": self.name, "version": self.version, "ref": self.ref, "path": str(self.path)}


def check_name(name: str, what: str = "model name") -> str:
    """``name`` when it is a valid model or alias name.

    Raises:
        SavedModelError: naming the rule.
    """
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise SavedModelError(
            f"{what} {name!r} is not valid: use letters, digits, '-', '_' and '.' (at most 100, not starting with "
            "'.' or '-')"
        )
    return name


def models_root(home: Path) -> Path:
    """``HOME/models``."""
    return Path(home) / MODELS


def model_dir(home: Path, name: str) -> Path:
    """The folder of model ``name`` (validated)."""
    return models_root(home) / check_name(name)


def versions(home: Path, name: str) -> list[int]:
    """The versions of model ``name``, oldest first (none: empty)."""
    folder = model_dir(home, name)
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


SUMMARY_FIELDS = ("model", "mode", "created", "study", "data")
"""What a listing carries of each model's latest manifest (with its holdout errors): not its strategies."""


def summary(version: SavedVersion) -> dict[str, Any] | None:
    """The latest version's model, creation time, holdout errors, study evidence and data signature, as plain data.

    None when its manifest cannot be read (``saved show`` says why).
    """
    try:
        manifest = json.loads(version.manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    out = {k: manifest.get(k) for k in SUMMARY_FIELDS}
    metrics = manifest.get("metrics")
    out["metrics"] = {"errors": metrics.get("errors")} if isinstance(metrics, dict) else {}
    return out


def list_models(home: Path) -> list[dict[str, Any]]:
    """Every saved model, by name: ``{"name", "versions", "latest", "aliases", "summary"}`` (:func:`summary`)."""
    root = models_root(home)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name)):
        found = versions(home, folder.name)
        if found:
            aliases = read_aliases(home, folder.name)
            latest = SavedVersion(folder.name, found[-1], folder / str(found[-1]))
            out.append(
                {"name": folder.name, "versions": found, "latest": found[-1], "aliases": aliases}
                | {"summary": summary(latest)}
            )
    return out


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``NAME``, ``NAME@ALIAS`` or ``NAME:VERSION`` as (name, alias, version).

    Raises:
        SavedModelError: for a reference of another form.
    """
    name, alias, version = ref, None, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
        check_name(alias, "alias")
    elif ":" in ref:
        name, number = ref.split(":", 1)
        if not number.isdigit() or int(number) < 1:
            raise SavedModelError(f"saved model reference {ref!r}: the version after ':' must be a number >= 1")
        version = int(number)
    return check_name(name), alias, version


def resolve(home: Path, ref: str) -> SavedVersion:
    """The version ``ref`` names (``NAME`` alone: the latest).

    Raises:
        SavedModelError: when the model, alias or version does not exist (the message lists what does).
    """
    name, alias, version = parse_ref(ref)
    found = versions(home, name)
    if not found:
        known = ", ".join(m["name"] for m in list_models(home)) or "none"
        raise SavedModelError(f"no saved model {name!r} in {models_root(home)} (saved models: {known})")
    if alias is not None:
        aliases = read_aliases(home, name)
        if alias not in aliases:
            raise SavedModelError(
                f"saved model {name!r} has no alias {alias!r} (aliases: {', '.join(sorted(aliases)) or 'none'})"
            )
        version = aliases[alias]
    if version is None:
        version = found[-1]
    if version not in found:
        raise SavedModelError(f"saved model {name!r} has no version {version} (versions: {', '.join(map(str, found))})")
    return SavedVersion(name, version, model_dir(home, name) / str(version))


def write_version(home: Path, name: str, fill: Callable[[Path], None]) -> SavedVersion:
    """A new version of model ``name``: ``fill`` writes its files into a temporary folder, renamed into place.

    The version is one more than the newest; if another writer takes that number first, the next is taken. A
    failure in ``fill`` leaves nothing behind.
    """
    folder = model_dir(home, name)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        fill(tmp)
        for path in tmp.iterdir():
            fsync_path(path)
        fsync_path(tmp)
        number = (versions(home, name) or [0])[-1] + 1
        while True:
            target = folder / str(number)
            try:
                os.rename(tmp, target)  # fails when the target exists and is not empty: never overwrites
                break
            except OSError:
                if not target.exists():
                    raise
                number += 1
        fsync_path(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SavedVersion(name, number, target)


def read_aliases(home: Path, name: str) -> dict[str, int]:
    """Model ``name``'s aliases: alias -> version (none: empty).

    Raises:
        SavedModelError: when ``aliases.json`` is damaged.
    """
    path = model_dir(home, name) / ALIASES
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SavedModelError(f"{path}: cannot read the aliases ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in data.items()
    ):
        raise SavedModelError(f"{path}: the aliases must be an object of alias -> version number")
    return dict(data)


def set_alias(home: Path, ref: str, alias: str) -> SavedVersion:
    """Point ``alias`` of the model ``ref`` names at that version (moving it from any other version)."""
    check_name(alias, "alias")
    target = resolve(home, ref)
    aliases = read_aliases(home, target.name) | {alias: target.version}
    write_json_atomic(model_dir(home, target.name) / ALIASES, aliases)
    return target


def remove_alias(home: Path, name: str, alias: str) -> None:
    """Remove ``alias`` of model ``name``.

    Raises:
        SavedModelError: when it has no such alias.
    """
    aliases = read_aliases(home, name)
    if alias not in aliases:
        raise SavedModelError(f"saved model {name!r} has no alias {alias!r}")
    del aliases[alias]
    write_json_atomic(model_dir(home, name) / ALIASES, aliases)


def remove_version(home: Path, ref: str, *, force: bool = False) -> SavedVersion:
    """Remove the version ``ref`` names; its aliases go with it only when ``force``.

    Raises:
        SavedModelError: when an alias points at it and not ``force`` (the message names the aliases).
    """
    target = resolve(home, ref)
    aliases = read_aliases(home, target.name)
    pointing = sorted(a for a, v in aliases.items() if v == target.version)
    if pointing and not force:
        raise SavedModelError(
            f"saved model {target.ref} is aliased as {', '.join(pointing)}: move the alias first, or force"
        )
    if pointing:
        write_json_atomic(
            model_dir(home, target.name) / ALIASES, {a: v for a, v in aliases.items() if a not in pointing}
        )
    trash = target.path.with_name(f".rm-{target.version}-{uuid.uuid4().hex}")
    os.rename(target.path, trash)  # one rename: a reader sees the version whole or not at all
    shutil.rmtree(trash)
    return target
